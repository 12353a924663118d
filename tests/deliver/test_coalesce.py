"""A Telegram lane that fell behind sends what waits as one digest, not minutes-late alerts."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from notifier.store import NewAlert
from notifier.store.types import DROPPED, SENT
from tests.deliver.harness import harness, live_view, new_alert
from tests.fakes.telegram import FakeTelegram, parse_html

GROUP = {"group": {"telegram": {"chat_id": -100555}}}


def late(*titles: str) -> list[NewAlert]:
    """Alerts for events of ten minutes ago (one a second), one per title."""
    old = time.time() - 600
    return [
        dataclasses.replace(new_alert("group", live_view(title)), event_at=old + n)
        for n, title in enumerate(titles)
    ]


async def test_alerts_that_waited_too_long_go_out_as_one_digest(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    alerts = late(*(f"Stream {n}" for n in range(3)))
    async with harness(tmp_path, GROUP, telegram=fake_telegram) as h:
        await h.enqueue(*alerts)
        rows = [await h.wait_state(a.key, SENT) for a in alerts]
        digests = h.delivery.metrics.digests.labels(destination="group")._value.get()
    (sent,) = fake_telegram.sent("sendMessage")
    text = parse_html(sent["params"]["text"])
    assert all(f"Stream {n}" in text for n in range(3))
    assert len({r.message_id for r in rows}) == 1  # one message for the three
    assert digests == 1


async def test_alerts_on_time_are_sent_one_by_one(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    alerts = [new_alert("group", live_view(f"Stream {n}")) for n in range(2)]
    async with harness(tmp_path, GROUP, telegram=fake_telegram) as h:
        await h.enqueue(*alerts)
        await h.wait_sent(*alerts)
    assert len(fake_telegram.sent("sendMessage")) + len(fake_telegram.sent("sendPhoto")) == 2


async def test_a_late_backlog_larger_than_a_claim_still_goes_out_as_one_digest(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    # 25 rows: more than a lane claims at once (16), fewer than a digest holds (30). The
    # rows the lane already holds from its claim join the digest too.
    alerts = late(*(f"Stream {n}" for n in range(25)))
    async with harness(tmp_path, GROUP, telegram=fake_telegram) as h:
        await h.enqueue(*alerts)
        rows = [await h.wait_state(a.key, SENT) for a in alerts]
    (sent,) = fake_telegram.sent("sendMessage")
    text = parse_html(sent["params"]["text"])
    assert all(f"Stream {n}" in text for n in range(25))
    assert len({r.message_id for r in rows}) == 1


async def test_a_digest_shows_every_alert_and_what_does_not_fit_goes_in_the_next(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    # Thirty long lines do not fit in one message: none may hide in an "and N more".
    filler = " with a long title that fills the digest line" * 4
    alerts = late(*(f"S{n}-mark{filler}" for n in range(30)))
    async with harness(tmp_path, GROUP, telegram=fake_telegram) as h:
        await h.enqueue(*alerts)
        rows = [await h.wait_state(a.key, SENT) for a in alerts]
    texts = [parse_html(r["params"]["text"]) for r in fake_telegram.sent("sendMessage")]
    assert len(texts) >= 2
    assert not any("more" in text.split("\n")[-1] for text in texts)
    shown = " ".join(texts)
    assert all(f"S{n}-mark" in shown for n in range(30))
    assert len({r.message_id for r in rows}) == len(texts)


@pytest.mark.parametrize("action", ["edit", "delete"])
async def test_a_stream_end_leaves_a_digest_as_it_is(
    tmp_path: Path, fake_telegram: FakeTelegram, action: str
) -> None:
    # The digest shows three alerts: one stream's end must neither replace it with that
    # alert nor delete the other two.
    alerts = late(*(f"Stream {n}" for n in range(3)))
    async with harness(tmp_path, GROUP, telegram=fake_telegram) as h:
        await h.enqueue(*alerts)
        for a in alerts:
            await h.wait_state(a.key, SENT)
        ends = [
            new_alert("group", key=f"{a.key}:end", action=action, ref_key=a.key) for a in alerts
        ]
        await h.enqueue(*ends)
        for end in ends:
            await h.wait_state(end.key, DROPPED)
    assert len(fake_telegram.sent("sendMessage")) == 1
    changes = ("editMessageText", "editMessageCaption", "deleteMessage")
    assert [r for r in fake_telegram.requests if r["method"] in changes] == []
