"""A fake Discord REST API on 127.0.0.1: webhooks, bot channel and DM messages, interaction
callbacks and followups, application commands, and the guilds, channels, roles and
permissions that the fake gateway (tests/fakes/discord_gateway.py) serves too. Records
requests, checks Discord's limits, `allowed_mentions` and permissions, works out who would
have been pinged, announces rate-limit buckets in X-RateLimit-* headers (and enforces them,
5 requests per 2 s per webhook or channel, under `limits_scale`), and fails on request."""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import itertools
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.common import Recorder, Scripted, stats_of

BOT_TOKEN = "fake-bot-token"
BOT_USER_ID = 42
BOT_USERNAME = "fakebot"
# Applications made since 2020 share their id with their bot user.
APPLICATION_ID = BOT_USER_ID


class Permission(enum.IntFlag):
    """Discord's permission bits (the ones a notification bot meets)."""

    CREATE_INSTANT_INVITE = 1 << 0
    KICK_MEMBERS = 1 << 1
    BAN_MEMBERS = 1 << 2
    ADMINISTRATOR = 1 << 3
    MANAGE_CHANNELS = 1 << 4
    MANAGE_GUILD = 1 << 5
    ADD_REACTIONS = 1 << 6
    VIEW_AUDIT_LOG = 1 << 7
    VIEW_CHANNEL = 1 << 10
    SEND_MESSAGES = 1 << 11
    SEND_TTS_MESSAGES = 1 << 12
    MANAGE_MESSAGES = 1 << 13
    EMBED_LINKS = 1 << 14
    ATTACH_FILES = 1 << 15
    READ_MESSAGE_HISTORY = 1 << 16
    MENTION_EVERYONE = 1 << 17
    USE_EXTERNAL_EMOJIS = 1 << 18
    CHANGE_NICKNAME = 1 << 26
    MANAGE_ROLES = 1 << 28
    MANAGE_WEBHOOKS = 1 << 29
    USE_APPLICATION_COMMANDS = 1 << 31
    SEND_MESSAGES_IN_THREADS = 1 << 38


P = Permission
# Every permission bit Discord defines, and those that belong to channels (the values of
# discord.py 2.7's Permissions.all() and Permissions.all_channel()).
ALL_PERMISSIONS = 0x1F7FFFFFFFFFFF
CHANNEL_PERMISSIONS = 0x1E64FDB3F7FF51
# Roughly what a new server gives @everyone.
DEFAULT_EVERYONE = (
    P.VIEW_CHANNEL
    | P.SEND_MESSAGES
    | P.READ_MESSAGE_HISTORY
    | P.EMBED_LINKS
    | P.ATTACH_FILES
    | P.ADD_REACTIONS
    | P.USE_EXTERNAL_EMOJIS
    | P.USE_APPLICATION_COMMANDS
    | P.CREATE_INSTANT_INVITE
    | P.CHANGE_NICKNAME
)
# What the bot's managed role gets from an invite asking for view, send, embed and history.
DEFAULT_BOT = P.VIEW_CHANNEL | P.SEND_MESSAGES | P.EMBED_LINKS | P.READ_MESSAGE_HISTORY
# app_permissions Discord reports in a DM with the bot.
DM_PERMISSIONS = (
    P.VIEW_CHANNEL
    | P.SEND_MESSAGES
    | P.READ_MESSAGE_HISTORY
    | P.ADD_REACTIONS
    | P.ATTACH_FILES
    | P.EMBED_LINKS
    | P.MENTION_EVERYONE
    | P.USE_EXTERNAL_EMOJIS
)
# Without SEND_MESSAGES these are implicitly denied too (Discord's permission docs).
_NEEDS_SEND = P.MENTION_EVERYONE | P.SEND_TTS_MESSAGES | P.ATTACH_FILES | P.EMBED_LINKS

EPHEMERAL = 1 << 6
_CALLBACK_FLAGS = (1 << 2) | EPHEMERAL | (1 << 12) | (1 << 13) | (1 << 15)
_COMPONENTS_V2 = 1 << 15

# Interaction types and the callback types Discord accepts for each.
COMMAND, COMPONENT, AUTOCOMPLETE, MODAL_SUBMIT = 2, 3, 4, 5
_CALLBACKS_FOR = {
    COMMAND: {4, 5, 9},
    COMPONENT: {4, 5, 6, 7, 9},
    AUTOCOMPLETE: {8},
    MODAL_SUBMIT: {4, 5, 6, 7},
}
# Option types whose values are ids with resolved data.
SUBCOMMAND, GROUP, STRING, INTEGER, BOOLEAN, USER, CHANNEL, ROLE, MENTIONABLE, NUMBER = range(1, 11)

# Without limits_scale the fake never answers 429 and announces a roomy bucket so that
# functional tests are never slowed down by a library that honours the headers.
_ROOMY = (50, 2.0)
_WINDOW_SECONDS = 2.0


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # discord.py reads JSON only when Content-Type is exactly application/json.
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def _error(status: int, code: int, message: str, **extra: Any) -> web.Response:
    return _json({"message": message, "code": code, **extra}, status)


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def embed_problems(embed: dict[str, Any]) -> list[str]:
    problems = []
    limits = {"title": 256, "description": 4096}
    for key, limit in limits.items():
        if len(embed.get(key, "")) > limit:
            problems.append(f"embed.{key} over {limit}")
    if len(embed.get("footer", {}).get("text", "")) > 2048:
        problems.append("embed.footer over 2048")
    if len(embed.get("author", {}).get("name", "")) > 256:
        problems.append("embed.author.name over 256")
    fields = embed.get("fields", [])
    if len(fields) > 25:
        problems.append("more than 25 fields")
    total = sum(len(embed.get(k, "")) for k in limits)
    total += len(embed.get("footer", {}).get("text", "")) + len(
        embed.get("author", {}).get("name", "")
    )
    for item in fields:
        if len(item.get("name", "")) > 256 or len(item.get("value", "")) > 1024:
            problems.append("field over its limit")
        total += len(item.get("name", "")) + len(item.get("value", ""))
    if total > 6000:
        problems.append("embed text over 6000")
    return problems


def pinged(content: str, allowed: dict[str, Any]) -> dict[str, Any]:
    """Who Discord would notify for this content under these allowed_mentions."""
    parse = set(allowed.get("parse", []))
    roles = {int(r) for r in allowed.get("roles", [])}
    users = {int(u) for u in allowed.get("users", [])}
    everyone = "everyone" in parse and bool(re.search(r"@(everyone|here)", content))
    role_hits = {int(r) for r in re.findall(r"<@&(\d+)>", content)}
    user_hits = {int(u) for u in re.findall(r"<@!?(\d+)>", content)}
    return {
        "everyone": everyone,
        "roles": sorted(r for r in role_hits if "roles" in parse or r in roles),
        "users": sorted(u for u in user_hits if "users" in parse or u in users),
    }


_NO_PINGS: dict[str, Any] = {"everyone": False, "roles": [], "users": []}
# Without allowed_mentions a bot's message parses every mention in its text.
_PARSE_ALL = {"parse": ["everyone", "roles", "users"]}


def component_problems(components: list[dict[str, Any]], *, flags: int = 0) -> list[str]:
    """Discord's rules for message components (action rows of buttons or one select)."""
    problems: list[str] = []
    custom_ids: list[str] = []

    def visit(item: dict[str, Any]) -> None:
        kind = item.get("type")
        if kind == 2:  # button
            style = item.get("style")
            if style == 5:
                if not item.get("url") or "custom_id" in item:
                    problems.append("a link button needs a url and no custom_id")
            elif style != 6 and not item.get("custom_id"):
                problems.append("a button needs a custom_id")
            if len(item.get("label") or "") > 80:
                problems.append("button label over 80")
        if "custom_id" in item:
            custom_id = str(item["custom_id"])
            if not 1 <= len(custom_id) <= 100:
                problems.append(f"custom_id of {len(custom_id)} characters (1 to 100)")
            custom_ids.append(custom_id)
        for child in item.get("components") or []:
            visit(child)
        if isinstance(item.get("accessory"), dict):
            visit(item["accessory"])

    if flags & _COMPONENTS_V2:
        for item in components:
            visit(item)
    else:
        if len(components) > 5:
            problems.append(f"{len(components)} action rows (at most 5)")
        for row in components:
            if row.get("type") != 1:
                problems.append("top-level components must be action rows")
                continue
            children = row.get("components") or []
            buttons = [c for c in children if c.get("type") == 2]
            selects = [c for c in children if c.get("type") in (3, 5, 6, 7, 8)]
            if not children:
                problems.append("an empty action row")
            if len(buttons) > 5:
                problems.append(f"{len(buttons)} buttons in a row (at most 5)")
            if selects and len(children) > 1:
                problems.append("a select menu must be alone in its row")
            visit(row)
    if len(custom_ids) != len(set(custom_ids)):
        problems.append("custom_ids must be unique in a message")
    return problems


def _name_ok(name: Any) -> bool:
    return (
        isinstance(name, str)
        and 1 <= len(name) <= 32
        and all(c.isalnum() or c in "-_'" for c in name)
        and name == name.lower()
    )


def _option_problems(options: list[dict[str, Any]], where: str) -> list[str]:
    problems: list[str] = []
    if len(options) > 25:
        problems.append(f"{where}: {len(options)} options (at most 25)")
    names = [o.get("name") for o in options]
    if len(names) != len(set(names)):
        problems.append(f"{where}: duplicate option names")
    nested = [o for o in options if o.get("type") in (SUBCOMMAND, GROUP)]
    if nested and len(nested) != len(options):
        problems.append(f"{where}: subcommands and plain options cannot be mixed")
    seen_optional = False
    for option in options:
        name, kind = option.get("name"), option.get("type")
        here = f"{where}.{name}"
        if not _name_ok(name):
            problems.append(f"{here}: name must be 1-32 lowercase letters, digits, - or _")
        if not 1 <= len(option.get("description") or "") <= 100:
            problems.append(f"{here}: description must be 1-100 characters")
        if kind not in range(1, 12):
            problems.append(f"{here}: unknown option type {kind}")
        if kind in (SUBCOMMAND, GROUP):
            children = option.get("options") or []
            if kind == GROUP and any(c.get("type") != SUBCOMMAND for c in children):
                problems.append(f"{here}: a group holds only subcommands")
            if kind == SUBCOMMAND and any(c.get("type") in (SUBCOMMAND, GROUP) for c in children):
                problems.append(f"{here}: a subcommand cannot hold subcommands")
            problems += _option_problems(children, here)
            continue
        if option.get("required"):
            if seen_optional:
                problems.append(f"{here}: required options must come before optional ones")
        else:
            seen_optional = True
        choices = option.get("choices") or []
        if len(choices) > 25:
            problems.append(f"{here}: {len(choices)} choices (at most 25)")
        if choices and option.get("autocomplete"):
            problems.append(f"{here}: choices and autocomplete exclude each other")
        for choice in choices:
            if not 1 <= len(choice.get("name") or "") <= 100:
                problems.append(f"{here}: choice name must be 1-100 characters")
            if isinstance(choice.get("value"), str) and len(choice["value"]) > 100:
                problems.append(f"{here}: choice value over 100 characters")
    return problems


def _text_size(command: dict[str, Any]) -> int:
    size = len(command.get("name") or "") + len(command.get("description") or "")
    for option in command.get("options") or []:
        size += _text_size(option)
    for choice in command.get("choices") or []:
        size += len(choice.get("name") or "") + len(str(choice.get("value") or ""))
    return size


def command_problems(commands: Any) -> list[str]:
    """Discord's checks on a bulk overwrite of application commands."""
    if not isinstance(commands, list):
        return ["the body must be a list of commands"]
    problems: list[str] = []
    seen: set[tuple[Any, Any]] = set()
    counts = {1: 0, 2: 0, 3: 0}
    for command in commands:
        name, kind = command.get("name"), command.get("type", 1)
        where = f"/{name}"
        counts[kind] = counts.get(kind, 0) + 1
        if (name, kind) in seen:
            problems.append(f"{where}: duplicate command name")
        seen.add((name, kind))
        if kind == 1:
            if not _name_ok(name):
                problems.append(f"{where}: name must be 1-32 lowercase letters, digits, - or _")
            if not 1 <= len(command.get("description") or "") <= 100:
                problems.append(f"{where}: description must be 1-100 characters")
        elif command.get("description"):
            problems.append(f"{where}: user and message commands have an empty description")
        problems += _option_problems(command.get("options") or [], where)
        if _text_size(command) > 4000:
            problems.append(f"{where}: over 4000 characters of names and descriptions")
    if counts[1] > 100:
        problems.append(f"{counts[1]} slash commands (at most 100)")
    if counts[2] > 5 or counts[3] > 5:
        problems.append("at most 5 user and 5 message commands")
    return problems


@dataclass
class Overwrite:
    id: int
    type: int  # 0 role, 1 member
    allow: int = 0
    deny: int = 0


@dataclass
class FakeRole:
    id: int
    name: str
    permissions: int
    position: int = 0
    mentionable: bool = False
    managed: bool = False
    bot_id: int | None = None


@dataclass
class FakeChannel:
    id: int
    guild_id: int
    name: str
    type: int = 0
    position: int = 0
    overwrites: dict[int, Overwrite] = field(default_factory=dict)


@dataclass
class FakeMember:
    user_id: int
    username: str
    roles: list[int] = field(default_factory=list)
    bot: bool = False


@dataclass
class FakeGuild:
    id: int
    name: str
    owner_id: int
    bot_role_id: int
    roles: dict[int, FakeRole] = field(default_factory=dict)
    channels: dict[int, FakeChannel] = field(default_factory=dict)
    members: dict[int, FakeMember] = field(default_factory=dict)
    system_channel_id: int | None = None
    locale: str = "en-US"


@dataclass
class FakeInteraction:
    """One interaction the gateway dispatched, and what the bot answered."""

    id: int
    token: str
    type: int
    guild_id: int | None
    channel_id: int
    user_id: int
    message_id: int | None = None  # the message a pressed component sits on
    payload: dict[str, Any] = field(default_factory=dict)
    response_type: int | None = None
    original_id: int | None = None  # the message a type 4 or 5 response made
    followups: list[int] = field(default_factory=list)


class _Bucket:
    """A rate-limit bucket as Discord counts it: `limit` requests, then a full reset
    `per` seconds after the window opened (what X-RateLimit-Reset-After promises)."""

    def __init__(self, name: str, limit: int, per: float) -> None:
        self.hash = hashlib.sha1(name.encode()).hexdigest()[:16]
        self.limit = limit
        self.per = per
        self.used = 0
        self.resets_at = 0.0

    def _roll(self, now: float) -> None:
        if now >= self.resets_at:
            self.used = 0
            self.resets_at = now + self.per

    def admit(self, now: float) -> float | None:
        """None when admitted; else seconds until the bucket resets."""
        self._roll(now)
        if self.used >= self.limit:
            return self.resets_at - now
        self.used += 1
        return None

    def count(self, now: float) -> None:
        self._roll(now)
        self.used += 1

    def headers(self, now: float) -> dict[str, str]:
        reset_after = max(0.001, self.resets_at - now)
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(0, self.limit - self.used)),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": self.hash,
        }


WorldListener = Callable[[str, dict[str, Any]], None]
# The bucket a gated request was counted in (the middleware adds its headers).
_RL_BUCKET = web.RequestKey("rl_bucket", _Bucket)
_RL_COUNTED = web.RequestKey("rl_counted", bool)


class FakeDiscord(Recorder):
    def __init__(self, *, limits_scale: float | None = None, bot_token: str = BOT_TOKEN) -> None:
        super().__init__()
        self.bot_token = bot_token
        self.webhooks: dict[int, str] = {}
        # Channels the bot may post to with no permission model (no guild configured).
        self.channels: set[int] = set()
        self.scripts: list[Scripted] = []
        self.messages: dict[int, dict[str, Any]] = {}
        self.deleted: list[int] = []
        self.rate_limited = 0
        self.logins = 0  # GET /users/@me (a bot client logging in)
        self.violations: list[str] = []
        self.limits_scale = limits_scale
        self.guilds: dict[int, FakeGuild] = {}
        self.users: dict[int, str] = {BOT_USER_ID: BOT_USERNAME}
        self.commands: dict[int | None, list[dict[str, Any]]] = {}  # None: global
        self.command_puts: list[dict[str, Any]] = []
        self.interactions: dict[int, FakeInteraction] = {}
        self.callbacks: list[dict[str, Any]] = []
        self.dm_channels: dict[int, int] = {}  # user id -> DM channel id
        self.closed_dms: set[int] = set()
        self.gateway_url: str | None = None
        self._dm_users: dict[int, int] = {}  # DM channel id -> user id
        self._left_channels: set[int] = set()  # channels of guilds the bot was removed from
        self._by_token: dict[str, FakeInteraction] = {}
        self._listeners: list[WorldListener] = []
        self._buckets: dict[str, _Bucket] = {}
        self._ids = itertools.count(1_000_000_000_000_000_000)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    def add_webhook(self, webhook_id: int, token: str = "t" * 68) -> str:
        self.webhooks[webhook_id] = token
        return f"https://discord.com/api/webhooks/{webhook_id}/{token}"

    def new_id(self) -> int:
        return next(self._ids)

    async def start(self) -> FakeDiscord:
        app = web.Application(middlewares=[self._ratelimit_headers])
        r = app.router
        base = "/api/v10"
        r.add_get(f"{base}/users/@me", self._me)
        r.add_post(f"{base}/users/@me/channels", self._create_dm)
        r.add_get(f"{base}/oauth2/applications/@me", self._application)
        r.add_get(f"{base}/applications/@me", self._application)
        r.add_get(f"{base}/gateway", self._gateway)
        r.add_get(f"{base}/gateway/bot", self._gateway)
        r.add_get(f"{base}/guilds/{{gid}}", self._get_guild)
        r.add_get("/_fake/stats", self._stats)
        r.add_post(f"{base}/webhooks/{{wid}}/{{token}}", self._webhook_send)
        r.add_get(f"{base}/webhooks/{{wid}}/{{token}}/messages/{{mid}}", self._webhook_get)
        r.add_patch(f"{base}/webhooks/{{wid}}/{{token}}/messages/{{mid}}", self._webhook_edit)
        r.add_delete(f"{base}/webhooks/{{wid}}/{{token}}/messages/{{mid}}", self._webhook_delete)
        r.add_post(f"{base}/channels/{{cid}}/messages", self._channel_send)
        r.add_patch(f"{base}/channels/{{cid}}/messages/{{mid}}", self._channel_edit)
        r.add_delete(f"{base}/channels/{{cid}}/messages/{{mid}}", self._channel_delete)
        r.add_post(f"{base}/interactions/{{iid}}/{{token}}/callback", self._callback)
        for path in ("/applications/{app}/commands", "/applications/{app}/guilds/{gid}/commands"):
            r.add_put(base + path, self._put_commands)
            r.add_get(base + path, self._get_commands)
        await self.serve(app)
        return self

    def fail(
        self,
        status: int,
        message: str = "error",
        *,
        code: int = 0,
        count: int = 1,
        retry_after: float | None = None,
        delay: float = 0.0,
    ) -> None:
        body: dict[str, Any] = {"message": message, "code": code}
        headers: dict[str, str] = {}
        if retry_after is not None:
            body |= {"retry_after": retry_after, "global": False}
            headers = {"Retry-After": str(retry_after), "Via": "1.1 google"}
        self.scripts.append(Scripted(status, body, count, delay, (), headers))

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(stats_of(self.requests, self.rate_limited))

    def sent(self) -> list[dict[str, Any]]:
        """Messages that were posted (webhooks, channels, DMs, interaction followups)."""
        return [r for r in self.requests if r["ok"] and r["method"] == "POST"]

    async def wait_sent(
        self, predicate: Callable[[dict[str, Any]], bool] = lambda _: True, timeout: float = 10.0
    ) -> dict[str, Any]:
        """The first posted message matching `predicate`, once it has arrived."""
        found: list[dict[str, Any]] = []

        def check() -> bool:
            found[:] = [entry for entry in self.sent() if predicate(entry)][:1]
            return bool(found)

        await self.wait_for(check, timeout)
        return found[0]

    async def wait_for_callback(self, interaction_id: int, timeout: float = 10.0) -> dict[str, Any]:
        """The accepted initial response to this interaction, once the bot has sent it."""
        found: list[dict[str, Any]] = []

        def check() -> bool:
            found[:] = [
                c for c in self.callbacks if c["interaction_id"] == interaction_id and c["ok"]
            ][:1]
            return bool(found)

        await self.wait_for(check, timeout)
        return found[0]

    # ---- the world: guilds, channels, roles, members, permissions ----

    def on_change(self, listener: WorldListener) -> None:
        """`listener(event, data)` hears every change as the gateway event Discord sends."""
        self._listeners.append(listener)

    def off_change(self, listener: WorldListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _emit(self, event: str, data: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            listener(event, data)

    def add_guild(
        self,
        guild_id: int,
        *,
        name: str = "Test server",
        owner_id: int = 1,
        everyone_permissions: int = DEFAULT_EVERYONE,
        bot_permissions: int = DEFAULT_BOT,
        bot_role_id: int | None = None,
    ) -> FakeGuild:
        """A server the bot was invited to: @everyone, the bot's managed role, the bot."""
        role_id = bot_role_id if bot_role_id is not None else self.new_id()
        guild = FakeGuild(guild_id, name, owner_id, role_id)
        guild.roles[guild_id] = FakeRole(guild_id, "@everyone", int(everyone_permissions))
        guild.roles[role_id] = FakeRole(
            role_id, BOT_USERNAME, int(bot_permissions), 1, managed=True, bot_id=BOT_USER_ID
        )
        guild.members[BOT_USER_ID] = FakeMember(BOT_USER_ID, BOT_USERNAME, [role_id], bot=True)
        if owner_id != BOT_USER_ID:
            guild.members[owner_id] = FakeMember(owner_id, self.users.get(owner_id, "owner"))
            self.users.setdefault(owner_id, "owner")
        self.guilds[guild_id] = guild
        self._emit("GUILD_CREATE", self.guild_payload(guild_id))
        return guild

    def remove_guild(self, guild_id: int) -> None:
        """The bot was kicked: GUILD_DELETE, and its channels answer 403 Missing Access."""
        guild = self.guilds.pop(guild_id)
        self._left_channels |= set(guild.channels)
        self._emit("GUILD_DELETE", {"id": str(guild_id)})

    def add_text_channel(
        self, guild_id: int, channel_id: int, *, name: str | None = None, system: bool = False
    ) -> FakeChannel:
        guild = self.guilds[guild_id]
        channel = FakeChannel(
            channel_id, guild_id, name or f"channel-{len(guild.channels)}", 0, len(guild.channels)
        )
        guild.channels[channel_id] = channel
        if system:
            guild.system_channel_id = channel_id
        self._emit("CHANNEL_CREATE", self.channel_payload(channel))
        return channel

    def add_role(
        self,
        guild_id: int,
        role_id: int,
        *,
        name: str | None = None,
        permissions: int = 0,
        mentionable: bool = False,
    ) -> FakeRole:
        guild = self.guilds[guild_id]
        role = FakeRole(
            role_id, name or f"role-{role_id}", int(permissions), len(guild.roles), mentionable
        )
        guild.roles[role_id] = role
        self._emit(
            "GUILD_ROLE_CREATE", {"guild_id": str(guild_id), "role": self.role_payload(role)}
        )
        return role

    def add_member(
        self, guild_id: int, user_id: int, *, username: str | None = None, roles: Iterable[int] = ()
    ) -> FakeMember:
        name = username or self.users.get(user_id) or f"user{user_id}"
        self.users[user_id] = name
        member = FakeMember(user_id, name, list(roles))
        self.guilds[guild_id].members[user_id] = member
        self._emit("GUILD_MEMBER_ADD", {"guild_id": str(guild_id)} | self.member_payload(member))
        return member

    def find_channel(self, channel_id: int) -> FakeChannel | None:
        for guild in self.guilds.values():
            if channel_id in guild.channels:
                return guild.channels[channel_id]
        return None

    def _channel(self, channel_id: int) -> FakeChannel:
        channel = self.find_channel(channel_id)
        if channel is None:
            raise LookupError(f"channel {channel_id} is in no configured guild")
        return channel

    def set_channel_permissions(
        self, channel_id: int, target_id: int, *, allow: int = 0, deny: int = 0
    ) -> None:
        """The channel's overwrite for a role (if `target_id` is one) or a member; allow=deny=0
        removes it. Dispatches CHANNEL_UPDATE as Discord does."""
        channel = self._channel(channel_id)
        guild = self.guilds[channel.guild_id]
        kind = 0 if target_id in guild.roles else 1
        if allow == 0 and deny == 0:
            channel.overwrites.pop(target_id, None)
        else:
            channel.overwrites[target_id] = Overwrite(target_id, kind, int(allow), int(deny))
        self._emit("CHANNEL_UPDATE", self.channel_payload(channel))

    def revoke(self, channel_id: int, permissions: int = P.VIEW_CHANNEL | P.SEND_MESSAGES) -> None:
        """The bot loses `permissions` in this channel (a member overwrite denying them)."""
        channel = self._channel(channel_id)
        current = channel.overwrites.get(BOT_USER_ID, Overwrite(BOT_USER_ID, 1))
        self.set_channel_permissions(
            channel_id,
            BOT_USER_ID,
            allow=current.allow & ~int(permissions),
            deny=current.deny | int(permissions),
        )

    def set_role_permissions(self, guild_id: int, role_id: int, permissions: int) -> None:
        role = self.guilds[guild_id].roles[role_id]
        role.permissions = int(permissions)
        self._emit(
            "GUILD_ROLE_UPDATE", {"guild_id": str(guild_id), "role": self.role_payload(role)}
        )

    def delete_channel(self, channel_id: int) -> None:
        """The channel is gone: CHANNEL_DELETE, then 404 Unknown Channel (10003)."""
        channel = self.find_channel(channel_id)
        self.channels.discard(channel_id)
        if channel is not None:
            del self.guilds[channel.guild_id].channels[channel_id]
            self._emit("CHANNEL_DELETE", self.channel_payload(channel))

    def close_dms(self, user_id: int) -> None:
        """This user no longer accepts DMs from the bot: sends fail with 403 50007."""
        self.closed_dms.add(user_id)

    def open_dms(self, user_id: int) -> None:
        self.closed_dms.discard(user_id)

    def regenerate_token(self) -> str:
        """The owner reset the token: the old one now gets 401 and gateway close 4004."""
        self.bot_token = f"fake-bot-token-{secrets.token_hex(4)}"
        return self.bot_token

    def guild_permissions(self, guild_id: int, user_id: int) -> int:
        guild = self.guilds[guild_id]
        if user_id == guild.owner_id:
            return ALL_PERMISSIONS
        perms = guild.roles[guild_id].permissions
        member = guild.members.get(user_id)
        for role_id in member.roles if member else []:
            if role_id in guild.roles:
                perms |= guild.roles[role_id].permissions
        return ALL_PERMISSIONS if perms & P.ADMINISTRATOR else perms

    def permissions_in(self, channel_id: int, user_id: int) -> int:
        """A member's permissions in a channel, computed the way Discord documents it."""
        channel = self._channel(channel_id)
        guild = self.guilds[channel.guild_id]
        perms = self.guild_permissions(guild.id, user_id)
        if perms == ALL_PERMISSIONS:
            return perms
        everyone = channel.overwrites.get(guild.id)
        if everyone is not None:
            perms = (perms & ~everyone.deny) | everyone.allow
        member = guild.members.get(user_id)
        role_ids = set(member.roles) if member else set()
        allow = deny = 0
        for overwrite in channel.overwrites.values():
            if overwrite.type == 0 and overwrite.id in role_ids:
                allow |= overwrite.allow
                deny |= overwrite.deny
        perms = (perms & ~deny) | allow
        own = channel.overwrites.get(user_id)
        if own is not None and own.type == 1:
            perms = (perms & ~own.deny) | own.allow
        if not perms & P.SEND_MESSAGES:
            perms &= ~_NEEDS_SEND
        if not perms & P.VIEW_CHANNEL:
            perms &= ~CHANNEL_PERMISSIONS  # nothing that belongs to a channel it cannot see
        return perms

    # ---- payloads as Discord sends them ----

    def user_payload(self, user_id: int) -> dict[str, Any]:
        return {
            "id": str(user_id),
            "username": self.users.get(user_id, f"user{user_id}"),
            "discriminator": "0",
            "global_name": None,
            "avatar": None,
            "public_flags": 0,
            "bot": user_id == BOT_USER_ID,
        }

    def role_payload(self, role: FakeRole) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "id": str(role.id),
            "name": role.name,
            "permissions": str(role.permissions),
            "position": role.position,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "managed": role.managed,
            "mentionable": role.mentionable,
            "flags": 0,
        }
        if role.bot_id is not None:
            payload["tags"] = {"bot_id": str(role.bot_id)}
        return payload

    def channel_payload(self, channel: FakeChannel) -> dict[str, Any]:
        return {
            "id": str(channel.id),
            "type": channel.type,
            "guild_id": str(channel.guild_id),
            "name": channel.name,
            "position": channel.position,
            "permission_overwrites": [
                {"id": str(o.id), "type": o.type, "allow": str(o.allow), "deny": str(o.deny)}
                for o in channel.overwrites.values()
            ],
            "parent_id": None,
            "topic": None,
            "nsfw": False,
            "rate_limit_per_user": 0,
            "last_message_id": None,
            "flags": 0,
        }

    def member_payload(self, member: FakeMember) -> dict[str, Any]:
        return {
            "user": self.user_payload(member.user_id),
            "roles": [str(r) for r in member.roles],
            "nick": None,
            "avatar": None,
            "joined_at": "2024-01-01T00:00:00+00:00",
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
            "communication_disabled_until": None,
        }

    def guild_payload(self, guild_id: int) -> dict[str, Any]:
        """The GUILD_CREATE a bot gets for this server."""
        guild = self.guilds[guild_id]
        return {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "owner_id": str(guild.owner_id),
            "unavailable": False,
            "large": False,
            "member_count": len(guild.members),
            "joined_at": "2024-01-01T00:00:00+00:00",
            "system_channel_id": None
            if guild.system_channel_id is None
            else str(guild.system_channel_id),
            "system_channel_flags": 0,
            "preferred_locale": guild.locale,
            "features": [],
            "verification_level": 0,
            "default_message_notifications": 1,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "afk_timeout": 300,
            "application_id": None,
            "description": None,
            "roles": [self.role_payload(r) for r in guild.roles.values()],
            "channels": [
                {k: v for k, v in self.channel_payload(c).items() if k != "guild_id"}
                for c in guild.channels.values()
            ],
            "members": [self.member_payload(m) for m in guild.members.values()],
            "emojis": [],
            "stickers": [],
            "threads": [],
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }

    def dm_channel(self, user_id: int) -> int:
        """The DM channel between the bot and this user (made on first use)."""
        if user_id not in self.dm_channels:
            channel_id = self.new_id()
            self.dm_channels[user_id] = channel_id
            self._dm_users[channel_id] = user_id
            self.users.setdefault(user_id, f"user{user_id}")
        return self.dm_channels[user_id]

    def dm_payload(self, user_id: int) -> dict[str, Any]:
        return {
            "id": str(self.dm_channel(user_id)),
            "type": 1,
            "last_message_id": None,
            "flags": 0,
            "recipients": [self.user_payload(user_id)],
        }

    # ---- interactions and commands (the gateway builds the payloads) ----

    def new_interaction(
        self,
        kind: int,
        *,
        guild_id: int | None,
        channel_id: int,
        user_id: int,
        message_id: int | None = None,
    ) -> FakeInteraction:
        interaction = FakeInteraction(
            self.new_id(),
            secrets.token_urlsafe(48),
            kind,
            guild_id,
            channel_id,
            user_id,
            message_id,
        )
        self.interactions[interaction.id] = interaction
        self._by_token[interaction.token] = interaction
        return interaction

    def find_command(self, name: str, guild_id: int | None) -> dict[str, Any]:
        """The slash command a user in this guild (None: a DM) can run, as registered."""

        def named(commands: list[dict[str, Any]]) -> dict[str, Any] | None:
            return next((c for c in commands if c["name"] == name and c["type"] == 1), None)

        command = named(self.commands.get(guild_id, [])) if guild_id is not None else None
        if command is None:
            command = named(self.commands.get(None, []))
            if command is not None:
                contexts = command.get("contexts")
                where = 0 if guild_id is not None else 1
                allowed = (
                    where in contexts
                    if contexts is not None
                    else guild_id is not None or command.get("dm_permission") is not False
                )
                if not allowed:
                    command = None
        if command is None:
            place = f"guild {guild_id}" if guild_id is not None else "DMs"
            raise LookupError(f"/{name} is not registered for {place} (sync the tree first)")
        return command

    @web.middleware
    async def _ratelimit_headers(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        response = await handler(request)
        if 200 <= response.status < 300 and request.path.startswith("/api/"):
            now = time.monotonic()
            bucket = request.get(_RL_BUCKET) or self._route_bucket(request)
            if not request.get(_RL_COUNTED):
                bucket.count(now)
            response.headers.update(bucket.headers(now))
        return response

    def _bucket(self, name: str, major: str, *, enforced: bool) -> _Bucket:
        key = f"{name}:{major}"
        if key not in self._buckets:
            if enforced and self.limits_scale is not None:
                limit, per = max(1, int(5 * self.limits_scale)), _WINDOW_SECONDS
            else:
                limit, per = _ROOMY
            self._buckets[key] = _Bucket(name, limit, per)
        return self._buckets[key]

    def _route_bucket(self, request: web.Request) -> _Bucket:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else request.path
        info = request.match_info
        major = (
            info.get("wid", "") + info.get("cid", "") + info.get("gid", "") + info.get("iid", "")
        )
        return self._bucket(f"{request.method} {route}", major, enforced=False)

    # ---- handlers ----

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bot {self.bot_token}"

    async def _me(self, request: web.Request) -> web.Response:
        self.logins += 1  # discord.py's static_login asks this
        if not self._authorized(request):
            return _json({"message": "401: Unauthorized", "code": 0}, 401)
        return _json(
            {
                "id": str(BOT_USER_ID),
                "username": BOT_USERNAME,
                "discriminator": "0",
                "avatar": None,
                "bot": True,
            }
        )

    async def _application(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _json({"message": "401: Unauthorized", "code": 0}, 401)
        return _json(
            {
                "id": str(APPLICATION_ID),
                "name": BOT_USERNAME,
                "icon": None,
                "description": "",
                "summary": "",
                "rpc_origins": [],
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": "0" * 64,
                "flags": 0,
                "owner": self.user_payload(1),
                "team": None,
                "bot": self.user_payload(BOT_USER_ID),
                "interactions_endpoint_url": None,
                "redirect_uris": [],
                "approximate_guild_count": len(self.guilds),
            }
        )

    async def _gateway(self, request: web.Request) -> web.Response:
        if self.gateway_url is None:
            return _error(404, 0, "404: Not Found")
        body: dict[str, Any] = {"url": self.gateway_url}
        if request.path.endswith("/bot"):
            body |= {
                "shards": 1,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 86_400_000,
                    "max_concurrency": 1,
                },
            }
        return _json(body)

    async def _get_guild(self, request: web.Request) -> web.Response:
        """`GET /guilds/{id}`: the server without channels and members, as Discord answers."""
        if not self._authorized(request):
            return _json({"message": "401: Unauthorized", "code": 0}, 401)
        guild_id = int(request.match_info["gid"])
        if guild_id not in self.guilds:
            return _error(404, 10004, "Unknown Guild")
        payload = self.guild_payload(guild_id)
        for key in ("channels", "members", "threads", "voice_states", "presences"):
            payload.pop(key, None)
        return _json(payload)

    async def _create_dm(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _json({"message": "401: Unauthorized", "code": 0}, 401)
        body = await request.json()
        return _json(self.dm_payload(int(body["recipient_id"])))

    async def _gate(self, request: web.Request, bucket: str) -> web.Response | None:
        arrived = time.monotonic()
        family, _, major = bucket.partition(":")
        limits = self._bucket(family, major, enforced=True)
        request[_RL_BUCKET] = limits
        script = self.take_script(self.scripts, request.method)
        if script is not None:
            if script.delay:
                await self.pause(script.delay)
            if script.status != 200:
                return _json(script.body, script.status, script.headers)
        if self.limits_scale is not None:
            request[_RL_COUNTED] = True
            wait = limits.admit(arrived)
            if wait is not None:
                self.rate_limited += 1
                return _json(
                    {
                        "message": "You are being rate limited.",
                        "retry_after": wait,
                        "global": False,
                    },
                    429,
                    limits.headers(arrived)
                    | {
                        "Retry-After": f"{wait:.3f}",
                        "Via": "1.1 google",
                        "X-RateLimit-Scope": "user",
                    },
                )
        return None

    def _message_json(
        self,
        message_id: int,
        channel_id: int,
        body: dict[str, Any],
        author: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return {
            "id": str(message_id),
            "channel_id": str(channel_id),
            "type": 0,
            "content": body.get("content") or "",
            "embeds": body.get("embeds") or [],
            "components": body.get("components") or [],
            "author": author
            or {
                "id": "42",
                "username": "hook",
                "discriminator": "0000",
                "avatar": None,
                "bot": True,
            },
            "attachments": [],
            "mentions": [],
            "mention_roles": [],
            "pinned": False,
            "mention_everyone": False,
            "tts": False,
            "flags": body.get("flags") or 0,
            "timestamp": _now_iso(),
            "edited_timestamp": None,
        }

    @staticmethod
    def public(message: dict[str, Any]) -> dict[str, Any]:
        """A stored message as Discord returns it (without the fake's own notes)."""
        return {k: v for k, v in message.items() if k not in _PRIVATE}

    def _pings(self, channel_id: int, content: str, allowed: dict[str, Any]) -> dict[str, Any]:
        """Who is notified, counting what the bot may mention in a configured guild:
        @everyone and roles that are not mentionable need MENTION_EVERYONE."""
        hits = pinged(content, allowed)
        channel = self.find_channel(channel_id)
        if channel is None:
            return hits
        guild = self.guilds[channel.guild_id]
        can_all = bool(self.permissions_in(channel_id, BOT_USER_ID) & P.MENTION_EVERYONE)
        return {
            "everyone": hits["everyone"] and can_all,
            "roles": [
                r
                for r in hits["roles"]
                if r in guild.roles and (can_all or guild.roles[r].mentionable)
            ],
            "users": hits["users"],
        }

    async def _store(
        self,
        request: web.Request,
        channel_id: int,
        where: str,
        *,
        author: dict[str, Any] | None = None,
    ) -> web.Response:
        body = await request.json()
        entry: dict[str, Any] = {
            "method": "POST",
            "where": where,
            "body": body,
            "query": dict(request.query),
            "ok": False,
            "at": time.monotonic(),
        }
        problems = self._validate(body)
        if problems:
            self.violations += problems
            await self.record(entry | {"status": 400, "code": 50035, "problems": problems})
            return _json({"message": "Invalid Form Body", "code": 50035, "errors": problems}, 400)
        message_id = next(self._ids)
        stored = self._message_json(message_id, channel_id, body, author)
        stored["pinged"] = self._pings(
            channel_id, body.get("content") or "", body["allowed_mentions"]
        )
        stored["where"] = where
        if body.get("embeds") and where.startswith("channel:"):
            channel = self.find_channel(channel_id)
            # Without Embed Links the message goes out but its embeds are not shown.
            stored["embeds_hidden"] = channel is not None and not (
                self.permissions_in(channel_id, BOT_USER_ID) & P.EMBED_LINKS
            )
        self.messages[message_id] = stored
        await self.record(
            entry | {"ok": True, "status": 200, "id": message_id, "pinged": stored["pinged"]}
        )
        return _json(self.public(stored))

    def _validate(self, body: dict[str, Any], *, need_mentions: bool = True) -> list[str]:
        problems = []
        if need_mentions and "allowed_mentions" not in body:
            problems.append("no allowed_mentions: @everyone in the text would ping")
        problems += self._content_problems(body)
        if not (body.get("content") or body.get("embeds")) and not (
            (body.get("flags") or 0) & _COMPONENTS_V2 and body.get("components")
        ):
            problems.append("empty message")
        return problems

    def _content_problems(self, body: dict[str, Any]) -> list[str]:
        problems = []
        if len(body.get("content") or "") > 2000:
            problems.append("content over 2000")
        embeds = body.get("embeds") or []
        if len(embeds) > 10:
            problems.append(f"{len(embeds)} embeds (at most 10)")
        for embed in embeds:
            problems += embed_problems(embed)
        if body.get("components"):
            problems += component_problems(body["components"], flags=body.get("flags") or 0)
        return problems

    async def _edit(self, request: web.Request, message_id: int) -> web.Response:
        body = await request.json()
        message = self.messages.get(message_id)
        entry = {"method": "PATCH", "body": body, "at": time.monotonic(), "id": message_id}
        if message is None:
            await self.record(entry | {"ok": False, "status": 404})
            return _json({"message": "Unknown Message", "code": 10008}, 404)
        problems = self._content_problems(body)
        if problems:
            self.violations += problems
            await self.record(entry | {"ok": False, "status": 400, "problems": problems})
            return _json({"message": "Invalid Form Body", "code": 50035, "errors": problems}, 400)
        for key, empty in (("embeds", []), ("content", ""), ("components", [])):
            if key in body:
                message[key] = body[key] if body[key] is not None else empty
        message["loading"] = False
        message["edited_timestamp"] = _now_iso()
        await self.record(entry | {"ok": True, "status": 200, "where": message.get("where")})
        return _json(self.public(message))

    async def _delete(self, message_id: int) -> web.Response:
        ok = self.messages.pop(message_id, None) is not None
        await self.record(
            {
                "method": "DELETE",
                "id": message_id,
                "ok": ok,
                "at": time.monotonic(),
                "status": 204 if ok else 404,
            }
        )
        if not ok:
            return _json({"message": "Unknown Message", "code": 10008}, 404)
        self.deleted.append(message_id)
        return web.Response(status=204)

    def _check_webhook(self, request: web.Request) -> web.Response | None:
        wid = int(request.match_info["wid"])
        if self.webhooks.get(wid) != request.match_info["token"]:
            return _json({"message": "Unknown Webhook", "code": 10015}, 404)
        return None

    def _interaction_of(self, request: web.Request) -> FakeInteraction | None:
        """The interaction whose token this webhook route carries, if it is one."""
        if request.match_info["wid"] != str(APPLICATION_ID):
            return None
        return self._by_token.get(request.match_info["token"])

    async def _webhook_send(self, request: web.Request) -> web.Response:
        interaction = self._interaction_of(request)
        if interaction is not None:
            return await self._followup(request, interaction)
        bad = self._check_webhook(request)
        if bad is not None:
            await self.record(
                {"method": "POST", "ok": False, "status": 404, "at": time.monotonic()}
            )
            return bad
        gated = await self._gate(request, f"webhook:{request.match_info['wid']}")
        if gated is not None:
            await self.record(
                {"method": "POST", "ok": False, "status": gated.status, "at": time.monotonic()}
            )
            return gated
        return await self._store(request, 777, f"webhook:{request.match_info['wid']}")

    async def _webhook_get(self, request: web.Request) -> web.Response:
        interaction = self._interaction_of(request)
        if interaction is not None:
            message_id = self._response_message(interaction, request.match_info["mid"])
            message = self.messages.get(message_id) if message_id is not None else None
            if message is None:
                return _error(404, 10008, "Unknown Message")
            return _json(self.public(message))
        bad = self._check_webhook(request)
        if bad is not None:
            return bad
        message = self.messages.get(int(request.match_info["mid"]))
        return _json(self.public(message)) if message else _error(404, 10008, "Unknown Message")

    async def _webhook_edit(self, request: web.Request) -> web.Response:
        interaction = self._interaction_of(request)
        if interaction is not None:
            message_id = self._response_message(interaction, request.match_info["mid"])
            if message_id is None:
                return _error(404, 10008, "Unknown Message")
            return await self._edit(request, message_id)
        bad = self._check_webhook(request)
        if bad is not None:
            return bad
        gated = await self._gate(request, f"webhook:{request.match_info['wid']}")
        if gated is not None:
            return gated
        return await self._edit(request, int(request.match_info["mid"]))

    async def _webhook_delete(self, request: web.Request) -> web.Response:
        interaction = self._interaction_of(request)
        if interaction is not None:
            message_id = self._response_message(interaction, request.match_info["mid"])
            if message_id is None:
                return _error(404, 10008, "Unknown Message")
            return await self._delete(message_id)
        bad = self._check_webhook(request)
        return bad if bad is not None else await self._delete(int(request.match_info["mid"]))

    def _response_message(self, interaction: FakeInteraction, mid: str) -> int | None:
        """@original is the response's message (or, for 6 and 7, the component's message)."""
        if mid != "@original":
            message_id = int(mid)
            return message_id if message_id in interaction.followups else None
        if interaction.response_type in (6, 7):
            return interaction.message_id
        return interaction.original_id

    def _check_bot(self, request: web.Request) -> web.Response | None:
        """Token, channel and the bot's permissions there, with Discord's error codes."""
        if not self._authorized(request):
            return _json({"message": "401: Unauthorized", "code": 0}, 401)
        cid = int(request.match_info["cid"])
        channel = self.find_channel(cid)
        if channel is not None:
            perms = self.permissions_in(cid, BOT_USER_ID)
            if not perms & P.VIEW_CHANNEL:
                return _error(403, 50001, "Missing Access")
            if request.method == "POST" and not perms & P.SEND_MESSAGES:
                return _error(403, 50013, "Missing Permissions")
            return None
        if cid in self._dm_users:
            if request.method == "POST" and self._dm_users[cid] in self.closed_dms:
                return _error(403, 50007, "Cannot send messages to this user")
            return None
        if cid in self._left_channels:
            return _error(403, 50001, "Missing Access")
        if cid in self.channels:
            return None
        return _json({"message": "Unknown Channel", "code": 10003}, 404)

    def _where(self, channel_id: int) -> str:
        if channel_id in self._dm_users:
            return f"dm:{self._dm_users[channel_id]}"
        return f"channel:{channel_id}"

    def _check_message(self, request: web.Request) -> web.Response | None:
        message = self.messages.get(int(request.match_info["mid"]))
        if message is not None and message["channel_id"] != request.match_info["cid"]:
            return _error(404, 10008, "Unknown Message")
        return None

    async def _channel_send(self, request: web.Request) -> web.Response:
        bad = self._check_bot(request) or await self._gate(
            request, f"channel:{request.match_info['cid']}"
        )
        cid = int(request.match_info["cid"])
        if bad is not None:
            code = json.loads(bad.body).get("code") if isinstance(bad.body, bytes) else None
            await self.record(
                {
                    "method": "POST",
                    "ok": False,
                    "status": bad.status,
                    "code": code,
                    "where": self._where(cid),
                    "at": time.monotonic(),
                }
            )
            return bad
        return await self._store(
            request, cid, self._where(cid), author=self.user_payload(BOT_USER_ID)
        )

    async def _channel_edit(self, request: web.Request) -> web.Response:
        bad = self._check_bot(request) or self._check_message(request)
        return bad if bad is not None else await self._edit(request, int(request.match_info["mid"]))

    async def _channel_delete(self, request: web.Request) -> web.Response:
        bad = self._check_bot(request) or self._check_message(request)
        return bad if bad is not None else await self._delete(int(request.match_info["mid"]))

    # ---- interaction responses ----

    def _callback_problems(self, interaction: FakeInteraction, kind: Any, data: Any) -> list[str]:
        if kind not in _CALLBACKS_FOR.get(interaction.type, set()):
            return [
                f"callback type {kind} is not valid for an interaction of type {interaction.type}"
            ]
        data = data or {}
        problems: list[str] = []
        if kind in (4, 7):
            problems += self._content_problems(data)
            if data.get("flags", 0) & ~_CALLBACK_FLAGS:
                problems.append(
                    "only SUPPRESS_EMBEDS, EPHEMERAL, SUPPRESS_NOTIFICATIONS, "
                    "IS_VOICE_MESSAGE and IS_COMPONENTS_V2 flags may be set"
                )
            has_body = data.get("content") or data.get("embeds") or data.get("poll")
            v2 = data.get("flags", 0) & _COMPONENTS_V2 and data.get("components")
            if kind == 4 and not (has_body or v2):
                problems.append("empty message")
        elif kind == 5:
            if data.get("flags", 0) & ~EPHEMERAL:
                problems.append("a deferred response may only set the EPHEMERAL flag")
        elif kind == 8:
            choices = data.get("choices")
            if not isinstance(choices, list) or len(choices) > 25:
                problems.append("autocomplete needs a list of at most 25 choices")
            for choice in choices or []:
                if not 1 <= len(choice.get("name") or "") <= 100:
                    problems.append("choice name must be 1-100 characters")
                if isinstance(choice.get("value"), str) and len(choice["value"]) > 100:
                    problems.append("choice value over 100 characters")
        elif kind == 9:
            if not 1 <= len(data.get("custom_id") or "") <= 100:
                problems.append("modal custom_id must be 1-100 characters")
            if not 1 <= len(data.get("title") or "") <= 45:
                problems.append("modal title must be 1-45 characters")
            if not 1 <= len(data.get("components") or []) <= 5:
                problems.append("a modal has 1 to 5 components")
        return problems

    def _response_pings(self, interaction: FakeInteraction, data: dict[str, Any]) -> dict[str, Any]:
        if (data.get("flags") or 0) & EPHEMERAL:
            return dict(_NO_PINGS)  # only the invoking user sees it; nobody is notified
        allowed = data.get("allowed_mentions")
        return self._pings(interaction.channel_id, data.get("content") or "", allowed or _PARSE_ALL)

    def _response_store(
        self, interaction: FakeInteraction, data: dict[str, Any], where: str
    ) -> dict[str, Any]:
        message_id = self.new_id()
        stored = self._message_json(
            message_id, interaction.channel_id, data, self.user_payload(BOT_USER_ID)
        )
        stored["interaction_metadata"] = {
            "id": str(interaction.id),
            "type": interaction.type,
            "user": self.user_payload(interaction.user_id),
        }
        stored["pinged"] = self._response_pings(interaction, data)
        stored["where"] = where
        self.messages[message_id] = stored
        return stored

    async def _callback(self, request: web.Request) -> web.Response:
        interaction = self.interactions.get(int(request.match_info["iid"]))
        if interaction is None or interaction.token != request.match_info["token"]:
            return _error(404, 10062, "Unknown interaction")
        body = await request.json()
        kind, data = body.get("type"), body.get("data") or {}
        entry: dict[str, Any] = {
            "interaction_id": interaction.id,
            "type": kind,
            "data": data,
            "ephemeral": bool((data.get("flags") or 0) & EPHEMERAL),
            "ok": False,
            "at": time.monotonic(),
        }
        if interaction.response_type is not None:
            self.callbacks.append(entry | {"status": 400, "code": 40060})
            await self.notify()
            return _error(400, 40060, "Interaction has already been acknowledged.")
        problems = self._callback_problems(interaction, kind, data)
        if problems:
            self.violations += problems
            self.callbacks.append(entry | {"status": 400, "code": 50035, "problems": problems})
            await self.notify()
            return _error(400, 50035, "Invalid Form Body", errors=problems)
        interaction.response_type = kind
        message: dict[str, Any] | None = None
        if kind in (4, 5):
            message = self._response_store(interaction, data, f"interaction:{interaction.id}")
            message["loading"] = kind == 5
            interaction.original_id = int(message["id"])
            entry["message_id"] = interaction.original_id
            entry["pinged"] = message["pinged"]
        elif kind == 7 and interaction.message_id in self.messages:
            message = self.messages[interaction.message_id]
            for key in ("content", "embeds", "components"):
                if key in data:
                    message[key] = data[key]
            message["edited_timestamp"] = _now_iso()
        self.callbacks.append(entry | {"ok": True, "status": 204})
        await self.notify()
        if request.query.get("with_response", "").lower() not in ("1", "true"):
            return web.Response(status=204)
        answer: dict[str, Any] = {
            "interaction": {
                "id": str(interaction.id),
                "type": interaction.type,
                "response_message_loading": kind == 5,
                "response_message_ephemeral": entry["ephemeral"],
            },
            "resource": {"type": kind},
        }
        if message is not None:
            answer["interaction"]["response_message_id"] = message["id"]
            if kind in (4, 7):
                answer["resource"]["message"] = self.public(message)
        return _json(answer)

    async def _followup(self, request: web.Request, interaction: FakeInteraction) -> web.Response:
        body = await request.json()
        entry: dict[str, Any] = {
            "method": "POST",
            "where": f"followup:{interaction.id}",
            "body": body,
            "ok": False,
            "at": time.monotonic(),
        }
        if interaction.response_type is None:
            await self.record(entry | {"status": 404, "code": 10015})
            return _error(404, 10015, "Unknown Webhook")
        problems = self._validate(body, need_mentions=False)
        if problems:
            self.violations += problems
            await self.record(entry | {"status": 400, "code": 50035, "problems": problems})
            return _error(400, 50035, "Invalid Form Body", errors=problems)
        original = self.messages.get(interaction.original_id or 0)
        if original is not None and original.get("loading"):
            # The first followup after a deferred ("thinking") response fills that message.
            for key in ("content", "embeds", "components"):
                original[key] = body.get(key) or original[key]
            original["loading"] = False
            original["pinged"] = self._response_pings(
                interaction, body | {"flags": original["flags"]}
            )
            stored = original
        else:
            stored = self._response_store(interaction, body, entry["where"])
            interaction.followups.append(int(stored["id"]))
        await self.record(
            entry | {"ok": True, "status": 200, "id": int(stored["id"]), "pinged": stored["pinged"]}
        )
        return _json(self.public(stored))

    # ---- application commands ----

    def _commands_scope(self, request: web.Request) -> tuple[int | None, web.Response | None]:
        if not self._authorized(request):
            return None, _json({"message": "401: Unauthorized", "code": 0}, 401)
        if request.match_info["app"] != str(APPLICATION_ID):
            return None, _error(404, 10002, "Unknown Application")
        gid = request.match_info.get("gid")
        if gid is None:
            return None, None
        if int(gid) not in self.guilds:
            return int(gid), _error(403, 50001, "Missing Access")
        return int(gid), None

    async def _put_commands(self, request: web.Request) -> web.Response:
        guild_id, bad = self._commands_scope(request)
        body = await request.json() if bad is None else None
        entry: dict[str, Any] = {"guild_id": guild_id, "body": body, "at": time.monotonic()}
        if bad is not None:
            self.command_puts.append(entry | {"ok": False, "status": bad.status})
            await self.notify()
            return bad
        problems = command_problems(body)
        if problems or not isinstance(body, list):
            self.violations += problems
            self.command_puts.append(entry | {"ok": False, "status": 400, "problems": problems})
            await self.notify()
            return _error(400, 50035, "Invalid Form Body", errors=problems)
        previous = {(c["name"], c["type"]): c["id"] for c in self.commands.get(guild_id, [])}
        stored = []
        for command in body:
            kind = command.get("type", 1)
            stored.append(
                {
                    "description": "",
                    "options": [],
                    "default_member_permissions": None,
                    "nsfw": False,
                    **command,
                    "id": previous.get((command["name"], kind)) or str(self.new_id()),
                    "application_id": str(APPLICATION_ID),
                    "type": kind,
                    "version": str(self.new_id()),
                }
                | ({"guild_id": str(guild_id)} if guild_id is not None else {})
            )
        self.commands[guild_id] = stored
        self.command_puts.append(entry | {"ok": True, "status": 200})
        await self.notify()
        return _json(stored)

    async def _get_commands(self, request: web.Request) -> web.Response:
        guild_id, bad = self._commands_scope(request)
        return bad if bad is not None else _json(self.commands.get(guild_id, []))


_PRIVATE = ("pinged", "where", "loading", "embeds_hidden")
