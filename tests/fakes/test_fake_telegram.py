"""The fake Telegram Bot API behaves as the real one for a polling bot: python-telegram-bot's
own Application and Bot drive it over a real socket, and raw requests pin the wire details."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st
from telegram import (
    Bot,
    BotCommand,
    BotCommandScopeAllGroupChats,
    ChatMemberAdministrator,
    ChatMemberBanned,
    ChatMemberLeft,
    ChatMemberMember,
    ChatMemberOwner,
    ChatMemberRestricted,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Update,
)
from telegram.error import BadRequest, ChatMigrated, Conflict, Forbidden, TelegramError
from telegram.ext import (
    Application,
    BaseHandler,
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from tests.fakes.telegram import (
    BOT_ID,
    CONFLICT,
    NOT_MODIFIED,
    QUERY_INVALID,
    FakeTelegram,
    bot_command_entities,
)

USER = 42  # a private chat's id is its user's id
GROUP = -500
SUPERGROUP = -1001234567890


@contextlib.asynccontextmanager
async def bot_for(fake: FakeTelegram) -> AsyncIterator[Bot]:
    async with Bot(fake.token, base_url=f"{fake.api_url}/bot") as bot:
        yield bot


@contextlib.asynccontextmanager
async def polling(
    fake: FakeTelegram,
    *handlers: BaseHandler[Any, Any, Any],
    on_error: Callable[[TelegramError], None] | None = None,
) -> AsyncIterator[Application[Any, Any, Any, Any, Any, Any]]:
    """A python-telegram-bot Application long-polling the fake, until the block ends."""
    app = Application.builder().base_url(f"{fake.api_url}/bot").token(fake.token).build()
    for handler in handlers:
        app.add_handler(handler)
    async with app:
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(poll_interval=0, timeout=1, error_callback=on_error)
        try:
            await fake.wait_polling(5)
            yield app
        finally:
            await app.updater.stop()
            await app.stop()


async def call(
    fake: FakeTelegram, method: str, *, token: str | None = None, **params: Any
) -> tuple[int, dict[str, Any]]:
    """One raw Bot API request (JSON body), bounded in time."""
    url = f"{fake.api_url}/bot{token or fake.token}/{method}"
    async with (
        asyncio.timeout(10),
        aiohttp.ClientSession() as session,
        session.post(url, json=params) as response,
    ):
        return response.status, await response.json()


async def reply_with_args(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text(" ".join(context.args or []) or "no args")


# ---- identity and tokens -------------------------------------------------------------


async def test_get_me_names_the_test_bot(fake_telegram: FakeTelegram) -> None:
    async with bot_for(fake_telegram) as bot:
        me = await bot.get_me()
    assert (me.id, me.username, me.is_bot) == (BOT_ID, "parti_test_bot", True)
    assert (me.can_join_groups, me.can_read_all_group_messages, me.supports_inline_queries) == (
        True,
        False,
        False,
    )


@pytest.mark.parametrize(
    "method", ["getMe", "getUpdates", "sendMessage", "getChatMember", "setMyCommands", "nope"]
)
async def test_a_wrong_token_is_unauthorized_for_every_method(
    fake_telegram: FakeTelegram, method: str
) -> None:
    answer = await call(fake_telegram, method, token="123:WRONG", chat_id=USER, text="x")
    assert answer == (401, {"ok": False, "error_code": 401, "description": "Unauthorized"})


# ---- conversations through python-telegram-bot ---------------------------------------


async def test_start_gets_a_reply_over_long_polling(fake_telegram: FakeTelegram) -> None:
    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None and update.effective_user is not None
        await update.effective_message.reply_text(f"hello {update.effective_user.first_name}")

    async with polling(fake_telegram, CommandHandler("start", start)):
        fake_telegram.push_message(USER, USER, "/start", first_name="Ada")
        reply = await fake_telegram.wait_reply(USER, 5)
    assert reply.text == "hello Ada"


async def test_a_command_addressed_to_the_bot_by_name_reaches_its_handler(
    fake_telegram: FakeTelegram,
) -> None:
    async with polling(fake_telegram, CommandHandler("follow", reply_with_args)):
        fake_telegram.push_message(GROUP, 7, "/follow@parti_test_bot alice")
        reply = await fake_telegram.wait_reply(GROUP, 5)
    assert reply.text == "alice"


@pytest.mark.parametrize(
    "text", ["/follow@other_bot alice", "just chatting", "please /follow alice"]
)
async def test_privacy_mode_keeps_group_chatter_from_the_bot(
    fake_telegram: FakeTelegram, text: str
) -> None:
    assert fake_telegram.push_message(GROUP, 7, text) is None
    assert fake_telegram.updates == []


async def test_a_button_press_reaches_the_bot_and_its_answer_is_recorded(
    fake_telegram: FakeTelegram,
) -> None:
    async def alerts(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        button = InlineKeyboardButton("Mute 1h", callback_data="mute:3600")
        await update.effective_message.reply_text(
            "Alerts", reply_markup=InlineKeyboardMarkup([[button]])
        )

    async def pressed(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.callback_query is not None
        await update.callback_query.answer(f"done: {update.callback_query.data}")

    handlers = (CommandHandler("alerts", alerts), CallbackQueryHandler(pressed))
    async with polling(fake_telegram, *handlers):
        fake_telegram.push_message(USER, USER, "/alerts")
        menu = await fake_telegram.wait_reply(USER, 5)
        query_id = fake_telegram.push_callback(
            USER, USER, menu.buttons[0]["callback_data"], message_id=menu.message_id
        )
        await fake_telegram.wait_sent(lambda r: r["method"] == "answerCallbackQuery", 5)
    assert fake_telegram.answers == [
        {
            "callback_query_id": query_id,
            "text": "done: mute:3600",
            "show_alert": False,
            "url": None,
            "cache_time": 0,
        }
    ]


async def test_a_button_press_carries_the_message_it_is_under(
    fake_telegram: FakeTelegram,
) -> None:
    async def pressed(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None and query.message is not None
        await query.answer()
        await query.edit_message_text(f"was: {query.message.text}")  # type: ignore[union-attr]

    markup = InlineKeyboardMarkup([[InlineKeyboardButton("Unfollow", callback_data="u:alice")]])
    async with polling(fake_telegram, CallbackQueryHandler(pressed)), bot_for(fake_telegram) as bot:
        sent = await bot.send_message(USER, "alice is live", reply_markup=markup)
        fake_telegram.push_callback(USER, USER, "u:alice", message_id=sent.message_id)
        await fake_telegram.wait_sent(lambda r: r["method"] == "editMessageText", 5)
    (message,) = fake_telegram.replies_to(USER)
    assert (message.text, message.buttons) == ("was: alice is live", [])


async def test_my_chat_member_tells_the_bot_it_was_blocked(fake_telegram: FakeTelegram) -> None:
    changes: list[tuple[int, str]] = []
    seen = asyncio.Event()

    async def changed(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.my_chat_member is not None
        changes.append(
            (update.my_chat_member.chat.id, update.my_chat_member.new_chat_member.status)
        )
        seen.set()

    async with polling(fake_telegram, ChatMemberHandler(changed)):
        fake_telegram.push_my_chat_member(USER, "kicked")
        await asyncio.wait_for(seen.wait(), 5)
    assert changes == [(USER, "kicked")]
    assert USER in fake_telegram.blocked


async def test_a_migration_reaches_the_bot_from_both_chats(fake_telegram: FakeTelegram) -> None:
    moves: list[tuple[int | None, int | None]] = []
    both = asyncio.Event()

    async def migrated(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        assert message is not None
        moves.append((message.migrate_to_chat_id, message.migrate_from_chat_id))
        if len(moves) == 2:
            both.set()

    async with polling(fake_telegram, MessageHandler(filters.StatusUpdate.MIGRATE, migrated)):
        fake_telegram.push_migration(GROUP, SUPERGROUP)
        await asyncio.wait_for(both.wait(), 5)
    assert moves == [(SUPERGROUP, None), (None, GROUP)]


async def test_an_update_is_not_delivered_twice_after_a_restart(
    fake_telegram: FakeTelegram,
) -> None:
    handled: list[str] = []

    async def note(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        handled.append(update.effective_message.text or "")
        await update.effective_message.reply_text("ok")

    for command in ("/start", "/help"):
        async with polling(fake_telegram, MessageHandler(filters.COMMAND, note)):
            fake_telegram.push_message(USER, USER, command)
            await fake_telegram.wait_reply(USER, 5)
    assert handled == ["/start", "/help"]


async def test_a_second_poller_ends_the_first_with_409(fake_telegram: FakeTelegram) -> None:
    errors: list[TelegramError] = []
    failed = asyncio.Event()

    def on_error(error: TelegramError) -> None:
        errors.append(error)
        failed.set()

    async with polling(fake_telegram, on_error=on_error), bot_for(fake_telegram) as second:
        other = asyncio.create_task(second.get_updates(timeout=1))
        await asyncio.wait_for(failed.wait(), 5)
        with contextlib.suppress(Conflict):
            await asyncio.wait_for(other, 5)
    assert isinstance(errors[0], Conflict)
    assert "terminated by other getUpdates request" in errors[0].message


# ---- chat members --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        ("creator", ChatMemberOwner),
        ("administrator", ChatMemberAdministrator),
        ("member", ChatMemberMember),
        ("restricted", ChatMemberRestricted),
        ("left", ChatMemberLeft),
        ("kicked", ChatMemberBanned),
    ],
)
async def test_get_chat_member_answers_what_ptb_parses(
    fake_telegram: FakeTelegram, status: str, kind: type
) -> None:
    fake_telegram.set_member(SUPERGROUP, 7, status)
    async with bot_for(fake_telegram) as bot:
        member = await bot.get_chat_member(SUPERGROUP, 7)
    assert (type(member), member.status, member.user.id) == (kind, status, 7)


async def test_a_user_outside_the_group_is_left(fake_telegram: FakeTelegram) -> None:
    fake_telegram.push_message(GROUP - 1, 8, "/start")  # user 8 is known, from another group
    async with bot_for(fake_telegram) as bot:
        member = await bot.get_chat_member(GROUP, 8)
    assert member.status == "left"


async def test_a_user_who_wrote_in_the_group_is_a_member(fake_telegram: FakeTelegram) -> None:
    fake_telegram.push_message(GROUP, 8, "/start")
    async with bot_for(fake_telegram) as bot:
        member = await bot.get_chat_member(GROUP, 8)
    assert member.status == "member"


async def test_in_a_private_chat_the_user_is_a_member(fake_telegram: FakeTelegram) -> None:
    fake_telegram.push_message(USER, USER, "/start")
    async with bot_for(fake_telegram) as bot:
        member = await bot.get_chat_member(USER, USER)
    assert member.status == "member"


async def test_a_user_the_bot_never_saw_is_not_found(fake_telegram: FakeTelegram) -> None:
    async with bot_for(fake_telegram) as bot:
        with pytest.raises(BadRequest, match=r"(?i)user not found"):
            await bot.get_chat_member(GROUP, 999)


# ---- chats the bot can no longer reach -----------------------------------------------


async def test_a_user_who_blocked_the_bot_answers_403(fake_telegram: FakeTelegram) -> None:
    fake_telegram.block(USER)
    async with bot_for(fake_telegram) as bot:
        with pytest.raises(Forbidden, match="bot was blocked by the user"):
            await bot.send_message(USER, "hello")


async def test_a_group_that_kicked_the_bot_answers_403(fake_telegram: FakeTelegram) -> None:
    fake_telegram.kick(GROUP)
    async with bot_for(fake_telegram) as bot:
        with pytest.raises(Forbidden, match="bot was kicked from the group chat"):
            await bot.send_message(GROUP, "hello")


async def test_a_migrated_group_names_its_supergroup(fake_telegram: FakeTelegram) -> None:
    fake_telegram.push_migration(GROUP, SUPERGROUP)
    async with bot_for(fake_telegram) as bot:
        with pytest.raises(ChatMigrated) as raised:
            await bot.send_message(GROUP, "hello")
    assert raised.value.new_chat_id == SUPERGROUP


# ---- getUpdates on the wire ----------------------------------------------------------


async def test_a_long_poll_returns_when_an_update_arrives(fake_telegram: FakeTelegram) -> None:
    poll = asyncio.create_task(call(fake_telegram, "getUpdates", timeout=50))
    await fake_telegram.wait_polling(5)
    update_id = fake_telegram.push_message(USER, USER, "/start")
    status, body = await poll
    assert (status, [u["update_id"] for u in body["result"]]) == (200, [update_id])


async def test_a_long_poll_with_nothing_to_deliver_ends_empty(
    fake_telegram: FakeTelegram,
) -> None:
    assert await call(fake_telegram, "getUpdates", timeout=1) == (200, {"ok": True, "result": []})


async def test_a_newer_long_poll_terminates_the_older_with_409(
    fake_telegram: FakeTelegram,
) -> None:
    older = asyncio.create_task(call(fake_telegram, "getUpdates", timeout=50))
    await fake_telegram.wait_polling(5)
    newer = asyncio.create_task(call(fake_telegram, "getUpdates", timeout=50))
    status, body = await older
    await fake_telegram.wait_polling(5)
    fake_telegram.push_message(USER, USER, "/start")  # lets the newer one return
    await newer
    assert (status, body["description"]) == (409, CONFLICT)


async def test_an_update_is_delivered_again_until_an_offset_confirms_it(
    fake_telegram: FakeTelegram,
) -> None:
    update_id = fake_telegram.push_message(USER, USER, "/start")
    assert update_id is not None
    first = await call(fake_telegram, "getUpdates")
    again = await call(fake_telegram, "getUpdates", offset=0)
    confirmed = await call(fake_telegram, "getUpdates", offset=update_id + 1)
    ids = [[u["update_id"] for u in body["result"]] for _, body in (first, again, confirmed)]
    assert ids == [[update_id], [update_id], []]


async def test_an_offset_forgets_only_the_updates_before_it(fake_telegram: FakeTelegram) -> None:
    ids = [fake_telegram.push_message(USER, USER, f"/n{n}") for n in range(3)]
    await call(fake_telegram, "getUpdates", offset=ids[1])
    _, body = await call(fake_telegram, "getUpdates")
    assert [u["update_id"] for u in body["result"]] == ids[1:]


async def test_a_negative_offset_keeps_only_the_last_updates(fake_telegram: FakeTelegram) -> None:
    ids = [fake_telegram.push_message(USER, USER, f"/n{n}") for n in range(3)]
    await call(fake_telegram, "getUpdates", offset=-1)
    _, body = await call(fake_telegram, "getUpdates")
    assert [u["update_id"] for u in body["result"]] == ids[-1:]


async def test_limit_caps_a_batch(fake_telegram: FakeTelegram) -> None:
    ids = [fake_telegram.push_message(USER, USER, f"/n{n}") for n in range(3)]
    _, body = await call(fake_telegram, "getUpdates", limit=2)
    assert [u["update_id"] for u in body["result"]] == ids[:2]


async def test_allowed_updates_filter_only_updates_created_afterwards(
    fake_telegram: FakeTelegram,
) -> None:
    before = fake_telegram.push_message(USER, USER, "/start")
    _, body = await call(fake_telegram, "getUpdates", allowed_updates=["callback_query"])
    after = fake_telegram.push_message(USER, USER, "/help")
    assert ([u["update_id"] for u in body["result"]], after) == ([before], None)


async def test_polling_bootstrap_finds_no_webhook(fake_telegram: FakeTelegram) -> None:
    fake_telegram.push_message(USER, USER, "/start")
    async with bot_for(fake_telegram) as bot:
        deleted = await bot.delete_webhook()
        info = await bot.get_webhook_info()
    assert (deleted, info.url, info.pending_update_count) == (True, "", 1)


async def test_a_failure_scripted_for_any_method_leaves_polling_alone(
    fake_telegram: FakeTelegram,
) -> None:
    fake_telegram.fail(502, "Bad Gateway")
    polled = await call(fake_telegram, "getUpdates")
    sent = await call(fake_telegram, "sendMessage", chat_id=USER, text="hi")
    assert (polled[0], sent[0]) == (200, 502)


# ---- bot commands in text --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "spans"),
    [
        ("/start", [(0, 6)]),
        ("/start@parti_test_bot payload", [(0, 21)]),
        ("/start_now", [(0, 10)]),
        ("x /help, /list", [(2, 5), (9, 5)]),
        ("👋 /start", [(3, 6)]),  # the emoji is two UTF-16 units
        ("a/start", []),
        ("/start/x", []),
        ("<b>/start</b>", []),
        ("/start@ab x", []),  # a mention needs 3-32 characters
        ("/" + "a" * 65, []),  # a command has at most 64
        ("/é", []),
    ],
)
def test_bot_command_entities_are_found_as_telegram_finds_them(
    text: str, spans: list[tuple[int, int]]
) -> None:
    entities = bot_command_entities(text)
    assert [(e["offset"], e["length"]) for e in entities] == spans


@given(st.text(alphabet=st.sampled_from("/@ab_1é👋 <>\n"), max_size=40))
def test_bot_command_entities_are_ordered_slash_words_in_utf16(text: str) -> None:
    units = text.encode("utf-16-le")
    end = 0
    for entity in bot_command_entities(text):
        start, length = entity["offset"], entity["length"]
        assert start >= end and length >= 2
        end = start + length
        covered = units[2 * start : 2 * end].decode("utf-16-le")
        assert covered.startswith("/")
        assert all(ch.isascii() and (ch.isalnum() or ch in "_@") for ch in covered[1:])
    assert end <= len(units) // 2


# ---- command menus ---------------------------------------------------------------------


async def test_commands_are_kept_per_scope(fake_telegram: FakeTelegram) -> None:
    follow = BotCommand("follow", "Follow a streamer")
    async with bot_for(fake_telegram) as bot:
        await bot.set_my_commands([follow], scope=BotCommandScopeAllGroupChats())
        groups = await bot.get_my_commands(scope=BotCommandScopeAllGroupChats())
        default = await bot.get_my_commands()
    assert (groups, default) == ((follow,), ())


@pytest.mark.parametrize(
    ("commands", "language", "error"),
    [
        ([{"command": "Follow", "description": "x"}], "", "Bad Request: BOT_COMMAND_INVALID"),
        ([{"command": "fol-low", "description": "x"}], "", "Bad Request: BOT_COMMAND_INVALID"),
        (
            [{"command": "a" * 33, "description": "x"}],
            "",
            "Bad Request: command length must not exceed 32",
        ),
        ([{"command": " ", "description": "x"}], "", "Bad Request: command must be non-empty"),
        (
            [{"command": "follow", "description": " "}],
            "",
            "Bad Request: command description must be non-empty",
        ),
        (
            [{"command": "follow", "description": "x" * 257}],
            "",
            "Bad Request: command description length must not exceed 256",
        ),
        (
            [{"command": f"c{n}", "description": "x"} for n in range(101)],
            "",
            "Bad Request: BOT_COMMANDS_TOO_MUCH",
        ),
        (
            [{"command": "follow"}],
            "",
            "Bad Request: can't parse BotCommand: Can't find field \"description\"",
        ),
        (
            [{"command": "follow", "description": "x"}],
            "eng",
            "Bad Request: invalid language code specified",
        ),
    ],
)
async def test_set_my_commands_refuses_what_telegram_refuses(
    fake_telegram: FakeTelegram, commands: list[dict[str, str]], language: str, error: str
) -> None:
    status, body = await call(
        fake_telegram, "setMyCommands", commands=commands, language_code=language
    )
    assert (status, body["description"]) == (400, error)


async def test_a_leading_slash_in_a_command_is_dropped(fake_telegram: FakeTelegram) -> None:
    await call(fake_telegram, "setMyCommands", commands=[{"command": "/list", "description": "L"}])
    assert fake_telegram.commands_for() == [{"command": "list", "description": "L"}]


# ---- reply markup ----------------------------------------------------------------------


def keyboard(*buttons: dict[str, Any]) -> dict[str, Any]:
    return {"inline_keyboard": [list(buttons)]}


@pytest.mark.parametrize(
    ("markup", "error"),
    [
        (keyboard({"text": "a", "callback_data": "x" * 64}), None),
        (keyboard({"text": "a", "callback_data": "é" * 32}), None),  # 64 bytes
        (keyboard({"text": "a", "callback_data": "é" * 33}), "BUTTON_DATA_INVALID"),
        (keyboard({"text": "a", "callback_data": "x" * 65}), "BUTTON_DATA_INVALID"),
        (keyboard({"text": "a", "url": "https://t.me/parti_test_bot?start=f_alice"}), None),
        (keyboard({"text": "a", "url": "tg://resolve?domain=parti_test_bot"}), None),
        (
            keyboard({"text": "a", "url": "http://localhost:8080"}),
            "inline keyboard button URL 'http://localhost:8080' is invalid: Wrong HTTP URL",
        ),
        (
            keyboard({"text": "a", "url": "ftp://example.com"}),
            "inline keyboard button URL 'ftp://example.com' is invalid: Unsupported URL protocol",
        ),
        (
            keyboard({"text": "a"}),
            "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard",
        ),
        (
            keyboard({"callback_data": "x"}),
            "can't parse inline keyboard button: Can't find field \"text\"",
        ),
        (
            {"inline_keyboard": [[{"text": str(n), "callback_data": "x"}] for n in range(101)]},
            "reply markup is too long",
        ),
        ("{not json", "can't parse reply keyboard markup JSON object"),
    ],
)
async def test_reply_markup_is_checked_as_telegram_checks_it(
    fake_telegram: FakeTelegram, markup: Any, error: str | None
) -> None:
    raw = markup if isinstance(markup, str) else json.dumps(markup)
    status, body = await call(
        fake_telegram, "sendMessage", chat_id=USER, text="hi", reply_markup=raw
    )
    assert (status, body.get("description")) == (
        (200, None) if error is None else (400, f"Bad Request: {error}")
    )


async def test_editing_markup_of_a_missing_message_is_not_found(
    fake_telegram: FakeTelegram,
) -> None:
    status, body = await call(
        fake_telegram, "editMessageReplyMarkup", chat_id=USER, message_id=77, reply_markup=""
    )
    assert (status, body["description"]) == (400, "Bad Request: message to edit not found")


async def test_an_edit_that_changes_nothing_is_not_modified(fake_telegram: FakeTelegram) -> None:
    markup = json.dumps(keyboard({"text": "Mute", "callback_data": "m"}))
    _, sent = await call(fake_telegram, "sendMessage", chat_id=USER, text="hi", reply_markup=markup)
    message_id = sent["result"]["message_id"]
    status, body = await call(
        fake_telegram,
        "editMessageReplyMarkup",
        chat_id=USER,
        message_id=message_id,
        reply_markup=markup,
    )
    assert (status, body["description"]) == (400, NOT_MODIFIED)


async def test_editing_text_without_markup_drops_the_keyboard(
    fake_telegram: FakeTelegram,
) -> None:
    markup = json.dumps(keyboard({"text": "Mute", "callback_data": "m"}))
    _, sent = await call(fake_telegram, "sendMessage", chat_id=USER, text="hi", reply_markup=markup)
    message_id = sent["result"]["message_id"]
    await call(fake_telegram, "editMessageText", chat_id=USER, message_id=message_id, text="bye")
    (message,) = fake_telegram.replies_to(USER)
    assert (message.text, message.buttons) == ("bye", [])


async def test_a_callback_query_is_answered_once(fake_telegram: FakeTelegram) -> None:
    markup = json.dumps(keyboard({"text": "Mute", "callback_data": "m"}))
    _, sent = await call(fake_telegram, "sendMessage", chat_id=USER, text="hi", reply_markup=markup)
    query_id = fake_telegram.push_callback(USER, USER, "m", message_id=sent["result"]["message_id"])
    first = await call(fake_telegram, "answerCallbackQuery", callback_query_id=query_id)
    second = await call(fake_telegram, "answerCallbackQuery", callback_query_id=query_id)
    assert (first[0], second[0], second[1]["description"]) == (200, 400, QUERY_INVALID)


async def test_a_callback_answer_over_200_characters_is_refused_and_the_query_kept(
    fake_telegram: FakeTelegram,
) -> None:
    markup = json.dumps(keyboard({"text": "Mute", "callback_data": "m"}))
    _, sent = await call(fake_telegram, "sendMessage", chat_id=USER, text="hi", reply_markup=markup)
    query_id = fake_telegram.push_callback(USER, USER, "m", message_id=sent["result"]["message_id"])
    long = await call(
        fake_telegram, "answerCallbackQuery", callback_query_id=query_id, text="x" * 201
    )
    fits = await call(
        fake_telegram, "answerCallbackQuery", callback_query_id=query_id, text="x" * 200
    )
    assert (long[0], long[1]["description"], fits[0]) == (400, "Bad Request: MESSAGE_TOO_LONG", 200)


async def test_answering_an_unknown_callback_query_is_refused(
    fake_telegram: FakeTelegram,
) -> None:
    async with bot_for(fake_telegram) as bot:
        with pytest.raises(BadRequest, match=r"(?i)query is too old"):
            await bot.answer_callback_query("12345")


async def test_a_reply_to_a_missing_message_is_refused(fake_telegram: FakeTelegram) -> None:
    status, body = await call(
        fake_telegram,
        "sendMessage",
        chat_id=USER,
        text="hi",
        reply_parameters={"message_id": 999},
    )
    assert (status, body["description"]) == (400, "Bad Request: message to be replied not found")


async def test_a_public_chat_named_by_its_username_is_that_chat() -> None:
    """getChat and sends take "@username" for a public chat, and Telegram counts its limit
    per chat, whichever way it was named."""
    fake = await FakeTelegram(limits_scale=0.1).start()  # a channel: 2 a minute
    fake.add_chat(SUPERGROUP, "channel", title="Alerts", username="parti_alerts")
    try:
        async with bot_for(fake) as bot:
            assert (await bot.get_chat("@Parti_Alerts")).id == SUPERGROUP
            with pytest.raises(BadRequest, match=r"(?i)chat not found"):
                await bot.get_chat("@nobody_here")
            await bot.send_message("@parti_alerts", "one")
            await bot.send_message(SUPERGROUP, "two")
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{fake.api_url}/bot{fake.token}/sendMessage",
                json={"chat_id": "@parti_alerts", "text": "three"},
            ) as answer,
        ):
            assert answer.status == 429  # the third in the channel's minute
        fake.add_chat(USER, "private")
        fake.users[USER]["username"] = "ann"  # bots cannot write to a user by name
        async with aiohttp.ClientSession() as http:
            for name in ("@nobody_here", "@ann"):
                async with http.post(
                    f"{fake.api_url}/bot{fake.token}/sendMessage",
                    json={"chat_id": name, "text": "hello"},
                ) as answer:
                    assert answer.status == 400, name
                    assert (await answer.json())["description"] == "Bad Request: chat not found"
    finally:
        await fake.stop()
    assert fake.rate_limited == 1
