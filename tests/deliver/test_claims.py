"""A lane claims its backlog in batches and never claims in vain after a hand-off."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import pytest

from notifier.deliver import lanes
from notifier.deliver.lanes import CLAIM_BATCH
from notifier.outbox.policy import RetryPolicy
from notifier.store.types import SENT, Row
from tests.deliver.harness import Harness, harness, live_view, new_alert
from tests.fakes.telegram import FakeTelegram

GROUP = {"group": {"telegram": {"chat_id": -100555}}}


def count_claims(h: Harness) -> list[int]:
    """The number of rows each claim of the lanes returned, from now on."""
    claims: list[int] = []
    claim = h.outbox.claim

    async def counting(*args: Any, **kwargs: Any) -> list[Row]:
        rows = await claim(*args, **kwargs)
        claims.append(len(rows))
        return rows

    h.outbox.claim = counting  # type: ignore[method-assign]
    return claims


def count_due_looks(h: Harness) -> list[float | None]:
    """What each look of the lanes at the outbox's next due time found, from now on."""
    looks: list[float | None] = []
    next_due = h.outbox.next_due

    async def counting(destination: str) -> float | None:
        due = await next_due(destination)
        looks.append(due)
        return due

    h.outbox.next_due = counting  # type: ignore[method-assign]
    return looks


async def warmed_up(h: Harness) -> list[int]:
    """One alert through the lane (it is up and has looked at the outbox since it sent
    it: on a busy machine that look may come after the row is seen as sent), then the
    claims from there on."""
    first = new_alert("group")
    looked = asyncio.Event()
    next_due = h.outbox.next_due

    async def watching(destination: str) -> float | None:
        due = await next_due(destination)
        if h.delivery._sent_last.get(destination) == first.key:
            looked.set()  # the lane's look after sending it
        return due

    h.outbox.next_due = watching  # type: ignore[method-assign]
    await h.enqueue(first)
    await h.wait_state(first.key, SENT)
    async with asyncio.timeout(10):
        await looked.wait()
    h.outbox.next_due = next_due  # type: ignore[method-assign]
    return count_claims(h)


async def test_a_backlog_is_claimed_in_batches_in_order(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    alerts = [new_alert("group", live_view(f"Stream {n}")) for n in range(40)]
    async with harness(tmp_path, GROUP, telegram=fake_telegram, limits_scale=1000) as h:
        claims = count_claims(h)
        await h.enqueue(*alerts)
        await h.wait_sent(*alerts)
    taken = [n for n in claims if n]
    assert sum(taken) == 40
    assert len(taken) == -(-40 // CLAIM_BATCH)  # 3 claims, not 40
    assert claims.count(0) <= 1  # at most the lane's first look, before the rows came
    texts = [r["params"]["text"] for r in fake_telegram.sent("sendMessage")]
    order = [int(m.group(1)) for t in texts if (m := re.search(r"Stream (\d+)\b", t))]
    assert order == list(range(40))


async def test_rows_handed_to_a_lane_are_sent_without_any_claim(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    async with harness(tmp_path, GROUP, telegram=fake_telegram, limits_scale=1000) as h:
        claims = await warmed_up(h)
        fresh = [new_alert("group") for _ in range(5)]
        await h.hand(*fresh)
        await h.wait_sent(*fresh)
        # Rows written without a hand-off are claimed: one claim, and none in vain.
        last = new_alert("group")
        await h.enqueue(last)
        await h.wait_state(last.key, SENT)
    assert claims == [1]


async def test_rows_handed_while_the_lane_sends_cost_no_claim_either(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    async with harness(tmp_path, GROUP, telegram=fake_telegram, limits_scale=1000) as h:
        claims = await warmed_up(h)
        # The next send is held by Telegram; rows are handed to the lane meanwhile.
        fake_telegram.fail(200, "", delay=3.0, methods=("sendMessage",))
        held = new_alert("group")
        await h.hand(held)
        await fake_telegram.wait_for(lambda: fake_telegram.pausing == 1)
        more = [new_alert("group") for _ in range(3)]
        await h.hand(*more)
        await h.wait_sent(held, *more)
        last = new_alert("group")
        await h.enqueue(last)
        await h.wait_state(last.key, SENT)
    assert claims == [1]


async def test_rows_handed_and_sent_cost_no_look_at_the_outbox_either(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    async with harness(tmp_path, GROUP, telegram=fake_telegram, limits_scale=1000) as h:
        await warmed_up(h)
        looks = count_due_looks(h)
        fresh = [new_alert("group") for _ in range(5)]
        for alert in fresh:  # one at a time: the lane waits between them
            await h.hand(alert)
            await h.wait_state(alert.key, SENT)
    # Sent and recorded: the next due time the lane read before is still the outbox's.
    assert looks == []


async def test_a_handed_row_that_failed_is_sent_when_its_retry_comes_due(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    policy = RetryPolicy(base=0.2, cap=0.2)
    async with harness(
        tmp_path, GROUP, telegram=fake_telegram, limits_scale=1000, policy=policy
    ) as h:
        await warmed_up(h)
        looks = count_due_looks(h)
        fake_telegram.fail(502, "Bad Gateway", methods=("sendMessage",))
        failing = new_alert("group")
        await h.hand(failing)
        row = await h.wait_state(failing.key, SENT)
    assert row.attempts == 2
    # The failure changed when the lane has work next: it read the outbox again.
    assert looks and looks[0] is not None


async def test_rows_nobody_told_the_lane_about_go_out_at_its_next_look(
    tmp_path: Path, fake_telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lanes, "IDLE_LOOK", 0.2)
    async with harness(tmp_path, GROUP, telegram=fake_telegram, limits_scale=1000) as h:
        await warmed_up(h)
        # Written as another process would (`notifier outbox retry`): no wake, no hand-off.
        quiet = new_alert("group")
        await h.outbox.enqueue([quiet], now=time.time(), fence=None)
        await h.wait_state(quiet.key, SENT, timeout=10)


async def test_a_stopped_delivery_takes_no_rows_by_hand(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    """A reload stopped it: the rows a write leased meanwhile are released by the swap for
    the next delivery, so none of the old lanes may send one too."""
    async with harness(tmp_path, GROUP, telegram=fake_telegram, limits_scale=1000) as h:
        h.delivery.stop()
        alert = new_alert("group")
        _, rows = await h.outbox.enqueue_leased(
            [alert], now=time.time(), lease=120.0, room={"group": 1}, fence=None
        )
        assert len(rows) == 1
        assert h.delivery.hand(rows) == set()
