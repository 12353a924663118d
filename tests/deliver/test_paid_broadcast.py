"""NOTIFIER_TELEGRAM_PAID_BROADCAST: sends ask for the paid rate (1,000 a second per bot)."""

from __future__ import annotations

from pathlib import Path

import pytest

from notifier.render import telegram as render
from notifier.render.fields import AlertView
from notifier.store.types import SENT
from tests.deliver.harness import harness, live_view, new_alert
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
            for alert in alerts:
                await h.wait_state(alert.key, SENT)
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


@pytest.fixture
def rendered(monkeypatch: pytest.MonkeyPatch) -> list[AlertView]:
    """The views the Telegram renderer was called for, in order."""
    views: list[AlertView] = []
    real = render.render

    def counting(view: AlertView, template: str | None = None) -> render.TelegramMessage:
        views.append(view)
        return real(view, template)

    monkeypatch.setattr(render, "render", counting)
    return views


async def test_one_alert_to_many_chats_is_rendered_once_and_each_chat_gets_its_own_text(
    tmp_path: Path, rendered: list[AlertView], fake_telegram: FakeTelegram
) -> None:
    chats = dict(list(CHATS.items())[:10])
    async with harness(tmp_path, chats, telegram=fake_telegram) as h:
        # One go-live to ten chats (ten rows, each payload read back on its own), and a
        # second alert to one of them with another title.
        view = live_view("Fan-out")
        alerts = [new_alert(name, view) for name in chats]
        other = new_alert("dm0", live_view("Another stream"))
        await h.enqueue(*alerts, other)
        for alert in [*alerts, other]:
            await h.wait_state(alert.key, SENT)
    assert sorted(str(v.fields["title"]) for v in rendered) == ["Another stream", "Fan-out"]
    texts = [r["params"]["text"] for r in fake_telegram.sent() if r["method"] == "sendMessage"]
    assert len(texts) == 11
    assert sum("Fan-out" in t for t in texts) == 10 and sum("Another" in t for t in texts) == 1


async def test_a_fan_out_to_chat_subscriptions_renders_once_unless_a_template_shows_the_rule(
    tmp_path: Path, rendered: list[AlertView], fake_telegram: FakeTelegram
) -> None:
    chats = dict(list(CHATS.items())[:6])
    base = live_view("Fan-out")
    alerts = []
    for n, name in enumerate(chats):  # each chat subscription is its own rule
        view = AlertView(base.kind, f"sub:{n}", {**base.fields, "rule": f"sub:{n}"})
        template = "{{ rule }} is live" if n >= 3 else None
        alerts.append(new_alert(name, view, template=template))
    async with harness(tmp_path, chats, telegram=fake_telegram) as h:
        await h.enqueue(*alerts)
        for alert in alerts:
            await h.wait_state(alert.key, SENT)
    assert len(rendered) == 1 + 3  # the default message once, the templated one per rule
    texts = sorted(
        r["params"]["text"] for r in fake_telegram.sent() if r["method"] == "sendMessage"
    )
    assert texts[:3] == ["sub:3 is live", "sub:4 is live", "sub:5 is live"]
    assert len(set(texts[3:])) == 1 and "Fan-out" in texts[3]
