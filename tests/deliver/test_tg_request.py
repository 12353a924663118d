"""The aiohttp transport under python-telegram-bot, against the fake Telegram on a socket."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import socket
from collections.abc import AsyncIterator

import pytest
from telegram import Bot, LinkPreviewOptions
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)

from notifier.deliver.tg_request import AiohttpRequest
from tests.fakes.telegram import FakeTelegram

os.environ.setdefault("PTB_TIMEDELTA", "1")  # as notifier.deliver.telegram sets it


async def _bot(api_url: str, token: str, **options: float | int) -> Bot:
    bot = Bot(token, base_url=f"{api_url}/bot", request=AiohttpRequest(**options))  # type: ignore[arg-type]
    await bot.initialize()
    return bot


@pytest.fixture
async def bot(fake_telegram: FakeTelegram) -> AsyncIterator[Bot]:
    bot = await _bot(fake_telegram.api_url, fake_telegram.token, read_timeout=5.0)
    yield bot
    await bot.shutdown()


async def test_a_message_arrives_with_every_parameter_as_ptb_encodes_it(
    fake_telegram: FakeTelegram, bot: Bot
) -> None:
    text = "<b>Café & co</b> +1 100% ✓\nline two = ?"
    await bot.send_message(
        chat_id=1001,
        text=text,
        parse_mode="HTML",
        disable_notification=True,
        link_preview_options=LinkPreviewOptions(is_disabled=True),
    )
    (sent,) = fake_telegram.sent("sendMessage")
    params = sent["params"]
    assert params["chat_id"] == "1001"
    assert params["text"] == text
    assert params["parse_mode"] == "HTML"
    assert params["disable_notification"] == "true"
    assert json.loads(params["link_preview_options"]) == {"is_disabled": True}


async def test_the_answer_becomes_ptb_objects(bot: Bot) -> None:
    message = await bot.send_message(chat_id=1001, text="hello")
    assert message.text == "hello"
    assert message.chat.id == 1001


async def test_a_slim_request_keeps_of_a_message_its_id_date_and_chat(
    fake_telegram: FakeTelegram,
) -> None:
    slim = await _bot(fake_telegram.api_url, fake_telegram.token, slim_messages=True)
    try:
        sent = await slim.send_photo(chat_id=-1001, photo="https://example.com/a.jpg", caption="c")
        assert sent.message_id > 0 and sent.chat.id == -1001 and sent.chat.type
        assert sent.date is not None
        assert sent.caption is None and sent.photo == ()  # the echo was not rebuilt
        me = await slim.get_me()  # not a message: whole
        assert me.username == fake_telegram.bot_username and me.is_bot
    finally:
        await slim.shutdown()


PAGE = "<html><body>proxy page with a SECRET-SESSION-COOKIE-1234 in it</body></html>"


@pytest.mark.parametrize("status", [200, 502, 400])
async def test_a_page_that_is_not_json_reaches_neither_the_error_nor_the_log(
    fake_telegram: FakeTelegram, bot: Bot, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    # python-telegram-bot's own handling logs a 2xx page whole at ERROR and quotes any
    # other one in the error's message, from where it would reach our log and outbox.
    fake_telegram.fail_with_page(status, PAGE)
    with caplog.at_level(logging.DEBUG), pytest.raises(TelegramError) as raised:
        await bot.send_message(chat_id=1001, text="hello")
    assert "SECRET-SESSION" not in str(raised.value)
    assert "SECRET-SESSION" not in caplog.text
    expected = "Invalid server response" if status == 200 else f"({status})"
    assert expected in str(raised.value)


async def test_an_upload_goes_out_as_multipart_with_the_file_as_a_file_part(
    fake_telegram: FakeTelegram, bot: Bot
) -> None:
    with pytest.raises(BadRequest):  # the fake takes photos by URL only
        await bot.send_photo(chat_id=1001, photo=b"\x89PNG\r\n\x1a\n fake", caption="a caption")
    (sent,) = [r for r in fake_telegram.requests if r["method"] == "sendPhoto"]
    assert sent["params"]["caption"] == "a caption"
    assert sent["params"]["photo"].startswith("FileField(")


ERRORS = [
    (
        "429 with retry_after",
        429,
        "Too Many Requests: retry after 5",
        {"retry_after": 5},
        RetryAfter,
    ),
    ("group migrated", 400, "Bad Request: group upgraded", {"migrate_to": -1009}, ChatMigrated),
    ("blocked", 403, "Forbidden: bot was blocked by the user", {}, Forbidden),
    ("bad request", 400, "Bad Request: chat not found", {}, BadRequest),
    ("rejected token", 401, "Unauthorized", {}, InvalidToken),
    ("bad gateway", 502, "Bad Gateway", {}, NetworkError),
]


@pytest.mark.parametrize(
    ("status", "description", "parameters", "error"),
    [case[1:] for case in ERRORS],
    ids=[case[0] for case in ERRORS],
)
async def test_an_error_answer_is_parsed_by_ptb_into_its_error(
    fake_telegram: FakeTelegram,
    bot: Bot,
    status: int,
    description: str,
    parameters: dict[str, int],
    error: type[TelegramError],
) -> None:
    fake_telegram.fail(status, description, **parameters)
    with pytest.raises(error):
        await bot.send_message(chat_id=1001, text="x")


async def test_retry_after_carries_the_seconds_telegram_asked_for(
    fake_telegram: FakeTelegram, bot: Bot
) -> None:
    fake_telegram.fail(429, "Too Many Requests: retry after 7", retry_after=7)
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(chat_id=1001, text="x")
    assert caught.value.retry_after in (7, dt.timedelta(seconds=7))


async def test_an_answer_slower_than_the_read_timeout_is_timed_out(
    fake_telegram: FakeTelegram,
) -> None:
    bot = await _bot(fake_telegram.api_url, fake_telegram.token, read_timeout=0.2)
    try:
        fake_telegram.fail(500, "never seen", delay=60.0)
        with pytest.raises(TimedOut):
            await bot.send_message(chat_id=1001, text="x")
    finally:
        await bot.shutdown()


async def test_a_refused_connection_is_a_network_error_that_never_shows_the_token(
    fake_telegram: FakeTelegram,
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    request = AiohttpRequest()
    await request.initialize()
    bot = Bot(fake_telegram.token, base_url=f"http://127.0.0.1:{port}/bot", request=request)
    try:
        with pytest.raises(NetworkError) as caught:
            await bot.get_me()
    finally:
        await request.shutdown()
    assert not isinstance(caught.value, TimedOut)
    assert fake_telegram.token not in str(caught.value)
    assert fake_telegram.token.split(":")[1] not in str(caught.value)


async def test_more_sends_than_pooled_connections_wait_for_one_and_all_arrive(
    fake_telegram: FakeTelegram,
) -> None:
    bot = await _bot(fake_telegram.api_url, fake_telegram.token, connection_pool_size=2)
    try:
        await asyncio.gather(*(bot.send_message(chat_id=1001, text=f"m{n}") for n in range(10)))
    finally:
        await bot.shutdown()
    assert sorted(r["params"]["text"] for r in fake_telegram.sent("sendMessage")) == sorted(
        f"m{n}" for n in range(10)
    )


async def test_proxy_variables_in_the_environment_are_ignored(
    fake_telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    bot = await _bot(fake_telegram.api_url, fake_telegram.token)
    try:
        await bot.send_message(chat_id=1001, text="direct")
    finally:
        await bot.shutdown()
    assert fake_telegram.sent("sendMessage")


async def test_a_request_used_before_initialize_says_so(fake_telegram: FakeTelegram) -> None:
    bot = Bot(
        fake_telegram.token, base_url=f"{fake_telegram.api_url}/bot", request=AiohttpRequest()
    )
    with pytest.raises(NetworkError, match="not initialized"):
        await bot.get_me()
