"""With several instances on one PostgreSQL, one of them sends to a destination at a time
(its order and rate limits hold), and another takes over when it stops."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time

from notifier.deliver.console import ConsoleSender
from notifier.deliver.lanes import Delivery
from notifier.store import Store, open_store
from notifier.store.types import SENT
from tests.deliver.harness import new_alert


async def all_sent(store: Store, keys: list[str], deliveries: list[Delivery]) -> None:
    async def done() -> bool:
        rows = [await store.get(k) for k in keys]
        return all(r is not None and r.state == SENT for r in rows)

    async with asyncio.timeout(30):
        while not await done():
            # Woken by either instance's next outcome; the 1 s bound re-checks in case the
            # outcome we wait for was recorded between the check and the wait.
            waits = [asyncio.ensure_future(_settled(d)) for d in deliveries]
            _, pending = await asyncio.wait(waits, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()


async def _settled(delivery: Delivery) -> None:
    async with delivery.settled:
        await delivery.settled.wait()


async def test_two_instances_never_both_send_to_one_destination(pg_url: str) -> None:
    stores = [await open_store(pg_url, instance=name, durable=False) for name in ("a", "b")]
    outs = [io.StringIO(), io.StringIO()]
    deliveries = [
        Delivery(store, {"room": ConsoleSender("room", out)})
        for store, out in zip(stores, outs, strict=True)
    ]
    tasks = [asyncio.create_task(d.run()) for d in deliveries]
    try:
        first = [new_alert("room") for _ in range(5)]
        await stores[0].enqueue(first, now=time.time(), fence=None)
        for delivery in deliveries:
            delivery.wake("room")
        await all_sent(stores[0], [a.key for a in first], deliveries)
        counts = [d.sent_count for d in deliveries]
        assert sorted(counts) == [0, 5], counts  # one sender for the destination
        holder = counts.index(5)
        # The holder stops: the other takes the destination over once its lease is free.
        deliveries[holder].stop()
        await deliveries[holder].drain(10)
        await asyncio.wait_for(tasks[holder], 10)
        second = [new_alert("room") for _ in range(3)]
        await stores[holder].enqueue(second, now=time.time(), fence=None)
        deliveries[1 - holder].wake("room")
        await all_sent(stores[0], [a.key for a in second], [deliveries[1 - holder]])
        assert deliveries[1 - holder].sent_count == 3
    finally:
        for delivery in deliveries:
            delivery.stop()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(task, 10)
        for store in stores:
            await store.close()
