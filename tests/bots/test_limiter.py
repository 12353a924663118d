"""The command bot's replies and the alerts wait for one window per chat and one per bot."""

from __future__ import annotations

import time
from typing import Any

from notifier.bots.limiter import SharedLimiter
from notifier.deliver.telegram import TelegramBot, TelegramSender
from notifier.rules.schema import TelegramTarget


async def test_replies_take_the_same_windows_the_alerts_to_that_chat_wait_for() -> None:
    bot = TelegramBot("123:TEST", "http://127.0.0.1:9")
    sender = TelegramSender("@tg:42", TelegramTarget(chat_id=42), bot)
    limiter = SharedLimiter(bot.window, bot.chat_window)
    calls: list[str] = []

    async def reply(*args: Any, **kwargs: Any) -> bool:
        calls.append("sent")
        return True

    await limiter.process_request(reply, (), {}, "sendMessage", {"chat_id": 42}, None)
    bot_window, chat_window = sender.windows()
    assert bot_window is limiter.bot_window
    assert chat_window is bot.chat_window(42)
    # The reply holds the chat's one message a second: an alert must wait for it.
    assert chat_window.wait_time(time.monotonic()) != 0.0
    assert calls == ["sent"]
