"""Discord chat senders (a server channel, a member's DMs) and the pause of a lost channel,
over real sockets to the fake Discord REST API; a SQLite store underneath."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import discord
import pytest

from notifier.bots.discord_views import live_alert_components, notify_button_components
from notifier.deliver.discord import DiscordHub
from notifier.deliver.discord_chat import (
    PAUSED_DELETED,
    PAUSED_NO_ACCESS,
    PAUSED_NO_PERMISSION,
    DiscordChannelSender,
    DiscordDmSender,
    pause_channel,
    pause_notice,
)
from notifier.outbox.policy import Outcome
from notifier.render.fields import AlertView, ended_fields
from notifier.store import Store
from tests.bots.test_discord_commands import (
    ALERTS,
    DBR,
    GENERAL,
    GUILD,
    LIVE,
    MEMBER,
    OWNER,
    QUIET,
    GuildsFakeDiscord,
    build_world,
    live_payload,
)
from tests.fakes.discord import FakeDiscord, P
from tests.fakes.discord_gateway import discord_py_pointed_at

NO_PINGS = {"everyone": False, "roles": [], "users": []}
QUIET_GUILD = 300_000_000_000_000_001  # a server without a system channel
QUIET_CHANNEL = 300_000_000_000_000_002


@pytest.fixture
async def rest() -> AsyncIterator[FakeDiscord]:
    fake = await GuildsFakeDiscord().start()
    build_world(fake)
    try:
        with discord_py_pointed_at(fake, None):
            yield fake
    finally:
        await fake.stop()


@pytest.fixture
async def hub(rest: FakeDiscord) -> AsyncIterator[DiscordHub]:
    shared = DiscordHub(rest.api_url, rest.bot_token)
    await shared.start(need_bot=True)
    yield shared
    await shared.close()


def channel_sender(hub: DiscordHub, channel: int = ALERTS) -> DiscordChannelSender:
    return DiscordChannelSender(
        f"@dc:{channel}", channel, hub, components_for=live_alert_components
    )


def price_payload() -> dict[str, Any]:
    fields = {
        "asset": "BTC",
        "ticker": "bitcoin",
        "price": "110,000",
        "line": "100,000",
        "direction": "up",
        "change": "+10.00%",
        "window": "",
        "rule": "sub:2",
        "kind": "line",
        "at": 1_750_000_000.0,
    }
    return {"view": AlertView("price", "sub:2", fields).to_json()}


# ---- the channel sender ------------------------------------------------------------------------


async def test_channel_alert_mentions_exactly_its_role_and_carries_notify_me(
    rest: FakeDiscord, hub: DiscordHub
) -> None:
    payload = live_payload() | {
        "mention_role": LIVE,
        "template": f"{{{{ user_name }}}} is live <@&{QUIET}> @everyone",
    }
    message_id = await channel_sender(hub).send(payload)
    (entry,) = rest.sent()
    assert entry["pinged"] == {"everyone": False, "roles": [LIVE], "users": []}
    message = rest.messages[int(str(message_id))]
    assert message["content"].startswith(f"<@&{LIVE}> DBR is live")
    assert message["embeds"][0]["author"]["name"] == "DBR is live"
    assert message["components"] == notify_button_components(DBR)
    assert not rest.violations


async def test_channel_alert_without_a_role_pings_nobody(
    rest: FakeDiscord, hub: DiscordHub
) -> None:
    await channel_sender(hub).send(live_payload() | {"template": "@everyone <@&1234567>"})
    (entry,) = rest.sent()
    assert entry["pinged"] == NO_PINGS


async def test_price_alerts_carry_no_buttons(rest: FakeDiscord, hub: DiscordHub) -> None:
    message_id = await channel_sender(hub).send(price_payload())
    assert rest.messages[int(str(message_id))]["components"] == []


async def test_channel_alert_is_edited_to_ended_and_deleted(
    rest: FakeDiscord, hub: DiscordHub
) -> None:
    sender = channel_sender(hub)
    message_id = await sender.send(live_payload() | {"mention_role": LIVE})
    assert message_id is not None
    ended = live_payload()
    ended["view"]["fields"] = ended_fields(
        ended["view"]["fields"], ended_at=1_750_003_600.0, peak_viewers=250
    )
    await sender.edit(message_id, ended | {"mention_role": LIVE})
    message = rest.messages[int(message_id)]
    assert message["embeds"][0]["author"]["name"] == "DBR was live"
    assert {"name": "Peak viewers", "value": "250", "inline": True} in message["embeds"][0][
        "fields"
    ]
    assert message["components"] == notify_button_components(DBR)
    await sender.delete(message_id)
    assert rest.deleted == [int(message_id)]


@pytest.mark.parametrize(
    ("change", "lost"),
    [
        ("no-send", PAUSED_NO_PERMISSION),
        ("no-view", PAUSED_NO_ACCESS),
        ("deleted", PAUSED_DELETED),
    ],
)
async def test_a_lost_channel_is_permanent_and_says_why(
    rest: FakeDiscord, hub: DiscordHub, change: str, lost: str
) -> None:
    if change == "no-send":
        rest.revoke(ALERTS, P.SEND_MESSAGES)
    elif change == "no-view":
        rest.revoke(ALERTS, P.VIEW_CHANNEL)
    else:
        rest.delete_channel(ALERTS)
    sender = channel_sender(hub)
    with pytest.raises(discord.HTTPException) as refused:
        await sender.send(live_payload())
    assert sender.classify(refused.value).outcome is Outcome.PERMANENT
    assert sender.lost == lost


def test_channel_windows_are_the_bots_and_the_channels(hub: DiscordHub) -> None:
    first, second = channel_sender(hub, ALERTS), channel_sender(hub, GENERAL)
    (bot, own), (bot_again, other) = first.windows(), second.windows()
    assert bot is bot_again and bot.shared and (bot.limit, round(bot.window)) == (50, 1)
    assert own is not other and (own.limit, round(own.window)) == (5, 2)
    dm = DiscordDmSender(f"@dcdm:{MEMBER}", MEMBER, hub)
    assert dm.windows()[1].limit == 1


# ---- the DM sender -------------------------------------------------------------------------------


async def test_dm_sender_opens_the_dm_channel_and_sends(rest: FakeDiscord, hub: DiscordHub) -> None:
    sender = DiscordDmSender(f"@dcdm:{MEMBER}", MEMBER, hub)
    first = await sender.send(live_payload())
    await sender.send(price_payload())
    assert [e["where"] for e in rest.sent()] == [f"dm:{MEMBER}", f"dm:{MEMBER}"]
    message = rest.messages[int(str(first))]
    assert message["channel_id"] == str(rest.dm_channels[MEMBER])
    assert message["embeds"][0]["author"]["name"] == "DBR is live"
    assert rest.sent()[0]["pinged"] == NO_PINGS


async def test_closed_dms_are_permanent(rest: FakeDiscord, hub: DiscordHub) -> None:
    rest.close_dms(MEMBER)
    sender = DiscordDmSender(f"@dcdm:{MEMBER}", MEMBER, hub)
    with pytest.raises(discord.Forbidden) as refused:
        await sender.send(live_payload())
    assert refused.value.code == 50007
    failure = sender.classify(refused.value)
    assert failure.outcome is Outcome.PERMANENT and "50007" in failure.reason
    assert sender.lost is None


# ---- pausing a lost channel ----------------------------------------------------------------------


async def test_pause_channel_tells_the_servers_system_channel_once(
    rest: FakeDiscord, hub: DiscordHub, store: Store
) -> None:
    await store.upsert_chat(
        "discord", str(ALERTS), kind="guild-channel", now=1.0, guild_id=str(GUILD)
    )
    assert hub.http is not None
    assert await pause_channel(store, hub.http, ALERTS, PAUSED_NO_PERMISSION, now=2.0)
    (told,) = rest.sent()
    assert told["where"] == f"channel:{GENERAL}" and told["pinged"] == NO_PINGS
    assert told["body"]["content"] == (
        f"⏸️ Alerts to <#{ALERTS}> are paused: I lost permission to post there. "
        "Fix my permissions there, then run `/parti resume` to send alerts again."
    )
    chat = await store.get_chat("discord", str(ALERTS))
    assert chat is not None and chat.paused_reason == PAUSED_NO_PERMISSION
    assert not await pause_channel(store, hub.http, ALERTS, PAUSED_NO_PERMISSION, now=3.0)
    assert len(rest.sent()) == 1


async def test_pause_channel_without_a_system_channel_dms_whoever_configured_it(
    rest: FakeDiscord, hub: DiscordHub, store: Store
) -> None:
    rest.add_guild(QUIET_GUILD, owner_id=OWNER)
    rest.add_text_channel(QUIET_GUILD, QUIET_CHANNEL, name="alerts")
    key = str(QUIET_CHANNEL)
    await store.upsert_chat(
        "discord", key, kind="guild-channel", now=1.0, guild_id=str(QUIET_GUILD)
    )
    await store.add_subscription(
        "discord", key, kind="live", target=str(DBR), params={}, created_by=str(OWNER), now=1.0
    )
    rest.delete_channel(QUIET_CHANNEL)
    assert hub.http is not None
    assert await pause_channel(store, hub.http, QUIET_CHANNEL, PAUSED_DELETED, now=2.0)
    (told,) = rest.sent()
    assert told["where"] == f"dm:{OWNER}"
    assert "the channel was deleted" in told["body"]["content"]


# ---- components (pure) -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "button"),
    [
        (live_payload(), True),
        (
            {
                "view": AlertView(
                    "live",
                    "r",
                    ended_fields(
                        live_payload()["view"]["fields"],
                        ended_at=1_750_003_600.0,
                        peak_viewers=None,
                    ),
                ).to_json()
            },
            True,
        ),
        (price_payload(), False),
        ({"view": AlertView("live", "r", {"user_id": "not an id"}).to_json()}, False),
        ({"view": AlertView("live", "r", {"user_id": True}).to_json()}, False),
    ],
)
def test_live_alert_components(payload: dict[str, Any], button: bool) -> None:
    components = live_alert_components(payload)
    assert (components == notify_button_components(DBR)) if button else components is None


@pytest.mark.parametrize(
    ("reason", "says"),
    [
        (PAUSED_NO_PERMISSION, "I lost permission to post there"),
        ("rejected 403 50013: Missing Permissions", "I lost permission to post there"),
        ("rejected 403 50001: Missing Access", "I can no longer see that channel"),
        ("rejected 404 10003: Unknown Channel", "the channel was deleted"),
        ("bad request 400 50035: Invalid Form Body", "Discord refused my messages there"),
    ],
)
def test_pause_notice_says_why_in_words(reason: str, says: str) -> None:
    assert f"are paused: {says}" in pause_notice(ALERTS, reason)
