"""Operations: `/healthz` and `/metrics` over HTTP, and the systemd watchdog."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from notifier import systemd
from notifier.deliver.lanes import Delivery
from notifier.log import event, get_logger, short_error
from notifier.metrics import Metrics
from notifier.parti.stream import PartiStream
from notifier.stages.context import Health
from notifier.store.base import Store
from notifier.store.errors import StoreError
from notifier.store.outage import store_answered

_log = get_logger("ops")
STORE_WAIT = 2.0  # seconds a probe waits for the outbox's depth


class AddressInUse(Exception):
    """NOTIFIER_HTTP_ADDR cannot be bound (the message says why, in one line)."""


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str
    degraded: dict[str, str]


class Watch:
    """Health of this instance: what /healthz answers and what the watchdog reports."""

    def __init__(
        self,
        health: Health,
        metrics: Metrics,
        stream: PartiStream | None,
        delivery: Callable[[], Delivery],
        *,
        stream_down_budget: float,
        ready: asyncio.Event,
        roles: Callable[[], dict[str, int | None]],
    ) -> None:
        self.health = health
        self.metrics = metrics
        self.stream = stream
        self.delivery = delivery
        self.stream_down_budget = stream_down_budget
        self.ready = ready
        self.roles = roles  # role -> generation, for the roles this instance holds
        self.changed = asyncio.Condition()  # notified when the verdict flips

    def verdict(self, now: float | None = None) -> Verdict:
        now = time.time() if now is None else now
        health = self.health
        degraded = dict(health.destinations)
        store_error = health.store_error or self.delivery().store_error
        if store_error is not None:
            return Verdict(False, f"store failing: {store_error}", degraded)
        if self.stream is not None and not health.stream_connected:
            since = health.stream_down_since
            if since is not None and now - since > self.stream_down_budget:
                return Verdict(False, f"stream down for {now - since:.0f}s", degraded)
        dead = [name for name, ok in health.stages.items() if not ok]
        if dead:
            return Verdict(False, f"stage restarting: {', '.join(sorted(dead))}", degraded)
        if self.ready.is_set() and not self.delivery().lanes_alive:
            return Verdict(False, "delivery lanes not running", degraded)
        if degraded:
            return Verdict(
                True, f"destinations unreachable: {', '.join(sorted(degraded))}", degraded
            )
        return Verdict(True, "ok", degraded)

    async def run(self, *, interval: float | None = None) -> None:
        """Track the stream, log verdict changes, and tell systemd the loop is alive.

        WATCHDOG=1 proves the event loop turns, not that Parti is up: an outage of Parti
        or of a chat API must not make systemd restart a daemon that has work to send."""
        ping = systemd.watchdog_interval() if interval is None else interval
        was_ok = True
        while True:
            stream_lost = self.stream is not None and not self.stream.stats.connected
            if stream_lost and self.health.stream_connected:
                self.health.stream_down()
                self.metrics.connected.set(0)
            verdict = self.verdict()
            if verdict.ok != was_ok:
                was_ok = verdict.ok
                level = logging.INFO if verdict.ok else logging.WARNING
                event(_log, "health.changed", level, healthy=verdict.ok, reason=verdict.reason)
                async with self.changed:
                    self.changed.notify_all()
            if ping is not None:
                systemd.notify("WATCHDOG=1")
            await asyncio.sleep(min(ping or 0.25, 0.25))


class OpsHttp:
    def __init__(self, addr: str, watch: Watch, metrics: Metrics, store: Store) -> None:
        self.addr = addr
        self.watch = watch
        self.metrics = metrics
        self.store = store
        self.port: int | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        host, _, port = self.addr.rpartition(":")
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host.strip("[]") or "127.0.0.1", int(port))
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise AddressInUse(
                f"NOTIFIER_HTTP_ADDR {self.addr}: cannot listen: {exc.strerror}"
            ) from None
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else int(port)
        event(_log, "http.listening", addr=f"{host}:{self.port}")

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _depth(self) -> dict[str, int] | str:
        """The outbox's depth (the gauges too), or the store's error: a probe never
        waits long for a store that does not answer, and never fails for it."""
        try:
            async with asyncio.timeout(STORE_WAIT):
                depth = await self.store.depth()
                oldest = await self.store.oldest_pending_at()
        except TimeoutError:
            return f"no answer within {STORE_WAIT:g}s"
        except StoreError as exc:
            return short_error(exc)
        store_answered()  # parts waiting out an outage try again now
        self.metrics.outbox_depth.set(depth.get("pending", 0) + depth.get("sending", 0))
        self.metrics.outbox_dead.set(depth.get("dead", 0))
        age = 0.0 if oldest is None else max(0.0, self.store.clock() - oldest)  # its clock
        self.metrics.outbox_oldest.set(age)
        return depth

    async def _healthz(self, request: web.Request) -> web.Response:
        depth = await self._depth()
        verdict = self.watch.verdict()
        if isinstance(depth, str) and verdict.ok:
            verdict = Verdict(False, f"store failing: {depth}", verdict.degraded)
        body = {
            "status": ("degraded" if verdict.degraded else "ok") if verdict.ok else "unhealthy",
            "reason": verdict.reason,
            "stream_connected": self.watch.health.stream_connected,
            "destinations_unreachable": verdict.degraded,
            "roles": self.watch.roles(),
            "outbox": None if isinstance(depth, str) else depth,
        }
        return web.json_response(body, status=200 if verdict.ok else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        await self._depth()  # a store that does not answer: the gauges keep their last values
        return web.Response(
            body=self.metrics.render(),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )
