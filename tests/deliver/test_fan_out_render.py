"""A fan-out renders its message once: to many chats, and to many chat subscriptions
(each its own rule) whose default message does not show the rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from notifier.render import discord as discord_render
from notifier.render import telegram as render
from notifier.render.fields import AlertView
from tests.deliver.harness import harness, live_view, new_alert
from tests.fakes.discord import FakeDiscord
from tests.fakes.telegram import FakeTelegram

CHATS = {f"dm{n}": {"telegram": {"chat_id": 7000 + n}} for n in range(10)}


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
        await h.wait_sent(*alerts, other)
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
        await h.wait_sent(*alerts)
    assert len(rendered) == 1 + 3  # the default message once, the templated one per rule
    texts = sorted(
        r["params"]["text"] for r in fake_telegram.sent() if r["method"] == "sendMessage"
    )
    assert texts[:3] == ["sub:3 is live", "sub:4 is live", "sub:5 is live"]
    assert len(set(texts[3:])) == 1 and "Fan-out" in texts[3]


async def test_a_discord_fan_out_to_subscriptions_renders_a_live_alert_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_discord: FakeDiscord
) -> None:
    embeds: list[str] = []
    real = discord_render.render

    def counting(view: AlertView, *args: Any, **options: Any) -> discord_render.DiscordMessage:
        embeds.append(view.rule)
        return real(view, *args, **options)

    monkeypatch.setattr(discord_render, "render", counting)
    hooks = {
        f"hook{n}": {"discord": {"webhook_url": fake_discord.add_webhook(900 + n)}}
        for n in range(5)
    }
    base = live_view("Fan-out")
    alerts = [  # each subscription its own rule, as a go-live to five followers
        new_alert(name, AlertView(base.kind, f"sub:{n}", {**base.fields, "rule": f"sub:{n}"}))
        for n, name in enumerate(hooks)
    ]
    async with harness(tmp_path, hooks, discord=fake_discord) as h:
        await h.enqueue(*alerts)
        await h.wait_sent(*alerts)
    assert len(embeds) == 1
    titles = {str(sent["body"]["embeds"][0].get("title")) for sent in fake_discord.sent()}
    assert len(fake_discord.sent()) == 5 and len(titles) == 1
