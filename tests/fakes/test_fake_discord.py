"""The fake Discord gateway and REST API, driven by a real discord.py Client + CommandTree."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from multidict import CIMultiDictProxy

from tests.fakes.discord import (
    BOT_USER_ID,
    EPHEMERAL,
    FakeDiscord,
    P,
)
from tests.fakes.discord_gateway import FakeDiscordGateway, discord_py_pointed_at

GUILD = 100_000_000_000_000_001
ALERTS = 100_000_000_000_000_002  # the bot may post here
HIDDEN = 100_000_000_000_000_003  # the bot may not even see this one
ADMINS = 100_000_000_000_000_004  # role with Manage Server
LIVE = 100_000_000_000_000_005  # a mentionable role
QUIET = 100_000_000_000_000_006  # a role nobody may mention
ADMIN = 200_000_000_000_000_001
MEMBER = 200_000_000_000_000_002
STREAMERS = ["alice", "alfred", "bob"]
WAIT = 10.0


def build_world(rest: FakeDiscord) -> None:
    rest.add_guild(GUILD, name="Streamers' corner", owner_id=ADMIN)
    rest.add_text_channel(GUILD, ALERTS, name="alerts", system=True)
    rest.add_text_channel(GUILD, HIDDEN, name="mods-only")
    rest.set_channel_permissions(HIDDEN, GUILD, deny=P.VIEW_CHANNEL)
    rest.add_role(GUILD, ADMINS, name="admins", permissions=P.MANAGE_GUILD)
    rest.add_role(GUILD, LIVE, name="live-pings", mentionable=True)
    rest.add_role(GUILD, QUIET, name="quiet")
    rest.add_member(GUILD, MEMBER, username="member", roles=[LIVE])


class NotifyButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"notify:(?P<streamer>[a-z0-9_]{1,32})",
):
    def __init__(self, streamer: str) -> None:
        super().__init__(
            discord.ui.Button(
                label="Notify me", style=discord.ButtonStyle.primary, custom_id=f"notify:{streamer}"
            )
        )
        self.streamer = streamer

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> NotifyButton:
        return cls(match["streamer"])

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(
            f"{interaction.user.id} will hear about {self.streamer}", ephemeral=True
        )


class EndButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"end:(?P<who>\w+)"):
    """Acknowledges without a reply (type 6), then edits the message it sits on."""

    def __init__(self, who: str) -> None:
        super().__init__(discord.ui.Button(label="End", custom_id=f"end:{who}"))
        self.who = who

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> EndButton:
        return cls(match["who"])

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        await interaction.edit_original_response(content=f"{self.who} ended", view=None)


def make_client() -> tuple[discord.Client, app_commands.CommandTree[discord.Client]]:
    intents = discord.Intents.none()
    intents.guilds = True
    # guild_ready_timeout: how long discord.py waits for more GUILD_CREATEs before on_ready
    client = discord.Client(intents=intents, guild_ready_timeout=0.05)
    tree: app_commands.CommandTree[discord.Client] = app_commands.CommandTree(client)
    parti = app_commands.Group(name="parti", description="Parti alerts for this server")
    me = app_commands.Group(name="me", description="Your own alerts by DM", parent=parti)

    @parti.command(name="follow", description="Alert a channel when a streamer goes live")
    async def follow(
        interaction: discord.Interaction,
        streamer: str,
        channel: discord.TextChannel,
        role: discord.Role | None = None,
    ) -> None:
        ping = f" pinging {role.name}" if role else ""
        await interaction.response.send_message(
            f"following {streamer} in #{channel.name}{ping}", ephemeral=True
        )

    @follow.autocomplete("streamer")
    async def streamer_names(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=n, value=n) for n in STREAMERS if n.startswith(current)]

    @parti.command(name="list", description="What this server follows")
    async def list_(interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await interaction.followup.send("nothing followed yet", ephemeral=True)

    @me.command(name="list", description="What you follow by DM")
    async def me_list(interaction: discord.Interaction) -> None:
        where = "a DM" if interaction.guild is None else interaction.guild.name
        await interaction.response.send_message(f"{interaction.user.name} in {where}")

    tree.add_command(parti)
    client.add_dynamic_items(NotifyButton, EndButton)
    return client, tree


@dataclass
class Bot:
    client: discord.Client
    tree: app_commands.CommandTree[discord.Client]
    running: asyncio.Task[None]


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeDiscord, FakeDiscordGateway]]:
    rest = await FakeDiscord().start()
    build_world(rest)
    gateway = await FakeDiscordGateway(rest).start()
    try:
        with discord_py_pointed_at(rest, gateway):
            yield rest, gateway
    finally:
        await gateway.stop()
        await rest.stop()


async def start_client(
    client: discord.Client, token: str, ready: asyncio.Event
) -> asyncio.Task[None]:
    """Starts the client; returns once on_ready fired (or raises what start raised)."""
    running = asyncio.create_task(client.start(token))
    waiting = asyncio.create_task(ready.wait())
    done, _ = await asyncio.wait({running, waiting}, timeout=WAIT, return_when="FIRST_COMPLETED")
    if waiting not in done:
        waiting.cancel()
        await client.close()
        if running in done:
            running.result()
        raise TimeoutError("the client never became ready")
    return running


async def stop_client(client: discord.Client, running: asyncio.Task[None]) -> None:
    await client.close()
    async with asyncio.timeout(WAIT):
        await running


@pytest.fixture
async def bot(fakes: tuple[FakeDiscord, FakeDiscordGateway]) -> AsyncIterator[Bot]:
    rest, _ = fakes
    client, tree = make_client()
    ready = asyncio.Event()

    async def on_ready() -> None:
        ready.set()

    client.event(on_ready)
    running = await start_client(client, rest.bot_token, ready)
    try:
        yield Bot(client, tree, running)
    finally:
        await stop_client(client, running)


async def sync_guild(bot: Bot) -> None:
    bot.tree.copy_global_to(guild=discord.Object(GUILD))
    await bot.tree.sync(guild=discord.Object(GUILD))


async def call(
    rest: FakeDiscord, method: str, path: str, body: Any = None, *, auth: bool = True
) -> tuple[int, Any, CIMultiDictProxy[str]]:
    headers = {"Authorization": f"Bot {rest.bot_token}"} if auth else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, rest.api_url + path, json=body, headers=headers) as response,
    ):
        data = await response.json(content_type=None) if response.status != 204 else None
        return response.status, data, response.headers


# ---- gateway: connecting ----


async def test_client_sees_the_guild_its_channels_and_roles(bot: Bot) -> None:
    guild = bot.client.get_guild(GUILD)
    assert guild is not None and guild.name == "Streamers' corner"
    assert {c.name for c in guild.text_channels} == {"alerts", "mods-only"}
    assert {"admins", "live-pings", "quiet", "@everyone"} <= {r.name for r in guild.roles}
    assert guild.system_channel is not None and guild.system_channel.id == ALERTS
    assert guild.me is not None and guild.me.id == BOT_USER_ID


async def test_permissions_for_follow_roles_and_overwrites(
    bot: Bot, fakes: tuple[FakeDiscord, FakeDiscordGateway]
) -> None:
    rest, _ = fakes
    guild = bot.client.get_guild(GUILD)
    assert guild is not None
    alerts, hidden = guild.get_channel(ALERTS), guild.get_channel(HIDDEN)
    assert isinstance(alerts, discord.TextChannel) and isinstance(hidden, discord.TextChannel)
    mine = alerts.permissions_for(guild.me)
    assert (mine.view_channel, mine.send_messages, mine.embed_links) == (True, True, True)
    assert not mine.mention_everyone
    assert not hidden.permissions_for(guild.me).view_channel
    for channel in (ALERTS, HIDDEN):
        seen = guild.get_channel(channel)
        assert seen is not None
        assert seen.permissions_for(guild.me).value == rest.permissions_in(channel, BOT_USER_ID)


async def test_heartbeat_comes_first_and_is_acknowledged(
    bot: Bot, fakes: tuple[FakeDiscord, FakeDiscordGateway]
) -> None:
    _, gateway = fakes
    ops = [p["op"] for p in gateway.requests]
    assert ops[:2] == [1, 2], "discord.py beats at once after HELLO, then identifies"
    assert gateway.heartbeats >= 1
    assert gateway.intents == discord.Intents(guilds=True).value


async def test_resume_replays_what_was_missed(
    bot: Bot, fakes: tuple[FakeDiscord, FakeDiscordGateway]
) -> None:
    rest, gateway = fakes
    await sync_guild(bot)
    assert gateway.drop_connection() == 1
    # sent while the client is away: it arrives with the RESUME
    missed = await gateway.interact_command(
        GUILD, ALERTS, MEMBER, subcommand="follow", options={"streamer": "bob", "channel": ALERTS}
    )
    await gateway.wait_resumed(WAIT)
    answer = await rest.wait_for_callback(missed.id, WAIT)
    assert answer["data"]["content"] == "following bob in #alerts"
    assert gateway.identified == 1, "a resume, not a new session"
    resumed = next(c for c in gateway.connections if "resumed" in c)
    assert resumed["path"] == "/resume", "discord.py used resume_gateway_url"


async def test_world_changes_reach_the_client_as_gateway_events(
    bot: Bot, fakes: tuple[FakeDiscord, FakeDiscordGateway]
) -> None:
    rest, _ = fakes
    # Client.wait_for registers its listener when called, before the events go out
    updated = bot.client.wait_for("guild_channel_update", timeout=WAIT)
    deleted = bot.client.wait_for("guild_channel_delete", timeout=WAIT)
    rest.revoke(ALERTS, P.SEND_MESSAGES)
    _, after = await updated
    assert not after.permissions_for(after.guild.me).send_messages
    rest.delete_channel(HIDDEN)
    gone = await deleted
    assert gone.id == HIDDEN and bot.client.get_channel(HIDDEN) is None


async def test_bad_token_fails_at_login(fakes: tuple[FakeDiscord, FakeDiscordGateway]) -> None:
    client, _ = make_client()
    try:
        with pytest.raises(discord.LoginFailure):
            async with asyncio.timeout(WAIT):
                await client.start("not-the-token")
    finally:
        await client.close()


async def test_token_reset_after_login_is_closed_with_4004(
    fakes: tuple[FakeDiscord, FakeDiscordGateway],
) -> None:
    rest, gateway = fakes
    client, _ = make_client()
    try:
        await client.login(rest.bot_token)
        rest.regenerate_token()
        with pytest.raises(discord.ConnectionClosed) as closed:
            async with asyncio.timeout(WAIT):
                await client.connect()
        assert closed.value.code == 4004
        assert (await gateway.wait_closed(WAIT))["closed_by_fake"] == 4004
        assert client.is_closed()
    finally:
        await client.close()


async def test_privileged_intents_not_enabled_are_refused(
    fakes: tuple[FakeDiscord, FakeDiscordGateway],
) -> None:
    rest, _ = fakes
    client = discord.Client(intents=discord.Intents(guilds=True, message_content=True))
    try:
        with pytest.raises(discord.PrivilegedIntentsRequired):
            async with asyncio.timeout(WAIT):
                await client.start(rest.bot_token)
    finally:
        await client.close()


# ---- interactions ----


async def test_tree_sync_to_a_guild_puts_its_commands(
    bot: Bot, fakes: tuple[FakeDiscord, FakeDiscordGateway]
) -> None:
    rest, _ = fakes
    bot.tree.copy_global_to(guild=discord.Object(GUILD))
    synced = await bot.tree.sync(guild=discord.Object(GUILD))
    assert [c.name for c in synced] == ["parti"] and synced[0].guild_id == GUILD
    (put,) = rest.command_puts
    assert put["ok"] and put["guild_id"] == GUILD
    subcommands = {o["name"]: o for o in rest.commands[GUILD][0]["options"]}
    assert set(subcommands) == {"follow", "list", "me"}
    follow = {o["name"]: o for o in subcommands["follow"]["options"]}
    assert follow["streamer"]["autocomplete"] and follow["channel"]["type"] == 7


async def test_slash_command_is_answered_ephemerally(
    bot: Bot, fakes: tuple[FakeDiscord, FakeDiscordGateway]
) -> None:
    rest, gateway = fakes
    await sync_guild(bot)
    sent = await gateway.interact_command(
        GUILD,
        ALERTS,
        ADMIN,
        subcommand="follow",
        options={"streamer": "alice", "channel": ALERTS, "role": LIVE},
    )
    answer = await rest.wait_for_callback(sent.id, WAIT)
    assert answer["type"] == 4 and answer["data"]["flags"] & EPHEMERAL
    assert answer["data"]["content"] == "following alice in #alerts pinging live-pings"
    assert answer["pinged"] == {"everyone": False, "roles": [], "users": []}


async def test_autocomplete_is_answered_with_choices(
    bot: Bot, fakes: tuple[FakeDiscord, FakeDiscordGateway]
) -> None:
    rest, gateway = fakes
    await sync_guild(bot)
    sent = await gateway.interact_autocomplete(
        GUILD, ALERTS, MEMBER, subcommand="follow", options={"streamer": "al"}, focused="streamer"
    )
    answer = await rest.wait_for_callback(sent.id, WAIT)
    assert answer["type"] == 8
    assert [c["value"] for c in answer["data"]["choices"]] == ["alice", "alfred"]


async def test_deferred_answer_is_filled_by_the_first_followup(
    bot: Bot, fakes: tuple[FakeDiscord, FakeDiscordGateway]
) -> None:
    rest, gateway = fakes
    await sync_guild(bot)
    sent = await gateway.interact_command(GUILD, ALERTS, ADMIN, subcommand="list")
    answer = await rest.wait_for_callback(sent.id, WAIT)
    assert answer["type"] == 5 and answer["ephemeral"]
    followup = await rest.wait_sent(lambda e: e["where"] == f"followup:{sent.id}", WAIT)
    assert followup["id"] == answer["message_id"], "the thinking message was filled"
    assert rest.messages[followup["id"]]["content"] == "nothing followed yet"


async def test_button_press_reaches_the_dynamic_item(
    bot: Bot, fakes: tuple[FakeDiscord, FakeDiscordGateway]
) -> None:
    rest, gateway = fakes
    channel = bot.client.get_channel(ALERTS)
    assert isinstance(channel, discord.TextChannel)
    view = discord.ui.View(timeout=None)
    view.add_item(NotifyButton("alice"))
    posted = await channel.send(
        "alice is live", view=view, allowed_mentions=discord.AllowedMentions.none()
    )
    (row,) = rest.messages[posted.id]["components"]
    assert row["components"][0]["custom_id"] == "notify:alice"
    sent = await gateway.press_button(GUILD, ALERTS, MEMBER, "notify:alice", posted.id)
    answer = await rest.wait_for_callback(sent.id, WAIT)
    assert answer["type"] == 4 and answer["ephemeral"]
    assert answer["data"]["content"] == f"{MEMBER} will hear about alice"


async def test_a_deferred_button_press_edits_the_message_it_sits_on(
    bot: Bot, fakes: tuple[FakeDiscord, FakeDiscordGateway]
) -> None:
    rest, gateway = fakes
    channel = bot.client.get_channel(ALERTS)
    assert isinstance(channel, discord.TextChannel)
    view = discord.ui.View(timeout=None)
    view.add_item(EndButton("alice"))
    posted = await channel.send(
        "alice is live", view=view, allowed_mentions=discord.AllowedMentions.none()
    )
    sent = await gateway.press_button(GUILD, ALERTS, MEMBER, "end:alice", posted.id)
    answer = await rest.wait_for_callback(sent.id, WAIT)
    assert answer["type"] == 6
    await rest.wait_for(lambda: rest.messages[posted.id]["content"] == "alice ended", WAIT)
    assert rest.messages[posted.id]["components"] == []


async def test_dm_interaction_has_a_user_and_no_guild(
    bot: Bot, fakes: tuple[FakeDiscord, FakeDiscordGateway]
) -> None:
    rest, gateway = fakes
    await bot.tree.sync()
    assert rest.command_puts[-1]["guild_id"] is None
    sent = await gateway.interact_command(None, None, MEMBER, subcommand="me list")
    assert "member" not in sent.payload and sent.payload["user"]["id"] == str(MEMBER)
    answer = await rest.wait_for_callback(sent.id, WAIT)
    assert answer["data"]["content"] == "member in a DM"


async def test_a_second_answer_to_one_interaction_is_refused_with_40060(
    bot: Bot, fakes: tuple[FakeDiscord, FakeDiscordGateway]
) -> None:
    rest, gateway = fakes
    await sync_guild(bot)
    sent = await gateway.interact_command(GUILD, ALERTS, ADMIN, subcommand="me list")
    await rest.wait_for_callback(sent.id, WAIT)
    status, body, _ = await call(
        rest,
        "POST",
        f"/interactions/{sent.id}/{sent.token}/callback",
        {"type": 4, "data": {"content": "again"}},
        auth=False,
    )
    assert (status, body["code"]) == (400, 40060)


async def test_an_unregistered_command_cannot_be_invoked(
    fakes: tuple[FakeDiscord, FakeDiscordGateway],
) -> None:
    _, gateway = fakes
    with pytest.raises(LookupError, match="sync the tree first"):
        await gateway.interact_command(GUILD, ALERTS, ADMIN, subcommand="follow")


# ---- REST: messages, permissions, limits ----


async def test_closed_dms_refuse_with_50007(
    bot: Bot, fakes: tuple[FakeDiscord, FakeDiscordGateway]
) -> None:
    rest, _ = fakes
    rest.close_dms(MEMBER)
    dm = await bot.client.create_dm(discord.Object(MEMBER))
    with pytest.raises(discord.Forbidden) as refused:
        await dm.send("hi", allowed_mentions=discord.AllowedMentions.none())
    assert refused.value.code == 50007


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ("none", 200, None),
        ("no-send", 403, 50013),
        ("no-view", 403, 50001),
        ("deleted", 404, 10003),
        ("kicked", 403, 50001),
    ],
)
async def test_channel_send_follows_the_bots_permissions(
    fakes: tuple[FakeDiscord, FakeDiscordGateway], change: str, status: int, code: int | None
) -> None:
    rest, _ = fakes
    if change == "no-send":
        rest.revoke(ALERTS, P.SEND_MESSAGES)
    elif change == "no-view":
        rest.revoke(ALERTS, P.VIEW_CHANNEL)
    elif change == "deleted":
        rest.delete_channel(ALERTS)
    elif change == "kicked":
        rest.remove_guild(GUILD)
    got, body, _ = await call(
        rest, "POST", f"/channels/{ALERTS}/messages", {"content": "hi", "allowed_mentions": {}}
    )
    assert (got, body.get("code")) == (status, code)


async def test_roles_ping_only_when_mentionable_or_the_bot_may_mention_everyone(
    fakes: tuple[FakeDiscord, FakeDiscordGateway],
) -> None:
    rest, _ = fakes
    message = {
        "content": f"<@&{LIVE}> <@&{QUIET}> @everyone",
        "allowed_mentions": {"parse": ["roles", "everyone"]},
    }
    await call(rest, "POST", f"/channels/{ALERTS}/messages", message)
    rest.set_role_permissions(GUILD, rest.guilds[GUILD].bot_role_id, P.MENTION_EVERYONE)
    await call(rest, "POST", f"/channels/{ALERTS}/messages", message)
    before, after = (entry["pinged"] for entry in rest.sent())
    assert before == {"everyone": False, "roles": [LIVE], "users": []}
    assert after == {"everyone": True, "roles": [LIVE, QUIET], "users": []}


@pytest.mark.parametrize(
    ("components", "problem"),
    [
        (
            [{"type": 1, "components": [{"type": 2, "style": 1, "custom_id": "x" * 101}]}],
            "custom_id of 101",
        ),
        (
            [
                {
                    "type": 1,
                    "components": [
                        {"type": 2, "style": 1, "custom_id": f"b{n}", "label": "b"}
                        for n in range(6)
                    ],
                }
            ],
            "6 buttons in a row",
        ),
        ([{"type": 2, "style": 1, "custom_id": "loose"}], "must be action rows"),
    ],
)
async def test_message_components_follow_discords_rules(
    fakes: tuple[FakeDiscord, FakeDiscordGateway], components: list[dict[str, Any]], problem: str
) -> None:
    rest, _ = fakes
    body = {"content": "hi", "allowed_mentions": {}, "components": components}
    status, answer, _ = await call(rest, "POST", f"/channels/{ALERTS}/messages", body)
    assert (status, answer["code"]) == (400, 50035)
    assert any(problem in p for p in answer["errors"])


@pytest.mark.parametrize(
    ("command", "problem"),
    [
        ({"name": "Parti", "description": "x"}, "lowercase"),
        ({"name": "parti", "description": ""}, "description must be 1-100"),
        ({"name": "parti", "description": "x" * 101}, "description must be 1-100"),
        (
            {
                "name": "parti",
                "description": "x",
                "options": [{"name": f"o{n}", "description": "x", "type": 3} for n in range(26)],
            },
            "26 options",
        ),
        (
            {
                "name": "parti",
                "description": "x",
                "options": [
                    {"name": "a", "description": "x", "type": 3},
                    {"name": "b", "description": "x", "type": 3, "required": True},
                ],
            },
            "required options must come before",
        ),
    ],
)
async def test_bulk_overwrite_rejects_invalid_commands(
    fakes: tuple[FakeDiscord, FakeDiscordGateway], command: dict[str, Any], problem: str
) -> None:
    rest, _ = fakes
    status, answer, _ = await call(
        rest, "PUT", f"/applications/{BOT_USER_ID}/guilds/{GUILD}/commands", [command]
    )
    assert (status, answer["code"]) == (400, 50035)
    assert any(problem in p for p in answer["errors"])


async def test_successful_answers_announce_their_rate_limit_bucket(
    fakes: tuple[FakeDiscord, FakeDiscordGateway],
) -> None:
    rest, _ = fakes
    _, _, headers = await call(
        rest, "POST", f"/channels/{ALERTS}/messages", {"content": "hi", "allowed_mentions": {}}
    )
    assert headers["Content-Type"] == "application/json"
    for name in ("Limit", "Remaining", "Reset", "Reset-After", "Bucket"):
        assert f"X-RateLimit-{name}" in headers
    assert int(headers["X-RateLimit-Remaining"]) == int(headers["X-RateLimit-Limit"]) - 1


async def test_an_exhausted_bucket_says_when_it_resets_then_answers_429() -> None:
    rest = await FakeDiscord(limits_scale=0.2).start()  # one request per window
    try:
        url = rest.add_webhook(55)
        path = url.removeprefix("https://discord.com/api")
        body = {"content": "hi", "allowed_mentions": {}}
        status, _, headers = await call(rest, "POST", path, body, auth=False)
        assert (status, headers["X-RateLimit-Remaining"]) == (200, "0")
        assert float(headers["X-RateLimit-Reset-After"]) > 0
        status, answer, headers = await call(rest, "POST", path, body, auth=False)
        assert status == 429 and headers["Via"] and answer["global"] is False
        assert answer["retry_after"] > 0
    finally:
        await rest.stop()
