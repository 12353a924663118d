"""A reload builds new senders; for the same bot they take its rate windows over (the chat
APIs count what the bot sent, not which of our objects sent it), and so do the command
bot's replies. Without that, the new senders start with empty windows next to the full
ones: twice the limit, and 429s."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr

from notifier.bots.limiter import SharedLimiter
from notifier.deliver.base import GATE, Sender
from notifier.deliver.factory import Senders, build_senders
from notifier.deliver.limits import WindowBank
from notifier.rules.schema import RulesFile
from notifier.settings import Settings
from tests.deliver.harness import live_view
from tests.fakes.discord import BOT_TOKEN, FakeDiscord
from tests.fakes.telegram import FakeTelegram

SCALE = 0.2  # a group chat takes 4 a minute, a Discord channel 1 per 2 s
GROUP = -100555
CHANNEL = 1300


def settings_for(
    telegram: FakeTelegram, discord: FakeDiscord, tg_token: str, *, paid: bool = False
) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        telegram_token=SecretStr(tg_token),
        telegram_api_url=telegram.api_url,
        discord_api_url=discord.api_url,
        discord_bot_token=SecretStr(BOT_TOKEN),
        telegram_paid_broadcast=paid,
    )


async def senders_for(
    settings: Settings, bank: WindowBank, *, start: bool = True, webhook: str | None = None
) -> Senders:
    destinations: dict[str, Any] = {
        "group": {"telegram": {"chat_id": GROUP}},
        "channel": {"discord": {"channel_id": CHANNEL}},
    }
    if webhook is not None:
        destinations["webhook"] = {"discord": {"webhook_url": webhook}}
    rules = RulesFile.model_validate({"destinations": destinations, "rules": []})
    senders = build_senders(rules, settings, limits_scale=SCALE, bank=bank)
    if start:
        await senders.start()
    return senders


def senders_of(settings: Settings, destinations: dict[str, Any]) -> Senders:
    """Senders for `destinations` at the real limits, with a bank of their own (not started)."""
    rules = RulesFile.model_validate({"destinations": destinations, "rules": []})
    return build_senders(rules, settings, bank=WindowBank())


async def fill(sender: Sender) -> None:
    """Send through the gate until the destination's own window is full."""
    payload: dict[str, Any] = {"view": live_view().to_json(), "template": None}
    while sender.windows()[-1].wait_time(time.monotonic()) == 0.0:
        windows = sender.windows()
        slots = await GATE.acquire(windows)
        try:
            await sender.send(payload)
        finally:
            GATE.release(windows, slots)


@pytest.fixture
async def limited_telegram() -> AsyncIterator[FakeTelegram]:
    fake = await FakeTelegram(limits_scale=SCALE).start()
    yield fake
    await fake.stop()


@pytest.fixture
async def limited_discord() -> AsyncIterator[FakeDiscord]:
    fake = await FakeDiscord(limits_scale=SCALE).start()
    yield fake
    await fake.stop()


@pytest.mark.parametrize("name", ["group", "channel", "webhook"])
async def test_the_senders_of_a_reload_wait_for_the_windows_the_old_ones_filled(
    limited_telegram: FakeTelegram, limited_discord: FakeDiscord, name: str
) -> None:
    # A webhook's window is the reset its last answer announced (1 per 2 s here); the new
    # sender waits for it in the gate, not inside its send timeout in discord.py's lock.
    limited_discord.channels.add(CHANNEL)
    webhook = limited_discord.add_webhook(4244)
    bank = WindowBank()
    settings = settings_for(limited_telegram, limited_discord, limited_telegram.token)
    before = await senders_for(settings, bank, webhook=webhook)
    # A reload's (made first: the check below comes right after the last send, well
    # within the shortest window, 2 s).
    after = await senders_for(settings, bank, webhook=webhook)
    try:
        await fill(before.by_name[name])
        now = time.monotonic()
        assert after.by_name[name].windows()[-1].wait_time(now) != 0.0  # full: it waits
        assert after.by_name[name].windows() == before.by_name[name].windows()
    finally:
        await before.close()
        await after.close()
    assert limited_telegram.rate_limited == 0
    assert limited_discord.rate_limited == 0


async def test_the_command_bots_replies_share_the_windows_of_a_reloads_senders(
    fake_telegram: FakeTelegram, fake_discord: FakeDiscord
) -> None:
    bank = WindowBank()
    settings = settings_for(fake_telegram, fake_discord, fake_telegram.token)
    before = await senders_for(settings, bank)
    assert before.bot is not None
    replies = SharedLimiter(before.bot.window, before.bot.chat_window)  # as the bots stage
    after = await senders_for(settings, bank)
    try:
        assert after.bot is not None and after.bot is not before.bot
        assert replies.bot_window is after.bot.window
        assert replies.chat_window(GROUP) is after.bot.chat_window(GROUP)
    finally:
        await before.close()
        await after.close()


async def test_another_bot_has_windows_of_its_own(
    fake_telegram: FakeTelegram, fake_discord: FakeDiscord
) -> None:
    bank = WindowBank()
    one = await senders_for(settings_for(fake_telegram, fake_discord, "1:ONE"), bank, start=False)
    other = await senders_for(settings_for(fake_telegram, fake_discord, "2:TWO"), bank, start=False)
    try:
        assert one.bot is not None and other.bot is not None
        assert one.bot.window is not other.bot.window
        assert one.bot.chat_window(GROUP) is not other.bot.chat_window(GROUP)
    finally:
        await one.close()
        await other.close()


async def test_turning_paid_broadcasts_on_changes_the_bots_window_and_keeps_each_chats(
    limited_telegram: FakeTelegram, limited_discord: FakeDiscord
) -> None:
    """A chat's limit is the same with paid broadcasts: a reload that turns them on must not
    start the group's window empty next to the full one (twice its limit, 429s)."""
    bank = WindowBank()
    before = await senders_for(
        settings_for(limited_telegram, limited_discord, limited_telegram.token), bank
    )
    paid = settings_for(limited_telegram, limited_discord, limited_telegram.token, paid=True)
    after = await senders_for(paid, bank)
    try:
        await fill(before.by_name["group"])
        assert before.bot is not None and after.bot is not None
        assert after.bot.window is not before.bot.window  # 1,000 a second now
        assert after.by_name["group"].windows()[-1] is before.by_name["group"].windows()[-1]
        assert after.by_name["group"].windows()[-1].wait_time(time.monotonic()) != 0.0
    finally:
        await before.close()
        await after.close()
    assert limited_telegram.rate_limited == 0


async def test_a_channel_named_by_its_username_and_by_its_id_shares_one_window(
    fake_telegram: FakeTelegram, fake_discord: FakeDiscord
) -> None:
    """Telegram counts a chat's limit per chat, however a send names it: a rules file's
    "@channel" and the same channel by id (another destination, a subscription) must not
    each get the whole limit."""
    fake_telegram.add_chat(-100777, "channel", title="Alerts", username="parti_alerts")
    settings = settings_for(fake_telegram, fake_discord, fake_telegram.token)
    destinations: dict[str, Any] = {
        "by_name": {"telegram": {"chat_id": "@Parti_Alerts"}},
        "by_id": {"telegram": {"chat_id": -100777}},
        "unknown": {"telegram": {"chat_id": "@nobody_here"}},  # no such chat: keeps its name
    }
    senders = senders_of(settings, destinations)
    await senders.start()
    try:
        by_name, by_id = senders.by_name["by_name"], senders.by_name["by_id"]
        assert by_name.windows()[-1] is by_id.windows()[-1]
        assert senders.bot is not None and by_id.windows()[-1] is senders.bot.chat_window(-100777)
        assert senders.by_name["unknown"].windows()[-1] is not by_id.windows()[-1]
    finally:
        await senders.close()
    looked_up = [r for r in fake_telegram.requests if r.get("method") == "getChat"]
    assert len(looked_up) == 2  # once per name


async def test_a_username_is_looked_up_once_however_many_lanes_start_with_it(
    fake_telegram: FakeTelegram, fake_discord: FakeDiscord
) -> None:
    fake_telegram.add_chat(-100777, "channel", title="Alerts", username="parti_alerts")
    settings = settings_for(fake_telegram, fake_discord, fake_telegram.token)
    destinations = {f"d{n}": {"telegram": {"chat_id": "@parti_alerts"}} for n in range(5)}
    senders = senders_of(settings, destinations)
    try:
        await asyncio.gather(*(sender.start() for sender in senders.by_name.values()))
        keys = {id(sender.windows()[-1]) for sender in senders.by_name.values()}
        assert len(keys) == 1
    finally:
        await senders.close()
    assert len([r for r in fake_telegram.requests if r.get("method") == "getChat"]) == 1


async def test_a_lookup_answer_it_cannot_read_never_keeps_the_sender_from_starting(
    fake_telegram: FakeTelegram, fake_discord: FakeDiscord, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An older Bot API server's getChat (without the fields python-telegram-bot now
    requires) must not make a destination unstartable: the name keeps its own window."""
    fake_telegram.add_chat(-100777, "channel", title="Alerts", username="parti_alerts")
    bare = {"id": -100777, "type": "channel"}
    monkeypatch.setitem(fake_telegram._methods, "getChat", lambda *_: fake_telegram._ok(bare))
    settings = settings_for(fake_telegram, fake_discord, fake_telegram.token)
    destinations = {"by_name": {"telegram": {"chat_id": "@parti_alerts"}}}
    senders = senders_of(settings, destinations)
    try:
        await senders.start()
        sender = senders.by_name["by_name"]
        assert senders.bot is not None
        assert sender.windows()[-1] is senders.bot.chat_window("@parti_alerts")
        await sender.send({"view": live_view().to_json(), "template": None})
    finally:
        await senders.close()
