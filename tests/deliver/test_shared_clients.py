"""The chat lanes of a fan-out open together and share one bot: it starts once."""

from __future__ import annotations

import asyncio

from notifier.deliver.discord import DiscordHub
from notifier.deliver.telegram import TelegramBot
from tests.fakes.discord import BOT_TOKEN, FakeDiscord
from tests.fakes.telegram import FakeTelegram


async def test_telegram_lanes_starting_together_ask_get_me_once(
    fake_telegram: FakeTelegram,
) -> None:
    bot = TelegramBot(fake_telegram.token, fake_telegram.api_url)
    try:
        await asyncio.gather(*(bot.start() for _ in range(40)))
    finally:
        await bot.close()
    assert [r["method"] for r in fake_telegram.requests].count("getMe") == 1


async def test_discord_lanes_starting_together_log_in_once_with_one_client(
    fake_discord: FakeDiscord,
) -> None:
    hub = DiscordHub(fake_discord.api_url, BOT_TOKEN)
    try:
        await asyncio.gather(*(hub.start(need_bot=True) for _ in range(40)))
        assert hub.http is not None
    finally:
        await hub.close()
    # One login: another 39 clients would each have held a session nobody closes.
    assert fake_discord.logins == 1
