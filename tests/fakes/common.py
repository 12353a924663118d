"""What the fake chat APIs share: scripted failures, sliding-window limits, waiting."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Scripted:
    """The next `count` matching requests fail this way (or are slowed by `delay`)."""

    status: int
    body: dict[str, Any]
    count: int = 1
    delay: float = 0.0
    methods: tuple[str, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)
    skip: int = 0  # let this many matching requests through first


class Window:
    """Server-side "at most N per T seconds" over any window, counted on arrival."""

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self.times: deque[float] = deque()

    def admit(self, now: float) -> float | None:
        """None when admitted; else seconds until a slot frees."""
        while self.times and self.times[0] <= now - self.seconds:
            self.times.popleft()
        if len(self.times) >= self.limit:
            return self.times[0] + self.seconds - now
        self.times.append(now)
        return None


class Recorder:
    """Requests as they arrive, and a way to await a condition on them."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()
        self.started = time.monotonic()
        self.closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.pausing = 0  # slow answers being held now (see `pause`)

    async def record(self, entry: dict[str, Any]) -> None:
        self.requests.append(entry)
        async with self._changed:
            self._changed.notify_all()

    async def serve(self, app: web.Application) -> None:
        """Listen on 127.0.0.1, on a port the system picks (`self.port`)."""
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        self.closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def pause(self, delay: float) -> None:
        """A slow answer that ends early when the fake stops (so teardown never waits);
        `pausing` counts the answers held at once."""
        self.pausing += 1
        await self.notify()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closing.wait(), delay)
        finally:
            self.pausing -= 1

    async def notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(predicate)

    def take_script(self, scripts: list[Scripted], method: str) -> Scripted | None:
        for script in scripts:
            if not script.methods or method in script.methods:
                if script.skip > 0:
                    script.skip -= 1
                    continue
                script.count -= 1
                if script.count <= 0:
                    scripts.remove(script)
                return script
        return None


def stats_of(requests: list[dict[str, Any]], rate_limited: int) -> dict[str, Any]:
    """What a benchmark asks a fake: counts, 429s, and when the first and last ok arrived."""
    ok = [r["at"] for r in requests if r.get("ok")]
    statuses: dict[str, int] = {}
    for r in requests:
        statuses[str(r.get("status"))] = statuses.get(str(r.get("status")), 0) + 1
    return {
        "requests": len(requests),
        "ok": len(ok),
        "statuses": statuses,
        "rate_limited": rate_limited,
        "first_ok": min(ok, default=None),
        "last_ok": max(ok, default=None),
    }


@contextlib.asynccontextmanager
async def served(app: web.Application) -> AsyncIterator[int]:
    """`app` listening on 127.0.0.1, on a port the system picks (yielded), until the block
    ends: a test's own small server."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()
