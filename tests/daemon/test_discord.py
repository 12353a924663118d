"""Discord servers end to end: `notifier run` with its command bot on the fake Discord gateway
and REST API, the Parti simulator as Parti, over real sockets: /parti follow with a role and
a message, the alert, Notify me, a refused member, and a channel the bot lost."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from notifier.bots.discord import MANAGERS_ONLY
from notifier.parti.decode import LIVE
from notifier.parti.simulator import Simulator
from notifier.store import open_store
from tests.daemon.helpers import Daemon, daemon_env
from tests.fakes.discord import (
    BOT_USER_ID,
    DEFAULT_BOT,
    DEFAULT_EVERYONE,
    EPHEMERAL,
    FakeDiscord,
    P,
)
from tests.fakes.discord_gateway import FakeDiscordGateway

GUILD = 100_000_000_000_000_001
ALERTS = 100_000_000_000_000_002
GENERAL = 100_000_000_000_000_003  # the server's system channel
ADMINS = 100_000_000_000_000_011  # a role with Manage Server
LIVE_PINGS = 100_000_000_000_000_012  # mentionable: the role alerts ping
OTHERS = 100_000_000_000_000_013  # mentionable too: must never be pinged
OWNER = 200_000_000_000_000_001
MANAGER = 200_000_000_000_000_002  # has the admins role
MEMBER = 200_000_000_000_000_003  # plain member
SNEAKO = 463000  # in the simulator's seed, not live
NOTIFY = f"parti:notify:{SNEAKO}"
TEMPLATE = "{{ user_name }} is live!"
WAIT = 20.0
# No cooldown: the default 10 minutes would hold back a streamer's second go-live in a test.
CONSOLE = (
    "destinations: {t: {console: {}}}\nbots: {discord: {commands: true}}\ndefaults: {cooldown: 0}\n"
)


@dataclass
class World:
    rest: FakeDiscord
    gateway: FakeDiscordGateway
    sim: Simulator
    daemon: Daemon
    state: Path


def build_world(rest: FakeDiscord) -> None:
    rest.add_guild(GUILD, name="Streamers' corner", owner_id=OWNER)
    rest.add_text_channel(GUILD, GENERAL, name="general", system=True)
    rest.add_text_channel(GUILD, ALERTS, name="alerts")
    rest.add_role(GUILD, ADMINS, name="admins", permissions=P.MANAGE_GUILD)
    rest.add_role(GUILD, LIVE_PINGS, name="live-pings", mentionable=True)
    rest.add_role(GUILD, OTHERS, name="others", mentionable=True)
    rest.add_member(GUILD, MANAGER, username="manager", roles=[ADMINS, OTHERS])
    rest.add_member(GUILD, MEMBER, username="member", roles=[LIVE_PINGS, OTHERS])


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeDiscord, FakeDiscordGateway]]:
    rest = await FakeDiscord().start()
    build_world(rest)
    gateway = await FakeDiscordGateway(rest).start()
    try:
        yield rest, gateway
    finally:
        await gateway.stop()
        await rest.stop()


async def start(
    tmp_path: Path,
    sim: Simulator,
    fakes: tuple[FakeDiscord, FakeDiscordGateway],
    rules_text: str = CONSOLE,
) -> World:
    """The daemon with its command bot connected and its commands registered."""
    rest, gateway = fakes
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_text)
    env = daemon_env(tmp_path, sim, discord=rest, NOTIFIER_DISCORD_GATEWAY_URL=gateway.url)
    daemon = await Daemon(env, rules).start()
    world = World(rest, gateway, sim, daemon, Path(env["NOTIFIER_STATE_PATH"]))
    try:
        await sim.wait_subscribed(LIVE)
        await daemon.wait_log("catch_up.done", timeout=WAIT)
        # Commands sync globally before the gateway connects; on_ready after GUILD_CREATE
        # and discord.py's guild_ready_timeout.
        await daemon.wait_log("bot.started", timeout=WAIT, platform="discord")
        await rest.wait_for(lambda: any(p["ok"] for p in rest.command_puts), WAIT)
    except BaseException:
        await daemon.stop()
        raise
    return world


@pytest.fixture
async def world(
    tmp_path: Path, sim: Simulator, fakes: tuple[FakeDiscord, FakeDiscordGateway]
) -> AsyncIterator[World]:
    running = await start(tmp_path, sim, fakes)
    try:
        yield running
    finally:
        await running.daemon.stop()


async def answer_of(rest: FakeDiscord, interaction_id: int) -> dict[str, Any]:
    """The bot's answer as the member sees it: a direct reply, or the followup that filled
    its "thinking" message; with `ephemeral`."""
    callback = await rest.wait_for_callback(interaction_id, WAIT)
    if callback["type"] == 4:
        return dict(callback["data"]) | {"ephemeral": callback["ephemeral"]}
    await rest.wait_sent(lambda e: e.get("where") == f"followup:{interaction_id}", WAIT)
    message = rest.messages[callback["message_id"]]
    return dict(message) | {"ephemeral": bool(message["flags"] & EPHEMERAL)}


async def follow(world: World, user: int, **options: Any) -> dict[str, Any]:
    """`/parti follow` typed by `user` in #general, SNEAKO to #alerts unless told."""
    sent = await world.gateway.interact_command(
        GUILD,
        GENERAL,
        user,
        subcommand="follow",
        options={"streamer": "SNEAKO", "channel": ALERTS} | options,
    )
    return await answer_of(world.rest, sent.id)


async def admin_follows(world: World) -> None:
    """The manager follows SNEAKO in #alerts pinging live-pings with a message of their own;
    the subscription has reached the engine."""
    answer = await follow(world, MANAGER, role=LIVE_PINGS, message=TEMPLATE)
    assert answer["ephemeral"]
    assert "Following **SNEAKO**" in answer["content"] and f"<#{ALERTS}>" in answer["content"]
    await world.daemon.wait_log("subscriptions.synced", timeout=WAIT)


def posted_in(rest: FakeDiscord, channel_id: int) -> list[dict[str, Any]]:
    """Messages the bot posted in a server channel."""
    return [e for e in rest.sent() if e.get("where") == f"channel:{channel_id}"]


def attempts_in(rest: FakeDiscord, channel_id: int) -> list[dict[str, Any]]:
    """Every POST to a server channel, refused ones included."""
    return [
        e
        for e in rest.requests
        if e.get("method") == "POST" and e.get("where") == f"channel:{channel_id}"
    ]


def custom_ids(components: list[dict[str, Any]]) -> list[str]:
    return [c["custom_id"] for row in components for c in row.get("components", [])]


async def stored_follows(state: Path) -> list[tuple[str, str]]:
    store = await open_store(str(state), instance="test", durable=False)
    try:
        subs = await store.list_subscriptions(platform="discord")
    finally:
        await store.close()
    return [(sub.chat_id, sub.target) for sub in subs]


async def ended(world: World) -> None:
    await world.sim.go_offline(SNEAKO)
    await world.daemon.wait_log("stream.ended", timeout=WAIT, user_id=SNEAKO)


async def test_an_admins_follow_alerts_the_channel_pinging_exactly_its_role_with_its_message(
    world: World,
) -> None:
    await admin_follows(world)
    await world.sim.go_live(SNEAKO, event_title="Admin's pick")
    await world.daemon.wait_log("alert.sent", timeout=WAIT, dest=f"@dc:{ALERTS}")
    (alert,) = posted_in(world.rest, ALERTS)
    assert alert["pinged"] == {"everyone": False, "roles": [LIVE_PINGS], "users": []}
    allowed = alert["body"]["allowed_mentions"]
    assert allowed.get("parse", []) == [] and [int(r) for r in allowed["roles"]] == [LIVE_PINGS]
    message = world.rest.messages[alert["id"]]
    assert message["content"].startswith(f"<@&{LIVE_PINGS}> ")
    assert "SNEAKO is live!" in message["content"]
    assert custom_ids(message["components"]) == [NOTIFY]
    assert world.rest.violations == []


async def test_a_member_who_pressed_notify_me_gets_the_next_alert_by_dm(world: World) -> None:
    await admin_follows(world)
    await world.sim.go_live(SNEAKO, event_title="First stream")
    await world.daemon.wait_log("alert.sent", timeout=WAIT, dest=f"@dc:{ALERTS}")
    (first,) = posted_in(world.rest, ALERTS)
    pressed = await world.gateway.press_button(GUILD, ALERTS, MEMBER, NOTIFY, first["id"])
    answer = await answer_of(world.rest, pressed.id)
    assert answer["ephemeral"] and "DM you when **SNEAKO** goes live" in answer["content"]
    await world.daemon.wait_log("subscriptions.synced", 2, timeout=WAIT)
    await ended(world)
    await world.sim.go_live(SNEAKO, event_title="Second stream")
    await world.daemon.wait_log("alert.sent", timeout=WAIT, dest=f"@dcdm:{MEMBER}")
    await world.daemon.wait_log("alert.sent", 2, timeout=WAIT, dest=f"@dc:{ALERTS}", action="send")
    dms = [e for e in world.rest.sent() if e.get("where") == f"dm:{MEMBER}"]
    assert len(dms) == 1
    dm = world.rest.messages[dms[0]["id"]]
    assert "Second stream" in str(dm["embeds"]) + dm["content"]
    assert dms[0]["pinged"] == {"everyone": False, "roles": [], "users": []}
    _, second = posted_in(world.rest, ALERTS)  # the channel got it too
    assert "Second stream" in str(second["body"]["embeds"])


async def test_a_member_without_manage_server_is_refused_and_nothing_alerts(
    tmp_path: Path, sim: Simulator, fakes: tuple[FakeDiscord, FakeDiscordGateway]
) -> None:
    # A file rule on the console for the same streamer shows the go-live was evaluated.
    rules = CONSOLE + "rules: [{name: watch, when: live, users: [SNEAKO], notify: [t]}]\n"
    world = await start(tmp_path, sim, fakes, rules)
    try:
        answer = await follow(world, MEMBER, role=LIVE_PINGS, message=TEMPLATE)
        assert answer["ephemeral"] and answer["content"] == MANAGERS_ONLY
        await world.sim.go_live(SNEAKO, event_title="Nobody here follows this")
        await world.daemon.wait_log("alert.sent", timeout=WAIT, dest="t")
    finally:
        await world.daemon.stop()
    assert await stored_follows(world.state) == []
    assert attempts_in(world.rest, ALERTS) == []
    assert not [x for x in world.daemon.logged("alert.sent") if x["dest"].startswith("@")]


async def test_a_channel_whose_permission_was_revoked_is_paused_the_server_told_alerts_dropped(
    world: World,
) -> None:
    await admin_follows(world)
    world.rest.revoke(ALERTS, P.SEND_MESSAGES)  # CHANNEL_UPDATE on the gateway
    await world.daemon.wait_log("discord.channel_paused", timeout=WAIT, channel=str(ALERTS))
    notice = await world.rest.wait_sent(lambda e: e.get("where") == f"channel:{GENERAL}", WAIT)
    text = world.rest.messages[notice["id"]]["content"]
    assert f"<#{ALERTS}>" in text and "/parti resume" in text
    assert notice["pinged"] == {"everyone": False, "roles": [], "users": []}
    await world.sim.go_live(SNEAKO, event_title="While paused")
    await world.daemon.wait_log("alert.dropped", timeout=WAIT, dest=f"@dc:{ALERTS}")
    assert attempts_in(world.rest, ALERTS) == []  # not even tried
    assert len(posted_in(world.rest, GENERAL)) == 1  # told once


async def test_an_alert_refused_for_missing_permissions_pauses_the_channel_and_tells_the_server(
    world: World,
) -> None:
    await admin_follows(world)
    # The server takes Send Messages from @everyone and from the bot's role (GUILD_ROLE_UPDATE:
    # no channel event the bot acts on); #general lets the bot post by an overwrite of its own.
    rest = world.rest
    rest.set_channel_permissions(GENERAL, BOT_USER_ID, allow=P.VIEW_CHANNEL | P.SEND_MESSAGES)
    rest.set_role_permissions(GUILD, GUILD, DEFAULT_EVERYONE & ~P.SEND_MESSAGES)
    rest.set_role_permissions(GUILD, rest.guilds[GUILD].bot_role_id, DEFAULT_BOT & ~P.SEND_MESSAGES)
    await world.sim.go_live(SNEAKO, event_title="Refused")
    paused = await world.daemon.wait_log(
        "discord.channel_paused", timeout=WAIT, channel=str(ALERTS)
    )
    assert paused["reason"] == "missing-permissions"
    await world.daemon.wait_log("chat.paused", timeout=WAIT, dest=f"@dc:{ALERTS}")
    notice = await world.rest.wait_sent(lambda e: e.get("where") == f"channel:{GENERAL}", WAIT)
    text = world.rest.messages[notice["id"]]["content"]
    assert f"<#{ALERTS}>" in text and "/parti resume" in text
    await ended(world)
    await world.sim.go_live(SNEAKO, event_title="Still paused")
    await world.daemon.wait_log("alert.dropped", timeout=WAIT, dest=f"@dc:{ALERTS}")
    (refused,) = attempts_in(world.rest, ALERTS)  # one refusal; the next was not tried
    assert (refused["status"], refused["code"]) == (403, 50013)
    assert len(posted_in(world.rest, GENERAL)) == 1
