"""Rows no lane will send go to the dead letter with the reason, not pending for ever: a
destination the rules no longer name, a sender that cannot start."""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path

from notifier.deliver.console import ConsoleSender
from notifier.deliver.lanes import REMOVED, Delivery
from notifier.store import DEAD, PENDING, SENT, Row, Store, open_store
from tests.deliver.harness import new_alert


async def settled_state(delivery: Delivery, store: Store, key: str, state: str) -> Row:
    """Wait for a row to reach `state`, read again after each outcome the delivery records
    (under the condition's lock, so none is missed)."""
    async with asyncio.timeout(20), delivery.settled:
        while True:
            row = await store.get(key)
            if row is not None and row.state == state:
                return row
            await delivery.settled.wait()


async def test_rows_of_a_destination_the_rules_no_longer_name_go_to_the_dead_letter(
    tmp_path: Path,
) -> None:
    store = await open_store(str(tmp_path / "s.db"), instance="t", durable=False)
    gone = [new_alert("old"), new_alert("old")]
    chat = new_alert("@tg:5")  # a subscription's chat is not in the rules file: it stays
    kept = new_alert("kept")
    await store.enqueue([*gone, chat, kept], now=time.time(), fence=None)
    (leased,) = await store.claim("old", now=time.time(), lease=120.0)
    await store.release_leases()  # a reload's swap: the old lanes' rows are due again
    delivery = Delivery(store, {"kept": ConsoleSender("kept", io.StringIO())})
    running = asyncio.create_task(delivery.run())
    try:
        for alert in gone:
            row = await settled_state(delivery, store, alert.key, DEAD)
            assert row.last_error == REMOVED
        await settled_state(delivery, store, kept.key, SENT)
        assert delivery.metrics.dead.labels(destination="old")._value.get() == 2
        row = await store.get(chat.key)
        assert row is not None and row.state == PENDING
        assert await store.retry(leased.key, now=time.time())  # `notifier outbox retry`
    finally:
        delivery.stop()
        await running
        await store.close()
