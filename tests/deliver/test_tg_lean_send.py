"""An alert's Telegram request is exactly what python-telegram-bot's own `send_photo` /
`send_message` would send for it, for every option a destination or an alert can carry;
only the answer is not turned into a `Message`."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from telegram.constants import ParseMode
from telegram.error import TelegramError

from notifier.deliver.telegram import (
    _NO_PREVIEW,
    TelegramBot,
    TelegramSender,
    _message,
    _post,
)
from notifier.rules.schema import TelegramTarget
from tests.deliver.harness import live_view
from tests.fakes.telegram import FakeTelegram

PHOTO = "https://assets.parti.com/t.png"


def keyboard(payload: dict[str, Any], username: str) -> dict[str, Any]:
    return {"inline_keyboard": [[{"text": "Unfollow", "callback_data": f"u:{username}"}]]}


OPTIONS = list(
    itertools.product(
        (PHOTO, ""),  # a picture (sendPhoto) or none (sendMessage)
        (False, True),  # plain text (a chat that refused the markup)
        (False, True),  # silent
        (None, 77),  # a forum topic
        (False, True),  # paid broadcast
        (False, True),  # buttons (chat subscriptions)
    )
)


async def reference(sender: TelegramSender, payload: dict[str, Any]) -> None:
    """The same alert through PTB's public methods, as the sender sent it before."""
    message, plain = _message(payload)
    bot = sender._bot.bot
    parse_mode = None if plain else ParseMode.HTML
    common = sender._common() | sender._markup(payload)
    if message.photo:
        await bot.send_photo(
            photo=message.photo, caption=message.html, parse_mode=parse_mode, **common
        )
    else:
        await bot.send_message(
            text=message.html, parse_mode=parse_mode, link_preview_options=_NO_PREVIEW, **common
        )


@pytest.mark.parametrize(("image", "plain", "silent", "thread", "paid", "buttons"), OPTIONS)
async def test_an_alerts_request_is_the_one_ptbs_own_method_sends(
    fake_telegram: FakeTelegram,
    image: str,
    plain: bool,
    silent: bool,
    thread: int | None,
    paid: bool,
    buttons: bool,
) -> None:
    bot = TelegramBot(fake_telegram.token, fake_telegram.api_url, paid_broadcast=paid)
    target = TelegramTarget(chat_id=-1001234, silent=silent, thread_id=thread)
    sender = TelegramSender("g", target, bot, keyboard=keyboard if buttons else None)
    payload: dict[str, Any] = {"view": live_view(image=image).to_json(), "template": None}
    if plain:
        payload["plain"] = True
    await sender.start()
    try:
        message_id = await sender.send(payload)
        await reference(sender, payload)
    finally:
        await bot.close()
    mine, theirs = fake_telegram.sent()[-2:]
    assert mine["method"] == theirs["method"] == ("sendPhoto" if image else "sendMessage")
    assert mine["params"] == theirs["params"]
    kind, _, number = (message_id or "").partition(":")
    assert kind == ("p" if image else "t")
    assert fake_telegram.replies_to(-1001234)[-2].message_id == int(number)


@pytest.mark.parametrize(
    "answer", [True, {}, {"message_id": "7"}, {"message_id": True}, [{"message_id": 7}]]
)
async def test_an_answer_without_a_message_id_is_an_invalid_server_response(answer: Any) -> None:
    class Answering:
        async def _post(self, method: str, data: dict[str, Any]) -> Any:
            return answer

    with pytest.raises(TelegramError, match=r"^Invalid server response$"):
        await _post(Answering(), "sendMessage", text="x")  # type: ignore[arg-type]
