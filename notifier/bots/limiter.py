"""The command bot's replies wait for the same rate windows as the alerts to the same chat
(Telegram counts both): the bot-wide window and each chat's own."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from telegram.ext import BaseRateLimiter

from notifier.deliver.base import GATE
from notifier.deliver.limits import SlidingWindow

# Methods that put a message in a chat (what Telegram's limits count).
SENDS = frozenset(
    {
        "sendMessage",
        "sendPhoto",
        "editMessageText",
        "editMessageCaption",
        "editMessageReplyMarkup",
        "deleteMessage",
    }
)


class SharedLimiter(BaseRateLimiter[None]):
    def __init__(
        self, bot_window: SlidingWindow, chat_window: Callable[[int | str], SlidingWindow]
    ) -> None:
        self.bot_window = bot_window
        self.chat_window = chat_window

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        chat = data.get("chat_id")
        if endpoint not in SENDS or chat is None:
            return await callback(*args, **kwargs)
        windows = [self.bot_window, self.chat_window(chat)]
        slots = await GATE.acquire(windows)
        try:
            return await callback(*args, **kwargs)
        finally:
            GATE.release(windows, slots)
