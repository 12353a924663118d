"""The live WebSocket stream: connect, subscribe, decode, reconnect forever, report gaps."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import websockets
from websockets.asyncio.client import ClientConnection, connect

from notifier.backoff import full_jitter
from notifier.log import event, get_logger
from notifier.parti.client import BROWSER_HEADERS
from notifier.parti.decode import SUBSCRIPTIONS, decode
from notifier.parti.models import Event

# The transport refuses frames above this (and drops the connection); frames between
# the decoder's MAX_FRAME_BYTES and this are skipped one by one, the connection kept.
HARD_MAX_FRAME = 4 * 1024 * 1024
# Close codes a server sends when it closes on purpose (normal, going away: a deploy or a
# load balancer recycling connections): after a healthy connection, reconnect at once.
CLEAN_CLOSE_CODES = frozenset({1000, 1001})

_log = get_logger("stream")


@dataclass(frozen=True)
class Received:
    """An event and when it arrived (seconds since the epoch)."""

    event: Event
    at: float


@dataclass(frozen=True)
class Connected:
    """The stream is (re)subscribed. `gap` is the outage it ends, None on the first connect."""

    at: float
    gap: Gap | None = None


@dataclass(frozen=True)
class Gap:
    """The stream was down from `started_at` to `ended_at`: events may have been missed."""

    started_at: float
    ended_at: float
    reason: str

    @property
    def seconds(self) -> float:
        return self.ended_at - self.started_at


StreamItem = Received | Connected


@dataclass
class StreamStats:
    frames: int = 0
    events: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    connects: int = 0
    reconnects: int = 0
    connected: bool = False
    last_gap: Gap | None = None
    retry_in: float | None = None  # the wait before the next attempt, None while connected


class _RateLimitedLog:
    """At most one log line per `interval` per key; the rest are counted and summarised."""

    def __init__(self, interval: float, clock: Callable[[], float]) -> None:
        self._interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def __call__(self, key: str, name: str, **fields: object) -> None:
        now = self._clock()
        if now - self._last.get(key, -1e18) < self._interval:
            self._suppressed[key] += 1
            return
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        event(_log, name, logging.WARNING, suppressed=suppressed, **fields)


class PartiStream:
    """Yields `Connected` after each (re)subscription and `Received` for each event.

    Reconnects forever with capped exponential backoff and full jitter; the attempt
    counter resets once a connection has stayed up for `healthy_after` seconds. A
    clean close (1000, 1001) of such a healthy connection reconnects at once: the
    server is recycling connections, not failing. Protocol pings tell a dead peer from
    a quiet one: Parti may be silent for minutes.
    """

    def __init__(
        self,
        url: str,
        *,
        subscriptions: Sequence[str] = SUBSCRIPTIONS,
        ping_interval: float = 20.0,
        ping_timeout: float = 20.0,
        open_timeout: float = 10.0,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        healthy_after: float = 60.0,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        bad_frame_log_interval: float = 10.0,
        on_reject: Callable[[str], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.url = url
        self.subscriptions = tuple(subscriptions)
        self.stats = StreamStats()
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._open_timeout = open_timeout
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._healthy_after = healthy_after
        self._clock = clock
        self._rand = rand
        self._warn = _RateLimitedLog(bad_frame_log_interval, clock)
        self._on_reject = on_reject
        self._sleep = sleep

    async def __aiter__(self) -> AsyncGenerator[StreamItem, None]:
        attempt = 0
        down_since: float | None = None
        down_reason = ""
        while True:
            connected_at: float | None = None
            clean_close = False
            try:
                async with self._connect() as ws:
                    await self._subscribe(ws)
                    connected_at = self._clock()
                    gap = (
                        Gap(down_since, connected_at, down_reason)
                        if down_since is not None
                        else None
                    )
                    self._on_connected(gap)
                    yield Connected(connected_at, gap)
                    while True:
                        try:
                            # bytes, text frames too: invalid UTF-8 costs the characters
                            # it spoils (`decode`), not the connection (a 1007 close)
                            frame = await ws.recv(decode=False)
                        except websockets.exceptions.ConnectionClosedOK:
                            break
                        for item in self._decode(frame):
                            yield item
                        if attempt and self._clock() - connected_at >= self._healthy_after:
                            attempt = 0
                    down_reason = _close_reason(ws)
                    clean_close = _closed_cleanly(ws)
            except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as exc:
                down_reason = f"{type(exc).__name__}: {str(exc)[:120]}"
            healthy = (
                connected_at is not None and self._clock() - connected_at >= self._healthy_after
            )
            if healthy:
                attempt = 0
            if connected_at is not None or down_since is None:
                down_since = self._clock()
            self.stats.connected = False
            immediate = healthy and clean_close
            delay = (
                0.0
                if immediate
                else full_jitter(
                    attempt, base=self._backoff_base, cap=self._backoff_cap, rand=self._rand
                )
            )
            self.stats.retry_in = delay
            event(
                _log,
                "stream.disconnected",
                logging.WARNING,
                reason=down_reason,
                retry_in=round(delay, 3),
                attempt=attempt,
            )
            if not immediate:
                attempt += 1
                await self._sleep(delay)

    def _connect(self) -> connect:
        headers = {k: v for k, v in BROWSER_HEADERS.items() if k not in ("Origin", "User-Agent")}
        return connect(
            self.url,
            origin=websockets.Origin(BROWSER_HEADERS["Origin"]),
            user_agent_header=BROWSER_HEADERS["User-Agent"],
            additional_headers=headers,
            ping_interval=self._ping_interval,
            ping_timeout=self._ping_timeout,
            open_timeout=self._open_timeout,
            close_timeout=2.0,
            max_size=HARD_MAX_FRAME,
            proxy=None,
        )

    async def _subscribe(self, ws: ClientConnection) -> None:
        for name in self.subscriptions:
            await ws.send(f'{{"subscribe_options":{{"{name}":{{}}}}}}')

    def _on_connected(self, gap: Gap | None) -> None:
        self.stats.connected = True
        self.stats.retry_in = None
        self.stats.connects += 1
        if gap is not None:
            self.stats.reconnects += 1
            self.stats.last_gap = gap
            event(_log, "stream.reconnected", gap_seconds=round(gap.seconds, 3))
        else:
            event(_log, "stream.connected", url=self.url)

    def _decode(self, frame: str | bytes) -> list[Received]:
        # Each rejected element is counted and logged on its own; the frame's good
        # events still come out, and nothing here ends the connection.
        self.stats.frames += 1
        try:
            decoded = decode(frame)
        except Exception as exc:  # decode never raises; if it ever does, lose one frame
            self._reject("internal_error", f"{type(exc).__name__} in the decoder", "")
            return []
        for rejection in decoded.rejections:
            self._reject(rejection.reason, rejection.detail, rejection.where)
        now = self._clock()
        for item in decoded.events:
            self.stats.events[item.kind] += 1
        return [Received(item, now) for item in decoded.events]

    def _reject(self, reason: str, detail: str, where: str) -> None:
        self.stats.rejected[reason] += 1
        if self._on_reject is not None:
            self._on_reject(reason)
        self._warn(reason, "stream.frame_rejected", reason=reason, detail=detail, where=where)


def _closed_cleanly(ws: ClientConnection) -> bool:
    received = ws.close_exc.rcvd
    return received is not None and received.code in CLEAN_CLOSE_CODES


def _close_reason(ws: ClientConnection) -> str:
    if ws.close_code is None:
        return "closed"
    return f"closed {ws.close_code} {ws.close_reason or ''}".strip()
