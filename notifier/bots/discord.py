"""The Discord command bot: a discord.py Client whose `/parti` command group lets server
admins configure alerts per channel (and members their own DM alerts) in the store, and
the buttons alerts carry."""

from __future__ import annotations

import asyncio
import html
import logging
import re
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import aiohttp
import discord
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket

from notifier.bots.commands import (
    CommandError,
    Flood,
    FloodGate,
    check_argument,
    cut,
    describe_price,
    format_price,
    pages_of,
    parse_move,
    parse_price,
    plain_number,
    plural,
)
from notifier.bots.common import (
    FAILED,
    SLOW_DOWN,
    KeyedLocks,
    asset_named,
    failure_text,
    known_assets,
    live_now,
    subscription_problem,
)
from notifier.bots.discord_views import (
    DYNAMIC_ITEMS,
    MEMBER_LIST,
    SERVER_LIST,
    live_alert_components,
    notify_button_components,
    notify_view,
    page_view,
)
from notifier.bots.resolve import Resolver, Streamer, StreamerNotFound
from notifier.deliver.discord import point_at
from notifier.deliver.discord_chat import (
    PAUSED_DELETED,
    PAUSED_NO_ACCESS,
    PAUSED_NO_PERMISSION,
    pause_channel,
)
from notifier.log import event, get_logger, redact, register_secret, short_error
from notifier.parti.client import PartiClient, PartiError
from notifier.parti.models import AssetPrice, Category, ChannelLive, LiveChannel, UserProfile
from notifier.render import discord as render
from notifier.render.fields import AlertView, view_of
from notifier.rules.engine import Match
from notifier.rules.subscriptions import (
    discord_channel_destination,
    discord_dm_destination,
)
from notifier.store.base import Store
from notifier.store.errors import StoreError
from notifier.store.outage import Outage, pause
from notifier.store.types import ChatKind, SubscriptionKind
from notifier.store.types import Subscription as Stored

PLATFORM: Final = "discord"
DM_PREFIX: Final = "dm:"
PAGE_SIZE: Final = 10
ECHO_LIMIT: Final = 40
CHOICES_LIMIT: Final = 25
CONTENT_LIMIT: Final = 2000  # a reply's text; Discord refuses a longer one
# A follow's settings as a list shows them: with a streamer's name (at most about 90
# characters escaped) a line stays near 300, so PAGE_SIZE lines fit an embed's 4,096.
SETTINGS_LIMIT: Final = 200
CATEGORIES_SHOWN: Final = 3
AUTOCOMPLETE_SECONDS: Final = 2.0  # Discord waits 3 s for the choices
LOOKUP_MIN_CHARS: Final = 3  # typed text autocomplete looks up at Parti
LIVE_CACHE_SECONDS: Final = 30.0
CATEGORY_CACHE_SECONDS: Final = 600.0
MAX_VIEWERS: Final = 10_000_000
CLEAR_WORDS: Final = frozenset({"", "none", "off", "clear", "-", "remove"})
OPTION_OF: Final = {
    "title_matches": "title",
    "template": "message",
    "categories": "category",
    "role_id": "role",
}
LIVE_SETTINGS: Final = ("role", "message", "category", "title", "min_viewers", "on_end")
ON_END: Final = {
    "edit": "edit it to show the stream ended",
    "delete": "delete it",
    "ignore": "leave it as it is",
}

MANAGERS_ONLY: Final = (
    "Only members with the **Manage Server** permission can change this server's alerts."
)
IN_A_SERVER: Final = "Use this command in a server."
PREVIEW_NOTE: Final = "*Preview of a go-live alert (nobody is pinged).*"

log = get_logger("bots.discord")

T = TypeVar("T")
Interaction = discord.Interaction[Any]


class DiscordBotError(Exception):
    """The Discord command bot cannot start: one line, without the token."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DiscordLimits:
    max_follows: int = 200  # live subscriptions per server
    max_price_alerts: int = 50  # price and move subscriptions per server
    max_member_follows: int = 50  # a member's own DM follows
    commands_per_minute: int = 20  # per user; beyond it "slow down"


class Refusal(Exception):
    """A command that cannot be done; `text` is the short reply (Discord markdown)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


@dataclass(frozen=True, slots=True)
class Answer:
    text: str = ""
    embed: discord.Embed | None = None
    view: discord.ui.View | None = None


# ---- pure helpers -------------------------------------------------------------------------


def dm_chat_id(user_id: int) -> str:
    """The store's chat id of a member's DM alerts."""
    return f"{DM_PREFIX}{int(user_id)}"


def missing_permissions(perms: discord.Permissions, *, role: discord.Role | None) -> list[str]:
    """What the bot lacks in a channel to post alerts there (and ping `role`), by the names
    Discord's settings show."""
    missing: list[str] = []
    if not perms.view_channel:
        missing.append("View Channel")
    if not perms.send_messages:
        missing.append("Send Messages")
    if not perms.embed_links:
        missing.append("Embed Links")
    if role is not None and not role.mentionable and not perms.mention_everyone:
        missing.append(
            f"Mention @everyone, @here and All Roles (or make {_role_name(role)} mentionable)"
        )
    return missing


def missing_text(channel: str, missing: Sequence[str]) -> str:
    return (
        f"I can't post alerts in {channel}: I'm missing **{', '.join(missing)}** there. "
        "Give my role these permissions in that channel (or the server), then try again."
    )


def echo(text: str, limit: int = ECHO_LIMIT) -> str:
    """User text as it may appear in a reply: cut, markdown made inert."""
    return discord.utils.escape_markdown(discord.utils.escape_mentions(cut(text, limit)))


def plain(html_text: str) -> str:
    """A CommandError's HTML (made for Telegram) as Discord markdown: its bold stays bold,
    the text between (user text among it) is made inert."""
    return "**".join(
        discord.utils.escape_markdown(discord.utils.escape_mentions(html.unescape(part)))
        for part in re.split(r"</?b>", html_text)
    )


def describe_live(params: dict[str, Any], *, limit: int = SETTINGS_LIMIT) -> str:
    """A live subscription's settings in a few words (empty for none), at most `limit`
    characters: the settings that do not fit become "…" (whole, so no escape is cut)."""
    parts: list[str] = []
    if params.get("role_id"):
        parts.append(f"pings <@&{int(params['role_id'])}>")
    if params.get("template"):
        parts.append("own message")
    categories = params.get("categories")
    if categories:
        shown = ", ".join(echo(str(c), 30) for c in categories[:CATEGORIES_SHOWN])
        more = len(categories) - CATEGORIES_SHOWN
        parts.append(f"category {shown}" + (f" and {more} more" if more > 0 else ""))
    if params.get("title_matches"):
        parts.append(f"title `{str(params['title_matches'])[:40].replace('`', '')}`")
    if params.get("min_viewers") is not None:
        parts.append(f"≥{params['min_viewers']} viewers")
    if params.get("on_end"):
        parts.append(f"on end: {params['on_end']}")
    text = ""
    for index, part in enumerate(parts):
        joined = f"{text} · {part}" if text else part
        last = index == len(parts) - 1
        if len(joined) > (limit if last else limit - len(" · …")):
            return f"{text} · …" if text else "…"
        text = joined
    return text


def within(items: Sequence[str], limit: int, *, separator: str = ", ") -> str:
    """`items` joined, as many as fit in `limit` characters with "and N more" after them
    (the first one always: items are short)."""
    text = ""
    for index, item in enumerate(items):
        joined = f"{text}{separator}{item}" if text else item
        rest = len(items) - index - 1
        tail = f"{separator}and {rest} more" if rest else ""
        if text and len(joined) + len(tail) > limit:
            return f"{text}{separator}and {rest + 1} more"
        text = joined
    return text


def categories_of(text: str) -> list[str | int]:
    """`Gaming, Music` -> ["Gaming", "Music"]; a number is a category id."""
    items: list[str | int] = []
    for raw in text.split(","):
        name = raw.strip()
        if not name:
            continue
        items.append(int(name) if name.isascii() and name.isdigit() and len(name) < 10 else name)
    return items


def _role_name(role: discord.Role) -> str:
    return f"@{discord.utils.escape_markdown(role.name)}"


# ---- the client ---------------------------------------------------------------------------


class _BotClient(discord.Client):
    """A Client with the `/parti` tree; `buttons` is the DiscordCommands that serves it
    (None in a client made only to sync commands)."""

    def __init__(
        self, buttons: DiscordCommands | None, *, sync: bool, guild_ready_timeout: float
    ) -> None:
        intents = discord.Intents.none()
        intents.guilds = True  # channels, roles and the bot's own member: no privileged intent
        super().__init__(
            intents=intents,
            allowed_mentions=discord.AllowedMentions.none(),
            guild_ready_timeout=guild_ready_timeout,
            max_ratelimit_timeout=60.0,
        )
        self.buttons = buttons
        self.sync_commands = sync
        self.tree: app_commands.CommandTree[_BotClient] = app_commands.CommandTree(self)
        build_tree(self.tree)

    async def setup_hook(self) -> None:
        self.add_dynamic_items(*DYNAMIC_ITEMS)
        if self.sync_commands:
            try:
                synced = await self.tree.sync()
            except discord.HTTPException as exc:  # the commands synced before still work
                event(log, "bot.sync_failed", logging.WARNING, error=short_error(exc))
            else:
                event(log, "bot.synced", commands=len(synced))

    async def on_ready(self) -> None:
        if self.buttons is not None:
            self.buttons.ready.set()
            event(log, "bot.started", platform=PLATFORM, guilds=len(self.guilds))

    async def on_guild_channel_delete(self, channel: discord.abc.GuildChannel) -> None:
        if self.buttons is not None:
            await self.buttons.channel_lost(channel.id, PAUSED_DELETED)

    async def on_guild_channel_update(
        self, before: discord.abc.GuildChannel, after: discord.abc.GuildChannel
    ) -> None:
        me = after.guild.me
        if self.buttons is None or me is None:
            return
        perms = after.permissions_for(me)
        if not perms.view_channel:
            await self.buttons.channel_lost(after.id, PAUSED_NO_ACCESS)
        elif not perms.send_messages:
            await self.buttons.channel_lost(after.id, PAUSED_NO_PERMISSION)


def _bot_of(interaction: Interaction) -> DiscordCommands | None:
    return getattr(interaction.client, "buttons", None)


async def _unavailable(interaction: Interaction) -> None:
    await interaction.response.send_message(FAILED, ephemeral=True)


class DiscordCommands:
    """The command bot: `await run()` connects (REST login, gateway) and serves `/parti`
    until cancelled or `stop()`; a new run makes a new Client. State lives in the store,
    so a restart (or a button on an old message) carries on where it was."""

    def __init__(
        self,
        *,
        token: str,
        api_url: str,
        gateway_url: str,
        store: Store,
        client: PartiClient,
        limits: DiscordLimits | None = None,
        clock: Callable[[], float] | None = None,
        guild_ready_timeout: float = 2.0,
    ) -> None:
        register_secret(token)
        self._token = token
        self._api_url = api_url
        self._gateway_url = gateway_url
        self._store = store
        self._client = client
        self._limits = limits or DiscordLimits()
        # Mutes, pauses and the other times the chats table keeps count in the store's
        # clock (the database server's on PostgreSQL), the one delivery compares them with.
        self._clock = clock or store.clock
        self._guild_ready_timeout = guild_ready_timeout
        self._flood = FloodGate(limit=self._limits.commands_per_minute, window=60.0)
        # Autocomplete's Parti look-ups, per user as commands (a gate of their own: typing
        # must not use up the member's commands).
        self._lookups = FloodGate(limit=self._limits.commands_per_minute, window=60.0)
        # A server's (a member's DMs') limit is counted and a subscription added under its lock.
        self._additions = KeyedLocks()
        self._resolver = Resolver(client)
        self._bot: _BotClient | None = None
        self._guild_of_chat: dict[str, str | None] = {}
        self._cache: dict[str, tuple[float, Any]] = {}
        self.ready = asyncio.Event()  # set once the gateway session is ready

    @property
    def bot(self) -> discord.Client | None:
        """The running discord.py client (None when not running)."""
        return self._bot

    # ---- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect and serve until cancelled or stopped. Raises DiscordBotError (one line,
        no token) when the bot cannot start: a refused token, refused intents, Discord
        unreachable at login. Once connected, discord.py reconnects by itself."""
        point_at(self._api_url)
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self._gateway_url)
        bot = _BotClient(self, sync=True, guild_ready_timeout=self._guild_ready_timeout)
        self._bot = bot
        try:
            await bot.start(self._token)
        except discord.LoginFailure:
            raise DiscordBotError("Discord refused the bot token (login)") from None
        except discord.PrivilegedIntentsRequired:
            raise DiscordBotError("Discord refused the gateway intents") from None
        except discord.ConnectionClosed as exc:
            if exc.code == 4004:
                raise DiscordBotError("Discord refused the bot token (gateway 4004)") from None
            raise DiscordBotError(f"the Discord gateway closed the session ({exc.code})") from None
        except (
            discord.HTTPException,
            discord.GatewayNotFound,
            aiohttp.ClientError,
            OSError,
            TimeoutError,
        ) as exc:
            raise DiscordBotError(f"the Discord bot cannot connect: {short_error(exc)}") from None
        finally:
            await asyncio.shield(bot.close())
            self._bot = None
            self.ready.clear()
            event(log, "bot.stopped", platform=PLATFORM)

    async def stop(self) -> None:
        """Close the gateway session; `run()` returns."""
        bot = self._bot
        if bot is not None:
            await bot.close()

    # ---- serving one interaction ------------------------------------------------------------

    async def serve(
        self, interaction: Interaction, what: str, action: Callable[[], Awaitable[Answer]]
    ) -> None:
        """Answer a command or button press ephemerally: "thinking" at once, then the answer,
        or one short line for whatever went wrong."""
        if not await self._admit(interaction):
            return
        try:
            await interaction.response.defer(ephemeral=True, thinking=True)
        except discord.HTTPException as exc:
            event(log, "bot.reply_failed", logging.WARNING, command=what, error=short_error(exc))
            return
        answer = await self._attempt(what, action)
        options: dict[str, Any] = {"ephemeral": True}
        if answer.text:
            options["content"] = answer.text
        if answer.embed is not None:
            options["embed"] = answer.embed
        if answer.view is not None:
            options["view"] = answer.view
        try:
            await interaction.followup.send(**options)
        except discord.HTTPException as exc:
            event(log, "bot.reply_failed", logging.WARNING, command=what, error=short_error(exc))

    async def _admit(self, interaction: Interaction) -> bool:
        verdict = self._flood.check(interaction.user.id, self._clock())
        if verdict is Flood.ALLOW:
            return True
        if verdict is Flood.WARN:
            event(log, "bot.flood", logging.WARNING, user=interaction.user.id)
        try:
            await interaction.response.send_message(SLOW_DOWN, ephemeral=True)
        except discord.HTTPException as exc:
            event(log, "bot.reply_failed", logging.WARNING, error=short_error(exc))
        return False

    async def _attempt(self, what: str, action: Callable[[], Awaitable[Answer]]) -> Answer:
        try:
            return await action()
        except Refusal as exc:
            return Answer(exc.text)
        except CommandError as exc:
            return Answer(plain(exc.html))
        except Exception as exc:
            return Answer(failure_text(log, exc, what=what))

    async def command_failed(self, interaction: Interaction, error: Exception) -> None:
        """The tree's error handler: an option discord.py could not convert, or a bug."""
        if isinstance(error, app_commands.TransformerError):
            text = "I can't use that value; please pick it from the list Discord shows."
        else:
            event(log, "bot.command_failed", logging.ERROR, error=short_error(error))
            text = FAILED
        try:
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=True)
            else:
                await interaction.response.send_message(text, ephemeral=True)
        except discord.HTTPException as exc:
            event(log, "bot.reply_failed", logging.WARNING, error=short_error(exc))

    # ---- buttons (discord_views.ButtonHandler) -------------------------------------------------

    async def notify_pressed(self, interaction: Interaction, user_id: int) -> None:
        await self.serve(interaction, "notify", lambda: self._toggle_dm(interaction, user_id))

    async def page_pressed(self, interaction: Interaction, scope: str, page: int) -> None:
        if not await self._admit(interaction):
            return
        try:
            await interaction.response.defer()
        except discord.HTTPException as exc:
            event(log, "bot.reply_failed", logging.WARNING, command="page", error=short_error(exc))
            return
        if scope == MEMBER_LIST:
            answer = await self._attempt("page", lambda: self._member_page(interaction.user, page))
        else:
            answer = await self._attempt("page", lambda: self._server_page(interaction, page))
        try:
            if answer.embed is None:
                await interaction.followup.send(answer.text, ephemeral=True)
            else:
                await interaction.edit_original_response(embed=answer.embed, view=answer.view)
        except discord.HTTPException as exc:
            event(log, "bot.reply_failed", logging.WARNING, command="page", error=short_error(exc))

    # ---- gateway events ---------------------------------------------------------------------

    async def channel_lost(self, channel_id: int, reason: str) -> None:
        """The bot saw a channel go (deleted, or its permissions there revoked): pause the
        alerts configured for it, and tell the server. A store that does not answer is
        waited out (the gateway tells this once): the channel is paused once it answers."""
        bot = self._bot
        outage = Outage(
            f"channel {channel_id}",
            None,
            failed_event="bot.pause_store_failed",
            recovered_event="bot.pause_store_recovered",
        )
        while True:
            try:
                if bot is None or not await self._store.count_subscriptions(
                    PLATFORM, str(channel_id)
                ):
                    return
                await pause_channel(self._store, bot.http, channel_id, reason, now=self._clock())
                outage.answered()
                return
            except StoreError as exc:
                await pause(outage.failed(exc, channel=channel_id))
            except Exception as exc:
                event(
                    log,
                    "bot.pause_failed",
                    logging.WARNING,
                    channel=channel_id,
                    error=short_error(exc),
                )
                return

    # ---- /parti follow, unfollow, edit ------------------------------------------------------

    async def follow(
        self,
        interaction: Interaction,
        *,
        streamer: str,
        channel: discord.TextChannel,
        role: discord.Role | None,
        message: str | None,
        category: str | None,
        title: str | None,
        min_viewers: int | None,
        on_end: str | None,
    ) -> Answer:
        guild = self._managed_guild(interaction)
        self._check_role(guild, role)
        self._check_caller(interaction, channel, role)
        self._check_channel(guild, channel, role)
        found = await self._resolve(streamer)
        params: dict[str, Any] = {}
        if role is not None:
            params["role_id"] = role.id
        if message:
            params["template"] = message
        if category:
            params["categories"] = categories_of(_argument(category))
        if title:
            params["title_matches"] = title
        if min_viewers is not None:
            params["min_viewers"] = min_viewers
        if on_end:
            params["on_end"] = on_end
        chat_key, target = str(channel.id), str(found.user_id)
        self._validate(chat_key, SubscriptionKind.LIVE, target, params)
        async with self._additions.hold(guild.id):
            existing = await self._channel_follows(chat_key, target)
            if not existing:
                count = len(await self._guild_subscriptions(guild, SubscriptionKind.LIVE))
                if count >= self._limits.max_follows:
                    raise Refusal(
                        f"This server follows {plural(count, 'streamer')}, the most it may; "
                        "`/parti unfollow` one first."
                    )
            name = f"**{echo(found.user_name)}**"
            if any(sub.params == params for sub in existing):
                return Answer(f"{channel.mention} already follows {name} with these settings.")
            resumed = await self._remember_channel(channel)
            await self._store.add_subscription(
                PLATFORM,
                chat_key,
                kind=SubscriptionKind.LIVE,
                target=target,
                params=params,
                created_by=str(interaction.user.id),
                now=self._clock(),
            )
            for old in existing:  # one subscription per channel and streamer: the new settings
                await self._store.remove_subscription_id(old.id)
        settings = describe_live(params)
        detail = f" ({settings})" if settings else ""
        if existing:
            text = f"Updated {name} in {channel.mention}{detail}."
        else:
            live = await live_now(self._client, found.user_id)
            state = {True: " They are live now!", False: "", None: ""}[live]
            text = (
                f"Following {name} in {channel.mention}{detail}: "
                f"I'll post there when they go live.{state}"
            )
        if resumed:
            text += f"\nAlerts to {channel.mention} were paused; they are resumed."
        return Answer(text)

    async def unfollow(
        self, interaction: Interaction, *, streamer: str, channel: discord.TextChannel | None
    ) -> Answer:
        guild = self._managed_guild(interaction)
        found = await self._resolve_or_id(streamer)
        target = str(found.user_id)
        name = f"**{echo(found.user_name)}**"
        if channel is not None:
            removed = await self._store.remove_subscription(
                PLATFORM, str(channel.id), kind=SubscriptionKind.LIVE, target=target
            )
            if not removed:
                return Answer(f"{channel.mention} doesn't follow {name}.")
            return Answer(f"Unfollowed {name} in {channel.mention}.")
        subs = [
            sub
            for sub in await self._guild_subscriptions(guild, SubscriptionKind.LIVE)
            if sub.target == target
        ]
        for sub in subs:
            await self._store.remove_subscription_id(sub.id)
        if not subs:
            return Answer(f"No channel in this server follows {name}.")
        where = within(sorted({f"<#{sub.chat_id}>" for sub in subs}), CONTENT_LIMIT // 2)
        return Answer(f"Unfollowed {name} in {where}.")

    async def edit(
        self,
        interaction: Interaction,
        *,
        streamer: str,
        channel: discord.TextChannel,
        setting: str,
        value: str | None,
    ) -> Answer:
        guild = self._managed_guild(interaction)
        self._check_caller(interaction, channel, None)
        found = await self._resolve_or_id(streamer)
        chat_key, target = str(channel.id), str(found.user_id)
        name = f"**{echo(found.user_name)}**"
        existing = await self._channel_follows(chat_key, target)
        if not existing:
            raise Refusal(f"{channel.mention} doesn't follow {name}; `/parti follow` sets it up.")
        current = existing[0]
        params = dict(current.params)
        given = _argument(value or "")
        clear = given.lower() in CLEAR_WORDS
        key = {
            "role": "role_id",
            "message": "template",
            "category": "categories",
            "title": "title_matches",
            "min_viewers": "min_viewers",
            "on_end": "on_end",
        }.get(setting)
        if key is None:
            raise Refusal(
                f"I don't know the setting {echo(setting)}; one of {', '.join(LIVE_SETTINGS)}."
            )
        if clear:
            params.pop(key, None)
        elif setting == "role":
            role = _find_role(guild, given)
            self._check_role(guild, role)
            self._check_caller(interaction, channel, role)
            self._check_channel(guild, channel, role)
            params[key] = role.id
        elif setting == "category":
            params[key] = categories_of(given)
        elif setting == "min_viewers":
            params[key] = _viewers(given)
        elif setting == "on_end":
            if given.lower() not in ON_END:
                raise Refusal(f"on_end is one of {', '.join(ON_END)}.")
            params[key] = given.lower()
        else:  # message (a template) and title (a regular expression), checked below
            params[key] = (value or "").strip()
        self._validate(chat_key, SubscriptionKind.LIVE, target, params)
        if params == current.params:
            return Answer(f"Nothing changed for {name} in {channel.mention}.")
        # In place: the rule keeps its name, so its cooldown and the keys of the alerts it
        # made (a stream live now does not alert again) stay.
        for old in existing[1:]:
            await self._store.remove_subscription_id(old.id)
        if not await self._store.update_subscription(current.id, params=params, now=self._clock()):
            raise Refusal(f"{channel.mention}'s follow of {name} changed meanwhile; try again.")
        settings = describe_live(params) or "no extra settings"
        return Answer(f"Updated {name} in {channel.mention}: {settings}.")

    # ---- /parti price -----------------------------------------------------------------------

    async def price(
        self,
        interaction: Interaction,
        *,
        asset: str,
        direction: str,
        channel: discord.TextChannel,
        value: str | None,
    ) -> Answer:
        guild = self._managed_guild(interaction)
        chat_key = str(channel.id)
        if direction == "off":
            # By the stored symbol first, without a look-up: an asset Parti no longer
            # lists, or Parti down, must not keep an alert in place. Only when none matches,
            # the asset Parti knows by that name (its ticker: `bitcoin` for BTC), if it answers.
            symbol = _argument(asset).upper()
            alerts = [
                sub
                for sub in await self._store.list_subscriptions(platform=PLATFORM, chat_id=chat_key)
                if sub.kind in (SubscriptionKind.PRICE, SubscriptionKind.MOVE)
            ]
            if alerts and not any(sub.target.casefold() == symbol.casefold() for sub in alerts):
                try:
                    found_off = asset_named(await self._prices(), symbol)
                except PartiError:
                    found_off = None
                if found_off is not None:
                    symbol = found_off.display_symbol.upper()
            removed = 0
            for sub in alerts:
                if sub.target.casefold() == symbol.casefold():
                    removed += await self._store.remove_subscription_id(sub.id)
            if not removed:
                return Answer(f"{channel.mention} has no {echo(symbol)} alerts.")
            return Answer(
                f"Removed {plural(removed, 'alert')} on {echo(symbol)} in {channel.mention}."
            )
        found = await self._asset(_argument(asset))
        symbol = found.display_symbol.upper()
        self._check_caller(interaction, channel, None)
        self._check_channel(guild, channel, None)
        text = _argument(value or "")
        if not text:
            example = "5% 1h" if direction == "move" else "100000 (or 100000 rearm 0.5%)"
            raise Refusal(f"Give a value, e.g. `{example}`.")
        if direction == "move":
            move = parse_move(f"{symbol} {text}")
            kind = SubscriptionKind.MOVE
            params: dict[str, Any] = {
                "percent": f"{plain_number(move.percent)}%",
                "window": int(move.window),
            }
        else:
            request = parse_price(f"{symbol} {direction} {text}")
            kind = SubscriptionKind.PRICE
            params = {"direction": request.direction.value, "line": plain_number(request.line)}
            if request.rearm is not None:
                params["rearm"] = request.rearm
        self._validate(chat_key, kind, symbol, params)
        async with self._additions.hold(guild.id):
            count = sum(
                1
                for sub in await self._guild_subscriptions(guild)
                if sub.kind in (SubscriptionKind.PRICE, SubscriptionKind.MOVE)
            )
            if count >= self._limits.max_price_alerts:
                raise Refusal(
                    f"This server has {plural(count, 'price alert')}, the most it may; "
                    "remove one first (`/parti price` with direction `off`)."
                )
            label = describe_price(kind, symbol, params)
            await self._remember_channel(channel)
            added = await self._store.add_subscription(
                PLATFORM,
                chat_key,
                kind=kind,
                target=symbol,
                params=params,
                created_by=str(interaction.user.id),
                now=self._clock(),
            )
        if added is None:
            return Answer(f"{channel.mention} already has that alert: **{label}**.")
        return Answer(
            f"Alert set in {channel.mention}: **{label}**. Now {format_price(found.price)}."
        )

    # ---- /parti test, why, resume -----------------------------------------------------------

    async def test(
        self, interaction: Interaction, *, streamer: str, channel: discord.TextChannel
    ) -> Answer:
        guild = self._managed_guild(interaction)
        self._check_caller(interaction, channel, None)
        found = await self._resolve(streamer)
        existing = await self._channel_follows(str(channel.id), str(found.user_id))
        params = dict(existing[0].params) if existing else {}
        role = guild.get_role(int(params["role_id"])) if params.get("role_id") else None
        self._check_channel(guild, channel, role)
        view = await self._preview(found, channel.id)
        message = render.render(
            view, params.get("template"), mention_role=role.id if role else None
        )
        content = PREVIEW_NOTE + (f"\n{message.content}" if message.content else "")
        try:
            await channel.send(
                content,
                embed=discord.Embed.from_dict(message.embed),
                view=notify_view(found.user_id),
                allowed_mentions=discord.AllowedMentions.none(),
            )
        except discord.Forbidden as exc:
            raise Refusal(
                f"Discord refused my post in {channel.mention}: "
                f"{echo(redact(exc.text or 'forbidden'), 80)}."
            ) from None
        return Answer(
            f"Posted a preview of **{echo(found.user_name)}**'s alert in {channel.mention}."
        )

    async def why(
        self, interaction: Interaction, *, streamer: str, channel: discord.TextChannel | None
    ) -> Answer:
        found = await self._resolve_or_id(streamer)
        subject, name = str(found.user_id), f"**{echo(found.user_name)}**"
        guild = interaction.guild
        if guild is None:
            chats = [dm_chat_id(interaction.user.id)]
        elif channel is not None:
            chats = [str(channel.id)]
        else:
            chats = sorted(
                {
                    sub.chat_id
                    for sub in await self._guild_subscriptions(guild, SubscriptionKind.LIVE)
                    if sub.target == subject
                }
            )[:5]
            if not chats:
                return Answer(f"No channel in this server follows {name}.")
        lines = []
        for chat in chats:
            where = "Your DMs" if chat.startswith(DM_PREFIX) else f"<#{chat}>"
            decision = await self._store.last_decision(PLATFORM, chat, subject)
            follows = await self._channel_follows(chat, subject)
            note = "" if follows else " (doesn't follow them)"
            if decision is None:
                lines.append(f"{where}{note}: no decision yet (no live event since).")
            else:
                lines.append(
                    f"{where}{note}: {echo(decision.text, 300)} (<t:{int(decision.at)}:R>)"
                )
        return Answer(f"About {name}:\n" + within(lines, CONTENT_LIMIT - 200, separator="\n"))

    async def resume(self, interaction: Interaction, *, channel: discord.TextChannel) -> Answer:
        guild = self._managed_guild(interaction)
        self._check_caller(interaction, channel, None)
        chat = await self._store.get_chat(PLATFORM, str(channel.id))
        if chat is None or chat.paused_reason is None:
            return Answer(f"Alerts to {channel.mention} are not paused.")
        roles = [
            guild.get_role(int(sub.params["role_id"]))
            for sub in await self._store.list_subscriptions(
                platform=PLATFORM, chat_id=str(channel.id)
            )
            if sub.params.get("role_id")
        ]
        for role in [None, *(r for r in roles if r is not None)]:
            self._check_channel(guild, channel, role)
        await self._store.set_chat_fields(
            PLATFORM, str(channel.id), now=self._clock(), paused_reason=None
        )
        event(log, "bot.chat_resumed", chat=channel.id)
        return Answer(f"Resumed: alerts go to {channel.mention} again.")

    # ---- /parti list --------------------------------------------------------------------------

    async def list_alerts(self, interaction: Interaction) -> Answer:
        return await self._server_page(interaction, 0)

    async def _server_page(self, interaction: Interaction, page: int) -> Answer:
        guild = self._guild(interaction)
        subs = sorted(await self._guild_subscriptions(guild), key=lambda sub: sub.id)
        if not subs:
            return Answer("This server has no alerts yet. Try `/parti follow`.")
        pages, page = pages_of(len(subs), page, size=PAGE_SIZE)
        chunk = subs[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]
        paused = {
            chat: (await self._store.get_chat(PLATFORM, chat))
            for chat in sorted({sub.chat_id for sub in chunk})
        }
        lines = []
        for sub, label in zip(chunk, await self._labels(chunk), strict=True):
            line = f"{label} → <#{sub.chat_id}>"
            chat = paused[sub.chat_id]
            if chat is not None and chat.paused_reason is not None:
                line += " ⏸️ paused"
            lines.append(line)
        embed = discord.Embed(
            title=f"Alerts in {guild.name}"[:256],
            description="\n".join(lines),
            colour=render.COLOURS["live"],
        )
        embed.set_footer(text=f"{plural(len(subs), 'alert')} · page {page + 1} of {pages}")
        return Answer(embed=embed, view=page_view(SERVER_LIST, page, pages))

    async def _labels(self, subs: Sequence[Stored]) -> list[str]:
        names = await asyncio.gather(
            *(
                self._resolver.name_of(int(sub.target))
                for sub in subs
                if sub.kind == SubscriptionKind.LIVE
            )
        )
        named = iter(names)
        labels = []
        for sub in subs:
            if sub.kind == SubscriptionKind.LIVE:
                settings = describe_live(dict(sub.params))
                label = f"**{echo(next(named))}**" + (f" ({settings})" if settings else "")
            else:
                label = echo(describe_price(sub.kind, sub.target, sub.params), 80)
            labels.append(label)
        return labels

    # ---- /parti me ... -------------------------------------------------------------------------

    async def me_follow(self, interaction: Interaction, *, streamer: str) -> Answer:
        found = await self._resolve(streamer)
        return Answer(await self._add_dm(interaction.user, found))

    async def me_unfollow(self, interaction: Interaction, *, streamer: str) -> Answer:
        found = await self._resolve_or_id(streamer)
        removed = await self._store.remove_subscription(
            PLATFORM,
            dm_chat_id(interaction.user.id),
            kind=SubscriptionKind.LIVE,
            target=str(found.user_id),
        )
        name = f"**{echo(found.user_name)}**"
        if not removed:
            return Answer(f"You don't get DMs about {name}.")
        return Answer(f"You won't get DMs about {name} any more.")

    async def me_list(self, interaction: Interaction) -> Answer:
        return await self._member_page(interaction.user, 0)

    async def _member_page(self, user: discord.abc.User, page: int) -> Answer:
        subs = sorted(
            await self._store.list_subscriptions(
                platform=PLATFORM, chat_id=dm_chat_id(user.id), kind=SubscriptionKind.LIVE
            ),
            key=lambda sub: sub.id,
        )
        if not subs:
            return Answer("You get no DM alerts yet. Try `/parti me follow` or a Notify me button.")
        pages, page = pages_of(len(subs), page, size=PAGE_SIZE)
        chunk = subs[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]
        labels = await self._labels(chunk)
        embed = discord.Embed(
            title="Your DM alerts",
            description="\n".join(
                f"{page * PAGE_SIZE + i + 1}. {label}" for i, label in enumerate(labels)
            ),
            colour=render.COLOURS["live"],
        )
        embed.set_footer(text=f"{plural(len(subs), 'streamer')} · page {page + 1} of {pages}")
        return Answer(embed=embed, view=page_view(MEMBER_LIST, page, pages))

    async def _toggle_dm(self, interaction: Interaction, user_id: int) -> Answer:
        key = dm_chat_id(interaction.user.id)
        removed = await self._store.remove_subscription(
            PLATFORM, key, kind=SubscriptionKind.LIVE, target=str(user_id)
        )
        streamer = Streamer(user_id, await self._resolver.name_of(user_id))
        if removed:
            return Answer(f"You won't get DMs about **{echo(streamer.user_name)}** any more.")
        return Answer(await self._add_dm(interaction.user, streamer) + " Press again to stop.")

    async def _add_dm(self, user: discord.abc.User, streamer: Streamer) -> str:
        key, target = dm_chat_id(user.id), str(streamer.user_id)
        name = f"**{echo(streamer.user_name)}**"
        async with self._additions.hold(key):
            count = await self._store.count_subscriptions(PLATFORM, key, kind=SubscriptionKind.LIVE)
            if count >= self._limits.max_member_follows:
                if await self._channel_follows(key, target):
                    return f"You already get DMs about {name}."
                raise Refusal(
                    f"You follow {plural(count, 'streamer')} by DM, the most you may; "
                    "`/parti me unfollow` one first."
                )
            self._validate(key, SubscriptionKind.LIVE, target, {})
            now = self._clock()
            chat = await self._store.upsert_chat(
                PLATFORM, key, kind=ChatKind.PRIVATE.value, now=now, title=user.name
            )
            if chat.paused_reason is not None:  # asking again is the member's "resume"
                await self._store.set_chat_fields(PLATFORM, key, now=now, paused_reason=None)
            added = await self._store.add_subscription(
                PLATFORM,
                key,
                kind=SubscriptionKind.LIVE,
                target=target,
                params={},
                created_by=str(user.id),
                now=now,
            )
        if added is None:
            return f"You already get DMs about {name}."
        return (
            f"I'll DM you when {name} goes live "
            "(allow direct messages from this server's members so I can)."
        )

    # ---- autocomplete -----------------------------------------------------------------------

    async def streamer_choices(
        self, interaction: Interaction, current: str, *, followed: str | None
    ) -> list[app_commands.Choice[str]]:
        """Streamers for an option being typed: followed ones first (`followed`: "server" or
        "me"), then live channels, then Parti's look-up of the text (of a few characters, as
        often as the member's commands may run). Never raises."""
        try:
            async with asyncio.timeout(AUTOCOMPLETE_SECONDS):
                return await self._streamer_choices(interaction, current, followed)
        except Exception as exc:  # an answer of nothing beats an error while typing
            event(log, "bot.autocomplete_failed", logging.WARNING, error=short_error(exc))
            return []

    async def _streamer_choices(
        self, interaction: Interaction, current: str, followed: str | None
    ) -> list[app_commands.Choice[str]]:
        wanted = current.strip().casefold()
        choices: dict[int, str] = {}
        targets: list[str] = []
        if followed == "me":
            targets = [
                sub.target
                for sub in await self._store.list_subscriptions(
                    platform=PLATFORM,
                    chat_id=dm_chat_id(interaction.user.id),
                    kind=SubscriptionKind.LIVE,
                )
            ]
        elif followed == "server" and interaction.guild is not None:
            subs = await self._guild_subscriptions(interaction.guild, SubscriptionKind.LIVE)
            targets = sorted({sub.target for sub in subs})
        ids = [int(t) for t in targets if t.isascii() and t.isdigit()][:CHOICES_LIMIT]
        for user_id, name in zip(
            ids, await asyncio.gather(*(self._resolver.name_of(i) for i in ids)), strict=True
        ):
            if wanted in name.casefold() or wanted == str(user_id):
                choices.setdefault(user_id, f"{name} (followed)")
        try:
            live = await self._live_list()
        except PartiError:
            live = []
        for channel in live:
            if channel.user_name and wanted in channel.user_name.casefold():
                viewers = f", {channel.viewers_count:,} watching" if channel.viewers_count else ""
                choices.setdefault(channel.user_id, f"{channel.user_name} (live{viewers})")
        if (
            len(wanted) >= LOOKUP_MIN_CHARS
            and not any(wanted == label.casefold().split(" (")[0] for label in choices.values())
            and self._lookups.check(interaction.user.id, self._clock()) is Flood.ALLOW
        ):
            try:
                found = await self._resolver.resolve(current)
            except (StreamerNotFound, PartiError):
                found = None
            if found is not None:
                choices.setdefault(found.user_id, found.user_name)
        return [
            app_commands.Choice(name=_choice_name(label), value=str(user_id))
            for user_id, label in list(choices.items())[:CHOICES_LIMIT]
        ]

    async def asset_choices(self, current: str) -> list[app_commands.Choice[str]]:
        try:
            async with asyncio.timeout(AUTOCOMPLETE_SECONDS):
                prices = await self._prices()
        except Exception as exc:
            event(log, "bot.autocomplete_failed", logging.WARNING, error=short_error(exc))
            return []
        wanted = current.strip().casefold()
        found = [
            asset
            for asset in prices
            if wanted in asset.display_symbol.casefold()
            or wanted in (asset.ticker or "").casefold()
        ]
        return [
            app_commands.Choice(
                name=_choice_name(f"{a.display_symbol.upper()} · {format_price(a.price)}"),
                value=a.display_symbol.upper()[:100],
            )
            for a in found[:CHOICES_LIMIT]
        ]

    async def category_choices(self, current: str) -> list[app_commands.Choice[str]]:
        try:
            async with asyncio.timeout(AUTOCOMPLETE_SECONDS):
                categories = await self._categories()
        except Exception as exc:
            event(log, "bot.autocomplete_failed", logging.WARNING, error=short_error(exc))
            return []
        head, _, last = current.rpartition(",")
        prefix = f"{head.strip()}, " if head.strip() else ""
        wanted = last.strip().casefold()
        labels = sorted({c.label for c in categories if wanted in c.label.casefold()})
        return [
            app_commands.Choice(name=_choice_name(prefix + label), value=(prefix + label)[:100])
            for label in labels[:CHOICES_LIMIT]
            if len(prefix + label) <= 100
        ]

    # ---- helpers ------------------------------------------------------------------------------

    def _guild(self, interaction: Interaction) -> discord.Guild:
        if interaction.guild_id is None:
            raise Refusal(IN_A_SERVER)
        guild = interaction.guild
        if guild is None or guild.me is None:
            raise Refusal("I can't see this server yet; please try again in a minute.")
        return guild

    def _managed_guild(self, interaction: Interaction) -> discord.Guild:
        """The server, when the member may change its alerts (checked on every command:
        `default_permissions` is only a hint that admins can change)."""
        guild = self._guild(interaction)
        perms = interaction.permissions
        if not (perms.manage_guild or perms.administrator):
            raise Refusal(MANAGERS_ONLY)
        return guild

    @staticmethod
    def _check_role(guild: discord.Guild, role: discord.Role | None) -> None:
        if role is None:
            return
        if role.is_default():
            raise Refusal("Pick a role other than @everyone to ping.")
        if role.managed:
            raise Refusal(f"{_role_name(role)} belongs to an integration; pick another role.")

    @staticmethod
    def _check_channel(
        guild: discord.Guild, channel: discord.TextChannel, role: discord.Role | None
    ) -> None:
        me = guild.me
        if me is None:
            raise Refusal("I can't see this server yet; please try again in a minute.")
        missing = missing_permissions(channel.permissions_for(me), role=role)
        if missing:
            raise Refusal(missing_text(channel.mention, missing))

    @staticmethod
    def _check_caller(
        interaction: Interaction, channel: discord.TextChannel, role: discord.Role | None
    ) -> None:
        """The member may have the bot post in `channel` (and ping `role`) only where Discord
        lets them do it themselves: Manage Server alone is no right to a channel."""
        caller = interaction.user
        perms = (
            channel.permissions_for(caller)
            if isinstance(caller, discord.Member)
            else discord.Permissions.none()
        )
        if not (perms.view_channel and perms.send_messages):
            raise Refusal(
                f"You can't post in {channel.mention} yourself, so I won't post there for you: "
                "you need **View Channel** and **Send Messages** there."
            )
        if role is not None and not role.mentionable and not perms.mention_everyone:
            raise Refusal(
                f"You can't ping {_role_name(role)} yourself (it isn't mentionable and you lack "
                "**Mention @everyone, @here and All Roles**), so I won't ping it for you."
            )

    async def _remember_channel(self, channel: discord.TextChannel) -> bool:
        """Record the channel's chat row; a pause ends (a channel is only paused when the
        bot lost it, and its permissions there were just checked). True when it was paused."""
        key, now = str(channel.id), self._clock()
        chat = await self._store.upsert_chat(
            PLATFORM,
            key,
            kind=ChatKind.GUILD_CHANNEL.value,
            now=now,
            title=f"#{channel.name}",
            guild_id=str(channel.guild.id),
        )
        self._guild_of_chat[key] = str(channel.guild.id)
        if chat.paused_reason is not None:
            await self._store.set_chat_fields(PLATFORM, key, now=now, paused_reason=None)
            return True
        return False

    async def _guild_subscriptions(
        self, guild: discord.Guild, kind: str | None = None
    ) -> list[Stored]:
        """The subscriptions of every channel of this server, deleted channels included."""
        current = {str(c.id) for c in guild.channels} | {str(t.id) for t in guild.threads}
        mine = []
        for sub in await self._store.list_subscriptions(platform=PLATFORM, kind=kind):
            if sub.chat_id.startswith(DM_PREFIX):
                continue
            if sub.chat_id in current or await self._chat_guild(sub.chat_id) == str(guild.id):
                mine.append(sub)
        return mine

    async def _chat_guild(self, chat_id: str) -> str | None:
        if chat_id not in self._guild_of_chat:  # a channel never changes server
            chat = await self._store.get_chat(PLATFORM, chat_id)
            self._guild_of_chat[chat_id] = chat.guild_id if chat is not None else None
        return self._guild_of_chat[chat_id]

    async def _channel_follows(self, chat_key: str, target: str) -> list[Stored]:
        subs = await self._store.list_subscriptions(
            platform=PLATFORM, chat_id=chat_key, kind=SubscriptionKind.LIVE
        )
        return [sub for sub in subs if sub.target == target]

    def _validate(self, chat_key: str, kind: str, target: str, params: dict[str, Any]) -> None:
        if chat_key.startswith(DM_PREFIX):
            destination = discord_dm_destination(chat_key[len(DM_PREFIX) :])
        else:
            destination = discord_channel_destination(chat_key)
        detail = subscription_problem(
            platform=PLATFORM,
            chat_id=chat_key,
            kind=kind,
            target=target,
            destination=destination,
            params=params,
        )
        if detail is not None:
            for setting, option in OPTION_OF.items():  # say it as the command's option names
                detail = detail.replace(f"{setting}:", f"{option}:", 1)
            raise Refusal(f"Can't set that: {echo(detail.rstrip('.'), 200)}.")

    async def _resolve(self, text: str) -> Streamer:
        given = _argument(text)
        try:
            return await self._resolver.resolve(given)
        except StreamerNotFound:
            raise Refusal(
                f"I can't find {echo(given)} on Parti. Try their Parti name, the link to their "
                "page (https://parti.com/creator/...) or their user id."
            ) from None

    async def _resolve_or_id(self, text: str) -> Streamer:
        """A streamer; a user id needs no look-up (a deleted user, or Parti down)."""
        given = _argument(text)
        try:
            return await self._resolve(given)
        except (Refusal, PartiError):
            if not (given.isascii() and given.isdigit() and 0 < len(given) <= 19):
                raise
            return Streamer(int(given), f"user {given}")

    async def _cached(self, key: str, ttl: float, load: Callable[[], Awaitable[T]]) -> T:
        now = time.monotonic()
        entry = self._cache.get(key)
        if entry is not None and entry[0] > now:
            value: T = entry[1]
            return value
        loaded = await load()
        self._cache[key] = (now + ttl, loaded)
        return loaded

    async def _live_list(self) -> list[LiveChannel]:
        return await self._cached("live", LIVE_CACHE_SECONDS, lambda: self._client.live(limit=100))

    async def _prices(self) -> list[AssetPrice]:
        return await self._cached("prices", LIVE_CACHE_SECONDS, self._client.prices)

    async def _categories(self) -> list[Category]:
        return await self._cached("categories", CATEGORY_CACHE_SECONDS, self._client.categories)

    async def _asset(self, text: str) -> AssetPrice:
        prices = await self._client.prices()
        asset = asset_named(prices, text)
        if asset is not None:
            return asset
        known = known_assets(prices)
        raise Refusal(
            f"I don't know the asset {echo(text)}." + (f" Known: {echo(known)}." if known else "")
        )

    async def _preview(self, streamer: Streamer, channel_id: int) -> AlertView:
        """A live alert's view for this streamer, from the live list (or the profile)."""
        live = next((c for c in await self._live_list() if c.user_id == streamer.user_id), None)
        profile: UserProfile | None
        try:
            profile = await self._client.profile(streamer.user_id)
        except PartiError:
            profile = None
        data: dict[str, Any] = {"user_id": streamer.user_id, "user_name": streamer.user_name}
        if live is not None:
            data |= live.model_dump(
                include={
                    "viewers_count",
                    "category_name",
                    "event_title",
                    "event_id",
                    "livestream_id",
                    "avatar_link",
                    "event_file",
                    "social_media",
                    "social_username",
                },
                exclude_none=True,
            )
        elif profile is not None:
            data |= {
                "social_media": profile.social_media,
                "social_username": profile.social_username,
            }
        now = self._clock()
        match = Match(
            rule="preview",
            destination=discord_channel_destination(channel_id),
            kind="live",
            subject=str(streamer.user_id),
            identity="preview",
            at=now,
            event=ChannelLive.model_validate(data),
        )
        return view_of(match, profile)


def _argument(text: str) -> str:
    try:
        return check_argument(text)
    except CommandError as exc:
        raise Refusal(plain(exc.html)) from None


def _viewers(text: str) -> int:
    cleaned = text.replace(",", "").replace("_", "")
    if not (cleaned.isascii() and cleaned.isdigit()) or int(cleaned) > MAX_VIEWERS:
        raise Refusal(f"min_viewers is a whole number from 0 to {MAX_VIEWERS:,}.")
    return int(cleaned)


def _find_role(guild: discord.Guild, text: str) -> discord.Role:
    """A role by mention (`<@&id>`), id or name."""
    found = re.fullmatch(r"<@&([0-9]{1,20})>|@?([0-9]{1,20})", text)
    role = guild.get_role(int(found.group(1) or found.group(2))) if found else None
    if role is None:
        name = text.removeprefix("@").casefold()
        role = next((r for r in guild.roles if r.name.casefold() == name), None)
    if role is None:
        raise Refusal(f"There is no role {echo(text)} in this server.")
    return role


def _choice_name(label: str) -> str:
    return cut(" ".join(label.split()), 100)


# ---- the command tree -----------------------------------------------------------------------

Describe = app_commands.describe
Choice = app_commands.Choice

ON_END_CHOICES: Final = [Choice(name=text, value=value) for value, text in ON_END.items()]
SETTING_CHOICES: Final = [Choice(name=name, value=name) for name in LIVE_SETTINGS]
DIRECTION_CHOICES: Final = [
    Choice(name="above a line", value="above"),
    Choice(name="below a line", value="below"),
    Choice(name="moves by a percentage", value="move"),
    Choice(name="off (remove this asset's alerts)", value="off"),
]


def build_tree(tree: app_commands.CommandTree[Any]) -> None:
    """The `/parti` group on `tree`; every command hands its interaction to the client's
    DiscordCommands (so the tree can be built, and synced, without one)."""
    parti = app_commands.Group(
        name="parti",
        description="Parti go-live and price alerts",
        allowed_contexts=app_commands.AppCommandContext(guild=True, dm_channel=True),
        allowed_installs=app_commands.AppInstallationType(guild=True),
    )
    me = app_commands.Group(name="me", description="Your own alerts, by DM", parent=parti)

    async def run(
        interaction: Interaction, what: str, action: Callable[[DiscordCommands], Awaitable[Answer]]
    ) -> None:
        bot = _bot_of(interaction)
        if bot is None:
            await _unavailable(interaction)
            return
        await bot.serve(interaction, what, lambda: action(bot))

    def streamer_choices(
        followed: str | None,
    ) -> Callable[[Interaction, str], Coroutine[Any, Any, list[Choice[str]]]]:
        async def choices(interaction: Interaction, current: str) -> list[Choice[str]]:
            bot = _bot_of(interaction)
            if bot is None:
                return []
            return await bot.streamer_choices(interaction, current, followed=followed)

        return choices

    streamers = streamer_choices(None)  # live channels, then Parti's look-up
    followed = streamer_choices("server")  # the server's follows first
    mine = streamer_choices("me")  # the member's DM follows first

    async def assets(interaction: Interaction, current: str) -> list[Choice[str]]:
        bot = _bot_of(interaction)
        return [] if bot is None else await bot.asset_choices(current)

    async def categories(interaction: Interaction, current: str) -> list[Choice[str]]:
        bot = _bot_of(interaction)
        return [] if bot is None else await bot.category_choices(current)

    @parti.command(name="follow", description="Post in a channel when a streamer goes live")
    @Describe(
        streamer="Parti name, parti.com link or user id",
        channel="Where the alerts go",
        role="A role to ping",
        message="Your own text (Jinja: {{ user_name }}, {{ title }}, {{ url }}...)",
        category="Only streams in these categories (comma-separated)",
        title="Only streams whose title matches this regular expression",
        min_viewers="Only when at least this many watch",
        on_end="What happens to the alert when the stream ends",
    )
    @app_commands.autocomplete(streamer=streamers, category=categories)
    @app_commands.choices(on_end=ON_END_CHOICES)
    async def follow(
        interaction: Interaction,
        streamer: app_commands.Range[str, 1, 200],
        channel: discord.TextChannel,
        role: discord.Role | None = None,
        message: app_commands.Range[str, 1, 1500] | None = None,
        category: app_commands.Range[str, 1, 200] | None = None,
        title: app_commands.Range[str, 1, 200] | None = None,
        min_viewers: app_commands.Range[int, 0, 10_000_000] | None = None,
        on_end: Choice[str] | None = None,
    ) -> None:
        await run(
            interaction,
            "follow",
            lambda bot: bot.follow(
                interaction,
                streamer=streamer,
                channel=channel,
                role=role,
                message=message,
                category=category,
                title=title,
                min_viewers=min_viewers,
                on_end=on_end.value if on_end else None,
            ),
        )

    @parti.command(name="unfollow", description="Stop a streamer's alerts")
    @Describe(streamer="The streamer", channel="Only in this channel (default: everywhere)")
    @app_commands.autocomplete(streamer=followed)
    async def unfollow(
        interaction: Interaction,
        streamer: app_commands.Range[str, 1, 200],
        channel: discord.TextChannel | None = None,
    ) -> None:
        await run(
            interaction,
            "unfollow",
            lambda bot: bot.unfollow(interaction, streamer=streamer, channel=channel),
        )

    @parti.command(name="list", description="This server's alerts")
    async def list_(interaction: Interaction) -> None:
        await run(interaction, "list", lambda bot: bot.list_alerts(interaction))

    @parti.command(name="edit", description="Change one setting of a streamer's alerts")
    @Describe(
        streamer="The streamer",
        channel="The channel its alerts go to",
        setting="The setting to change",
        value="The new value (empty or none: remove the setting)",
    )
    @app_commands.autocomplete(streamer=followed)
    @app_commands.choices(setting=SETTING_CHOICES)
    async def edit(
        interaction: Interaction,
        streamer: app_commands.Range[str, 1, 200],
        channel: discord.TextChannel,
        setting: Choice[str],
        value: app_commands.Range[str, 1, 1500] | None = None,
    ) -> None:
        await run(
            interaction,
            "edit",
            lambda bot: bot.edit(
                interaction, streamer=streamer, channel=channel, setting=setting.value, value=value
            ),
        )

    @parti.command(name="price", description="Alert a channel when a price crosses a line or moves")
    @Describe(
        asset="BTC, ETH, TSLA...",
        direction="Above or below a line, a move, or off",
        channel="Where the alerts go",
        value="The line (100000, or 100000 rearm 0.5%) or the move (5% 1h)",
    )
    @app_commands.autocomplete(asset=assets)
    @app_commands.choices(direction=DIRECTION_CHOICES)
    async def price(
        interaction: Interaction,
        asset: app_commands.Range[str, 1, 40],
        direction: Choice[str],
        channel: discord.TextChannel,
        value: app_commands.Range[str, 1, 100] | None = None,
    ) -> None:
        await run(
            interaction,
            "price",
            lambda bot: bot.price(
                interaction, asset=asset, direction=direction.value, channel=channel, value=value
            ),
        )

    @parti.command(name="test", description="Post a preview of a streamer's alert")
    @Describe(streamer="The streamer", channel="Where to post the preview")
    @app_commands.autocomplete(streamer=followed)
    async def test(
        interaction: Interaction,
        streamer: app_commands.Range[str, 1, 200],
        channel: discord.TextChannel,
    ) -> None:
        await run(
            interaction,
            "test",
            lambda bot: bot.test(interaction, streamer=streamer, channel=channel),
        )

    @parti.command(name="why", description="Why an alert came or not")
    @Describe(streamer="The streamer", channel="Only this channel")
    @app_commands.autocomplete(streamer=followed)
    async def why(
        interaction: Interaction,
        streamer: app_commands.Range[str, 1, 200],
        channel: discord.TextChannel | None = None,
    ) -> None:
        await run(
            interaction, "why", lambda bot: bot.why(interaction, streamer=streamer, channel=channel)
        )

    @parti.command(name="resume", description="Send alerts to a paused channel again")
    @Describe(channel="The paused channel")
    async def resume(interaction: Interaction, channel: discord.TextChannel) -> None:
        await run(interaction, "resume", lambda bot: bot.resume(interaction, channel=channel))

    @me.command(name="follow", description="Get a DM when a streamer goes live")
    @Describe(streamer="Parti name, parti.com link or user id")
    @app_commands.autocomplete(streamer=streamers)
    async def me_follow(
        interaction: Interaction, streamer: app_commands.Range[str, 1, 200]
    ) -> None:
        await run(
            interaction, "me follow", lambda bot: bot.me_follow(interaction, streamer=streamer)
        )

    @me.command(name="unfollow", description="Stop a streamer's DMs")
    @Describe(streamer="The streamer")
    @app_commands.autocomplete(streamer=mine)
    async def me_unfollow(
        interaction: Interaction, streamer: app_commands.Range[str, 1, 200]
    ) -> None:
        await run(
            interaction, "me unfollow", lambda bot: bot.me_unfollow(interaction, streamer=streamer)
        )

    @me.command(name="list", description="The streamers you get DMs about")
    async def me_list(interaction: Interaction) -> None:
        await run(interaction, "me list", lambda bot: bot.me_list(interaction))

    @tree.error
    async def failed(interaction: Interaction, error: app_commands.AppCommandError) -> None:
        bot = _bot_of(interaction)
        if bot is not None:
            await bot.command_failed(interaction, error)

    tree.add_command(parti)


# ---- syncing one server (the CLI) ------------------------------------------------------------


async def sync_guild(
    token: str, api_url: str, guild_id: int, *, timeout: float = 30.0
) -> list[str]:
    """Register the commands in one server (they show at once there; global ones can take a
    while): `notifier discord sync --guild ID`. Returns the synced command names; raises
    DiscordBotError (one line, no token), also when Discord does not answer in `timeout`
    seconds (discord.py's own HTTP client would wait 5 minutes)."""
    register_secret(token)
    point_at(api_url)
    bot = _BotClient(None, sync=False, guild_ready_timeout=0.0)
    waiting = asyncio.timeout(timeout)
    try:
        async with waiting:
            await bot.login(token)
            where = discord.Object(id=guild_id)
            bot.tree.copy_global_to(guild=where)
            synced = await bot.tree.sync(guild=where)
    except TimeoutError as exc:
        if waiting.expired():
            raise DiscordBotError(
                f"no answer from Discord within {timeout:g} s (or its rate limit still holds)"
            ) from None
        raise DiscordBotError(f"syncing the commands failed: {short_error(exc)}") from None
    except discord.RateLimited as exc:  # longer than discord.py waits on its own
        raise DiscordBotError(
            f"Discord rate-limits this for {exc.retry_after:g} s: try again then"
        ) from None
    except (TypeError, KeyError, ValueError) as exc:  # an answer that is not Discord's
        raise DiscordBotError(
            f"{api_url} did not answer as Discord does ({short_error(exc)})"
        ) from None
    except discord.LoginFailure:
        raise DiscordBotError("Discord refused the bot token (login)") from None
    except discord.Forbidden:
        raise DiscordBotError(
            f"the bot may not add commands to server {guild_id}: invite it there with the "
            "applications.commands scope"
        ) from None
    except (discord.HTTPException, aiohttp.ClientError, OSError) as exc:
        raise DiscordBotError(f"syncing the commands failed: {short_error(exc)}") from None
    finally:
        await bot.close()
    return [command.name for command in synced]


__all__ = [
    "Answer",
    "DiscordBotError",
    "DiscordCommands",
    "DiscordLimits",
    "build_tree",
    "dm_chat_id",
    "live_alert_components",
    "missing_permissions",
    "notify_button_components",
    "pause_channel",
    "sync_guild",
]
