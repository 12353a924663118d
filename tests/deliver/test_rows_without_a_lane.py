"""Rows no lane will send go to the dead letter with the reason, not pending for ever: a
destination the rules no longer name, a sender that cannot start."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from notifier.deliver.console import ConsoleSender
from notifier.deliver.factory import build_senders
from notifier.deliver.lanes import REMOVED, Delivery
from notifier.outbox.policy import RetryPolicy
from notifier.settings import Settings
from notifier.store import DEAD, PENDING, SENT, Row, Store, open_store
from tests.deliver.harness import new_alert, rules_for
from tests.fakes.telegram import FakeTelegram


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


async def test_with_postgresql_rows_of_a_destination_these_rules_do_not_name_are_left_pending(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Another instance may run rules that still name it (a rolling reload): it is logged.
    store = await open_store(pg_url, instance="a", durable=False)
    gone = new_alert("old")
    await store.enqueue([gone], now=time.time(), fence=None)
    delivery = Delivery(store, {"kept": ConsoleSender("kept", io.StringIO())})
    with caplog.at_level(logging.INFO):
        running = asyncio.create_task(delivery.run())
        try:
            async with asyncio.timeout(20), delivery.settled:
                while not [r for r in caplog.records if r.getMessage() == "destination.removed"]:
                    await delivery.settled.wait()
            row = await store.get(gone.key)
            assert row is not None and row.state == PENDING
        finally:
            delivery.stop()
            await running
            await store.close()


async def test_rows_past_the_max_age_go_to_the_dead_letter_while_the_sender_cannot_start(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    # The token is rejected at getMe: the lane never starts, so it never claims.
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        telegram_token=SecretStr("123:WRONG"),
        telegram_api_url=fake_telegram.api_url,
    )
    rules_file = rules_for(fake_telegram, None, {"me": {"telegram": {"chat_id": 42}}})
    senders = build_senders(rules_file, settings)
    store = await open_store(str(tmp_path / "s.db"), instance="t", durable=False)
    old, young = new_alert("me"), new_alert("me")
    await store.enqueue([old], now=time.time() - 7_200, fence=None)  # 2 h ago
    await store.enqueue([young], now=time.time(), fence=None)
    policy = RetryPolicy(base=0.05, cap=0.2, max_age=3_600.0)
    delivery = Delivery(store, senders.by_name, policy=policy)
    running = asyncio.create_task(delivery.run())
    try:
        row = await settled_state(delivery, store, old.key, DEAD)
        expired = "expired: not delivered within 1 h (last error: the bot token was rejected)"
        assert row.last_error == expired
        row = await store.get(young.key)
        assert row is not None and row.state == PENDING  # it waits for the token
    finally:
        delivery.stop()
        await running
        await senders.close()
        await store.close()
