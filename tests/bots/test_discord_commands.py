"""The Discord command bot over real sockets: a discord.py Client on the fake gateway and
REST API, the Parti simulator behind the look-ups, a SQLite store underneath."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from notifier.bots.discord import (
    MANAGERS_ONLY,
    DiscordBotError,
    DiscordCommands,
    DiscordLimits,
    live_alert_components,
    sync_guild,
)
from notifier.deliver.discord import DiscordHub
from notifier.deliver.discord_chat import DiscordChannelSender
from notifier.log import register_secret
from notifier.parti.client import PartiClient
from notifier.parti.simulator import Simulator
from notifier.render.fields import AlertView
from notifier.store import Store, StoreUnavailable, outage
from tests.bots.conftest import Clock
from tests.fakes.common import served
from tests.fakes.discord import BOT_USER_ID, EPHEMERAL, FakeDiscord, P, _json, embed_problems
from tests.fakes.discord_gateway import FakeDiscordGateway, discord_py_pointed_at
from tests.fakes.silent import SilentServer

GUILD = 100_000_000_000_000_001
ALERTS = 100_000_000_000_000_002
GENERAL = 100_000_000_000_000_003  # the system channel
OTHER = 100_000_000_000_000_004
ADMINS = 100_000_000_000_000_011  # a role with Manage Server
LIVE = 100_000_000_000_000_012  # mentionable
QUIET = 100_000_000_000_000_013  # not mentionable
OWNER = 200_000_000_000_000_001
MANAGER = 200_000_000_000_000_002  # has the admins role
MEMBER = 200_000_000_000_000_003
DBR = 567503  # live in the simulator's seed
SNEAKO = 463000  # not live
WAIT = 10.0


class GuildsFakeDiscord(FakeDiscord):
    """The fake with `GET /guilds/{id}`, where pause_channel reads the system channel."""

    async def serve(self, app: web.Application) -> None:
        app.router.add_get("/api/v10/guilds/{gid}", self._get_guild)
        await super().serve(app)

    async def _get_guild(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _json({"message": "401: Unauthorized", "code": 0}, 401)
        guild_id = int(request.match_info["gid"])
        if guild_id not in self.guilds:
            return _json({"message": "Unknown Guild", "code": 10004}, 404)
        payload = self.guild_payload(guild_id)
        for key in ("channels", "members", "threads", "voice_states", "presences"):
            payload.pop(key, None)
        return _json(payload)


def build_world(rest: FakeDiscord) -> None:
    rest.add_guild(GUILD, name="Streamers' corner", owner_id=OWNER)
    rest.add_text_channel(GUILD, GENERAL, name="general", system=True)
    rest.add_text_channel(GUILD, ALERTS, name="alerts")
    rest.add_text_channel(GUILD, OTHER, name="other")
    rest.add_role(GUILD, ADMINS, name="admins", permissions=P.MANAGE_GUILD)
    rest.add_role(GUILD, LIVE, name="live-pings", mentionable=True)
    rest.add_role(GUILD, QUIET, name="quiet")
    rest.add_member(GUILD, MANAGER, username="manager", roles=[ADMINS])
    rest.add_member(GUILD, MEMBER, username="member", roles=[LIVE])


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeDiscord, FakeDiscordGateway]]:
    rest = await GuildsFakeDiscord().start()
    build_world(rest)
    gateway = await FakeDiscordGateway(rest).start()
    try:
        with discord_py_pointed_at(rest, gateway):
            yield rest, gateway
    finally:
        await gateway.stop()
        await rest.stop()


@pytest.fixture
def rest(fakes: tuple[FakeDiscord, FakeDiscordGateway]) -> FakeDiscord:
    return fakes[0]


@pytest.fixture
def gateway(fakes: tuple[FakeDiscord, FakeDiscordGateway]) -> FakeDiscordGateway:
    return fakes[1]


Starter = Callable[..., Awaitable[DiscordCommands]]


class Running:
    """Bots started by a test, stopped (and their run() awaited) at its end."""

    def __init__(self) -> None:
        self.bots: list[tuple[DiscordCommands, asyncio.Task[None]]] = []

    async def stop(self, bot: DiscordCommands) -> None:
        for entry in list(self.bots):
            if entry[0] is bot:
                self.bots.remove(entry)
                await bot.stop()
                async with asyncio.timeout(WAIT):
                    await entry[1]


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    bots = Running()
    yield bots
    for bot, _ in list(bots.bots):
        await bots.stop(bot)


@pytest.fixture
async def start_bot(
    rest: FakeDiscord,
    gateway: FakeDiscordGateway,
    store: Store,
    client: PartiClient,
    clock: Clock,
    running: Running,
) -> Starter:
    async def start(**overrides: Any) -> DiscordCommands:
        options: dict[str, Any] = {
            "token": rest.bot_token,
            "api_url": rest.api_url,
            "gateway_url": gateway.url,
            "store": store,
            "client": client,
            "clock": clock,
            "guild_ready_timeout": 0.05,
        } | overrides
        bot = DiscordCommands(**options)
        task = asyncio.create_task(bot.run())
        ready = asyncio.create_task(bot.ready.wait())
        done, _ = await asyncio.wait({task, ready}, timeout=WAIT, return_when="FIRST_COMPLETED")
        if ready not in done:
            ready.cancel()
            await bot.stop()
            task.result() if task in done else task.cancel()
            raise TimeoutError("the bot never became ready")
        running.bots.append((bot, task))
        return bot

    return start


@pytest.fixture
async def bot(start_bot: Starter) -> DiscordCommands:
    return await start_bot()


async def answer_of(rest: FakeDiscord, interaction_id: int) -> dict[str, Any]:
    """The bot's answer to an interaction as the user sees it (content, embeds, components,
    flags): a direct reply, or the followup that filled its "thinking" message."""
    callback = await rest.wait_for_callback(interaction_id, WAIT)
    if callback["type"] == 4:
        return dict(callback["data"]) | {"ephemeral": callback["ephemeral"]}
    await rest.wait_sent(lambda e: e.get("where") == f"followup:{interaction_id}", WAIT)
    message = rest.messages[callback["message_id"]]
    return dict(message) | {"ephemeral": bool(message["flags"] & EPHEMERAL)}


async def command(
    gateway: FakeDiscordGateway,
    user: int,
    subcommand: str,
    options: dict[str, Any] | None = None,
    *,
    guild: int | None = GUILD,
    channel: int | None = GENERAL,
) -> dict[str, Any]:
    sent = await gateway.interact_command(
        guild, channel if guild is not None else None, user, subcommand=subcommand, options=options
    )
    return await answer_of(gateway.rest, sent.id)


async def live_follows(store: Store, chat: int | str) -> list[tuple[str, dict[str, Any]]]:
    subs = await store.list_subscriptions(platform="discord", chat_id=str(chat), kind="live")
    return [(sub.target, dict(sub.params)) for sub in subs]


def live_payload(user_id: int = DBR, name: str = "DBR") -> dict[str, Any]:
    fields = {
        "user_name": name,
        "user_id": user_id,
        "title": "I'm Live on Parti",
        "category": "Other",
        "viewers": 200,
        "url": f"https://parti.com/creator/parti/{name}",
        "avatar": "",
        "image": "",
        "followers": "",
        "description": "",
        "rule": "sub:1",
        "caught_up": False,
        "event_id": 80695,
        "livestream_id": 76436,
        "at": 1_750_000_000.0,
    }
    return {"view": AlertView("live", "sub:1", fields).to_json()}


# ---- starting --------------------------------------------------------------------------------


async def test_commands_sync_globally_on_start(bot: DiscordCommands, rest: FakeDiscord) -> None:
    (put,) = rest.command_puts
    assert put["ok"] and put["guild_id"] is None, rest.violations
    (parti,) = rest.commands[None]
    names = {o["name"] for o in parti["options"]}
    assert names == {"follow", "unfollow", "list", "edit", "price", "test", "why", "resume", "me"}


async def test_the_gateway_session_asks_for_guilds_only(
    bot: DiscordCommands, gateway: FakeDiscordGateway
) -> None:
    assert gateway.intents == 1  # GUILDS, no privileged intent


async def test_a_refused_token_is_one_line_without_the_token(start_bot: Starter) -> None:
    secret = "not-the-token-sentinel-4711"
    with pytest.raises(DiscordBotError) as refused:
        await start_bot(token=secret)
    assert secret not in str(refused.value)
    assert str(refused.value) == "Discord refused the bot token (login)"


async def test_cancelling_run_closes_the_gateway_session(
    rest: FakeDiscord, gateway: FakeDiscordGateway, store: Store, client: PartiClient
) -> None:
    bot = DiscordCommands(
        token=rest.bot_token,
        api_url=rest.api_url,
        gateway_url=gateway.url,
        store=store,
        client=client,
        guild_ready_timeout=0.05,
    )
    task = asyncio.create_task(bot.run())
    await gateway.wait_identified(WAIT)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    closed = await gateway.wait_closed(WAIT)
    assert closed["close_code"] == 1000 and bot.bot is None


async def test_a_token_reset_while_running_ends_run_with_one_line(
    start_bot: Starter, running: Running, rest: FakeDiscord, gateway: FakeDiscordGateway
) -> None:
    bot = await start_bot()
    ((_, task),) = running.bots
    running.bots.clear()
    old = rest.bot_token
    rest.regenerate_token()
    gateway.drop_connection()  # the client resumes with the old token: closed with 4004
    with pytest.raises(DiscordBotError) as refused:
        async with asyncio.timeout(WAIT):
            await task
    assert str(refused.value) == "Discord refused the bot token (gateway 4004)"
    assert old not in str(refused.value) and bot.bot is None


async def test_too_many_commands_get_a_slow_down(
    start_bot: Starter, gateway: FakeDiscordGateway, store: Store
) -> None:
    await start_bot(limits=DiscordLimits(commands_per_minute=1))
    await command(gateway, MEMBER, "me list")
    answer = await command(gateway, MEMBER, "me follow", {"streamer": "DBR"})
    assert answer == answer | {"content": "Slow down, please: I answer again in a minute."}
    assert answer["ephemeral"] and await live_follows(store, f"dm:{MEMBER}") == []


async def test_sync_guild_registers_the_commands_in_one_server(rest: FakeDiscord) -> None:
    names = await sync_guild(rest.bot_token, rest.api_url, GUILD)
    assert names == ["parti"]
    assert rest.command_puts[-1]["guild_id"] == GUILD and rest.commands[GUILD][0]["name"] == "parti"


async def test_sync_guild_of_a_server_without_the_bot_says_so(rest: FakeDiscord) -> None:
    with pytest.raises(DiscordBotError, match="invite it there"):
        await sync_guild(rest.bot_token, rest.api_url, 999)


# ---- follow ----------------------------------------------------------------------------------


async def test_an_admin_follows_a_streamer_with_a_role_and_a_message(
    bot: DiscordCommands, gateway: FakeDiscordGateway, store: Store
) -> None:
    template = "{{ user_name }} is live: {{ url }}"
    answer = await command(
        gateway,
        OWNER,
        "follow",
        {"streamer": "DBR", "channel": ALERTS, "role": LIVE, "message": template},
    )
    assert answer["ephemeral"] and "Following **DBR** in <#" in answer["content"]
    assert await live_follows(store, ALERTS) == [
        (str(DBR), {"role_id": LIVE, "template": template})
    ]
    chat = await store.get_chat("discord", str(ALERTS))
    assert chat is not None and (chat.kind, chat.guild_id) == ("guild-channel", str(GUILD))
    sub = (await store.list_subscriptions(platform="discord", chat_id=str(ALERTS)))[0]
    assert sub.created_by == str(OWNER)


@pytest.mark.parametrize(("user", "allowed"), [(OWNER, True), (MANAGER, True), (MEMBER, False)])
async def test_changing_alerts_needs_manage_server(
    bot: DiscordCommands, gateway: FakeDiscordGateway, store: Store, user: int, allowed: bool
) -> None:
    answer = await command(gateway, user, "follow", {"streamer": "DBR", "channel": ALERTS})
    assert answer["ephemeral"]
    if allowed:
        assert await live_follows(store, ALERTS) == [(str(DBR), {})]
    else:
        assert answer["content"] == MANAGERS_ONLY
        assert await live_follows(store, ALERTS) == []


@pytest.mark.parametrize(
    ("revoked", "role", "missing"),
    [
        (P.SEND_MESSAGES, None, "**Send Messages, Embed Links**"),
        (P.VIEW_CHANNEL, None, "**View Channel, Send Messages, Embed Links**"),
        (P.EMBED_LINKS, None, "**Embed Links**"),
        (0, QUIET, "**Mention @everyone, @here and All Roles (or make @quiet mentionable)**"),
    ],
)
async def test_the_bots_missing_permissions_are_named_and_nothing_is_saved(
    bot: DiscordCommands,
    rest: FakeDiscord,
    gateway: FakeDiscordGateway,
    store: Store,
    revoked: int,
    role: int | None,
    missing: str,
) -> None:
    if revoked:
        changed = bot.bot.wait_for("guild_channel_update", timeout=WAIT) if bot.bot else None
        rest.revoke(ALERTS, revoked)
        assert changed is not None
        await changed
    options: dict[str, Any] = {"streamer": "DBR", "channel": ALERTS}
    if role is not None:
        options["role"] = role
    answer = await command(gateway, OWNER, "follow", options)
    assert f"I'm missing {missing} there" in answer["content"]
    assert await live_follows(store, ALERTS) == []


@pytest.mark.parametrize(
    ("subcommand", "options"),
    [
        ("follow", {"streamer": "DBR", "message": "Verify at https://evil.example"}),
        ("edit", {"streamer": "DBR", "setting": "message", "value": "Verify at https://x.example"}),
        ("test", {"streamer": "DBR"}),
        ("price", {"asset": "BTC", "direction": "above", "value": "1"}),
        ("resume", {}),
    ],
)
async def test_a_manager_cannot_make_the_bot_post_where_they_may_not_post(
    bot: DiscordCommands,
    rest: FakeDiscord,
    gateway: FakeDiscordGateway,
    store: Store,
    clock: Clock,
    subcommand: str,
    options: dict[str, Any],
) -> None:
    """Before: only the bot's permissions in the channel were checked, so Manage Server was
    enough to have the bot post (own text, a preview) in a channel hidden from the member."""
    await command(gateway, OWNER, "follow", {"streamer": "DBR", "channel": OTHER})
    await store.set_chat_fields("discord", str(OTHER), now=clock.now, paused_reason="no-access")
    before = await store.list_subscriptions(platform="discord")
    # The bot keeps its access (allowed first: it never sees the channel lost).
    rest.set_channel_permissions(
        OTHER, BOT_USER_ID, allow=P.VIEW_CHANNEL | P.SEND_MESSAGES | P.EMBED_LINKS
    )
    rest.set_channel_permissions(OTHER, GUILD, deny=P.VIEW_CHANNEL | P.SEND_MESSAGES)
    answer = await command(gateway, MANAGER, subcommand, options | {"channel": OTHER})
    assert answer["ephemeral"] and answer["content"] == (
        f"You can't post in <#{OTHER}> yourself, so I won't post there for you: "
        "you need **View Channel** and **Send Messages** there."
    )
    assert await store.list_subscriptions(platform="discord") == before
    chat = await store.get_chat("discord", str(OTHER))
    assert chat is not None and chat.paused_reason == "no-access"
    assert not [m for m in rest.messages.values() if str(m.get("channel_id")) == str(OTHER)]


@pytest.mark.parametrize("subcommand", ["follow", "edit"])
async def test_a_manager_cannot_set_a_ping_of_a_role_they_may_not_mention(
    bot: DiscordCommands,
    rest: FakeDiscord,
    gateway: FakeDiscordGateway,
    store: Store,
    subcommand: str,
) -> None:
    """Before: the bot checked only its own right to ping a role that is not mentionable."""
    rest.set_channel_permissions(
        ALERTS,
        BOT_USER_ID,
        allow=P.VIEW_CHANNEL | P.SEND_MESSAGES | P.EMBED_LINKS | P.MENTION_EVERYONE,
    )
    if subcommand == "edit":
        await command(gateway, MANAGER, "follow", {"streamer": "DBR", "channel": ALERTS})
        options: dict[str, Any] = {"setting": "role", "value": f"<@&{QUIET}>"}
    else:
        options = {"role": QUIET}
    before = await live_follows(store, ALERTS)
    answer = await command(
        gateway, MANAGER, subcommand, options | {"streamer": "DBR", "channel": ALERTS}
    )
    assert answer["content"] == (
        "You can't ping @quiet yourself (it isn't mentionable and you lack "
        "**Mention @everyone, @here and All Roles**), so I won't ping it for you."
    )
    assert await live_follows(store, ALERTS) == before


async def test_the_per_server_limit_is_a_clear_reply(
    start_bot: Starter, gateway: FakeDiscordGateway, store: Store
) -> None:
    await start_bot(limits=DiscordLimits(max_follows=1))
    await command(gateway, OWNER, "follow", {"streamer": "DBR", "channel": ALERTS})
    answer = await command(gateway, OWNER, "follow", {"streamer": "SNEAKO", "channel": OTHER})
    assert "This server follows 1 streamer, the most it may" in answer["content"]
    assert await live_follows(store, OTHER) == []


async def test_a_burst_of_commands_stays_within_the_server_and_dm_limits(
    start_bot: Starter, gateway: FakeDiscordGateway, store: Store
) -> None:
    await start_bot(limits=DiscordLimits(max_follows=1, max_price_alerts=1, max_member_follows=1))
    price = {"asset": "BTC", "direction": "above", "channel": ALERTS}
    answers = await asyncio.gather(  # all at once: the bot runs them side by side
        *(
            command(gateway, OWNER, "follow", {"streamer": name, "channel": channel})
            for name, channel in (("DBR", ALERTS), ("SNEAKO", OTHER), (str(348242), GENERAL))
        ),
        *(
            command(gateway, OWNER, "price", price | {"value": value})
            for value in ("110000", "120000", "130000")
        ),
        *(command(gateway, MEMBER, "me follow", {"streamer": name}) for name in ("DBR", "SNEAKO")),
    )
    subs = await store.list_subscriptions(platform="discord")
    assert sorted(s.kind for s in subs if not s.chat_id.startswith("dm:")) == ["live", "price"]
    assert len(await live_follows(store, f"dm:{MEMBER}")) == 1
    assert sum("the most" in answer["content"] for answer in answers) == 5


@pytest.mark.parametrize(
    ("options", "reply"),
    [
        ({"streamer": "nobody-by-this-name"}, "I can't find nobody-by-this-name on Parti"),
        ({"streamer": "DBR", "title": "(unclosed"}, "Can't set that: title: invalid regex"),
        ({"streamer": "DBR", "message": "{{ nope }}"}, "unknown template field 'nope'"),
    ],
)
async def test_bad_input_gets_a_short_reply_and_nothing_is_saved(
    bot: DiscordCommands,
    gateway: FakeDiscordGateway,
    store: Store,
    options: dict[str, Any],
    reply: str,
) -> None:
    answer = await command(gateway, OWNER, "follow", options | {"channel": ALERTS})
    assert answer["ephemeral"] and reply in answer["content"]
    assert "Traceback" not in answer["content"]
    assert await live_follows(store, ALERTS) == []


async def test_following_again_with_other_settings_updates_them(
    bot: DiscordCommands, gateway: FakeDiscordGateway, store: Store
) -> None:
    await command(gateway, OWNER, "follow", {"streamer": "DBR", "channel": ALERTS})
    answer = await command(
        gateway, OWNER, "follow", {"streamer": "DBR", "channel": ALERTS, "min_viewers": 10}
    )
    assert answer["content"].startswith("Updated **DBR**")
    assert await live_follows(store, ALERTS) == [(str(DBR), {"min_viewers": 10})]


# ---- autocomplete ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subcommand", "option", "typed", "value", "name"),
    [
        ("follow", "streamer", "db", str(DBR), "DBR (live, 200 watching)"),
        ("follow", "streamer", "sneako", str(SNEAKO), "SNEAKO"),
        ("price", "asset", "bt", "BTC", "BTC · 103,510"),
        ("follow", "category", "gam", "Gaming", "Gaming"),
    ],
)
async def test_autocomplete_suggests(
    bot: DiscordCommands,
    rest: FakeDiscord,
    gateway: FakeDiscordGateway,
    subcommand: str,
    option: str,
    typed: str,
    value: str,
    name: str,
) -> None:
    sent = await gateway.interact_autocomplete(
        GUILD, GENERAL, OWNER, subcommand=subcommand, options={option: typed}, focused=option
    )
    answer = await rest.wait_for_callback(sent.id, WAIT)
    assert answer["type"] == 8
    assert {"name": name, "value": value} in answer["data"]["choices"]


async def test_autocomplete_looks_up_at_parti_only_as_often_as_commands_may_run(
    start_bot: Starter, rest: FakeDiscord, gateway: FakeDiscordGateway, sim: Simulator
) -> None:
    """Before: every keystroke's text was looked up at Parti, without a limit."""
    await start_bot(limits=DiscordLimits(commands_per_minute=3))

    async def typed(text: str) -> list[dict[str, Any]]:
        sent = await gateway.interact_autocomplete(
            GUILD,
            GENERAL,
            MEMBER,
            subcommand="me follow",
            options={"streamer": text},
            focused="streamer",
        )
        answer = await rest.wait_for_callback(sent.id, WAIT)
        assert answer["type"] == 8
        return list(answer["data"]["choices"])

    for i in range(3):
        await typed(f"nobody{i}")
    before = sum(sim.requests.values())
    await typed("db")  # too short to look up
    for i in range(3, 10):
        await typed(f"nobody{i}")
    assert sum(sim.requests.values()) == before
    assert await typed("DBR") == [{"name": "DBR (live, 200 watching)", "value": str(DBR)}]


async def test_unfollow_suggests_what_the_server_follows_first(
    bot: DiscordCommands, rest: FakeDiscord, gateway: FakeDiscordGateway
) -> None:
    await command(gateway, OWNER, "follow", {"streamer": "SNEAKO", "channel": ALERTS})
    sent = await gateway.interact_autocomplete(
        GUILD, GENERAL, OWNER, subcommand="unfollow", options={"streamer": ""}, focused="streamer"
    )
    choices = (await rest.wait_for_callback(sent.id, WAIT))["data"]["choices"]
    assert choices[0] == {"name": "SNEAKO (followed)", "value": str(SNEAKO)}


# ---- list, unfollow, edit, price -------------------------------------------------------------


async def test_list_pages_with_buttons(
    start_bot: Starter, rest: FakeDiscord, gateway: FakeDiscordGateway, store: Store
) -> None:
    await start_bot(limits=DiscordLimits(max_follows=50))
    for user_id in range(1, 13):
        await store.add_subscription(
            "discord",
            str(ALERTS),
            kind="live",
            target=str(user_id),
            params={},
            created_by=str(OWNER),
            now=1.0,
        )
    sent = await gateway.interact_command(GUILD, GENERAL, MEMBER, subcommand="list")
    first = await answer_of(rest, sent.id)
    (embed,) = first["embeds"]
    assert embed["footer"]["text"] == "12 alerts · page 1 of 2"
    assert len(embed["description"].splitlines()) == 10
    (row,) = first["components"]
    assert [b["custom_id"] for b in row["components"]] == ["parti:page:g:1"]
    message_id = int(first["id"])
    pressed = await gateway.press_button(GUILD, GENERAL, MEMBER, "parti:page:g:1", message_id)
    assert (await rest.wait_for_callback(pressed.id, WAIT))["type"] == 6
    await rest.wait_for(
        lambda: "page 2 of 2" in rest.messages[message_id]["embeds"][0]["footer"]["text"], WAIT
    )
    page = rest.messages[message_id]
    assert len(page["embeds"][0]["description"].splitlines()) == 2
    assert [b["custom_id"] for b in page["components"][0]["components"]] == ["parti:page:g:0"]


async def test_a_list_of_follows_with_long_settings_fits_its_embed(
    bot: DiscordCommands, rest: FakeDiscord, gateway: FakeDiscordGateway
) -> None:
    """Before: every setting was shown whole (here 100 categories each), the description
    went over Discord's 4,096 characters and the list was refused: never shown."""
    settings = {
        "role": LIVE,
        "category": ",".join(["_"] * 100),
        "title": "x" * 40,
        "min_viewers": 10_000_000,
        "on_end": "ignore",
    }
    for channel in (ALERTS, GENERAL, OTHER):
        for streamer in ("DBR", "SNEAKO", "348242"):
            answer = await command(
                gateway, OWNER, "follow", settings | {"streamer": streamer, "channel": channel}
            )
            assert "Following" in answer["content"], answer["content"]
    (embed,) = (await command(gateway, OWNER, "list"))["embeds"]
    assert embed_problems(embed) == []
    lines = embed["description"].splitlines()
    assert len(lines) == 9 and "category \\_, \\_, \\_ and 97 more" in lines[0]


async def test_unfollow_everywhere_names_the_channels_within_a_message(
    bot: DiscordCommands, rest: FakeDiscord, gateway: FakeDiscordGateway, store: Store
) -> None:
    """Before: every channel was named, over Discord's 2,000 characters: no reply."""
    channels = [ALERTS + 1000 + i for i in range(120)]
    for channel in channels:
        rest.add_text_channel(GUILD, channel)
        await store.add_subscription(
            "discord",
            str(channel),
            kind="live",
            target=str(DBR),
            params={},
            created_by=str(OWNER),
            now=1.0,
        )
    answer = await command(gateway, OWNER, "unfollow", {"streamer": "DBR"})
    assert answer["content"].startswith(f"Unfollowed **DBR** in <#{channels[0]}>, <#")
    assert len(answer["content"]) <= 2000 and answer["content"].endswith(" more.")
    assert await store.list_subscriptions(platform="discord") == []


async def test_unfollow_removes_the_channels_alerts(
    bot: DiscordCommands, gateway: FakeDiscordGateway, store: Store
) -> None:
    await command(gateway, OWNER, "follow", {"streamer": "DBR", "channel": ALERTS})
    answer = await command(gateway, OWNER, "unfollow", {"streamer": str(DBR), "channel": ALERTS})
    assert answer["content"] == f"Unfollowed **DBR** in <#{ALERTS}>."
    assert await live_follows(store, ALERTS) == []


async def test_edit_changes_min_viewers_and_keeps_the_rest(
    bot: DiscordCommands, gateway: FakeDiscordGateway, store: Store
) -> None:
    await command(gateway, OWNER, "follow", {"streamer": "DBR", "channel": ALERTS, "role": LIVE})
    answer = await command(
        gateway,
        OWNER,
        "edit",
        {"streamer": "DBR", "channel": ALERTS, "setting": "min_viewers", "value": "50"},
    )
    assert answer["content"].startswith("Updated **DBR**")
    assert await live_follows(store, ALERTS) == [(str(DBR), {"role_id": LIVE, "min_viewers": 50})]


async def test_edit_keeps_the_subscription_so_its_rule_and_cooldown_stay(
    bot: DiscordCommands, gateway: FakeDiscordGateway, store: Store
) -> None:
    await command(gateway, OWNER, "follow", {"streamer": "DBR", "channel": ALERTS})
    (before,) = await store.list_subscriptions(platform="discord", chat_id=str(ALERTS))
    await command(
        gateway,
        OWNER,
        "edit",
        {"streamer": "DBR", "channel": ALERTS, "setting": "min_viewers", "value": "50"},
    )
    (after,) = await store.list_subscriptions(platform="discord", chat_id=str(ALERTS))
    assert (after.id, after.params) == (before.id, {"min_viewers": 50})


@pytest.mark.parametrize(
    ("direction", "value", "kind", "params"),
    [
        ("above", "110,000", "price", {"direction": "above", "line": "110000"}),
        (
            "below",
            "90000 rearm 0.5%",
            "price",
            {"direction": "below", "line": "90000", "rearm": "0.5%"},
        ),
        ("move", "5% 1h", "move", {"percent": "5%", "window": 3600}),
    ],
)
async def test_price_alerts_are_saved_for_the_channel(
    bot: DiscordCommands,
    gateway: FakeDiscordGateway,
    store: Store,
    direction: str,
    value: str,
    kind: str,
    params: dict[str, Any],
) -> None:
    answer = await command(
        gateway,
        OWNER,
        "price",
        {"asset": "btc", "direction": direction, "channel": ALERTS, "value": value},
    )
    assert answer["content"].startswith(f"Alert set in <#{ALERTS}>")
    subs = await store.list_subscriptions(platform="discord", chat_id=str(ALERTS))
    assert [(s.kind, s.target, dict(s.params)) for s in subs] == [(kind, "BTC", params)]


async def test_price_off_removes_alerts_of_an_asset_parti_no_longer_lists(
    bot: DiscordCommands, gateway: FakeDiscordGateway, store: Store, sim: Simulator
) -> None:
    """Before: off looked the asset up at Parti first, so such an alert stayed for good."""
    for direction, value in (("above", "200000"), ("move", "5% 1h")):
        await command(
            gateway,
            OWNER,
            "price",
            {"asset": "BTC", "direction": direction, "channel": ALERTS, "value": value},
        )
    del sim.prices["BTC"]
    answer = await command(
        gateway, OWNER, "price", {"asset": "btc", "direction": "off", "channel": ALERTS}
    )
    assert answer["content"] == f"Removed 2 alerts on BTC in <#{ALERTS}>."
    assert await store.list_subscriptions(platform="discord") == []


async def test_price_off_takes_the_asset_s_ticker_too(
    bot: DiscordCommands, gateway: FakeDiscordGateway, store: Store
) -> None:
    """Before: off matched only the stored symbol (BTC), no longer the ticker (bitcoin)
    that naming the asset takes everywhere else."""
    await command(
        gateway,
        OWNER,
        "price",
        {"asset": "BTC", "direction": "above", "channel": ALERTS, "value": "200000"},
    )
    answer = await command(
        gateway, OWNER, "price", {"asset": "Bitcoin", "direction": "off", "channel": ALERTS}
    )
    assert answer["content"] == f"Removed 1 alert on BTC in <#{ALERTS}>."
    assert await store.list_subscriptions(platform="discord") == []


async def test_price_off_by_a_name_no_alert_has_answers_with_parti_down(
    bot: DiscordCommands, gateway: FakeDiscordGateway, store: Store, sim: Simulator
) -> None:
    await command(
        gateway,
        OWNER,
        "price",
        {"asset": "BTC", "direction": "above", "channel": ALERTS, "value": "200000"},
    )
    sim.fail_next(503, count=10)
    answer = await command(
        gateway, OWNER, "price", {"asset": "bitcoin", "direction": "off", "channel": ALERTS}
    )
    assert answer["content"] == f"<#{ALERTS}> has no BITCOIN alerts."
    assert len(await store.list_subscriptions(platform="discord")) == 1


async def test_a_price_value_that_is_not_a_number_is_refused(
    bot: DiscordCommands, gateway: FakeDiscordGateway, store: Store
) -> None:
    answer = await command(
        gateway,
        OWNER,
        "price",
        {"asset": "BTC", "direction": "above", "channel": ALERTS, "value": "lots"},
    )
    assert answer["content"] == "lots is not a price; write it like 100000 or 0.25."
    assert await store.list_subscriptions(platform="discord") == []


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("[claim](https://evil.example/x)", "\\[claim](https://evil.example/x) is not a price"),
        ("**@everyone**", "\\*\\*@\u200beveryone\\*\\* is not a price"),
    ],
    ids=["masked-link", "everyone"],
)
async def test_user_text_in_a_refusal_is_made_inert(
    bot: DiscordCommands, gateway: FakeDiscordGateway, value: str, shown: str
) -> None:
    """Before: the reply un-escaped the Telegram HTML and gave the typed markdown (a masked
    link, @everyone) back live."""
    answer = await command(
        gateway,
        OWNER,
        "price",
        {"asset": "BTC", "direction": "above", "channel": ALERTS, "value": value},
    )
    assert answer["content"].startswith(shown), answer["content"]


# ---- test, why, resume -----------------------------------------------------------------------


async def test_test_posts_a_preview_to_the_channel(
    bot: DiscordCommands, rest: FakeDiscord, gateway: FakeDiscordGateway
) -> None:
    await command(gateway, OWNER, "follow", {"streamer": "DBR", "channel": ALERTS, "role": LIVE})
    answer = await command(gateway, OWNER, "test", {"streamer": "DBR", "channel": ALERTS})
    assert answer["content"] == f"Posted a preview of **DBR**'s alert in <#{ALERTS}>."
    posted = await rest.wait_sent(lambda e: e.get("where") == f"channel:{ALERTS}", WAIT)
    message = rest.messages[posted["id"]]
    assert message["embeds"][0]["author"]["name"] == "DBR is live"
    assert message["content"].startswith("*Preview") and f"<@&{LIVE}>" in message["content"]
    assert posted["pinged"] == {"everyone": False, "roles": [], "users": []}
    button = message["components"][0]["components"][0]
    assert button["custom_id"] == f"parti:notify:{DBR}"


async def test_a_refused_preview_redacts_discord_s_text_before_it_cuts_it(
    bot: DiscordCommands, rest: FakeDiscord, gateway: FakeDiscordGateway
) -> None:
    """Before: the reply cut Discord's text to 80 characters, unredacted: the 10
    characters of a secret left before the cut were shown in the server."""
    secret = "SENTINEL-BOTREPLY-" + "h3Kd8Wq1Zx6Rm4Tn" * 3
    register_secret(secret)  # as the settings' tokens are
    await command(gateway, OWNER, "follow", {"streamer": "DBR", "channel": ALERTS})
    rest.fail(403, "x" * 70 + secret, code=50013)
    answer = await command(gateway, OWNER, "test", {"streamer": "DBR", "channel": ALERTS})
    assert answer["content"].startswith(f"Discord refused my post in <#{ALERTS}>: xxx")
    pieces = {secret[i : i + 8] for i in range(len(secret) - 7)}
    assert not [piece for piece in pieces if piece in answer["content"]], answer["content"]


async def test_why_tells_the_last_decision_for_the_channel(
    bot: DiscordCommands, gateway: FakeDiscordGateway, store: Store, clock: Clock
) -> None:
    await command(gateway, OWNER, "follow", {"streamer": "DBR", "channel": ALERTS})
    await store.record_decision(
        "discord", str(ALERTS), str(DBR), "held: cooldown of 10m", at=clock.now
    )
    answer = await command(gateway, MEMBER, "why", {"streamer": "DBR"})
    assert answer["content"] == (
        f"About **DBR**:\n<#{ALERTS}>: held: cooldown of 10m (<t:{int(clock.now)}:R>)"
    )


async def test_resume_clears_the_pause(
    bot: DiscordCommands, gateway: FakeDiscordGateway, store: Store, clock: Clock
) -> None:
    await command(gateway, OWNER, "follow", {"streamer": "DBR", "channel": ALERTS})
    await store.set_chat_fields(
        "discord", str(ALERTS), now=clock.now, paused_reason="missing-permissions"
    )
    answer = await command(gateway, OWNER, "resume", {"channel": ALERTS})
    assert answer["content"] == f"Resumed: alerts go to <#{ALERTS}> again."
    chat = await store.get_chat("discord", str(ALERTS))
    assert chat is not None and chat.paused_reason is None


async def test_losing_the_channel_pauses_it_and_tells_the_server(
    bot: DiscordCommands, rest: FakeDiscord, gateway: FakeDiscordGateway, store: Store
) -> None:
    await command(gateway, OWNER, "follow", {"streamer": "DBR", "channel": ALERTS})
    rest.revoke(ALERTS, P.SEND_MESSAGES)
    told = await rest.wait_sent(lambda e: e.get("where") == f"channel:{GENERAL}", WAIT)
    assert told["body"]["content"].startswith(f"⏸️ Alerts to <#{ALERTS}> are paused")
    assert "/parti resume" in told["body"]["content"]
    chat = await store.get_chat("discord", str(ALERTS))
    assert chat is not None and chat.paused_reason == "missing-permissions"


async def test_a_channel_lost_while_the_store_is_down_is_paused_once_it_answers(
    bot: DiscordCommands,
    rest: FakeDiscord,
    gateway: FakeDiscordGateway,
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The gateway tells of a lost channel once: a store that does not answer then is
    waited out, not the end of it."""
    await command(gateway, OWNER, "follow", {"streamer": "DBR", "channel": ALERTS})
    monkeypatch.setattr(outage, "RETRY_BASE", 0.01)
    refused = asyncio.Event()
    count = store.count_subscriptions

    async def down(*args: Any, **kwargs: Any) -> int:
        if not refused.is_set():
            refused.set()  # once: its retry finds the store answering
            raise StoreUnavailable("database is locked")
        return await count(*args, **kwargs)

    monkeypatch.setattr(store, "count_subscriptions", down)
    rest.revoke(ALERTS, P.SEND_MESSAGES)
    async with asyncio.timeout(WAIT):
        await refused.wait()
    told = await rest.wait_sent(lambda e: e.get("where") == f"channel:{GENERAL}", WAIT)
    assert told["body"]["content"].startswith(f"⏸️ Alerts to <#{ALERTS}> are paused")
    chat = await store.get_chat("discord", str(ALERTS))
    assert chat is not None and chat.paused_reason == "missing-permissions"


# ---- a member's own DM alerts ----------------------------------------------------------------


async def test_a_member_follows_lists_and_unfollows_by_dm(
    bot: DiscordCommands, gateway: FakeDiscordGateway, store: Store
) -> None:
    followed = await command(gateway, MEMBER, "me follow", {"streamer": "DBR"})
    assert followed["content"].startswith("I'll DM you when **DBR** goes live")
    assert await live_follows(store, f"dm:{MEMBER}") == [(str(DBR), {})]
    listed = await command(gateway, MEMBER, "me list")
    assert listed["embeds"][0]["description"] == "1. **DBR**"
    gone = await command(gateway, MEMBER, "me unfollow", {"streamer": str(DBR)})
    assert gone["content"] == "You won't get DMs about **DBR** any more."
    assert await live_follows(store, f"dm:{MEMBER}") == []


async def test_me_follow_works_in_a_dm_with_the_bot(
    bot: DiscordCommands, gateway: FakeDiscordGateway, store: Store
) -> None:
    await command(gateway, MEMBER, "me follow", {"streamer": "SNEAKO"}, guild=None)
    assert await live_follows(store, f"dm:{MEMBER}") == [(str(SNEAKO), {})]


async def test_server_commands_in_a_dm_are_refused(
    bot: DiscordCommands, gateway: FakeDiscordGateway
) -> None:
    answer = await command(gateway, MEMBER, "list", guild=None)
    assert answer["content"] == "Use this command in a server."


# ---- the Notify-me button --------------------------------------------------------------------


async def post_alert(rest: FakeDiscord) -> int:
    """A go-live alert as delivery posts it, with the Notify-me button."""
    hub = DiscordHub(rest.api_url, rest.bot_token)
    try:
        sender = DiscordChannelSender(
            f"@dc:{ALERTS}", ALERTS, hub, components_for=live_alert_components
        )
        await sender.start()
        message_id = await sender.send(live_payload())
    finally:
        await hub.close()
    assert message_id is not None
    return int(message_id)


async def press_notify(rest: FakeDiscord, gateway: FakeDiscordGateway, message_id: int) -> str:
    pressed = await gateway.press_button(GUILD, ALERTS, MEMBER, f"parti:notify:{DBR}", message_id)
    answer = await answer_of(rest, pressed.id)
    assert answer["ephemeral"]
    return str(answer["content"])


async def test_notify_me_toggles_the_members_dm_alerts(
    bot: DiscordCommands, rest: FakeDiscord, gateway: FakeDiscordGateway, store: Store
) -> None:
    message_id = await post_alert(rest)
    first = await press_notify(rest, gateway, message_id)
    assert first.startswith("I'll DM you when **DBR** goes live")
    assert await live_follows(store, f"dm:{MEMBER}") == [(str(DBR), {})]
    second = await press_notify(rest, gateway, message_id)
    assert second == "You won't get DMs about **DBR** any more."
    assert await live_follows(store, f"dm:{MEMBER}") == []


async def test_notify_me_works_after_a_restart(
    start_bot: Starter,
    running: Running,
    rest: FakeDiscord,
    gateway: FakeDiscordGateway,
    store: Store,
) -> None:
    first = await start_bot()
    message_id = await post_alert(rest)
    await running.stop(first)
    await start_bot()
    await press_notify(rest, gateway, message_id)
    assert await live_follows(store, f"dm:{MEMBER}") == [(str(DBR), {})]


async def test_the_known_assets_of_an_unknown_asset_answer_are_made_inert(
    bot: DiscordCommands, gateway: FakeDiscordGateway, sim: Simulator
) -> None:
    hostile = "**@everyone**"
    sim.prices[hostile] = {**sim.prices["BTC"], "display_symbol": hostile}
    answer = await command(
        gateway,
        OWNER,
        "price",
        {"asset": "DOGE", "direction": "above", "channel": ALERTS, "value": "1"},
    )
    assert answer["content"].startswith("I don't know the asset DOGE. Known: ")
    # Symbols are shown upper-cased: the markdown around them must not render.
    assert "**@EVERYONE**" not in answer["content"]
    assert "\\*\\*@EVERYONE\\*\\*" in answer["content"]


async def test_sync_guild_gives_up_on_a_discord_that_never_answers() -> None:
    async with SilentServer() as silent:
        with pytest.raises(DiscordBotError, match=r"^no answer from Discord within 0\.5 s"):
            await sync_guild(
                "sentinel.bot.token", f"http://127.0.0.1:{silent.port}/api/v10", 1, timeout=0.5
            )
        assert silent.held  # it did ask


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("rate limited for 2 minutes", r"^Discord rate-limits this for 120 s: try again then$"),
        ("a web page", r"^http://127\.0\.0\.1:\d+/api/v10 did not answer as Discord does"),
    ],
)
async def test_sync_guild_says_in_one_line_what_discord_answered(
    answer: str, expected: str
) -> None:
    """Before: a rate limit longer than discord.py waits out, or an answer that is not
    Discord's (a proxy's page), ended in "internal error" and a traceback."""

    async def me(request: web.Request) -> web.Response:
        if answer == "a web page":
            return web.Response(text="<html>hello</html>", content_type="text/html")
        user = {"id": "1", "username": "bot", "discriminator": "0", "avatar": None, "bot": True}
        return _json(user)

    async def application(request: web.Request) -> web.Response:
        owner = {"id": "2", "username": "owner", "discriminator": "0", "avatar": None}
        return _json(
            {
                "id": "1",
                "name": "bot",
                "icon": None,
                "description": "",
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": owner,
                "verify_key": "k",
                "flags": 0,
            }
        )

    async def commands(request: web.Request) -> web.Response:
        return _json(
            {"message": "You are being rate limited.", "retry_after": 120.0, "global": False},
            429,
            {"Retry-After": "120", "Via": "1.1 google"},
        )

    app = web.Application()
    app.router.add_get("/api/v10/users/@me", me)
    app.router.add_get("/api/v10/oauth2/applications/@me", application)
    app.router.add_put("/api/v10/applications/{app}/guilds/{guild}/commands", commands)
    async with served(app) as port:
        with pytest.raises(DiscordBotError, match=expected):
            await sync_guild("sentinel.bot.token", f"http://127.0.0.1:{port}/api/v10", 1)
