"""A local Parti backend (HTTP routes + WebSocket subscribe protocol) with a control API.

Serves every route of api-routes.md and realtime-notes.md from in-memory state seeded
with the documented demo answers, and the WebSocket at `/`. The control API under
`/_sim/` (and the same methods on `Simulator`) lets tests and the demo script Parti:
channels going live or offline, prices, dropped connections, unanswered pings,
silence, malformed frames and failing HTTP answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import WSMsgType, web
from pydantic import ValidationError

from notifier.log import short_error
from notifier.parti import seed
from notifier.parti.decode import LIVE, PRICE
from notifier.parti.models import CalendarEvent

P = "/parti_v2/profile"


@dataclass
class _Conn:
    ws: web.WebSocketResponse
    subscriptions: set[str] = field(default_factory=set)


@dataclass
class _Failure:
    status: int
    remaining: int
    retry_after: float | None


class CannotListen(Exception):
    """The simulator's address cannot be listened on (taken, or an unknown host)."""


class Simulator:
    """In-memory Parti. `await start()` listens on 127.0.0.1; `await stop()` closes all."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.categories = [dict(c) for c in seed.CATEGORIES]
        self.live_channels: dict[int, dict[str, Any]] = {c["user_id"]: dict(c) for c in seed.LIVE}
        self.calendar = [dict(e) for e in seed.CALENDAR]
        self.featured = [dict(f) for f in seed.FEATURED]
        self.recent = [dict(r) for r in seed.RECENT]
        self.prices: dict[str, dict[str, Any]] = {p["display_symbol"]: dict(p) for p in seed.PRICES}
        self.profiles: dict[int, dict[str, Any]] = {p["user_id"]: dict(p) for p in seed.PROFILES}
        self.answer_pings = True
        self.silent = False
        self.accept_ws = True
        self.requests: Counter[str] = Counter()
        self.pings_seen = 0
        self.connections_total = 0
        self._conns: list[_Conn] = []
        self._failures: list[_Failure] = []
        self._changed = asyncio.Condition()
        self._event_ids = itertools.count(90_000)
        self._livestream_ids = itertools.count(95_000)
        self._runner: web.AppRunner | None = None
        for channel in self.live_channels.values():
            self._remember_user(channel)

    # ---- lifecycle ----------------------------------------------------------

    async def start(self) -> Simulator:
        app = web.Application(middlewares=[_control_errors, self._failure_middleware])
        self._routes(app)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except BaseException as exc:  # the port is taken, the host unknown: nothing left
            await self._runner.cleanup()
            self._runner = None
            if isinstance(exc, OSError):
                reason = exc.strerror or str(exc)
                raise CannotListen(f"cannot listen on {self.host}:{self.port}: {reason}") from None
            raise
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        await self.drop_connections()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Simulator:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/"

    # ---- scripting (also reachable under /_sim/) ----------------------------

    async def go_live(
        self, user_id: int, user_name: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        """Make a user live, add them to the live list, and notify subscribers."""
        profile = self.profiles.get(user_id, {})
        name = user_name or profile.get("user_name") or f"user{user_id}"
        frame: dict[str, Any] = {
            "livestream_id": next(self._livestream_ids),
            "user_id": user_id,
            "user_name": name,
            "user_avatar_id": profile.get("user_avatar_id", 1),
            "avatar_link": f"https://assets.parti.com/avatars/{user_id}.png",
            "event_id": next(self._event_ids),
            "event_title": "I'm Live on Parti",
            "event_file": f"https://assets.parti.com/thumbs/{user_id}.png",
            "category_name": "Other",
            "viewers_count": 0,
            "social_media": profile.get("social_media", "parti"),
            "social_username": profile.get("social_username", name),
            "channel_arn": f"arn:aws:ivs:us-east-1:000000000000:channel/sim{user_id}",
        }
        frame.update(fields)
        self.live_channels[user_id] = frame
        self._remember_user(frame)
        await self.broadcast(LIVE, frame)
        return frame

    async def go_offline(self, user_id: int) -> dict[str, Any] | None:
        """Remove a user from the live list; the stream joins the recent list."""
        channel = self.live_channels.pop(user_id, None)
        if channel is not None:
            self.recent.insert(
                0,
                {
                    "user_id": user_id,
                    "user_name": channel.get("user_name"),
                    "event_id": channel.get("event_id") or next(self._event_ids),
                    "event_title": channel.get("event_title"),
                    "event_end_ts": int(time.time()),
                    "category_name": channel.get("category_name"),
                    "total_viewers": channel.get("viewers_count") or 0,
                    "event_file": channel.get("event_file"),
                },
            )
        await self._notify_changed()
        return channel

    async def set_price(self, symbol: str, price: str | Decimal) -> dict[str, Any]:
        """Set an asset's price and notify subscribers with a price frame."""
        value = Decimal(str(price))
        asset = self.prices.get(symbol.upper()) or {
            "asset_type": "Crypto",
            "display_symbol": symbol.upper(),
            "ticker": symbol.lower(),
            "price": str(value),
            "direction": "up",
            "price_diff": "0.00",
        }
        old = Decimal(str(asset["price"]))
        change = abs(value - old) / old * 100 if old else Decimal(0)
        asset.update(
            price=str(value),
            direction="up" if value >= old else "down",
            price_diff=str(change.quantize(Decimal("0.01"))),
        )
        self.prices[asset["display_symbol"]] = asset
        await self.broadcast(PRICE, [asset])
        return asset

    async def broadcast(self, subscription: str, payload: Any) -> int:
        """Send `payload` to every connection subscribed to `subscription`; returns how many."""
        if self.silent:
            return 0
        text = json.dumps(payload)
        sent = 0
        for conn in list(self._conns):
            if subscription in conn.subscriptions and not conn.ws.closed:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await conn.ws.send_str(text)
                    sent += 1
        return sent

    async def send_raw(self, text: str) -> int:
        """Send a frame as is (malformed on purpose) to every connection."""
        sent = 0
        for conn in list(self._conns):
            if not conn.ws.closed:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await conn.ws.send_str(text)
                    sent += 1
        return sent

    async def drop_connections(self) -> int:
        """Close every WebSocket connection abruptly (going away)."""
        conns, self._conns = list(self._conns), []
        for conn in conns:
            with contextlib.suppress(Exception):
                await conn.ws.close(code=1001, message=b"simulated drop")
        await self._notify_changed()
        return len(conns)

    def fail_next(self, status: int, count: int = 1, retry_after: float | None = None) -> None:
        """Answer the next `count` HTTP route requests with `status`."""
        self._failures.append(_Failure(status, count, retry_after))

    def subscribers(self, subscription: str) -> int:
        return sum(1 for c in self._conns if subscription in c.subscriptions and not c.ws.closed)

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        """Wait until `predicate()` holds (checked on every state change)."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(predicate)

    async def wait_subscribed(
        self, subscription: str = LIVE, count: int = 1, timeout: float = 10.0
    ) -> None:
        await self.wait_for(lambda: self.subscribers(subscription) >= count, timeout)

    def state(self) -> dict[str, Any]:
        return {
            "connections": len(self._conns),
            "connections_total": self.connections_total,
            "subscribers": {name: self.subscribers(name) for name in (LIVE, PRICE)},
            "live": sorted(self.live_channels),
            "pings_seen": self.pings_seen,
            "answer_pings": self.answer_pings,
            "silent": self.silent,
            "accept_ws": self.accept_ws,
            "requests": dict(self.requests),
        }

    # ---- internals -----------------------------------------------------------

    def _remember_user(self, channel: dict[str, Any]) -> None:
        user_id = channel["user_id"]
        if user_id not in self.profiles:
            self.profiles[user_id] = {
                "user_id": user_id,
                "user_name": channel.get("user_name"),
                "user_avatar_id": channel.get("user_avatar_id", 1),
                "channels_joined": 0,
                "members": 0,
                "description": None,
                "social_media": channel.get("social_media") or "parti",
                "social_username": channel.get("social_username") or channel.get("user_name"),
            }

    async def _notify_changed(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    @web.middleware
    async def _failure_middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith(P):
            self.requests[request.path] += 1
            if self._failures:
                failure = self._failures[0]
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failures.pop(0)
                headers = {}
                if failure.retry_after is not None:
                    headers["Retry-After"] = str(failure.retry_after)
                return web.json_response(
                    {"detail": f"simulated {failure.status}"},
                    status=failure.status,
                    headers=headers,
                )
        response: web.StreamResponse = await handler(request)
        return response

    def _routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/", self._ws_or_index)
        r.add_get(f"{P}/livestream_calendar/events/categories", self._categories)
        r.add_get(f"{P}/livestream_calendar/events", self._calendar)
        r.add_get(f"{P}/get_livestream_channel_info/live", self._live)
        r.add_get(f"{P}/get_livestream_channel_info/recent", self._recent)
        r.add_get(f"{P}/get_livestream_channel_info/recent/{{event_id}}", self._recent_event)
        r.add_get(f"{P}/get_livestream_channel_info/{{user_id}}", self._channel)
        r.add_get(f"{P}/featured_channels", self._featured)
        r.add_get(f"{P}/assets_prices/info", self._prices)
        r.add_get(f"{P}/user_profile/{{user_id}}", self._profile)
        r.add_get(f"{P}/get_user_by_social_media/{{platform}}/{{name}}", self._by_social)
        r.add_get(f"{P}/user_id_from_name/{{slug}}", self._id_from_name)
        r.add_get("/_sim/state", self._ctl_state)
        r.add_get("/_sim/wait", self._ctl_wait)
        r.add_post("/_sim/live", self._ctl_live)
        r.add_post("/_sim/offline", self._ctl_offline)
        r.add_post("/_sim/price", self._ctl_price)
        r.add_post("/_sim/drop", self._ctl_drop)
        r.add_post("/_sim/pings", self._ctl_pings)
        r.add_post("/_sim/silent", self._ctl_silent)
        r.add_post("/_sim/ws", self._ctl_ws)
        r.add_post("/_sim/raw", self._ctl_raw)
        r.add_post("/_sim/fail", self._ctl_fail)
        r.add_post("/_sim/calendar", self._ctl_calendar)
        r.add_post("/_sim/profile", self._ctl_profile)

    # ---- WebSocket -------------------------------------------------------------

    async def _ws_or_index(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=False, max_msg_size=1 << 20)
        if not ws.can_prepare(request).ok:
            return web.json_response({"simulator": "parti", "ws": self.ws_url, "control": "/_sim/"})
        if not self.accept_ws:
            return web.json_response({"detail": "simulated outage"}, status=503)
        await ws.prepare(request)
        conn = _Conn(ws)
        self._conns.append(conn)
        self.connections_total += 1
        try:
            async for msg in ws:
                if msg.type == WSMsgType.PING:
                    self.pings_seen += 1
                    if self.answer_pings:
                        await ws.pong(msg.data)
                    await self._notify_changed()
                elif msg.type == WSMsgType.TEXT:
                    self._subscribe(conn, msg.data)
                    await self._notify_changed()
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                    break
        finally:
            if conn in self._conns:
                self._conns.remove(conn)
            await self._notify_changed()
        return ws

    @staticmethod
    def _subscribe(conn: _Conn, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            return
        options = message.get("subscribe_options") if isinstance(message, dict) else None
        if isinstance(options, dict):
            conn.subscriptions.update(str(name) for name in options)

    # ---- HTTP routes -------------------------------------------------------------

    async def _categories(self, request: web.Request) -> web.Response:
        return web.json_response(self.categories)

    async def _live(self, request: web.Request) -> web.Response:
        limit, offset = _page(request, 100)
        channels = sorted(self.live_channels.values(), key=lambda c: -(c.get("viewers_count") or 0))
        fields = (
            "user_id",
            "user_name",
            "viewers_count",
            "category_name",
            "event_title",
            "event_id",
            "livestream_id",
            "avatar_link",
            "event_file",
        )
        page = [{k: c.get(k) for k in fields if k in c} for c in channels[offset : offset + limit]]
        return web.json_response(page)

    async def _calendar(self, request: web.Request) -> web.Response:
        limit, offset = _page(request, 100)
        events = sorted(self.calendar, key=lambda e: e["event_start_ts"])
        return web.json_response(events[offset : offset + limit])

    async def _featured(self, request: web.Request) -> web.Response:
        return web.json_response(self.featured)

    async def _recent(self, request: web.Request) -> web.Response:
        limit, offset = _page(request, 15)
        q = request.query
        items = list(self.recent)
        category = q.get("categories", "NaN")
        if category not in ("", "NaN", "null", "undefined"):
            wanted = {int(c) for c in category.split(",") if c.strip().isdigit()}
            names = {
                c["name"] or c["display_name"]
                for c in self.categories
                if c["category_id"] in wanted
            }
            items = [i for i in items if i.get("category_name") in names]
        from_ts, to_ts = _int(q.get("from_ts"), None), _int(q.get("to_ts"), None)
        if from_ts is not None:
            items = [
                i for i in items if i.get("event_end_ts") is None or i["event_end_ts"] >= from_ts
            ]
        if to_ts is not None:
            items = [
                i for i in items if i.get("event_end_ts") is None or i["event_end_ts"] <= to_ts
            ]
        if q.get("followed_only") == "true":
            items = []  # following needs a signed-in user; the simulator has none
        if q.get("top_views_sort") == "true":
            items.sort(key=lambda i: -(i.get("total_viewers") or 0))
        elif q.get("sort_by_date_desc", "true") == "true":
            items.sort(key=lambda i: -(i.get("event_end_ts") or 0))
        return web.json_response(items[offset : offset + limit])

    async def _recent_event(self, request: web.Request) -> web.Response:
        event_id = _int(request.match_info["event_id"], -1)
        for item in self.recent:
            if item.get("event_id") == event_id:
                return web.json_response(item)
        return _not_found("event")

    async def _channel(self, request: web.Request) -> web.Response:
        user_id = _int(request.match_info["user_id"], -1)
        if user_id not in self.profiles:
            return _not_found("user")
        live = self.live_channels.get(user_id)
        return web.json_response(
            {
                "status": "Public",
                "channel_info": {
                    "channel": {
                        "livestream_id": (live or {}).get("livestream_id"),
                        "user_id": user_id,
                        "is_live": live is not None,
                        "current_event_id": (live or {}).get("event_id"),
                    },
                    "stream": {"state": "LIVE", "viewer_count": live.get("viewers_count") or 0}
                    if live
                    else None,
                },
                "is_streaming_live_now": live is not None,
            }
        )

    async def _prices(self, request: web.Request) -> web.Response:
        return web.json_response(list(self.prices.values()))

    async def _profile(self, request: web.Request) -> web.Response:
        profile = self.profiles.get(_int(request.match_info["user_id"], -1))
        return web.json_response(profile) if profile else _not_found("user")

    async def _by_social(self, request: web.Request) -> web.Response:
        platform, name = request.match_info["platform"], request.match_info["name"].lower()
        for p in self.profiles.values():
            if (
                p.get("social_media") == platform
                and str(p.get("social_username", "")).lower() == name
            ):
                return web.json_response(p["user_id"])
        return _not_found("user")

    async def _id_from_name(self, request: web.Request) -> web.Response:
        slug = request.match_info["slug"].lower()
        for p in self.profiles.values():
            names = {str(p.get("user_name", "")).lower(), str(p.get("social_username", "")).lower()}
            if slug in names:
                return web.json_response({"user_id": p["user_id"]})
        return _not_found("user")

    # ---- control API ---------------------------------------------------------------

    async def _ctl_state(self, request: web.Request) -> web.Response:
        return web.json_response(self.state())

    async def _ctl_wait(self, request: web.Request) -> web.Response:
        """Long-poll until `subscribers` connections subscribe (to `subscription`)."""
        count = _int(request.query.get("subscribers"), 1)
        subscription = request.query.get("subscription", LIVE)
        timeout = float(request.query.get("timeout", "10"))
        if not 0.0 <= timeout <= 600.0:  # also NaN
            raise ValueError("timeout: seconds, from 0 to 600")
        try:
            await self.wait_subscribed(subscription, count, timeout)
        except TimeoutError:
            return web.json_response({"ok": False, **self.state()}, status=408)
        return web.json_response({"ok": True, **self.state()})

    async def _ctl_live(self, request: web.Request) -> web.Response:
        body = await _body(request)
        user_id = int(body.pop("user_id"))
        return web.json_response(await self.go_live(user_id, body.pop("user_name", None), **body))

    async def _ctl_offline(self, request: web.Request) -> web.Response:
        body = await _body(request)
        return web.json_response(
            {"was_live": await self.go_offline(int(body["user_id"])) is not None}
        )

    async def _ctl_price(self, request: web.Request) -> web.Response:
        body = await _body(request)
        try:
            return web.json_response(await self.set_price(str(body["symbol"]), str(body["price"])))
        except (KeyError, InvalidOperation):
            raise ValueError("need a symbol and a decimal price") from None

    async def _ctl_drop(self, request: web.Request) -> web.Response:
        return web.json_response({"dropped": await self.drop_connections()})

    async def _ctl_pings(self, request: web.Request) -> web.Response:
        self.answer_pings = bool((await _body(request)).get("answer", True))
        return web.json_response({"answer_pings": self.answer_pings})

    async def _ctl_silent(self, request: web.Request) -> web.Response:
        self.silent = bool((await _body(request)).get("on", True))
        return web.json_response({"silent": self.silent})

    async def _ctl_ws(self, request: web.Request) -> web.Response:
        self.accept_ws = bool((await _body(request)).get("accept", True))
        return web.json_response({"accept_ws": self.accept_ws})

    async def _ctl_raw(self, request: web.Request) -> web.Response:
        return web.json_response({"sent": await self.send_raw(await request.text())})

    async def _ctl_fail(self, request: web.Request) -> web.Response:
        body = await _body(request)
        retry_after = body.get("retry_after")
        self.fail_next(
            int(body.get("status", 503)),
            int(body.get("count", 1)),
            None if retry_after is None else float(retry_after),
        )
        return web.json_response({"queued": len(self._failures)})

    async def _ctl_calendar(self, request: web.Request) -> web.Response:
        body = await _body(request)
        body.setdefault("event_id", next(self._event_ids))
        try:  # what Parti's calendar holds: a client reads the whole page as these
            CalendarEvent.model_validate(body)
        except ValidationError as exc:
            raise ValueError(short_error(exc)) from None
        self.calendar.append(body)
        return web.json_response(body)

    async def _ctl_profile(self, request: web.Request) -> web.Response:
        body = await _body(request)
        self.profiles[int(body["user_id"])] = body
        return web.json_response(body)


@web.middleware
async def _control_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """A control call with a body it cannot use is answered 400 with what was wrong, not
    a 500 and a traceback in the simulator's log."""
    try:
        response: web.StreamResponse = await handler(request)
    except (KeyError, ValueError, TypeError, InvalidOperation) as exc:
        if not request.path.startswith("/_sim/"):
            raise
        what = f"missing {exc}" if isinstance(exc, KeyError) else str(exc) or type(exc).__name__
        return web.json_response({"error": f"bad request: {what}"}, status=400)
    return response


def _page(request: web.Request, default_limit: int) -> tuple[int, int]:
    limit = max(0, min(_int(request.query.get("limit"), default_limit), 1000))
    return limit, max(0, _int(request.query.get("offset"), 0))


def _int(text: str | None, default: Any) -> Any:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


def _not_found(what: str) -> web.Response:
    return web.json_response({"detail": f"{what} not found"}, status=404)


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    data = await request.json()
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    return data


async def serve(host: str = "127.0.0.1", port: int = 8765) -> None:
    """Run the simulator until cancelled (`notifier sim`)."""
    sim = Simulator(host=host, port=port)
    await sim.start()
    print(
        f"Parti simulator on {sim.api_url}  (WebSocket {sim.ws_url}, control {sim.api_url}/_sim/)"
    )
    print(
        f"  export NOTIFIER_PARTI_API_URL={sim.api_url} NOTIFIER_PARTI_WS_URL={sim.ws_url}",
        flush=True,
    )
    try:
        await asyncio.Event().wait()
    finally:
        await sim.stop()
