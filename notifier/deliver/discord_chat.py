"""Discord senders for chat subscriptions (a server channel, a member's DMs) through the bot
token, and the pause of a channel the bot lost, with a word to the server."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any, Final

import discord
from discord.http import HTTPClient, handle_message_parameters

from notifier.deliver.discord import (
    RENDERED,
    DiscordHub,
    allowed_mentions,
    classify,
    render_alert,
    rendering_key,
)
from notifier.deliver.limits import SlidingWindow
from notifier.log import event, get_logger, redact_cut, short_error
from notifier.outbox.policy import Failure
from notifier.render import discord as render
from notifier.rules.subscriptions import discord_id
from notifier.store.base import Store
from notifier.store.types import ChatKind

PLATFORM: Final = "discord"

# paused_reason values for a channel the bot lost (delivery and the bot write them).
PAUSED_NO_PERMISSION: Final = "missing-permissions"
PAUSED_NO_ACCESS: Final = "missing-access"
PAUSED_DELETED: Final = "channel-deleted"
_LOST_CODES: Final = {
    50013: PAUSED_NO_PERMISSION,
    50001: PAUSED_NO_ACCESS,
    10003: PAUSED_DELETED,
}
_WHY: Final = {
    PAUSED_NO_PERMISSION: "I lost permission to post there",
    PAUSED_NO_ACCESS: "I can no longer see that channel",
    PAUSED_DELETED: "the channel was deleted",
}
MAX_TOLD: Final = 3  # configuring users DMed when the server has no system channel

ComponentsFor = Callable[[dict[str, Any]], list[dict[str, Any]] | None]

log = get_logger("deliver.discord")


def lost_channel_reason(error: BaseException) -> str | None:
    """The paused_reason for a send that failed because the bot lost the channel (missing
    permissions or access, or the channel is gone); None for any other failure."""
    if isinstance(error, discord.HTTPException):
        return _LOST_CODES.get(error.code)
    return None


def _mention_role(payload: dict[str, Any]) -> int | None:
    return discord_id(payload.get("mention_role"))


class _ChatSender:
    channel = "discord"

    def __init__(self, name: str, hub: DiscordHub, window: str) -> None:
        self.name = name
        self._hub = hub
        self._window = window  # its key (see `DiscordHub.chat_window`)
        self.lost: str | None = None  # set by classify when the bot lost the chat

    async def start(self) -> None:
        await self._hub.start(need_bot=True)

    async def close(self) -> None:
        pass  # the hub is shared; its owner closes it

    def windows(self) -> list[SlidingWindow]:
        return [self._hub.bot_window, self._hub.chat_window(self._window)]

    def prepare(self, payload: dict[str, Any]) -> None:
        pass  # one chat's messages: nothing worth making ahead

    def classify(self, error: BaseException) -> Failure:
        self.lost = lost_channel_reason(error)
        return classify(error)

    def _http(self) -> HTTPClient:
        http = self._hub.http
        if http is None:
            raise RuntimeError("the Discord bot client is not started")
        return http

    @staticmethod
    def _render(payload: dict[str, Any], role: int | None) -> render.DiscordMessage:
        return RENDERED.get((rendering_key(payload), role), render_alert)


class DiscordChannelSender(_ChatSender):
    """Alerts to a server channel (`@dc:<channel>`): an embed, the subscription's role
    mentioned (and only it), and the components `components_for` gives (the Notify-me
    button of live alerts)."""

    def __init__(
        self,
        name: str,
        channel_id: int,
        hub: DiscordHub,
        *,
        components_for: ComponentsFor | None = None,
    ) -> None:
        super().__init__(name, hub, f"c{int(channel_id)}")
        self.channel_id = int(channel_id)
        self._components_for = components_for

    def _params(self, payload: dict[str, Any]) -> Any:
        role = _mention_role(payload)
        message = self._render(payload, role)
        params = handle_message_parameters(
            content=message.content,
            embed=discord.Embed.from_dict(message.embed),
            allowed_mentions=allowed_mentions(role),
        )
        components = self._components_for(payload) if self._components_for else None
        if components is not None and params.payload is not None:
            # handle_message_parameters takes components only as a View object
            params.payload["components"] = components
        return params

    async def send(self, payload: dict[str, Any]) -> str | None:
        with self._params(payload) as params:
            data = await self._http().send_message(self.channel_id, params=params)
        return str(data["id"])

    async def edit(self, message_id: str, payload: dict[str, Any]) -> None:
        with self._params(payload) as params:
            await self._http().edit_message(self.channel_id, int(message_id), params=params)

    async def delete(self, message_id: str) -> None:
        await self._http().delete_message(self.channel_id, int(message_id))


class DiscordDmSender(_ChatSender):
    """Alerts to a member's DMs (`@dcdm:<user>`): the DM channel is opened once and kept."""

    def __init__(self, name: str, user_id: int, hub: DiscordHub) -> None:
        super().__init__(name, hub, f"d{int(user_id)}")
        self.user_id = int(user_id)
        self._dm_channel: int | None = None

    async def _channel(self) -> int:
        if self._dm_channel is None:
            data = await self._http().start_private_message(self.user_id)
            self._dm_channel = int(data["id"])
        return self._dm_channel

    @classmethod
    def _params(cls, payload: dict[str, Any]) -> Any:
        message = cls._render(payload, None)
        return handle_message_parameters(
            content=message.content,
            embed=discord.Embed.from_dict(message.embed),
            allowed_mentions=discord.AllowedMentions.none(),
        )

    async def send(self, payload: dict[str, Any]) -> str | None:
        channel = await self._channel()
        with self._params(payload) as params:
            data = await self._http().send_message(channel, params=params)
        return str(data["id"])

    async def edit(self, message_id: str, payload: dict[str, Any]) -> None:
        channel = await self._channel()
        with self._params(payload) as params:
            await self._http().edit_message(channel, int(message_id), params=params)

    async def delete(self, message_id: str) -> None:
        await self._http().delete_message(await self._channel(), int(message_id))


# ---- a channel the bot lost ---------------------------------------------------------------


def _lost_reason(reason: str) -> str | None:
    """One of the PAUSED_* reasons for a reason given as such or as a failure's text
    ("rejected 403 50013: Missing Permissions")."""
    if reason in _WHY:
        return reason
    codes = {int(code) for code in re.findall(r"\b([0-9]{5})\b", reason)}
    return next((name for code, name in _LOST_CODES.items() if code in codes), None)


def pause_notice(channel_id: int, reason: str) -> str:
    """What the server is told when alerts to a channel are paused."""
    reason = _lost_reason(reason) or reason
    why = _WHY.get(reason) or f"Discord refused my messages there ({redact_cut(reason, 200)})"
    if reason == PAUSED_DELETED:
        fix = "Use `/parti unfollow` to remove its alerts, or `/parti follow` in another channel."
    else:
        fix = "Fix my permissions there, then run `/parti resume` to send alerts again."
    return f"⏸️ Alerts to <#{int(channel_id)}> are paused: {why}. {fix}"


async def pause_channel(
    store: Store,
    http: HTTPClient,
    channel_id: int,
    reason: str,
    *,
    now: float | None = None,
) -> bool:
    """Pause alerts to a channel the bot lost (paused_reason on its chat) and say so in the
    server's system channel, or by DM to whoever configured its alerts. Once: False (and
    nothing said) when the channel was paused already."""
    at = store.clock() if now is None else now
    key = str(int(channel_id))
    chat = await store.get_chat(PLATFORM, key)
    if chat is not None and chat.paused_reason is not None:
        return False
    if chat is None:
        chat = await store.upsert_chat(PLATFORM, key, kind=ChatKind.GUILD_CHANNEL.value, now=at)
    await store.set_chat_fields(PLATFORM, key, now=at, paused_reason=reason)
    event(log, "discord.channel_paused", channel=key, reason=reason)
    notice = pause_notice(int(channel_id), reason)
    if chat.guild_id is not None and await _tell_server(
        http, int(chat.guild_id), channel_id, notice
    ):
        return True
    creators = sorted(
        {
            sub.created_by
            for sub in await store.list_subscriptions(platform=PLATFORM, chat_id=key)
            if sub.created_by and sub.created_by.isascii() and sub.created_by.isdigit()
        }
    )
    for creator in creators[:MAX_TOLD]:
        await _tell_user(http, int(creator), notice)
    return True


async def _tell_server(http: HTTPClient, guild_id: int, lost: int, notice: str) -> bool:
    try:
        guild = await http.get_guild(guild_id)
    except (discord.HTTPException, OSError) as exc:
        event(log, "discord.guild_unknown", logging.WARNING, guild=guild_id, error=short_error(exc))
        return False
    system = guild.get("system_channel_id")
    if system is None or int(system) == int(lost):
        return False
    return await _post(http, int(system), notice)


async def _tell_user(http: HTTPClient, user_id: int, notice: str) -> bool:
    try:
        channel = await http.start_private_message(user_id)
    except (discord.HTTPException, OSError) as exc:
        event(log, "discord.notice_failed", logging.WARNING, user=user_id, error=short_error(exc))
        return False
    return await _post(http, int(channel["id"]), notice)


async def _post(http: HTTPClient, channel_id: int, text: str) -> bool:
    try:
        with handle_message_parameters(
            content=text, allowed_mentions=discord.AllowedMentions.none()
        ) as params:
            await http.send_message(channel_id, params=params)
    except (discord.HTTPException, OSError) as exc:
        event(
            log,
            "discord.notice_failed",
            logging.WARNING,
            channel=channel_id,
            error=short_error(exc),
        )
        return False
    return True


__all__ = [
    "PAUSED_DELETED",
    "PAUSED_NO_ACCESS",
    "PAUSED_NO_PERMISSION",
    "DiscordChannelSender",
    "DiscordDmSender",
    "lost_channel_reason",
    "pause_channel",
    "pause_notice",
]
