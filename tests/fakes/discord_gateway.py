"""A fake Discord gateway on 127.0.0.1 for a discord.py `Client`: HELLO, heartbeats and their
ACKs, IDENTIFY -> READY and GUILD_CREATE from the REST fake's guilds, RESUME with replay of
missed events, forced drops, world changes as CHANNEL_* / GUILD_ROLE_* events, and
INTERACTION_CREATE payloads built the way Discord builds them from the registered commands."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.common import Recorder
from tests.fakes.discord import (
    APPLICATION_ID,
    AUTOCOMPLETE,
    BOOLEAN,
    BOT_USER_ID,
    CHANNEL,
    COMMAND,
    COMPONENT,
    DM_PERMISSIONS,
    GROUP,
    INTEGER,
    MENTIONABLE,
    NUMBER,
    ROLE,
    STRING,
    SUBCOMMAND,
    USER,
    FakeDiscord,
    FakeInteraction,
)

API_VERSION = "10"
# Gateway intents (the bits a notification bot meets).
GUILDS = 1 << 0
GUILD_MEMBERS = 1 << 1
GUILD_MESSAGES = 1 << 9
DIRECT_MESSAGES = 1 << 12
GUILD_PRESENCES = 1 << 8
MESSAGE_CONTENT = 1 << 15
PRIVILEGED = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT
# Which intent a dispatch needs; events not listed (READY, RESUMED, INTERACTION_CREATE)
# reach every session.
_INTENT_OF = {
    "GUILD_CREATE": GUILDS,
    "GUILD_UPDATE": GUILDS,
    "GUILD_DELETE": GUILDS,
    "GUILD_ROLE_CREATE": GUILDS,
    "GUILD_ROLE_UPDATE": GUILDS,
    "GUILD_ROLE_DELETE": GUILDS,
    "CHANNEL_CREATE": GUILDS,
    "CHANNEL_UPDATE": GUILDS,
    "CHANNEL_DELETE": GUILDS,
    "GUILD_MEMBER_ADD": GUILD_MEMBERS,
    "GUILD_MEMBER_UPDATE": GUILD_MEMBERS,
    "GUILD_MEMBER_REMOVE": GUILD_MEMBERS,
}
# Close codes Discord documents.
UNKNOWN_OPCODE, DECODE_ERROR, NOT_AUTHENTICATED, AUTHENTICATION_FAILED = 4001, 4002, 4003, 4004
ALREADY_AUTHENTICATED, INVALID_API_VERSION, DISALLOWED_INTENTS = 4005, 4012, 4014
_CLOSE_REASONS = {
    UNKNOWN_OPCODE: "Unknown opcode.",
    DECODE_ERROR: "Error while decoding payload.",
    NOT_AUTHENTICATED: "Not authenticated.",
    AUTHENTICATION_FAILED: "Authentication failed.",
    ALREADY_AUTHENTICATED: "Already authenticated.",
    INVALID_API_VERSION: "Invalid API version.",
    DISALLOWED_INTENTS: "Disallowed intent(s).",
    4000: "Unknown error.",
}
_ATTACHMENT_LIMIT = 10 * 1024 * 1024
_PYTHON_TYPES: dict[int, type | tuple[type, ...]] = {
    STRING: str,
    INTEGER: int,
    NUMBER: (int, float),
    BOOLEAN: bool,
}
_TYPE_NAMES = {STRING: "a string", INTEGER: "an integer", NUMBER: "a number", BOOLEAN: "a bool"}


@dataclass
class _Close:
    code: int


@dataclass(eq=False)
class Session:
    """One gateway session: its sequence, its log for replay, its live connection."""

    id: str
    intents: int
    seq: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)
    conn: _Conn | None = None
    valid: bool = True


@dataclass(eq=False)
class _Conn:
    ws: web.WebSocketResponse
    request: web.Request
    path: str
    outbox: asyncio.Queue[dict[str, Any] | _Close] = field(default_factory=asyncio.Queue)
    session: Session | None = None
    writer: asyncio.Task[None] | None = None
    record: dict[str, Any] = field(default_factory=dict)

    def send(self, payload: dict[str, Any]) -> None:
        self.outbox.put_nowait(payload)

    def close(self, code: int) -> None:
        self.outbox.put_nowait(_Close(code))


class FakeDiscordGateway(Recorder):
    """Payloads from the client are in `requests`; connections in `connections`."""

    def __init__(
        self,
        rest: FakeDiscord,
        *,
        heartbeat_interval: float = 41.25,
        privileged_intents: int = 0,
    ) -> None:
        super().__init__()
        self.rest = rest
        self.heartbeat_interval = heartbeat_interval
        self.privileged_intents = privileged_intents
        self.sessions: dict[str, Session] = {}
        self.connections: list[dict[str, Any]] = []
        self.heartbeats = 0
        self.identified = 0
        self.resumed = 0
        self.intents: int | None = None  # from the last IDENTIFY
        self._conns: set[_Conn] = set()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    @property
    def resume_url(self) -> str:
        """What READY gives as resume_gateway_url (a path of its own, to see it is used)."""
        return f"ws://127.0.0.1:{self.port}/resume"

    async def start(self) -> FakeDiscordGateway:
        app = web.Application()
        app.router.add_get("/", self._handle)
        app.router.add_get("/resume", self._handle)
        await self.serve(app)
        self.rest.gateway_url = self.url
        self.rest.on_change(self.dispatch)
        return self

    async def stop(self) -> None:
        self.rest.off_change(self.dispatch)
        for conn in list(self._conns):
            self._detach(conn)
            conn.close(1001)
        writers = [c.writer for c in self._conns if c.writer is not None]
        if writers:
            await asyncio.wait(writers, timeout=5.0)
        await super().stop()

    # ---- waiting ----

    async def wait_identified(self, timeout: float = 10.0, *, count: int = 1) -> None:
        """Until `count` IDENTIFYs were answered with READY."""
        await self.wait_for(lambda: self.identified >= count, timeout)

    async def wait_resumed(self, timeout: float = 10.0, *, count: int = 1) -> None:
        await self.wait_for(lambda: self.resumed >= count, timeout)

    async def wait_closed(self, timeout: float = 10.0) -> dict[str, Any]:
        """Until the latest connection is closed; its record (with `close_code`)."""
        await self.wait_for(
            lambda: bool(self.connections) and "close_code" in self.connections[-1], timeout
        )
        return self.connections[-1]

    # ---- sending ----

    def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """An event to every valid session (logged for replay; sent when connected and the
        session's intents ask for it)."""
        need = _INTENT_OF.get(event, 0)
        for session in self.sessions.values():
            if session.valid and (not need or session.intents & need):
                self._dispatch_to(session, event, data)

    def _dispatch_to(self, session: Session, event: str, data: dict[str, Any]) -> None:
        session.seq += 1
        payload = {"op": 0, "s": session.seq, "t": event, "d": data}
        session.log.append(payload)
        if session.conn is not None:
            session.conn.send(payload)

    def drop_connection(self, code: int = 4000) -> int:
        """Close every live connection with `code` (4000 by default: the client resumes);
        events from now on wait in the session log for the RESUME. Returns how many."""
        for conn in self._conns:
            self._detach(conn)
            conn.close(code)
        return len(self._conns)

    def request_reconnect(self) -> None:
        """Opcode 7: the client should reconnect and resume."""
        for conn in list(self._conns):
            conn.send({"op": 7, "d": None, "s": None, "t": None})

    def invalidate_sessions(self, *, resumable: bool = False) -> None:
        """Opcode 9 to every live connection (not resumable: the client identifies again)."""
        for conn in list(self._conns):
            if conn.session is not None:
                if not resumable:
                    conn.session.valid = False
                conn.send({"op": 9, "d": resumable, "s": None, "t": None})

    def _detach(self, conn: _Conn) -> None:
        if conn.session is not None and conn.session.conn is conn:
            conn.session.conn = None
        conn.session = None

    # ---- the connection ----

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        record: dict[str, Any] = {"path": request.path, "query": dict(request.query)}
        conn = _Conn(ws, request, request.path, record=record)
        self.connections.append(record)
        self._conns.add(conn)
        conn.writer = asyncio.create_task(self._write(conn))
        if request.query.get("v") != API_VERSION:
            conn.close(INVALID_API_VERSION)
        elif request.query.get("encoding", "json") != "json":
            conn.close(DECODE_ERROR)
        else:
            interval_ms = int(self.heartbeat_interval * 1000)
            conn.send({"op": 10, "d": {"heartbeat_interval": interval_ms}, "s": None, "t": None})
        try:
            async for message in ws:
                if message.type is not WSMsgType.TEXT:
                    conn.close(DECODE_ERROR)
                    continue
                try:
                    payload = json.loads(message.data)
                except ValueError:
                    conn.close(DECODE_ERROR)
                    continue
                await self.record(payload | {"at": time.monotonic()})
                self._on_payload(conn, payload)
                await self.notify()
        finally:
            session = conn.session
            # A client's own clean close (1000/1001) ends its session: it cannot resume.
            if session is not None and ws.close_code in (1000, 1001):
                session.valid = False
            self._detach(conn)
            self._conns.discard(conn)
            if conn.writer is not None:
                conn.writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await conn.writer
            record["close_code"] = ws.close_code
            await self.notify()
        return ws

    async def _write(self, conn: _Conn) -> None:
        while True:
            item = await conn.outbox.get()
            if isinstance(item, _Close):
                reason = _CLOSE_REASONS.get(item.code, "").encode()
                conn.record["closed_by_fake"] = item.code
                await conn.ws.close(code=item.code, message=reason)
                return
            try:
                await conn.ws.send_str(json.dumps(item))
            except (ConnectionError, RuntimeError):
                return  # the peer went away; the session log still has it

    def _on_payload(self, conn: _Conn, payload: dict[str, Any]) -> None:
        op, data = payload.get("op"), payload.get("d")
        if op == 1:
            self.heartbeats += 1
            conn.send({"op": 11, "d": None, "s": None, "t": None})
        elif op == 2:
            self._identify(conn, data or {})
        elif op == 6:
            self._resume(conn, data or {})
        elif op in (3, 4, 8, 31):
            if conn.session is None:
                conn.close(NOT_AUTHENTICATED)
        else:
            conn.close(UNKNOWN_OPCODE)

    def _identify(self, conn: _Conn, data: dict[str, Any]) -> None:
        if conn.session is not None:
            conn.close(ALREADY_AUTHENTICATED)
            return
        if data.get("token") != self.rest.bot_token:
            conn.close(AUTHENTICATION_FAILED)
            return
        intents = int(data.get("intents", 0))
        if intents & PRIVILEGED & ~self.privileged_intents:
            conn.close(DISALLOWED_INTENTS)
            return
        session = Session(secrets.token_hex(16), intents)
        self.sessions[session.id] = session
        self.intents = intents
        session.conn, conn.session = conn, session
        rest = self.rest
        self._dispatch_to(
            session,
            "READY",
            {
                "v": int(API_VERSION),
                "user": rest.user_payload(BOT_USER_ID)
                | {"verified": True, "mfa_enabled": False, "flags": 0},
                "guilds": [{"id": str(g), "unavailable": True} for g in rest.guilds],
                "session_id": session.id,
                "resume_gateway_url": self.resume_url,
                "session_type": "normal",
                "application": {"id": str(APPLICATION_ID), "flags": 0},
                "private_channels": [],
                "relationships": [],
                "presences": [],
                "guild_join_requests": [],
                "geo_ordered_rtc_regions": [],
                "user_settings": {},
                "auth": {},
                "_trace": ["fake-gateway"],
            }
            | ({"shard": data["shard"]} if "shard" in data else {}),
        )
        if intents & GUILDS:
            for guild_id in rest.guilds:
                self._dispatch_to(session, "GUILD_CREATE", rest.guild_payload(guild_id))
        self.identified += 1

    def _resume(self, conn: _Conn, data: dict[str, Any]) -> None:
        if data.get("token") != self.rest.bot_token:
            conn.close(AUTHENTICATION_FAILED)
            return
        session = self.sessions.get(str(data.get("session_id")))
        if session is None or not session.valid:
            conn.send({"op": 9, "d": False, "s": None, "t": None})
            return
        if session.conn is not None and session.conn is not conn:
            old = session.conn
            self._detach(old)
            old.close(4000)
        seq = int(data.get("seq") or 0)
        for payload in session.log:
            if payload["s"] > seq:
                conn.send(payload)
        session.conn, conn.session = conn, session
        self._dispatch_to(session, "RESUMED", {"_trace": ["fake-gateway"]})
        conn.record["resumed"] = session.id
        self.resumed += 1

    # ---- interactions, built as Discord builds them ----

    async def interact_command(
        self,
        guild_id: int | None,
        channel_id: int | None,
        user_id: int,
        name: str = "parti",
        subcommand: str | None = None,
        options: Mapping[str, Any] | None = None,
        *,
        member_permissions: int | str | None = None,
        locale: str = "en-US",
    ) -> FakeInteraction:
        """A member runs `/name subcommand option:value ...` (subcommand "group sub" for a
        group). The option types, the command id and guild_id come from what the bot
        registered; channel, role, user and mentionable options get resolved data. Discord's
        own client checks (required options, choices, ranges) raise ValueError here.
        default_member_permissions is not applied: admins can open a command to anyone."""
        command = self.rest.find_command(name, guild_id)
        leaf, wrap = _walk(command, subcommand)
        built, resolved = self._options(leaf, options or {}, guild_id, user_id, focused=None)
        missing = [o["name"] for o in leaf if o.get("required") and o["name"] not in built]
        if missing:
            raise ValueError(f"/{name} {subcommand or ''}: required options missing: {missing}")
        data = _command_data(command, wrap(list(built.values())), resolved)
        return self._interact(
            COMMAND, data, guild_id, channel_id, user_id, member_permissions, locale
        )

    async def interact_autocomplete(
        self,
        guild_id: int | None,
        channel_id: int | None,
        user_id: int,
        name: str = "parti",
        subcommand: str | None = None,
        options: Mapping[str, Any] | None = None,
        *,
        focused: str,
        member_permissions: int | str | None = None,
        locale: str = "en-US",
    ) -> FakeInteraction:
        """The user is typing into option `focused` (its text is `options[focused]`, may be
        partial); only options registered with autocomplete get this."""
        command = self.rest.find_command(name, guild_id)
        leaf, wrap = _walk(command, subcommand)
        definition = next((o for o in leaf if o["name"] == focused), None)
        if definition is None or not definition.get("autocomplete"):
            raise ValueError(f"option {focused!r} of /{name} has no autocomplete")
        built, resolved = self._options(leaf, options or {}, guild_id, user_id, focused=focused)
        data = _command_data(command, wrap(list(built.values())), resolved)
        return self._interact(
            AUTOCOMPLETE, data, guild_id, channel_id, user_id, member_permissions, locale
        )

    async def press_button(
        self,
        guild_id: int | None,
        channel_id: int | None,
        user_id: int,
        custom_id: str,
        message_id: int,
        *,
        member_permissions: int | str | None = None,
        locale: str = "en-US",
    ) -> FakeInteraction:
        """A user presses the button `custom_id` on a message the bot posted earlier."""
        message = self.rest.messages.get(message_id)
        if message is None:
            raise ValueError(f"message {message_id} was never posted (or was deleted)")
        button = _find_component(message.get("components") or [], custom_id)
        if button is None or button.get("type") != 2:
            raise ValueError(f"message {message_id} has no button {custom_id!r}")
        if button.get("disabled"):
            raise ValueError(f"button {custom_id!r} is disabled")
        data = {"custom_id": custom_id, "component_type": 2}
        return self._interact(
            COMPONENT,
            data,
            guild_id,
            channel_id,
            user_id,
            member_permissions,
            locale,
            message=message,
        )

    def _interact(
        self,
        kind: int,
        data: dict[str, Any],
        guild_id: int | None,
        channel_id: int | None,
        user_id: int,
        member_permissions: int | str | None,
        locale: str,
        *,
        message: dict[str, Any] | None = None,
    ) -> FakeInteraction:
        rest = self.rest
        if guild_id is None:
            channel_id = rest.dm_channel(user_id)
        elif channel_id is None:
            raise ValueError("a guild interaction happens in a channel")
        interaction = rest.new_interaction(
            kind,
            guild_id=guild_id,
            channel_id=channel_id,
            user_id=user_id,
            message_id=int(message["id"]) if message else None,
        )
        payload: dict[str, Any] = {
            "id": str(interaction.id),
            "application_id": str(APPLICATION_ID),
            "type": kind,
            "data": data,
            "token": interaction.token,
            "version": 1,
            "locale": locale,
            "entitlements": [],
            "attachment_size_limit": _ATTACHMENT_LIMIT,
        }
        if guild_id is not None:
            guild = rest.guilds[guild_id]
            channel = guild.channels.get(channel_id)
            if channel is None:
                raise ValueError(f"channel {channel_id} is not in guild {guild_id}")
            if user_id not in guild.members:
                rest.add_member(guild_id, user_id)
            perms = (
                member_permissions
                if member_permissions is not None
                else rest.permissions_in(channel_id, user_id)
            )
            payload |= {
                "guild_id": str(guild_id),
                "guild": {"id": str(guild_id), "locale": guild.locale, "features": []},
                "guild_locale": guild.locale,
                "channel_id": str(channel_id),
                "channel": rest.channel_payload(channel) | {"permissions": str(perms)},
                "member": rest.member_payload(guild.members[user_id]) | {"permissions": str(perms)},
                "app_permissions": str(rest.permissions_in(channel_id, BOT_USER_ID)),
                "authorizing_integration_owners": {"0": str(guild_id)},
                "context": 0,
            }
        else:
            payload |= {
                "channel_id": str(channel_id),
                "channel": rest.dm_payload(user_id),
                "user": rest.user_payload(user_id),
                "app_permissions": str(int(DM_PERMISSIONS)),
                "authorizing_integration_owners": {"0": "0"},
                "context": 1,
            }
        if message is not None:
            payload["message"] = rest.public(message)
        interaction.payload = payload
        self.dispatch("INTERACTION_CREATE", payload)
        return interaction

    def _options(
        self,
        definitions: list[dict[str, Any]],
        values: Mapping[str, Any],
        guild_id: int | None,
        user_id: int,
        *,
        focused: str | None,
    ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        by_name = {o["name"]: o for o in definitions}
        built: dict[str, dict[str, Any]] = {}
        resolved: dict[str, dict[str, Any]] = {}
        for name, value in values.items():
            definition = by_name.get(name)
            if definition is None:
                raise ValueError(f"no option {name!r}; registered: {sorted(by_name)}")
            kind = definition["type"]
            if name == focused:
                built[name] = {"name": name, "type": kind, "value": value, "focused": True}
                continue
            built[name] = {
                "name": name,
                "type": kind,
                "value": self._value(definition, value, guild_id, user_id, resolved),
            }
        return built, resolved

    def _value(
        self,
        definition: dict[str, Any],
        value: Any,
        guild_id: int | None,
        user_id: int,
        resolved: dict[str, dict[str, Any]],
    ) -> Any:
        kind, name, rest = definition["type"], definition["name"], self.rest
        expected = _PYTHON_TYPES.get(kind)
        if expected is not None and (
            not isinstance(value, expected) or (kind != BOOLEAN and isinstance(value, bool))
        ):
            raise ValueError(f"option {name!r} takes {_TYPE_NAMES[kind]}, not {value!r}")
        if kind == STRING and not (
            definition.get("min_length", 0) <= len(value) <= definition.get("max_length", 6000)
        ):
            raise ValueError(f"option {name!r}: length out of range")
        if kind in (INTEGER, NUMBER) and not (
            definition.get("min_value", value) <= value <= definition.get("max_value", value)
        ):
            raise ValueError(f"option {name!r}: {value} out of range")
        choices = definition.get("choices")
        if choices and value not in [c["value"] for c in choices]:
            raise ValueError(f"option {name!r}: {value!r} is not one of its choices")
        if kind in (STRING, INTEGER, NUMBER, BOOLEAN):
            return value
        target = int(value)
        if kind == MENTIONABLE:
            guild = rest.guilds.get(guild_id) if guild_id is not None else None
            kind = ROLE if guild is not None and target in guild.roles else USER
        if kind == CHANNEL:
            channel = rest.find_channel(target)
            if channel is None or channel.guild_id != guild_id:
                raise ValueError(f"option {name!r}: channel {target} is not in this guild")
            allowed = definition.get("channel_types")
            if allowed and channel.type not in allowed:
                raise ValueError(f"option {name!r}: channel type {channel.type} not allowed")
            partial = {
                k: v
                for k, v in rest.channel_payload(channel).items()
                if k
                in (
                    "id",
                    "name",
                    "type",
                    "guild_id",
                    "position",
                    "parent_id",
                    "topic",
                    "nsfw",
                    "rate_limit_per_user",
                    "last_message_id",
                    "flags",
                )
            }
            partial["permissions"] = str(rest.permissions_in(target, user_id))
            resolved.setdefault("channels", {})[str(target)] = partial
        elif kind == ROLE:
            guild = rest.guilds.get(guild_id) if guild_id is not None else None
            if guild is None or target not in guild.roles:
                raise ValueError(f"option {name!r}: role {target} is not in this guild")
            resolved.setdefault("roles", {})[str(target)] = rest.role_payload(guild.roles[target])
        elif kind == USER:
            resolved.setdefault("users", {})[str(target)] = rest.user_payload(target)
            guild = rest.guilds.get(guild_id) if guild_id is not None else None
            if guild is not None and target in guild.members:
                member = rest.member_payload(guild.members[target])
                member.pop("user")
                member.pop("deaf")
                member.pop("mute")
                member["permissions"] = str(rest.guild_permissions(guild.id, target))
                resolved.setdefault("members", {})[str(target)] = member
        else:
            raise ValueError(f"option {name!r}: type {kind} is not supported by the fake")
        return str(target)


def _walk(command: dict[str, Any], subcommand: str | None) -> tuple[list[dict[str, Any]], Any]:
    """The option definitions under `subcommand` and a function nesting built options in
    the group/subcommand structure Discord sends."""
    path = subcommand.split() if subcommand else []
    options: list[dict[str, Any]] = command.get("options") or []
    chain: list[dict[str, Any]] = []
    for part in path:
        found = next(
            (o for o in options if o["name"] == part and o["type"] in (SUBCOMMAND, GROUP)), None
        )
        if found is None:
            raise ValueError(f"/{command['name']} has no subcommand {' '.join(path)!r}")
        chain.append(found)
        options = found.get("options") or []
    if any(o["type"] in (SUBCOMMAND, GROUP) for o in options):
        raise ValueError(f"/{command['name']} {subcommand or ''}: name a subcommand")

    def wrap(leaf: list[dict[str, Any]]) -> list[dict[str, Any]]:
        built = leaf
        for link in reversed(chain):
            built = [{"name": link["name"], "type": link["type"], "options": built}]
        return built

    return options, wrap


def _command_data(
    command: dict[str, Any], options: list[dict[str, Any]], resolved: dict[str, Any]
) -> dict[str, Any]:
    data: dict[str, Any] = {"id": command["id"], "name": command["name"], "type": 1}
    if options:
        data["options"] = options
    if resolved:
        data["resolved"] = resolved
    if command.get("guild_id"):
        data["guild_id"] = command["guild_id"]
    return data


def _find_component(components: list[dict[str, Any]], custom_id: str) -> dict[str, Any] | None:
    for item in components:
        if item.get("custom_id") == custom_id:
            return item
        found = _find_component(item.get("components") or [], custom_id)
        if found is not None:
            return found
    return None


@contextlib.contextmanager
def discord_py_pointed_at(rest: FakeDiscord, gateway: FakeDiscordGateway | None) -> Iterator[None]:
    """discord.py's REST base and gateway URL are class attributes: point them at the fakes
    for the block and put them back after."""
    import yarl
    from discord.gateway import DiscordWebSocket
    from discord.http import Route

    saved = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    Route.BASE = rest.api_url
    if gateway is not None:
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway.url)
    try:
        yield
    finally:
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved
