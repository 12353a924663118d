"""The current delivery (lanes and senders) and its swap on a reload."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from notifier.deliver.factory import Senders
from notifier.deliver.lanes import Delivery
from notifier.log import event, get_logger, short_error
from notifier.metrics import Metrics
from notifier.store.base import Store
from notifier.store.errors import StoreError

_log = get_logger("delivery")


class DeliveryHolder:
    def __init__(
        self,
        store: Store,
        senders: Senders,
        make: Callable[[Senders], Delivery],
        metrics: Metrics,
        *,
        drain_deadline: float,
    ) -> None:
        self.store = store
        self.senders = senders
        self.make = make
        self.metrics = metrics
        self.drain_deadline = drain_deadline
        self.current = make(senders)
        # Held from a write's lease of fresh rows to their hand-off (the writer), and by a
        # swap while it releases the old delivery's leases: rows written during a swap
        # are either handed to the old delivery before the release (which makes them due
        # for the new one) or leased to the new one; none waits out its lease.
        self.handing = asyncio.Lock()
        self._changed = asyncio.Event()
        self._stopping = False

    def __call__(self) -> Delivery:
        return self.current

    async def run(self) -> None:
        """Run the current delivery; after a swap, the new one."""
        while True:
            current = self.current
            try:
                await current.run()
            except Exception as exc:  # lanes restart themselves; this is the last resort
                self.metrics.stage_restarts.labels(stage="delivery").inc()
                event(
                    _log, "stage.crashed", logging.ERROR, stage="delivery", error=short_error(exc)
                )
                await asyncio.sleep(1.0)
                continue
            if self._stopping:
                return
            while self.current is current:
                await self._changed.wait()
                self._changed.clear()

    async def swap(self, senders: Senders) -> None:
        old_delivery, old_senders = self.current, self.senders
        old_delivery.stop()
        drained = await old_delivery.drain(self.drain_deadline)
        async with self.handing:
            # Sends the old lanes could not record (the store was down): recorded now, or
            # by the new delivery before it claims; their rows are not released meanwhile.
            unrecorded = old_delivery.not_recorded()
            if unrecorded:
                try:
                    await self.store.mark_sent_many(unrecorded, now=self.store.clock())
                    unrecorded = []
                except StoreError:
                    drained = False  # keep every lease: theirs must not be claimed
            if drained:
                # Nothing is in flight now: rows the old lanes held by hand are due again.
                try:
                    await self.store.release_leases()
                except StoreError as exc:  # they wait out their lease; delivery goes on
                    event(_log, "delivery.release_failed", logging.WARNING, error=short_error(exc))
            self.senders, self.current = senders, self.make(senders)
            self.current.adopt(unrecorded)
            # A send still in flight (the drain gave up on it) whose record then fails:
            # the delivery current by then records it.
            old_delivery.handover = lambda sent: self.current.adopt(sent)
        self._changed.set()
        self.current.wake_all()  # rows left by the old lanes
        await old_senders.close()

    def unrecorded(self) -> list[tuple[str, str | None]]:
        """Sends answered by the chat API that the store has not recorded: left by a stop
        during a store outage (and by the deliveries before a reload)."""
        return self.current.not_recorded()

    async def stop(self) -> bool:
        self._stopping = True
        self.current.stop()
        drained = await self.current.drain(self.drain_deadline)
        event(_log, "app.drained", complete=drained, in_flight=self.current.in_flight)
        return drained
