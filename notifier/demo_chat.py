"""The demo's Telegram: a minimal Bot API on 127.0.0.1 that the real command bot and the
real senders talk to, so `notifier demo` can show a chat user typing /follow and getting
the DM alert, with no token and nothing beyond this machine.

It answers what python-telegram-bot's polling Application and our senders call (getMe,
getUpdates with long polling, sendMessage, sendPhoto, edits, setMyCommands, ...), prints
every message the bot sends to the terminal, and lets the demo type as a user.
"""

from __future__ import annotations

import asyncio
import html
import itertools
import json
import re
import sys
import time
from typing import Any, TextIO

from aiohttp import web

TOKEN = "1000001:demo-token-for-the-local-bot-api-only"
BOT = {"id": 1000001, "is_bot": True, "first_name": "Parti demo bot", "username": "parti_demo_bot"}
_TAG = re.compile(r"<[^>]+>")


def visible(text: str) -> str:
    """What a chat shows of Telegram HTML (tags dropped, entities read)."""
    return html.unescape(_TAG.sub("", text))


class DemoChat:
    def __init__(self, *, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.updates: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1)
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> DemoChat:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        async with self._changed:
            self._changed.notify_all()
        if self._runner is not None:
            await self._runner.cleanup()

    # ---- the demo types as a user ------------------------------------------------------

    async def type(self, chat_id: int, text: str, *, first_name: str = "Ann") -> None:
        command = text.split()[0] if text.startswith("/") else ""
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private", "first_name": first_name},
            "from": {"id": chat_id, "is_bot": False, "first_name": first_name},
            "text": text,
        }
        if command:
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        async with self._changed:
            self.updates.append({"update_id": next(self._update_ids), "message": message})
            self._changed.notify_all()

    async def reply(self, chat_id: int, timeout: float = 20.0) -> str:
        """The bot's next message to the chat, as the chat shows it."""
        seen = len(self.sent)
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(
                lambda: any(m["chat_id"] == chat_id for m in self.sent[seen:])
            )
        found = next(m for m in self.sent[seen:] if m["chat_id"] == chat_id)
        return visible(found["text"])

    # ---- the Bot API --------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != TOKEN:
            return _answer({"ok": False, "error_code": 401, "description": "Unauthorized"}, 401)
        if request.content_type == "application/json":
            body = await request.json()
            params = {k: v if isinstance(v, str) else json.dumps(v) for k, v in body.items()}
        else:
            params = {k: str(v) for k, v in (await request.post()).items()}
        method = request.match_info["method"]
        if method == "getUpdates":
            return _answer({"ok": True, "result": await self._get_updates(params)})
        if method in ("sendMessage", "sendPhoto"):
            return _answer({"ok": True, "result": await self._send(method, params)})
        if method in ("editMessageText", "editMessageCaption"):
            return _answer({"ok": True, "result": await self._send(method, params, edit=True)})
        if method == "getMe":
            return _answer({"ok": True, "result": BOT})
        if method == "getChatMember":
            user = {"id": int(params.get("user_id", 0)), "is_bot": False, "first_name": "Ann"}
            return _answer(
                {"ok": True, "result": {"status": "creator", "user": user, "is_anonymous": False}}
            )
        # deleteWebhook, setMyCommands, answerCallbackQuery, editMessageReplyMarkup, ...
        return _answer({"ok": True, "result": True})

    async def _get_updates(self, params: dict[str, str]) -> list[dict[str, Any]]:
        offset = int(params.get("offset", 0) or 0)
        timeout = min(float(params.get("timeout", 0) or 0), 10.0)
        self.updates = [u for u in self.updates if u["update_id"] >= offset]
        if not self.updates and timeout:
            async with self._changed:
                try:
                    async with asyncio.timeout(timeout):
                        await self._changed.wait_for(lambda: bool(self.updates))
                except TimeoutError:
                    pass
        return list(self.updates)

    async def _send(self, method: str, params: dict[str, str], *, edit: bool = False) -> Any:
        chat_id = int(params["chat_id"])
        text = params.get("text") or params.get("caption") or ""
        number = int(params["message_id"]) if edit else next(self._message_ids)
        async with self._changed:
            self.sent.append({"chat_id": chat_id, "text": text, "method": method})
            self._changed.notify_all()
        shown = visible(text).replace("\n", " | ")
        prefix = "edited: " if edit else ""
        print(f"[telegram DM {chat_id}] {prefix}{shown}", file=self.out, flush=True)
        message: dict[str, Any] = {
            "message_id": number,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private", "first_name": "Ann"},
            "from": BOT,
            "text" if method != "sendPhoto" else "caption": text,
        }
        if method == "sendPhoto":
            message["photo"] = [
                {"file_id": "demo", "file_unique_id": "demo", "width": 1, "height": 1}
            ]
        return message


def _answer(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type="application/json")
