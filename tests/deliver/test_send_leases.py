"""A send may take its whole timeout: the row's lease outlasts it when it starts (extended
if the row waited long), and a row whose lease went to another instance is not sent."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from notifier.deliver.lanes import SEND_MARGIN
from notifier.store import SENDING, SENT, open_store
from tests.deliver.harness import harness, new_alert
from tests.deliver.test_coalesce import late
from tests.fakes.telegram import FakeTelegram

CHAT = {"group": {"telegram": {"chat_id": -100555}}}
SEND_TIMEOUT = 10.0  # the harness's


async def test_a_row_whose_lease_is_shorter_than_a_send_gets_it_extended_first(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    async with harness(tmp_path, CHAT, telegram=fake_telegram, limits_scale=1000) as h:
        alert = new_alert("group")
        # Handed with 2 s of lease left (it waited in its lane's batch): the send, held
        # 3 s by the chat API, would outlast it and another instance could claim it.
        fake_telegram.fail(200, "slow", delay=3.0, methods=("sendMessage", "sendPhoto"))
        _, rows = await h.outbox.enqueue_leased(
            [alert], now=time.time(), lease=2.0, room=h.delivery.room(), fence=None
        )
        h.delivery.written([(alert.key, alert.destination)], rows)
        await fake_telegram.wait_for(
            lambda: any(r["method"] == "sendMessage" for r in fake_telegram.requests)
        )
        row = await h.row(alert.key)
        assert row.state == SENDING and row.lease_owner == "harness"
        assert row.attempts == 1, "the handed row itself, not claimed again after its lease"
        assert row.lease_until is not None
        assert row.lease_until - time.time() > SEND_TIMEOUT + SEND_MARGIN - 3.0
        await h.wait_state(alert.key, SENT)


async def test_the_rows_of_a_digest_get_their_leases_extended_first(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    async with harness(tmp_path, CHAT, telegram=fake_telegram, limits_scale=1000) as h:
        alerts = late("A", "B", "C")  # over two minutes late: they go as one digest
        fake_telegram.fail(200, "slow", delay=3.0, methods=("sendMessage", "sendPhoto"))
        _, rows = await h.outbox.enqueue_leased(
            alerts, now=time.time(), lease=2.5, room=h.delivery.room(), fence=None
        )
        h.delivery.written([(a.key, a.destination) for a in alerts], rows)
        await fake_telegram.wait_for(
            lambda: any(r["method"] == "sendMessage" for r in fake_telegram.requests)
        )
        now = time.time()
        held = [await h.row(a.key) for a in alerts]
        assert [(r.state, r.attempts) for r in held] == [(SENDING, 1)] * 3
        assert min((r.lease_until or 0.0) - now for r in held) > SEND_TIMEOUT + SEND_MARGIN - 3
        for a in alerts:
            await h.wait_state(a.key, SENT)
        texts = [r["params"]["text"] for r in fake_telegram.sent("sendMessage")]
        assert len(texts) == 1, "one digest"


async def test_a_row_whose_lease_went_to_another_instance_is_not_sent(
    tmp_path: Path, fake_telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    async with harness(tmp_path, CHAT, telegram=fake_telegram, limits_scale=1000) as h:
        alert = new_alert("elsewhere")  # no lane of its own: only this test claims it
        await h.outbox.enqueue([alert], now=time.time(), fence=None)
        (mine,) = await h.outbox.claim("elsewhere", now=time.time(), lease=0.2)
        other = await open_store(str(tmp_path / "outbox.db"), instance="other", durable=False)
        try:
            await asyncio.sleep(0.3)  # the lease runs out: time passing is the point
            (theirs,) = await other.claim("elsewhere", now=time.time(), lease=120.0)
            assert theirs.key == alert.key
            with caplog.at_level(logging.WARNING):
                assert not await h.delivery._lease_covers_send(mine)
            assert [r for r in caplog.records if r.getMessage() == "alert.lease_lost"]
            row = await h.row(alert.key)
            assert row.lease_owner == "other"
        finally:
            await other.close()
