"""Senders for chat-subscription destinations ("@tg:..", "@dc:..", "@dcdm:.."); a lost chat."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from notifier.deliver.base import Sender
from notifier.deliver.factory import Senders
from notifier.rules.subscriptions import ChatDestination, parse_destination
from notifier.settings import Settings
from notifier.stages.context import Core
from notifier.store import Store


class ChatSenders:
    """Made on demand by the delivery lanes, from the settings as they are now (a reload
    may have fixed a token) and the bots block of the current rules."""

    def __init__(
        self,
        core: Core,
        store: Store,
        *,
        settings: Callable[[], Settings],
        current_senders: Callable[[], Senders | None],
        limits_scale: float,
    ) -> None:
        self.core = core
        self.store = store
        self.settings = settings  # a getter: a reload replaces the settings
        # The senders delivery uses now (None until the first delivery is made).
        self.current_senders = current_senders
        self.limits_scale = limits_scale

    async def lost(self, destination: str, sender: Sender, reason: str) -> bool:
        """A Discord channel the bot lost: pause it and tell the server (once)."""
        found = parse_destination(destination)
        lost = getattr(sender, "lost", None)
        senders = self.current_senders()
        hub = senders.hub if senders is not None else None
        if found is None or found.kind != "channel" or lost is None or hub is None:
            return False
        if hub.http is None:
            return False
        from notifier.deliver.discord_chat import pause_channel

        await pause_channel(self.store, hub.http, int(found.id), lost)
        return True

    def sender(self, senders: Senders, name: str) -> Sender | None:
        """The sender of a chat subscription's destination: "@tg:<chat>[:<thread>]",
        "@dc:<channel>", "@dcdm:<user>"."""
        found = parse_destination(name)
        if found is not None and found.platform == "discord":
            return self._discord_sender(senders, name, found)
        settings = self.settings()
        token = settings.telegram_token
        if found is None or found.platform != "telegram" or token is None:
            return None
        from notifier.deliver.telegram import TelegramSender
        from notifier.rules.schema import TelegramTarget

        bot = senders.telegram_bot(settings, limits_scale=self.limits_scale)
        target = TelegramTarget(chat_id=int(found.id), thread_id=found.thread_id)
        commands = self.core.rules.file.bots.telegram.commands
        private = not found.id.startswith("-")
        keyboard = functools.partial(_alert_keyboard, private=private) if commands else None
        return TelegramSender(name, target, bot, keyboard=keyboard)

    def _discord_sender(self, senders: Senders, name: str, found: ChatDestination) -> Sender | None:
        settings = self.settings()
        token = settings.discord_bot_token
        if token is None:
            return None
        from notifier.bots.discord_views import live_alert_components
        from notifier.deliver.discord_chat import DiscordChannelSender, DiscordDmSender

        hub = senders.discord_hub(settings, limits_scale=self.limits_scale)
        if found.kind == "channel":
            commands = self.core.rules.file.bots.discord.commands
            components = live_alert_components if commands else None
            return DiscordChannelSender(name, int(found.id), hub, components_for=components)
        return DiscordDmSender(name, int(found.id), hub)


def _alert_keyboard(
    payload: dict[str, Any], bot_username: str, *, private: bool
) -> dict[str, Any] | None:
    """The buttons under a chat subscription's live alert (see notifier/bots/telegram.py):
    Unfollow and Mute 1h in a DM, Follow in DM in a group or channel."""
    from notifier.bots.telegram import alert_keyboard

    view = payload.get("view") or {}
    user_id = (view.get("fields") or {}).get("user_id")
    if view.get("kind") != "live" or not isinstance(user_id, int):
        return None
    return alert_keyboard(chat_is_private=private, user_id=user_id, bot_username=bot_username)
