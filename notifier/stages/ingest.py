"""The reader: Parti's WebSocket events through the engine into the match queue."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from notifier import systemd
from notifier.parti.models import ChannelLive, PriceUpdate
from notifier.parti.stream import Connected, PartiStream, Received
from notifier.stages.context import Core


class Ingest:
    """Reads the stream; numbers each channel's streams; tells the poller when to catch up."""

    def __init__(
        self,
        core: Core,
        stream: PartiStream,
        *,
        stream_seqs: dict[int, int],
        ran_before: bool,
        on_evaluated: Callable[[ChannelLive | PriceUpdate], None] | None = None,
    ) -> None:
        self.core = core
        self.stream = stream
        # user id -> how many of the channel's streams have ended: a go-live without an
        # event id is told apart from the channel's previous stream by this number.
        self.stream_seqs = stream_seqs
        self.on_evaluated = on_evaluated
        self.connected_once = asyncio.Event()
        self.catch_up = asyncio.Event()  # set on every (re)connect: the poller catches up
        # Events may have been missed: a reconnect ended a gap, or an earlier run stopped.
        self.gap_possible = ran_before
        # When the last price frame came (monotonic; at first: the start): `PricePoller`.
        self.last_price_at = time.monotonic()

    def stream_ended(self, user_id: int) -> None:
        """The store counted it too (`end_live`); the next go-live is a new stream."""
        self.stream_seqs[user_id] = self.stream_seqs.get(user_id, 0) + 1

    def with_seq(self, ev: ChannelLive) -> ChannelLive:
        if ev.event_id is not None:
            return ev
        return ev.model_copy(update={"stream_seq": self.stream_seqs.get(ev.user_id, 0)})

    async def run(self) -> None:
        async with contextlib.aclosing(self.stream.__aiter__()) as items:
            async for item in items:
                if isinstance(item, Connected):
                    self._connected(item)
                    continue
                assert isinstance(item, Received)
                ev = item.event
                self.core.metrics.events.labels(type=ev.kind).inc()
                if isinstance(ev, ChannelLive):
                    ev = self.with_seq(ev)
                else:
                    self.last_price_at = time.monotonic()
                await self.core.evaluate(ev, item.at, caught_up=False)
                if self.on_evaluated is not None:
                    self.on_evaluated(ev)

    def _connected(self, item: Connected) -> None:
        self.core.health.stream_up()
        self.core.metrics.connected.set(1)
        if item.gap is not None:
            self.core.metrics.reconnects.inc()
            self.gap_possible = True
        self.catch_up.set()
        if not self.connected_once.is_set():
            self.connected_once.set()
            systemd.notify("STATUS=connected to Parti")
        else:
            gap = f"{item.gap.seconds:.1f}" if item.gap else "?"
            systemd.notify(f"STATUS=reconnected after {gap}s")
