"""NOTIFIER_TELEGRAM_PAID_BROADCAST: sends ask for the paid rate (1,000 a second per bot)."""

from __future__ import annotations

from pathlib import Path

from notifier.store.types import SENT
from tests.deliver.harness import harness, new_alert
from tests.fakes.telegram import FakeTelegram

CHATS = {f"dm{n}": {"telegram": {"chat_id": 7000 + n}} for n in range(40)}


async def test_paid_broadcast_sends_ask_for_the_paid_rate_and_are_not_refused(
    tmp_path: Path,
) -> None:
    fake = await FakeTelegram(limits_scale=1.0).start()
    try:
        async with harness(tmp_path, CHATS, telegram=fake, paid_broadcast=True) as h:
            alerts = [new_alert(name) for name in CHATS]  # 40 chats: above the free 30/s
            await h.enqueue(*alerts)
            await h.wait_sent(*alerts)
    finally:
        await fake.stop()
    assert fake.paid_broadcasts == 40
    assert fake.rate_limited == 0


async def test_without_paid_broadcast_sends_do_not_ask_for_it(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    async with harness(
        tmp_path, {"me": {"telegram": {"chat_id": 7001}}}, telegram=fake_telegram
    ) as h:
        alert = new_alert("me")
        await h.enqueue(alert)
        await h.wait_state(alert.key, SENT)
    assert fake_telegram.paid_broadcasts == 0
    sends = [r for r in fake_telegram.sent() if r["method"] in ("sendMessage", "sendPhoto")]
    assert len(sends) == 1 and "allow_paid_broadcast" not in sends[0]["params"]
