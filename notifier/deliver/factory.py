"""Builds one sender per destination of a rules file, sharing bots and sessions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from notifier.deliver.base import Sender
from notifier.deliver.console import ConsoleSender
from notifier.deliver.limits import WindowBank
from notifier.preflight import missing_destination_secrets
from notifier.rules.schema import RulesFile
from notifier.settings import Settings

if TYPE_CHECKING:
    from notifier.deliver.discord import DiscordHub
    from notifier.deliver.telegram import TelegramBot


class MissingSecret(RuntimeError):
    """A destination needs a token that is not set (the message names the variable only)."""


@dataclass
class Senders:
    by_name: dict[str, Sender] = field(default_factory=dict)
    bot: TelegramBot | None = None
    hub: DiscordHub | None = None
    # The daemon's bots' rate windows, which outlive these senders (a reload's new ones
    # take them over); None: windows of their own.
    bank: WindowBank | None = None

    def telegram_bot(self, settings: Settings, *, limits_scale: float) -> TelegramBot:
        """The one TelegramBot of these senders (made on first use; needs the token)."""
        if self.bot is None:
            from notifier.deliver.telegram import TelegramBot

            assert settings.telegram_token is not None
            self.bot = TelegramBot(
                settings.telegram_token.get_secret_value(),
                settings.telegram_api_url,
                limits_scale=limits_scale,
                paid_broadcast=settings.telegram_paid_broadcast,
                bank=self.bank,
            )
        return self.bot

    def discord_hub(self, settings: Settings, *, limits_scale: float) -> DiscordHub:
        """The one DiscordHub of these senders (webhooks need no token; channels do)."""
        if self.hub is None:
            from notifier.deliver.discord import DiscordHub

            token = settings.discord_bot_token
            self.hub = DiscordHub(
                settings.discord_api_url,
                token.get_secret_value() if token else None,
                limits_scale=limits_scale,
                bank=self.bank,
            )
        return self.hub

    async def start(self) -> None:
        for sender in self.by_name.values():
            await sender.start()

    async def close(self) -> None:
        if self.bot is not None:
            await self.bot.close()
        if self.hub is not None:
            await self.hub.close()


def build_senders(
    rules_file: RulesFile,
    settings: Settings,
    *,
    limits_scale: float = 1.0,
    console_stream: TextIO | None = None,
    bank: WindowBank | None = None,
) -> Senders:
    problems = missing_destination_secrets(rules_file, settings)
    if problems:
        raise MissingSecret(problems[0])
    senders = Senders(bank=bank)
    for name, destination in rules_file.destinations.items():
        # Each chat library is imported only when a destination needs it (discord.py alone
        # weighs about 30 MB of memory).
        if destination.telegram is not None:
            from notifier.deliver.telegram import TelegramSender

            bot = senders.telegram_bot(settings, limits_scale=limits_scale)
            senders.by_name[name] = TelegramSender(name, destination.telegram, bot)
        elif destination.discord is not None:
            from notifier.deliver.discord import DiscordSender

            hub = senders.discord_hub(settings, limits_scale=limits_scale)
            senders.by_name[name] = DiscordSender(name, destination.discord, hub)
        else:
            senders.by_name[name] = ConsoleSender(name, console_stream)
    return senders
