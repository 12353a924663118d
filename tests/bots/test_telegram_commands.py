"""Whole conversations with the command bot over real sockets: the fake Telegram Bot API
(long polling, buttons, chat members) and the Parti simulator, a SQLite store underneath."""

from __future__ import annotations

import asyncio
import json
import traceback
from typing import Any

import psycopg
import pytest
from telegram import Bot, InlineKeyboardMarkup

from notifier.bots import telegram as tg_commands
from notifier.bots.telegram import (
    COMMANDS,
    CommandBotError,
    CommandLimits,
    TelegramCommands,
    alert_keyboard,
)
from notifier.deliver.chats import Chats, Verdict
from notifier.parti.client import PartiClient
from notifier.parti.simulator import Simulator
from notifier.store import Store, StoreUnavailable
from tests.bots.conftest import (
    ADMIN,
    GROUP,
    MEMBER,
    OTHER,
    USER,
    BotFactory,
    Clock,
    LogWaiter,
    press,
    say,
)
from tests.fakes.telegram import BOT_USERNAME, FakeTelegram

DBR = 567503  # live in the simulator's seed
SNEAKO = 463000  # not live
JACK = 348242  # twitter/jackdoherty, not live


async def follows(store: Store, chat: int) -> list[str]:
    subs = await store.list_subscriptions(platform="telegram", chat_id=str(chat), kind="live")
    return sorted(sub.target for sub in subs)


async def alerts(store: Store, chat: int) -> list[tuple[str, str, dict[str, Any]]]:
    subs = await store.list_subscriptions(platform="telegram", chat_id=str(chat))
    return [(s.kind, s.target, s.params) for s in subs if s.kind in ("price", "move")]


async def send_alert(fake: FakeTelegram, chat: int, markup: dict[str, Any] | None) -> int:
    """An alert as the delivery side sends it (another Bot on the same token)."""
    async with Bot(fake.token, base_url=f"{fake.api_url}/bot") as sender:
        keyboard = InlineKeyboardMarkup.de_json(markup, sender) if markup else None
        sent = await sender.send_message(chat, "SNEAKO is live", reply_markup=keyboard)
    return sent.message_id


# ---- start, help, the menu ----------------------------------------------------------------


async def test_start_welcomes_with_the_command_list(
    bot: TelegramCommands, fake_telegram: FakeTelegram
) -> None:
    reply = await say(fake_telegram, USER, USER, "/start")
    assert "Parti alerts" in reply.text
    assert all(f"/{name}" in reply.text for name, _ in COMMANDS if name not in ("start", "help"))


async def test_the_command_menu_is_set_once_at_start(
    bot: TelegramCommands, fake_telegram: FakeTelegram
) -> None:
    assert [c["command"] for c in fake_telegram.commands_for()] == [n for n, _ in COMMANDS]
    assert len(fake_telegram.sent("setMyCommands")) == 1
    assert bot.bot_username == BOT_USERNAME


async def test_help_answers_in_a_private_chat(
    bot: TelegramCommands, fake_telegram: FakeTelegram
) -> None:
    reply = await say(fake_telegram, USER, USER, "/help")
    assert "/follow NAME" in reply.text


async def test_a_command_addressed_to_the_bot_by_name_works_in_a_group(
    bot: TelegramCommands, fake_telegram: FakeTelegram
) -> None:
    reply = await say(fake_telegram, GROUP, MEMBER, f"/help@{BOT_USERNAME}")
    assert "only admins change" in reply.text


async def test_an_unknown_command_in_private_gets_a_pointer_to_help(
    bot: TelegramCommands, fake_telegram: FakeTelegram
) -> None:
    reply = await say(fake_telegram, USER, USER, "/frobnicate")
    assert "/help" in reply.text


async def test_every_command_records_the_chat_with_its_kind_and_title(
    bot: TelegramCommands, fake_telegram: FakeTelegram, store: Store
) -> None:
    await say(fake_telegram, GROUP, MEMBER, "/list", chat_title="Fans <3")
    chat = await store.get_chat("telegram", str(GROUP))
    assert chat is not None and (chat.kind, chat.title) == ("group", "Fans <3")


# ---- follow, unfollow -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argument", "user_id", "name", "live"),
    [
        ("DBR", DBR, "DBR", True),
        ("@sneako", SNEAKO, "SNEAKO", False),
        ("https://parti.com/creator/twitter/jackdoherty", JACK, "Jack Doherty", False),
        ("https://parti.com/creator/parti/SNEAKO/0", SNEAKO, "SNEAKO", False),
        ("https://parti.com/DBR", DBR, "DBR", True),
        ("parti.com/sneako", SNEAKO, "SNEAKO", False),
        (str(JACK), JACK, "Jack Doherty", False),
    ],
)
async def test_follow_stores_the_streamer_and_says_whether_they_are_live(
    bot: TelegramCommands,
    fake_telegram: FakeTelegram,
    store: Store,
    argument: str,
    user_id: int,
    name: str,
    live: bool,
) -> None:
    reply = await say(fake_telegram, USER, USER, f"/follow {argument}")
    assert name in reply.text
    assert ("live now" in reply.text) is live
    assert ("not live" in reply.text) is not live
    assert await follows(store, USER) == [str(user_id)]


async def test_following_twice_says_so_and_keeps_one(
    bot: TelegramCommands, fake_telegram: FakeTelegram, store: Store
) -> None:
    await say(fake_telegram, USER, USER, "/follow SNEAKO")
    reply = await say(fake_telegram, USER, USER, "/follow 463000")
    assert "already follows" in reply.text
    assert await follows(store, USER) == [str(SNEAKO)]


@pytest.mark.parametrize(
    "argument",
    ["nobody_by_this_name", "999999999", "https://parti.com/creator/myspace/x", "https://x.io/a"],
)
async def test_following_someone_parti_does_not_know_gets_a_helpful_reply(
    bot: TelegramCommands, fake_telegram: FakeTelegram, store: Store, argument: str
) -> None:
    reply = await say(fake_telegram, USER, USER, f"/follow {argument}")
    assert "can't find" in reply.text and "parti.com/creator" in reply.text
    assert await follows(store, USER) == []


async def test_follow_without_a_name_shows_its_usage(
    bot: TelegramCommands, fake_telegram: FakeTelegram
) -> None:
    reply = await say(fake_telegram, USER, USER, "/follow")
    assert reply.text.startswith("Usage: /follow")


async def test_unfollow_removes_the_streamer(
    bot: TelegramCommands, fake_telegram: FakeTelegram, store: Store
) -> None:
    await say(fake_telegram, USER, USER, "/follow SNEAKO")
    reply = await say(fake_telegram, USER, USER, "/unfollow sneako")
    assert reply.text == "Unfollowed SNEAKO."
    assert await follows(store, USER) == []


async def test_unfollowing_someone_not_followed_says_so(
    bot: TelegramCommands, fake_telegram: FakeTelegram
) -> None:
    reply = await say(fake_telegram, USER, USER, "/unfollow SNEAKO")
    assert reply.text == "This chat doesn't follow SNEAKO."


async def test_a_name_with_html_is_escaped_in_the_reply(
    bot: TelegramCommands, fake_telegram: FakeTelegram
) -> None:
    reply = await say(fake_telegram, USER, USER, "/follow <b>x</b>&amp;")
    assert "<b>x</b>&amp;" in reply.text  # shown as typed: it was escaped, not parsed


# ---- the list and its buttons ----------------------------------------------------------


async def add_follows(store: Store, chat: int, targets: list[int]) -> None:
    for target in targets:
        await store.add_subscription(
            "telegram",
            str(chat),
            kind="live",
            target=str(target),
            params={},
            created_by=None,
            now=1.0,
        )


async def test_list_shows_ten_a_page_with_an_unfollow_button_each(
    bot: TelegramCommands, fake_telegram: FakeTelegram, store: Store
) -> None:
    await add_follows(store, USER, [DBR, SNEAKO, *range(1001, 1011)])
    reply = await say(fake_telegram, USER, USER, "/list")
    assert reply.text.splitlines()[0] == "Following 12 streamers (page 1 of 2)"
    assert "1. DBR" in reply.text and "3. user 1001" in reply.text
    data = [b["callback_data"] for b in reply.buttons]
    assert data[:2] == [f"uf:{DBR}:0", f"uf:{SNEAKO}:0"]
    assert data[-1] == "pg:1" and len(data) == 11


async def test_the_next_button_shows_the_second_page(
    bot: TelegramCommands, fake_telegram: FakeTelegram, store: Store
) -> None:
    await add_follows(store, USER, [DBR, SNEAKO, *range(1001, 1011)])
    listing = await say(fake_telegram, USER, USER, "/list")
    await press(fake_telegram, USER, USER, "pg:1", message_id=listing.message_id)
    assert "page 2 of 2" in listing.text and "11. user 1009" in listing.text
    assert [b["callback_data"] for b in listing.buttons] == [
        "uf:1009:1",
        "uf:1010:1",
        "pg:0",
    ]


async def test_the_unfollow_button_on_the_list_unfollows_and_redraws_it(
    bot: TelegramCommands, fake_telegram: FakeTelegram, store: Store
) -> None:
    await add_follows(store, USER, [DBR, SNEAKO])
    listing = await say(fake_telegram, USER, USER, "/list")
    answer = await press(fake_telegram, USER, USER, f"uf:{DBR}:0", message_id=listing.message_id)
    assert answer["text"] == "Unfollowed DBR."
    assert await follows(store, USER) == [str(SNEAKO)]
    assert listing.text.splitlines()[0] == "Following 1 streamer"
    assert [b["callback_data"] for b in listing.buttons] == [f"uf:{SNEAKO}:0"]


async def test_an_empty_list_says_how_to_follow(
    bot: TelegramCommands, fake_telegram: FakeTelegram
) -> None:
    reply = await say(fake_telegram, USER, USER, "/list")
    assert "/follow NAME" in reply.text and reply.buttons == []


# ---- price and move alerts ---------------------------------------------------------------


async def test_a_price_alert_already_past_its_line_says_so(
    bot: TelegramCommands, fake_telegram: FakeTelegram, store: Store
) -> None:
    reply = await say(fake_telegram, USER, USER, "/price btc above 100,000 rearm 0.5%")
    assert reply.text.startswith("Alert set: BTC above 100,000 (rearm 0.5%). Now 103,510.")
    assert "already above the line" in reply.text
    assert await alerts(store, USER) == [
        ("price", "BTC", {"direction": "above", "line": "100000", "rearm": "0.5%"})
    ]


async def test_a_price_alert_on_the_far_side_of_its_line_does_not_say_past(
    bot: TelegramCommands, fake_telegram: FakeTelegram, store: Store
) -> None:
    reply = await say(fake_telegram, USER, USER, "/price ethereum below 3000")
    assert reply.text == "Alert set: ETH below 3,000. Now 3,890.12."
    assert await alerts(store, USER) == [("price", "ETH", {"direction": "below", "line": "3000"})]


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ("BTC above abc", "is not a price"),
        ("BTC above -5", "must be above 0"),
        ("BTC above 0", "must be above 0"),
        ("BTC above 1e5", "is not a price"),
        ("BTC above nan", "is not a price"),
        ("BTC above 1,00", "is not a price"),
        ("BTC above 10000000000000000", "too large"),
        ("DOGE above 1", "don't know the asset DOGE. Known: BNB, BTC, ETH, TSLA"),
        ("BTC sideways 5", "Say above or below"),
        ("BTC", "Usage: /price"),
        ("BTC above 5 rearm 200%", "at most 100%"),
        ("BTC above 5 rearm x", "rearm takes a percentage"),
        ("BTC above 5 again 1%", "Usage: /price"),
        ("B" * 500, "too long"),
        ("BTC\x07 above 5", "control characters"),
        ("BTC\u202e above 5", "control characters"),
    ],
)
async def test_a_bad_price_alert_gets_a_short_reply_and_stores_nothing(
    bot: TelegramCommands, fake_telegram: FakeTelegram, store: Store, arguments: str, expected: str
) -> None:
    reply = await say(fake_telegram, USER, USER, f"/price {arguments}")
    assert expected in reply.text
    assert len(reply.text) < 200
    assert await alerts(store, USER) == []


async def test_a_move_alert_is_stored_with_its_percent_and_window(
    bot: TelegramCommands, fake_telegram: FakeTelegram, store: Store
) -> None:
    reply = await say(fake_telegram, USER, USER, "/move eth 5% 1h")
    assert reply.text == "Alert set: ETH moves 5% within 1h. Now 3,890.12."
    assert await alerts(store, USER) == [("move", "ETH", {"percent": "5%", "window": 3600})]


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ("ETH 5%", "Usage: /move"),
        ("ETH five 1h", "not a percentage"),
        ("ETH 0% 1h", "above 0"),
        ("ETH 5% 10s", "between 1m and 30d"),
        ("ETH 5% soon", "not a window"),
    ],
)
async def test_a_bad_move_alert_gets_a_short_reply(
    bot: TelegramCommands, fake_telegram: FakeTelegram, store: Store, arguments: str, expected: str
) -> None:
    reply = await say(fake_telegram, USER, USER, f"/move {arguments}")
    assert expected in reply.text
    assert await alerts(store, USER) == []


async def test_alerts_lists_each_alert_by_asset_and_line_with_a_cancel_button(
    bot: TelegramCommands, fake_telegram: FakeTelegram
) -> None:
    await say(fake_telegram, USER, USER, "/price BTC above 110000")
    await say(fake_telegram, USER, USER, "/move ETH 5% 1h")
    reply = await say(fake_telegram, USER, USER, "/alerts")
    assert reply.text.splitlines() == [
        "2 price alerts",
        "• BTC above 110,000",
        "• ETH moves 5% within 1h",
    ]
    assert [b["text"] for b in reply.buttons] == [
        "Cancel BTC above 110,000",
        "Cancel ETH moves 5% within 1h",
    ]


async def test_the_cancel_button_removes_that_alert_and_redraws_the_list(
    bot: TelegramCommands, fake_telegram: FakeTelegram, store: Store
) -> None:
    await say(fake_telegram, USER, USER, "/price BTC above 110000")
    await say(fake_telegram, USER, USER, "/move ETH 5% 1h")
    listing = await say(fake_telegram, USER, USER, "/alerts")
    answer = await press(
        fake_telegram,
        USER,
        USER,
        listing.buttons[0]["callback_data"],
        message_id=listing.message_id,
    )
    assert answer["text"] == "Cancelled BTC above 110,000."
    assert await alerts(store, USER) == [("move", "ETH", {"percent": "5%", "window": 3600})]
    assert listing.text.splitlines()[1:] == ["• ETH moves 5% within 1h"]


async def test_a_forged_cancel_button_cannot_touch_another_chats_alert(
    bot: TelegramCommands, fake_telegram: FakeTelegram, store: Store
) -> None:
    await say(fake_telegram, OTHER, OTHER, "/price BTC above 110000")
    (theirs,) = await store.list_subscriptions(chat_id=str(OTHER))
    listing = await say(fake_telegram, USER, USER, "/alerts")
    answer = await press(
        fake_telegram, USER, USER, f"cx:{theirs.id}:0", message_id=listing.message_id, strict=False
    )
    assert answer["text"] == "That alert is already gone."
    assert len(await alerts(store, OTHER)) == 1


# ---- mute, quiet hours, why ------------------------------------------------------------


async def test_mute_sets_the_chat_mute_until_and_unmute_clears_it(
    bot: TelegramCommands, fake_telegram: FakeTelegram, store: Store, clock: Clock
) -> None:
    reply = await say(fake_telegram, USER, USER, "/mute 2h")
    assert reply.text.startswith("Muted for 2h, until ")
    chat = await store.get_chat("telegram", str(USER))
    assert chat is not None and chat.mute_until == clock.now + 7200
    reply = await say(fake_telegram, USER, USER, "/unmute")
    chat = await store.get_chat("telegram", str(USER))
    assert chat is not None and chat.mute_until is None
    assert reply.text.startswith("Unmuted")


@pytest.mark.parametrize(
    ("argument", "expected"),
    [("8d", "At most 7d"), ("soon", "not a duration"), ("0m", "above 0"), ("", "Usage: /mute")],
)
async def test_a_bad_mute_duration_gets_a_short_reply(
    bot: TelegramCommands, fake_telegram: FakeTelegram, store: Store, argument: str, expected: str
) -> None:
    reply = await say(fake_telegram, USER, USER, f"/mute {argument}".strip())
    assert expected in reply.text
    chat = await store.get_chat("telegram", str(USER))
    assert chat is not None and chat.mute_until is None


async def test_quiet_hours_are_stored_with_their_zone_and_removed_with_off(
    bot: TelegramCommands, fake_telegram: FakeTelegram, store: Store
) -> None:
    reply = await say(fake_telegram, USER, USER, "/quiet 23:00-7:00 Europe/Berlin")
    assert reply.text.startswith("Quiet hours: 23:00-07:00 Europe/Berlin.")
    chat = await store.get_chat("telegram", str(USER))
    assert chat is not None and chat.quiet == "23:00-07:00 Europe/Berlin"
    await say(fake_telegram, USER, USER, "/quiet off")
    chat = await store.get_chat("telegram", str(USER))
    assert chat is not None and chat.quiet is None


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        ("23:00-07:00 Mars/Olympus", "unknown time zone"),
        ("25:00-07:00 UTC", "00:00 to 23:59"),
        ("10pm-7am UTC", "HH:MM-HH:MM TZ"),
        ("07:00-07:00 UTC", "the same"),
    ],
)
async def test_bad_quiet_hours_get_a_short_reply(
    bot: TelegramCommands, fake_telegram: FakeTelegram, store: Store, argument: str, expected: str
) -> None:
    reply = await say(fake_telegram, USER, USER, f"/quiet {argument}")
    assert expected in reply.text
    chat = await store.get_chat("telegram", str(USER))
    assert chat is not None and chat.quiet is None


async def test_why_tells_the_last_decision_in_words(
    bot: TelegramCommands, fake_telegram: FakeTelegram, store: Store, clock: Clock
) -> None:
    await say(fake_telegram, USER, USER, "/follow SNEAKO")
    await store.record_decision(
        "telegram", str(USER), str(SNEAKO), "cooling down (540s left)", at=clock.now - 60
    )
    reply = await say(fake_telegram, USER, USER, "/why sneako")
    assert reply.text.startswith("Last decision about SNEAKO (")
    assert reply.text.endswith("): cooling down (540s left).")


async def test_why_without_a_decision_says_none_yet(
    bot: TelegramCommands, fake_telegram: FakeTelegram
) -> None:
    await say(fake_telegram, USER, USER, "/follow SNEAKO")
    reply = await say(fake_telegram, USER, USER, "/why SNEAKO")
    assert "no decision yet" in reply.text


# ---- groups: admins change, members look ----------------------------------------------


async def test_a_group_member_cannot_follow_but_an_admin_can(
    bot: TelegramCommands, fake_telegram: FakeTelegram, store: Store
) -> None:
    fake_telegram.set_member(GROUP, ADMIN, "administrator")
    fake_telegram.set_member(GROUP, MEMBER, "member")
    refused = await say(fake_telegram, GROUP, MEMBER, "/follow SNEAKO")
    assert refused.text == "Only this chat's admins can change what it follows."
    assert await follows(store, GROUP) == []
    accepted = await say(fake_telegram, GROUP, ADMIN, "/follow SNEAKO")
    assert accepted.text.startswith("Following SNEAKO: I'll post in this chat")
    assert await follows(store, GROUP) == [str(SNEAKO)]


async def test_the_group_creator_counts_as_an_admin(
    bot: TelegramCommands, fake_telegram: FakeTelegram, store: Store
) -> None:
    fake_telegram.set_member(GROUP, ADMIN, "creator")
    await say(fake_telegram, GROUP, ADMIN, "/price BTC above 110000")
    assert len(await alerts(store, GROUP)) == 1


async def test_the_admin_check_asks_telegram_at_the_time_of_the_command(
    bot: TelegramCommands, fake_telegram: FakeTelegram, store: Store
) -> None:
    fake_telegram.set_member(GROUP, ADMIN, "administrator")
    await say(fake_telegram, GROUP, ADMIN, "/follow SNEAKO")
    fake_telegram.set_member(GROUP, ADMIN, "member")  # demoted since
    refused = await say(fake_telegram, GROUP, ADMIN, "/unfollow SNEAKO")
    assert "Only this chat's admins" in refused.text
    assert await follows(store, GROUP) == [str(SNEAKO)]


async def test_a_group_member_may_list_and_ask_why(
    bot: TelegramCommands, fake_telegram: FakeTelegram, store: Store
) -> None:
    await add_follows(store, GROUP, [SNEAKO])
    listing = await say(fake_telegram, GROUP, MEMBER, "/list")
    assert "1. SNEAKO" in listing.text
    why = await say(fake_telegram, GROUP, MEMBER, "/why SNEAKO")
    assert "no decision yet" in why.text
    alerts_reply = await say(fake_telegram, GROUP, MEMBER, "/alerts")
    assert "no price alerts" in alerts_reply.text


async def test_a_group_member_pressing_unfollow_is_refused(
    bot: TelegramCommands, fake_telegram: FakeTelegram, store: Store
) -> None:
    await add_follows(store, GROUP, [SNEAKO])
    listing = await say(fake_telegram, GROUP, MEMBER, "/list")
    answer = await press(
        fake_telegram, GROUP, MEMBER, f"uf:{SNEAKO}:0", message_id=listing.message_id
    )
    assert answer["text"] == "Only this chat's admins can change what it follows."
    assert answer["show_alert"] == "true"
    assert await follows(store, GROUP) == [str(SNEAKO)]


async def test_a_group_admin_pressing_unfollow_unfollows(
    bot: TelegramCommands, fake_telegram: FakeTelegram, store: Store
) -> None:
    fake_telegram.set_member(GROUP, ADMIN, "administrator")
    await add_follows(store, GROUP, [SNEAKO])
    listing = await say(fake_telegram, GROUP, MEMBER, "/list")
    await press(fake_telegram, GROUP, ADMIN, f"uf:{SNEAKO}:0", message_id=listing.message_id)
    assert await follows(store, GROUP) == []


async def test_an_anonymous_group_admin_counts_as_an_admin(
    bot: TelegramCommands, fake_telegram: FakeTelegram, store: Store
) -> None:
    fake_telegram.push_message(GROUP, 1087968824, "/follow SNEAKO", first_name="Group")
    message = fake_telegram.updates[-1]["message"]
    message["sender_chat"] = message["chat"]  # as Telegram marks an anonymous admin
    await fake_telegram.wait_reply(GROUP, 5)
    assert await follows(store, GROUP) == [str(SNEAKO)]


async def test_a_channel_post_command_changes_the_channel_list(
    bot: TelegramCommands, fake_telegram: FakeTelegram, store: Store
) -> None:
    channel = -1009876543210
    reply = await say(fake_telegram, channel, ADMIN, "/follow SNEAKO", chat_type="channel")
    assert "Following SNEAKO" in reply.text
    assert await follows(store, channel) == [str(SNEAKO)]
    chat = await store.get_chat("telegram", str(channel))
    assert chat is not None and chat.kind == "channel"


# ---- limits --------------------------------------------------------------------------------


@pytest.mark.parametrize("limits", [CommandLimits(max_follows=2)])
async def test_the_per_chat_follow_limit_gets_a_clear_reply(
    bot: TelegramCommands, fake_telegram: FakeTelegram, store: Store
) -> None:
    await say(fake_telegram, USER, USER, "/follow SNEAKO")
    await say(fake_telegram, USER, USER, "/follow DBR")
    reply = await say(fake_telegram, USER, USER, "/follow Jack Doherty")
    assert reply.text == "This chat follows 2 streamers, the most it may; /unfollow one first."
    assert await follows(store, USER) == sorted([str(SNEAKO), str(DBR)])


@pytest.mark.parametrize("limits", [CommandLimits(max_price_alerts=1)])
async def test_the_per_chat_price_alert_limit_gets_a_clear_reply(
    bot: TelegramCommands, fake_telegram: FakeTelegram, store: Store
) -> None:
    await say(fake_telegram, USER, USER, "/price BTC above 110000")
    reply = await say(fake_telegram, USER, USER, "/move ETH 5% 1h")
    assert "the most it may" in reply.text
    assert len(await alerts(store, USER)) == 1


@pytest.mark.parametrize("limits", [CommandLimits(max_follows=1, max_price_alerts=1)])
async def test_a_burst_of_follows_and_alerts_stays_within_the_per_chat_limits(
    bot: TelegramCommands, fake_telegram: FakeTelegram, store: Store
) -> None:
    commands = ["/follow DBR", "/follow SNEAKO", f"/follow {JACK}"]
    commands += ["/price BTC above 110000", "/price ETH above 5000", "/move ETH 5% 1h"]
    for command in commands:  # all at once: the bot runs them side by side
        fake_telegram.push_message(USER, USER, command)
    await fake_telegram.wait_for(lambda: len(fake_telegram.replies_to(USER)) == 6, 10)
    assert len(await follows(store, USER)) == 1
    assert len(await alerts(store, USER)) == 1
    texts = [m.text for m in fake_telegram.replies_to(USER)]
    assert sum("the most it may" in text for text in texts) == 4


@pytest.mark.parametrize("limits", [CommandLimits(commands_per_minute=3)])
async def test_a_command_flood_gets_one_slow_down_then_silence(
    bot: TelegramCommands, fake_telegram: FakeTelegram, clock: Clock
) -> None:
    for _ in range(6):
        fake_telegram.push_message(USER, USER, "/help")
    await fake_telegram.wait_for(lambda: len(fake_telegram.replies_to(USER)) >= 4, 5)
    # Another user's command, after the flood: answered, while the flood stays unanswered.
    await say(fake_telegram, OTHER, OTHER, "/help")
    texts = [m.text for m in fake_telegram.replies_to(USER)]
    assert len(texts) == 4
    assert sum("Slow down" in text for text in texts) == 1
    clock.now += 61
    reply = await say(fake_telegram, USER, USER, "/help")
    assert "/follow NAME" in reply.text


# ---- deep links, alert buttons, restarts -------------------------------------------------


async def test_a_deep_link_start_follows_the_streamer_in_the_private_chat(
    bot: TelegramCommands, fake_telegram: FakeTelegram, store: Store
) -> None:
    reply = await say(fake_telegram, USER, USER, f"/start f_{SNEAKO}")
    assert reply.text.startswith("Following SNEAKO: I'll post here")
    assert await follows(store, USER) == [str(SNEAKO)]


async def test_start_resumes_a_paused_chat(
    bot: TelegramCommands, fake_telegram: FakeTelegram, store: Store
) -> None:
    await store.upsert_chat("telegram", str(USER), kind="private", now=1.0)
    await store.set_chat_fields("telegram", str(USER), now=1.0, paused_reason="blocked")
    await say(fake_telegram, USER, USER, "/start")
    chat = await store.get_chat("telegram", str(USER))
    assert chat is not None and chat.paused_reason is None


async def test_a_group_member_start_gets_help_but_leaves_the_pause_an_admin_start_clears_it(
    bot: TelegramCommands, fake_telegram: FakeTelegram, store: Store
) -> None:
    fake_telegram.set_member(GROUP, ADMIN, "administrator")
    fake_telegram.set_member(GROUP, MEMBER, "member")
    reason = "Forbidden: bot is not a member of the supergroup chat"
    await store.upsert_chat("telegram", str(GROUP), kind="group", now=1.0)
    await store.set_chat_fields("telegram", str(GROUP), now=1.0, paused_reason=reason)
    reply = await say(fake_telegram, GROUP, MEMBER, "/start")
    assert "Parti alerts" in reply.text
    chat = await store.get_chat("telegram", str(GROUP))
    assert chat is not None and chat.paused_reason == reason
    await say(fake_telegram, GROUP, ADMIN, "/start")
    chat = await store.get_chat("telegram", str(GROUP))
    assert chat is not None and chat.paused_reason is None


async def test_a_dm_alert_unfollow_button_unfollows_and_leaves_the_mute_button(
    bot: TelegramCommands, fake_telegram: FakeTelegram, store: Store
) -> None:
    await add_follows(store, USER, [SNEAKO])
    markup = alert_keyboard(chat_is_private=True, user_id=SNEAKO, bot_username=bot.bot_username)
    message_id = await send_alert(fake_telegram, USER, markup)
    answer = await press(fake_telegram, USER, USER, f"uf:{SNEAKO}", message_id=message_id)
    assert answer["text"] == "Unfollowed SNEAKO."
    assert await follows(store, USER) == []
    alert = fake_telegram.messages[(str(USER), message_id)]
    assert alert.buttons == [{"text": "Mute 1h", "callback_data": "mu:3600"}]


async def test_a_dm_alert_mute_button_mutes_the_chat_for_an_hour(
    bot: TelegramCommands, fake_telegram: FakeTelegram, store: Store, clock: Clock
) -> None:
    markup = alert_keyboard(chat_is_private=True, user_id=SNEAKO, bot_username=bot.bot_username)
    message_id = await send_alert(fake_telegram, USER, markup)
    answer = await press(fake_telegram, USER, USER, "mu:3600", message_id=message_id)
    assert answer["text"].startswith("Muted for 1h")
    chat = await store.get_chat("telegram", str(USER))
    assert chat is not None and chat.mute_until == clock.now + 3600


async def test_the_mute_button_keeps_a_longer_mute_already_set(
    bot: TelegramCommands, fake_telegram: FakeTelegram, store: Store, clock: Clock
) -> None:
    await say(fake_telegram, USER, USER, "/mute 7d")
    markup = alert_keyboard(chat_is_private=True, user_id=SNEAKO, bot_username=bot.bot_username)
    message_id = await send_alert(fake_telegram, USER, markup)
    answer = await press(fake_telegram, USER, USER, "mu:3600", message_id=message_id)
    assert answer["text"].startswith("Already muted until ")
    chat = await store.get_chat("telegram", str(USER))
    assert chat is not None and chat.mute_until == clock.now + 7 * 86400


async def test_the_unfollow_button_answer_of_a_long_name_fits_telegram(
    bot: TelegramCommands, fake_telegram: FakeTelegram, store: Store, sim: Simulator
) -> None:
    sim.profiles[SNEAKO]["user_name"] = "S" * 250
    await add_follows(store, USER, [SNEAKO])
    markup = alert_keyboard(chat_is_private=True, user_id=SNEAKO, bot_username=bot.bot_username)
    message_id = await send_alert(fake_telegram, USER, markup)
    answer = await press(fake_telegram, USER, USER, f"uf:{SNEAKO}", message_id=message_id)
    assert answer["text"].startswith("Unfollowed SSS") and len(answer["text"]) == 200
    assert await follows(store, USER) == []


async def test_a_group_alert_carries_a_follow_in_dm_link_telegram_accepts(
    bot: TelegramCommands, fake_telegram: FakeTelegram
) -> None:
    markup = alert_keyboard(chat_is_private=False, user_id=SNEAKO, bot_username=bot.bot_username)
    assert markup == {
        "inline_keyboard": [
            [{"text": "Follow in DM", "url": f"https://t.me/{BOT_USERNAME}?start=f_{SNEAKO}"}]
        ]
    }
    message_id = await send_alert(fake_telegram, GROUP, markup)
    assert fake_telegram.messages[(str(GROUP), message_id)].buttons == markup["inline_keyboard"][0]


async def test_a_button_on_a_message_from_before_a_restart_still_works(
    make_bot: BotFactory, fake_telegram: FakeTelegram, store: Store
) -> None:
    first = await make_bot()
    await say(fake_telegram, USER, USER, "/follow SNEAKO")
    listing = await say(fake_telegram, USER, USER, "/list")
    await first.stop()
    await make_bot()
    answer = await press(fake_telegram, USER, USER, f"uf:{SNEAKO}:0", message_id=listing.message_id)
    assert answer["text"] == "Unfollowed SNEAKO."
    assert await follows(store, USER) == []


async def test_every_button_the_bot_sends_fits_telegram_callback_data(
    bot: TelegramCommands, fake_telegram: FakeTelegram, store: Store
) -> None:
    await add_follows(store, USER, [2**62 + n for n in range(12)])
    listing = await say(fake_telegram, USER, USER, "/list")
    assert all(len(b["callback_data"].encode()) <= 64 for b in listing.buttons)


# ---- membership changes and migrations ----------------------------------------------------


async def test_a_user_blocking_the_bot_pauses_their_chat(
    bot: TelegramCommands, fake_telegram: FakeTelegram, store: Store, logged: LogWaiter
) -> None:
    await say(fake_telegram, USER, USER, "/follow SNEAKO")
    fake_telegram.push_my_chat_member(USER, "kicked")
    await logged.wait("bot.chat_paused")
    chat = await store.get_chat("telegram", str(USER))
    assert chat is not None and chat.paused_reason == "blocked"


async def test_a_chat_that_lets_the_bot_back_in_during_a_short_store_outage_is_resumed(
    bot: TelegramCommands,
    fake_telegram: FakeTelegram,
    store: Store,
    logged: LogWaiter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Telegram sends the change once: a store that fails for a moment must not lose it
    (the chat would stay paused, its alerts dropped, until the user writes /start)."""
    await say(fake_telegram, USER, USER, "/follow SNEAKO")
    fake_telegram.push_my_chat_member(USER, "kicked")
    await logged.wait("bot.chat_paused")
    refusals = 2
    set_fields = store.set_chat_fields

    async def refusing(*args: Any, **kwargs: Any) -> Any:
        nonlocal refusals
        if refusals:
            refusals -= 1
            raise StoreUnavailable("database 127.0.0.1:5432 unavailable: connection refused")
        return await set_fields(*args, **kwargs)

    monkeypatch.setattr(store, "set_chat_fields", refusing)
    fake_telegram.push_my_chat_member(USER, "member")
    await logged.wait("bot.chat_resumed")
    chat = await store.get_chat("telegram", str(USER))
    assert chat is not None and chat.paused_reason is None
    assert refusals == 0


async def test_a_chats_membership_changes_during_an_outage_are_recorded_in_order(
    bot: TelegramCommands,
    fake_telegram: FakeTelegram,
    store: Store,
    logged: LogWaiter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The user blocks the bot, then lets it back in, while the store does not answer:
    the chat ends up resumed. Each change waits out the outage on its own schedule: the
    later one must not be recorded before the earlier one (the chat would stay paused)."""
    monkeypatch.setattr(tg_commands, "_OUTAGE_WAIT", 0.01)
    await say(fake_telegram, USER, USER, "/follow SNEAKO")
    refused = 0
    twice = asyncio.Event()
    set_fields = store.set_chat_fields

    async def down(*args: Any, **kwargs: Any) -> Any:
        nonlocal refused
        if not twice.is_set():
            refused += 1
            if refused == 2:
                twice.set()  # by now the second change has come (and, unlocked, gone)
            raise StoreUnavailable("database 127.0.0.1:5432 unavailable: connection refused")
        return await set_fields(*args, **kwargs)

    monkeypatch.setattr(store, "set_chat_fields", down)
    fake_telegram.push_my_chat_member(USER, "kicked")
    fake_telegram.push_my_chat_member(USER, "member")
    await logged.wait("bot.chat_paused")  # the store answers from the third call on
    await logged.wait("bot.chat_resumed")
    chat = await store.get_chat("telegram", str(USER))
    assert chat is not None and chat.paused_reason is None


async def test_a_migrated_group_keeps_its_watchlist_under_the_new_id(
    bot: TelegramCommands, fake_telegram: FakeTelegram, store: Store, logged: LogWaiter
) -> None:
    old, new = -500, -1005000000000
    await add_follows(store, old, [SNEAKO])
    fake_telegram.push_migration(old, new)
    await logged.wait("bot.chat_migrated")
    assert await follows(store, new) == [str(SNEAKO)]
    assert await follows(store, old) == []


async def test_replies_are_html_the_fake_telegram_accepts(
    bot: TelegramCommands, fake_telegram: FakeTelegram
) -> None:
    await say(fake_telegram, USER, USER, "/follow <script>")
    await say(fake_telegram, USER, USER, "/price <b> above 1")
    failed = [r for r in fake_telegram.requests if r["method"] == "sendMessage" and not r["ok"]]
    assert failed == []
    sent = fake_telegram.sent("sendMessage")
    assert all(json.loads(r["params"]["link_preview_options"])["is_disabled"] for r in sent)


async def test_parti_not_answering_gets_a_short_reply_and_a_log_line(
    bot: TelegramCommands,
    fake_telegram: FakeTelegram,
    sim: Simulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim.fail_next(503, count=10)
    reply = await say(fake_telegram, USER, USER, "/follow SNEAKO")
    assert reply.text == "Parti is not answering right now; please try again in a minute."
    assert "bot.lookup_failed" in [record.getMessage() for record in caplog.records]


async def test_a_refused_token_is_one_line_without_the_token(
    fake_telegram: FakeTelegram, store: Store, client: PartiClient
) -> None:
    bot = TelegramCommands(
        token="123:WRONG-SECRET", api_url=fake_telegram.api_url, store=store, client=client
    )
    with pytest.raises(CommandBotError) as caught:
        await bot.start()
    assert str(caught.value) == "Telegram refused the bot token (getMe)"
    assert "WRONG-SECRET" not in "".join(traceback.format_exception(caught.value))


async def test_unfollow_by_id_works_while_parti_is_not_answering(
    bot: TelegramCommands, fake_telegram: FakeTelegram, store: Store, sim: Simulator
) -> None:
    await add_follows(store, USER, [SNEAKO])
    sim.fail_next(503, count=10)
    reply = await say(fake_telegram, USER, USER, f"/unfollow {SNEAKO}")
    assert reply.text == f"Unfollowed user {SNEAKO}."
    assert await follows(store, USER) == []


async def test_run_stops_cleanly_when_cancelled_and_another_bot_takes_over(
    make_bot: BotFactory,
    fake_telegram: FakeTelegram,
    store: Store,
    client: PartiClient,
    clock: Clock,
) -> None:
    running = TelegramCommands(
        token=fake_telegram.token,
        api_url=fake_telegram.api_url,
        store=store,
        client=client,
        clock=clock,
    )
    task = asyncio.create_task(running.run())
    await fake_telegram.wait_polling(5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    await make_bot()
    reply = await say(fake_telegram, USER, USER, "/help")
    assert "/follow NAME" in reply.text


async def test_a_mute_lasts_its_duration_as_the_database_counts_it(
    fake_telegram: FakeTelegram, client: PartiClient, pg_url: str
) -> None:
    """The database server's clock runs 150 s behind this host's (no NTP on one of them).
    Delivery compares a chat's mute with the store's clock (the database's); before, the
    bot stamped the mute with this host's, and a 1h mute held alerts 150 s longer."""
    from notifier.store.postgres import PostgresStore

    # The server's clock_timestamp(), which the store measures its offset by, 150 s slow.
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        await conn.execute(
            "CREATE FUNCTION public.clock_timestamp() RETURNS timestamptz LANGUAGE sql"
            " AS $$ SELECT pg_catalog.clock_timestamp() - interval '150 seconds' $$"
        )
    slow = pg_url + ("&" if "?" in pg_url else "?") + "options=-csearch_path%3Dpublic,pg_catalog"
    store = await PostgresStore.open(slow, instance="test")
    assert abs(store.clock_offset + 150) < 1
    # As the daemon makes it: no clock given.
    bot = TelegramCommands(
        token=fake_telegram.token, api_url=fake_telegram.api_url, store=store, client=client
    )
    await bot.start()
    try:
        await fake_telegram.wait_polling(5)
        before = store.clock()
        reply = await say(fake_telegram, USER, USER, "/mute 1h")
        after = store.clock()
        assert reply.text.startswith("Muted for 1h")
        held = await Chats(store).decide(f"@tg:{USER}", after)  # as a lane decides
        assert held.verdict is Verdict.HOLD and held.until is not None
        assert before + 3600 <= held.until <= after + 3600
    finally:
        await bot.stop()
        await store.close()
