"""A fake Telegram Bot API on 127.0.0.1: records requests, validates HTML the way Telegram
does, enforces the rate limits by answering 429, and fails on request."""

from __future__ import annotations

import html
import itertools
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.common import Recorder, Scripted, Window, stats_of

ALLOWED_TAGS = {
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "span",
    "tg-spoiler",
    "a",
    "code",
    "pre",
    "blockquote",
    "tg-emoji",
}
_TOKEN = re.compile(
    r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)((?:\s+[a-zA-Z-]+(?:=\"[^\"]*\"|='[^']*')?)*)\s*>"
)
_ENTITY = re.compile(r"&(lt|gt|amp|quot|#\d{1,7}|#x[0-9a-fA-F]{1,6});")
_ATTR = re.compile(r"([a-zA-Z-]+)(?:=\"([^\"]*)\"|='([^']*)')?")


class HtmlError(ValueError):
    pass


def parse_html(text: str) -> str:
    """The visible text of Telegram HTML, or HtmlError with Telegram's wording."""
    out: list[str] = []
    stack: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "<":
            m = _TOKEN.match(text, i)
            if m is None:
                raise HtmlError(f"Can't parse entities: unsupported start tag at byte offset {i}")
            closing, tag, attrs = m.group(1), m.group(2).lower(), m.group(3)
            if tag not in ALLOWED_TAGS:
                raise HtmlError(
                    f'Can\'t parse entities: unsupported start tag "{tag}" at byte offset {i}'
                )
            if closing:
                if not stack or stack[-1] != tag:
                    raise HtmlError(
                        f"Can't parse entities: can't find end tag corresponding to "
                        f'start tag "{stack[-1] if stack else tag}"'
                    )
                stack.pop()
            else:
                for name, v1, v2 in _ATTR.findall(attrs):
                    value = html.unescape(v1 or v2)
                    if tag == "a" and name == "href" and not re.match(r"^(https?|tg)://", value):
                        raise HtmlError(f'Can\'t parse entities: unsupported URL "{value}"')
                stack.append(tag)
            i = m.end()
        elif ch == "&":
            m = _ENTITY.match(text, i)
            if m is None:
                raise HtmlError(f"Can't parse entities: unsupported entity at byte offset {i}")
            out.append(html.unescape(m.group(0)))
            i = m.end()
        elif ch == ">":
            raise HtmlError(f"Can't parse entities: unexpected end tag at byte offset {i}")
        else:
            out.append(ch)
            i += 1
    if stack:
        raise HtmlError(
            f"Can't parse entities: can't find end tag corresponding to start tag \"{stack[-1]}\""
        )
    return "".join(out)


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@dataclass
class Message:
    chat_id: int | str
    message_id: int
    text: str
    photo: str | None
    parse_mode: str | None


class FakeTelegram(Recorder):
    def __init__(self, token: str = "123:TEST", *, limits_scale: float | None = None) -> None:
        super().__init__()
        self.token = token
        self.scripts: list[Scripted] = []
        self.blocked: set[int] = set()
        self.unknown: set[int] = set()
        self.migrated: dict[int, int] = {}
        self.messages: dict[tuple[str, int], Message] = {}
        self.deleted: list[tuple[str, int]] = []
        self.rate_limited = 0
        self.limits_scale = limits_scale
        self._random: tuple[float, Any] | None = None
        self._bot_window = Window(int(30 * (limits_scale or 1)), 1.0)
        self._chat_windows: dict[str, Window] = {}
        self._ids = itertools.count(1)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FakeTelegram:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._handle)
        app.router.add_get("/_fake/stats", self._stats)
        await self.serve(app)
        return self

    def fail(
        self,
        status: int,
        description: str,
        *,
        count: int = 1,
        retry_after: int | None = None,
        migrate_to: int | None = None,
        delay: float = 0.0,
        methods: tuple[str, ...] = (),
        skip: int = 0,
    ) -> None:
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        parameters: dict[str, Any] = {}
        if retry_after is not None:
            parameters["retry_after"] = retry_after
        if migrate_to is not None:
            parameters["migrate_to_chat_id"] = migrate_to
        if parameters:
            body["parameters"] = parameters
        self.scripts.append(Scripted(status, body, count, delay, methods, skip=skip))

    def random_failures(self, ratio: float, rng: Any) -> None:
        """Answer `ratio` of the sends with 429 (retry_after 1) or 502, half each."""
        self._random = (ratio, rng)

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(stats_of(self.requests, self.rate_limited))

    def sent(self, method: str | None = None) -> list[dict[str, Any]]:
        """Requests that the fake answered with ok (optionally of one method)."""
        return [r for r in self.requests if r["ok"] and (method is None or r["method"] == method)]

    def _error(self, status: int, description: str, **parameters: Any) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if parameters:
            body["parameters"] = parameters
        return web.json_response(body, status=status)

    async def _handle(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        method = request.match_info["method"]
        if request.content_type == "application/json":  # Apprise posts JSON; PTB posts forms
            body = await request.json()
            params = {k: v if isinstance(v, str) else json.dumps(v) for k, v in body.items()}
        else:
            form = await request.post()
            params = {k: str(v) for k, v in form.items()}
        entry: dict[str, Any] = {
            "method": method,
            "params": params,
            "at": arrived,
            "ok": False,
            "status": None,
        }
        await self.record(entry)  # on arrival, so a test can see a request still in progress
        response = await self._answer(request, method, params, arrived)
        entry["ok"] = response.status == 200
        entry["status"] = response.status
        await self.notify()
        return response

    async def _answer(
        self, request: web.Request, method: str, params: dict[str, str], arrived: float
    ) -> web.Response:
        if request.match_info["token"] != self.token:
            return self._error(401, "Unauthorized")
        if method == "getMe":
            return web.json_response(
                {
                    "ok": True,
                    "result": {
                        "id": 4242,
                        "is_bot": True,
                        "first_name": "Fake",
                        "username": "fake_bot",
                    },
                }
            )
        script = self.take_script(self.scripts, method)
        if script is not None:
            if script.delay:
                await self.pause(script.delay)
            if script.status != 200:
                return web.json_response(script.body, status=script.status)
        if self._random is not None and method in ("sendMessage", "sendPhoto"):
            ratio, rng = self._random
            roll = rng.random()
            if roll < ratio / 2:
                self.rate_limited += 1
                return self._error(429, "Too Many Requests: retry after 1", retry_after=1)
            if roll < ratio:
                return self._error(502, "Bad Gateway")
        chat_key = params.get("chat_id", "")
        if self.limits_scale is not None and method != "getMe":
            wait = self._bot_window.admit(arrived)
            if wait is None:
                window = self._chat_windows.get(chat_key)
                if window is None:
                    group = chat_key.startswith("-") or chat_key.startswith("@")
                    count, seconds = (20, 60.0) if group else (1, 1.0)
                    window = Window(max(1, int(count * self.limits_scale)), seconds)
                    self._chat_windows[chat_key] = window
                wait = window.admit(arrived)
            if wait is not None:
                self.rate_limited += 1
                return self._error(
                    429,
                    f"Too Many Requests: retry after {max(1, round(wait))}",
                    retry_after=max(1, round(wait)),
                )
        try:
            chat_id: int | str = int(chat_key)
        except ValueError:
            chat_id = chat_key
        if isinstance(chat_id, int):
            if chat_id in self.migrated:
                return self._error(
                    400,
                    "Bad Request: group chat was upgraded to a supergroup chat",
                    migrate_to_chat_id=self.migrated[chat_id],
                )
            if chat_id in self.blocked:
                return self._error(403, "Forbidden: bot was blocked by the user")
            if chat_id in self.unknown:
                return self._error(400, "Bad Request: chat not found")
        handler = {
            "sendMessage": self._send,
            "sendPhoto": self._send,
            "editMessageText": self._edit,
            "editMessageCaption": self._edit,
            "deleteMessage": self._delete,
        }.get(method)
        if handler is None:
            return self._error(404, "Not Found: method not found")
        return handler(method, chat_key, chat_id, params)

    def _check_text(self, params: dict[str, str], field: str, limit: int) -> str | web.Response:
        text = params.get(field, "")
        visible = text
        if params.get("parse_mode") == "HTML":
            try:
                visible = parse_html(text)
            except HtmlError as exc:
                return self._error(400, f"Bad Request: {exc}")
        if "\x00" in visible:
            return self._error(400, "Bad Request: text must be encoded in UTF-8")
        if utf16_len(visible) > limit:
            kind = "message caption is too long" if field == "caption" else "message is too long"
            return self._error(400, f"Bad Request: {kind}")
        if field == "text" and not visible.strip():
            return self._error(400, "Bad Request: message text is empty")
        return visible

    def _result(self, message: Message) -> web.Response:
        result: dict[str, Any] = {
            "message_id": message.message_id,
            "date": int(time.time()),
            "chat": {
                "id": message.chat_id if isinstance(message.chat_id, int) else -100,
                "type": "private",
            },
        }
        if message.photo:
            result["photo"] = [{"file_id": "f", "file_unique_id": "u", "width": 1, "height": 1}]
            result["caption"] = message.text
        else:
            result["text"] = message.text
        return web.json_response({"ok": True, "result": result})

    def _send(
        self, method: str, chat_key: str, chat_id: int | str, params: dict[str, str]
    ) -> web.Response:
        photo = params.get("photo") if method == "sendPhoto" else None
        if method == "sendPhoto" and not (photo or "").startswith("https://"):
            return self._error(400, "Bad Request: wrong file identifier/HTTP URL specified")
        checked = self._check_text(params, "caption" if photo else "text", 1024 if photo else 4096)
        if isinstance(checked, web.Response):
            return checked
        message = Message(chat_id, next(self._ids), checked, photo, params.get("parse_mode"))
        self.messages[(chat_key, message.message_id)] = message
        return self._result(message)

    def _edit(
        self, method: str, chat_key: str, chat_id: int | str, params: dict[str, str]
    ) -> web.Response:
        key = (chat_key, int(params.get("message_id", "0")))
        message = self.messages.get(key)
        if message is None:
            return self._error(400, "Bad Request: message to edit not found")
        field = "caption" if method == "editMessageCaption" else "text"
        if (field == "caption") != bool(message.photo):
            return self._error(400, "Bad Request: there is no text in the message to edit")
        checked = self._check_text(params, field, 1024 if message.photo else 4096)
        if isinstance(checked, web.Response):
            return checked
        if checked == message.text:
            return self._error(
                400,
                "Bad Request: message is not modified: specified new "
                "message content and reply markup are exactly the same",
            )
        message.text = checked
        return self._result(message)

    def _delete(
        self, method: str, chat_key: str, chat_id: int | str, params: dict[str, str]
    ) -> web.Response:
        key = (chat_key, int(params.get("message_id", "0")))
        if self.messages.pop(key, None) is None:
            return self._error(400, "Bad Request: message to delete not found")
        self.deleted.append(key)
        return web.json_response({"ok": True, "result": True})


def visible_texts(fake: FakeTelegram) -> list[str]:
    return [m.text for m in fake.messages.values()]
