"""A fake Discord REST API on 127.0.0.1 (webhooks and bot channel messages): records
requests, checks Discord's limits and `allowed_mentions`, works out who would have been
pinged, enforces 5 requests per 2 s per webhook by answering 429, and fails on request."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import time
from typing import Any

from aiohttp import web

from tests.fakes.common import Recorder, Scripted, Window, stats_of

BOT_TOKEN = "fake-bot-token"


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # discord.py reads JSON only when Content-Type is exactly application/json.
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def embed_problems(embed: dict[str, Any]) -> list[str]:
    problems = []
    limits = {"title": 256, "description": 4096}
    for key, limit in limits.items():
        if len(embed.get(key, "")) > limit:
            problems.append(f"embed.{key} over {limit}")
    if len(embed.get("footer", {}).get("text", "")) > 2048:
        problems.append("embed.footer over 2048")
    if len(embed.get("author", {}).get("name", "")) > 256:
        problems.append("embed.author.name over 256")
    fields = embed.get("fields", [])
    if len(fields) > 25:
        problems.append("more than 25 fields")
    total = sum(len(embed.get(k, "")) for k in limits)
    total += len(embed.get("footer", {}).get("text", "")) + len(
        embed.get("author", {}).get("name", "")
    )
    for item in fields:
        if len(item.get("name", "")) > 256 or len(item.get("value", "")) > 1024:
            problems.append("field over its limit")
        total += len(item.get("name", "")) + len(item.get("value", ""))
    if total > 6000:
        problems.append("embed text over 6000")
    return problems


def pinged(content: str, allowed: dict[str, Any]) -> dict[str, Any]:
    """Who Discord would notify for this content under these allowed_mentions."""
    parse = set(allowed.get("parse", []))
    roles = {int(r) for r in allowed.get("roles", [])}
    users = {int(u) for u in allowed.get("users", [])}
    everyone = "everyone" in parse and bool(re.search(r"@(everyone|here)", content))
    role_hits = {int(r) for r in re.findall(r"<@&(\d+)>", content)}
    user_hits = {int(u) for u in re.findall(r"<@!?(\d+)>", content)}
    return {
        "everyone": everyone,
        "roles": sorted(r for r in role_hits if "roles" in parse or r in roles),
        "users": sorted(u for u in user_hits if "users" in parse or u in users),
    }


class FakeDiscord(Recorder):
    def __init__(self, *, limits_scale: float | None = None) -> None:
        super().__init__()
        self.webhooks: dict[int, str] = {}
        self.channels: set[int] = set()
        self.scripts: list[Scripted] = []
        self.messages: dict[int, dict[str, Any]] = {}
        self.deleted: list[int] = []
        self.rate_limited = 0
        self.violations: list[str] = []
        self.limits_scale = limits_scale
        self._windows: dict[str, Window] = {}
        self._ids = itertools.count(1_000_000_000_000_000_000)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    def add_webhook(self, webhook_id: int, token: str = "t" * 68) -> str:
        self.webhooks[webhook_id] = token
        return f"https://discord.com/api/webhooks/{webhook_id}/{token}"

    async def start(self) -> FakeDiscord:
        app = web.Application()
        r = app.router
        base = "/api/v10"
        r.add_get(f"{base}/users/@me", self._me)
        r.add_get("/_fake/stats", self._stats)
        r.add_post(f"{base}/webhooks/{{wid}}/{{token}}", self._webhook_send)
        r.add_patch(f"{base}/webhooks/{{wid}}/{{token}}/messages/{{mid}}", self._webhook_edit)
        r.add_delete(f"{base}/webhooks/{{wid}}/{{token}}/messages/{{mid}}", self._webhook_delete)
        r.add_post(f"{base}/channels/{{cid}}/messages", self._channel_send)
        r.add_patch(f"{base}/channels/{{cid}}/messages/{{mid}}", self._channel_edit)
        r.add_delete(f"{base}/channels/{{cid}}/messages/{{mid}}", self._channel_delete)
        await self.serve(app)
        return self

    def fail(
        self,
        status: int,
        message: str = "error",
        *,
        code: int = 0,
        count: int = 1,
        retry_after: float | None = None,
        delay: float = 0.0,
    ) -> None:
        body: dict[str, Any] = {"message": message, "code": code}
        headers: dict[str, str] = {}
        if retry_after is not None:
            body |= {"retry_after": retry_after, "global": False}
            headers = {"Retry-After": str(retry_after), "Via": "1.1 google"}
        self.scripts.append(Scripted(status, body, count, delay, (), headers))

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(stats_of(self.requests, self.rate_limited))

    def sent(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["ok"] and r["method"] == "POST"]

    async def _me(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bot {BOT_TOKEN}":
            return _json({"message": "401: Unauthorized", "code": 0}, 401)
        return _json(
            {"id": "42", "username": "fakebot", "discriminator": "0", "avatar": None, "bot": True}
        )

    async def _gate(self, request: web.Request, bucket: str) -> web.Response | None:
        arrived = time.monotonic()
        script = self.take_script(self.scripts, request.method)
        if script is not None:
            if script.delay:
                await self.pause(script.delay)
            if script.status != 200:
                return _json(script.body, script.status, script.headers)
        if self.limits_scale is not None:
            window = self._windows.setdefault(
                bucket, Window(max(1, int(5 * self.limits_scale)), 2.0)
            )
            wait = window.admit(arrived)
            if wait is not None:
                self.rate_limited += 1
                return _json(
                    {
                        "message": "You are being rate limited.",
                        "retry_after": wait,
                        "global": False,
                    },
                    429,
                    {"Retry-After": f"{wait:.3f}", "Via": "1.1 google"},
                )
        return None

    def _message_json(
        self, message_id: int, channel_id: int, body: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "id": str(message_id),
            "channel_id": str(channel_id),
            "type": 0,
            "content": body.get("content") or "",
            "embeds": body.get("embeds") or [],
            "author": {
                "id": "42",
                "username": "hook",
                "discriminator": "0000",
                "avatar": None,
                "bot": True,
            },
            "attachments": [],
            "mentions": [],
            "mention_roles": [],
            "pinned": False,
            "mention_everyone": False,
            "tts": False,
            "flags": 0,
            "timestamp": dt.datetime.now(dt.UTC).isoformat(),
            "edited_timestamp": None,
        }

    async def _store(self, request: web.Request, channel_id: int, where: str) -> web.Response:
        body = await request.json()
        entry: dict[str, Any] = {
            "method": "POST",
            "where": where,
            "body": body,
            "ok": False,
            "at": time.monotonic(),
        }
        problems = self._validate(body)
        if problems:
            self.violations += problems
            await self.record(entry | {"status": 400, "problems": problems})
            return _json({"message": "Invalid Form Body", "code": 50035, "errors": problems}, 400)
        message_id = next(self._ids)
        stored = self._message_json(message_id, channel_id, body)
        stored["pinged"] = pinged(body.get("content") or "", body["allowed_mentions"])
        stored["where"] = where
        self.messages[message_id] = stored
        await self.record(
            entry | {"ok": True, "status": 200, "id": message_id, "pinged": stored["pinged"]}
        )
        return _json({k: v for k, v in stored.items() if k not in ("pinged", "where")})

    def _validate(self, body: dict[str, Any]) -> list[str]:
        problems = []
        if "allowed_mentions" not in body:
            problems.append("no allowed_mentions: @everyone in the text would ping")
        if len(body.get("content") or "") > 2000:
            problems.append("content over 2000")
        for embed in body.get("embeds") or []:
            problems += embed_problems(embed)
        if not (body.get("content") or body.get("embeds")):
            problems.append("empty message")
        return problems

    async def _edit(self, request: web.Request, message_id: int) -> web.Response:
        body = await request.json()
        message = self.messages.get(message_id)
        entry = {"method": "PATCH", "body": body, "at": time.monotonic(), "id": message_id}
        if message is None:
            await self.record(entry | {"ok": False, "status": 404})
            return _json({"message": "Unknown Message", "code": 10008}, 404)
        problems = [p for e in body.get("embeds") or [] for p in embed_problems(e)]
        if problems:
            await self.record(entry | {"ok": False, "status": 400})
            return _json({"message": "Invalid Form Body", "code": 50035}, 400)
        if "embeds" in body:
            message["embeds"] = body["embeds"]
        if "content" in body:
            message["content"] = body["content"]
        await self.record(entry | {"ok": True, "status": 200})
        return _json({k: v for k, v in message.items() if k not in ("pinged", "where")})

    async def _delete(self, message_id: int) -> web.Response:
        ok = self.messages.pop(message_id, None) is not None
        await self.record(
            {
                "method": "DELETE",
                "id": message_id,
                "ok": ok,
                "at": time.monotonic(),
                "status": 204 if ok else 404,
            }
        )
        if not ok:
            return _json({"message": "Unknown Message", "code": 10008}, 404)
        self.deleted.append(message_id)
        return web.Response(status=204)

    def _check_webhook(self, request: web.Request) -> web.Response | None:
        wid = int(request.match_info["wid"])
        if self.webhooks.get(wid) != request.match_info["token"]:
            return _json({"message": "Unknown Webhook", "code": 10015}, 404)
        return None

    async def _webhook_send(self, request: web.Request) -> web.Response:
        bad = self._check_webhook(request)
        if bad is not None:
            await self.record(
                {"method": "POST", "ok": False, "status": 404, "at": time.monotonic()}
            )
            return bad
        gated = await self._gate(request, f"webhook:{request.match_info['wid']}")
        if gated is not None:
            await self.record(
                {"method": "POST", "ok": False, "status": gated.status, "at": time.monotonic()}
            )
            return gated
        return await self._store(request, 777, f"webhook:{request.match_info['wid']}")

    async def _webhook_edit(self, request: web.Request) -> web.Response:
        bad = self._check_webhook(request)
        if bad is not None:
            return bad
        gated = await self._gate(request, f"webhook:{request.match_info['wid']}")
        if gated is not None:
            return gated
        return await self._edit(request, int(request.match_info["mid"]))

    async def _webhook_delete(self, request: web.Request) -> web.Response:
        bad = self._check_webhook(request)
        return bad if bad is not None else await self._delete(int(request.match_info["mid"]))

    def _check_bot(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bot {BOT_TOKEN}":
            return _json({"message": "401: Unauthorized", "code": 0}, 401)
        if int(request.match_info["cid"]) not in self.channels:
            return _json({"message": "Unknown Channel", "code": 10003}, 404)
        return None

    async def _channel_send(self, request: web.Request) -> web.Response:
        bad = self._check_bot(request) or await self._gate(
            request, f"channel:{request.match_info['cid']}"
        )
        if bad is not None:
            await self.record(
                {"method": "POST", "ok": False, "status": bad.status, "at": time.monotonic()}
            )
            return bad
        cid = int(request.match_info["cid"])
        return await self._store(request, cid, f"channel:{cid}")

    async def _channel_edit(self, request: web.Request) -> web.Response:
        bad = self._check_bot(request)
        return bad if bad is not None else await self._edit(request, int(request.match_info["mid"]))

    async def _channel_delete(self, request: web.Request) -> web.Response:
        bad = self._check_bot(request)
        return bad if bad is not None else await self._delete(int(request.match_info["mid"]))
