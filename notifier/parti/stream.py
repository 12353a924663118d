"""The live WebSocket stream: connect, subscribe, decode, reconnect forever, report gaps."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field

import websockets
from websockets.asyncio.client import ClientConnection, connect

from notifier.backoff import full_jitter
from notifier.log import event, get_logger
from notifier.parti.client import BROWSER_HEADERS
from notifier.parti.decode import SUBSCRIPTIONS, DecodeError, decode_frame
from notifier.parti.models import Event

# The transport refuses frames above this (and drops the connection); frames between
# the decoder's MAX_FRAME_BYTES and this are skipped one by one, the connection kept.
HARD_MAX_FRAME = 4 * 1024 * 1024

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
    counter resets once a connection has stayed up for `healthy_after` seconds.
    Protocol pings tell a dead peer from a quiet one: Parti may be silent for minutes.
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

    async def __aiter__(self) -> AsyncGenerator[StreamItem, None]:
        attempt = 0
        down_since: float | None = None
        down_reason = ""
        while True:
            connected_at: float | None = None
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
                    async for frame in ws:
                        for item in self._decode(frame):
                            yield item
                        if attempt and self._clock() - connected_at >= self._healthy_after:
                            attempt = 0
                    down_reason = _close_reason(ws)
            except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as exc:
                down_reason = f"{type(exc).__name__}: {str(exc)[:120]}"
            if connected_at is not None and self._clock() - connected_at >= self._healthy_after:
                attempt = 0
            if connected_at is not None or down_since is None:
                down_since = self._clock()
            self.stats.connected = False
            delay = full_jitter(
                attempt, base=self._backoff_base, cap=self._backoff_cap, rand=self._rand
            )
            event(
                _log,
                "stream.disconnected",
                logging.WARNING,
                reason=down_reason,
                retry_in=round(delay, 3),
                attempt=attempt,
            )
            attempt += 1
            await asyncio.sleep(delay)

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
        self.stats.connects += 1
        if gap is not None:
            self.stats.reconnects += 1
            self.stats.last_gap = gap
            event(_log, "stream.reconnected", gap_seconds=round(gap.seconds, 3))
        else:
            event(_log, "stream.connected", url=self.url)

    def _decode(self, frame: str | bytes) -> list[Received]:
        self.stats.frames += 1
        try:
            events = decode_frame(frame)
        except DecodeError as exc:
            self.stats.rejected[exc.reason] += 1
            if self._on_reject is not None:
                self._on_reject(exc.reason)
            self._warn(exc.reason, "stream.frame_rejected", reason=exc.reason, detail=exc.detail)
            return []
        now = self._clock()
        for item in events:
            self.stats.events[item.kind] += 1
        return [Received(item, now) for item in events]


def _close_reason(ws: ClientConnection) -> str:
    if ws.close_code is None:
        return "closed"
    return f"closed {ws.close_code} {ws.close_reason or ''}".strip()
