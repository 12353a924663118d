"""Fixtures for the command bot: a SQLite store, a Parti client on the simulator, a clock the
test moves, and the bot long-polling the fake Telegram."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from notifier.bots.telegram import CommandLimits, TelegramCommands
from notifier.log import get_logger
from notifier.parti.client import PartiClient
from notifier.parti.simulator import Simulator
from notifier.store import Store, open_store
from tests.fakes.telegram import FakeTelegram, Message

USER = 42  # a private chat's id is its user's id
OTHER = 43
GROUP = -1001234567890
ADMIN = 7
MEMBER = 8


class Clock:
    """A wall clock the test moves (the flood limit and mutes read it)."""

    def __init__(self, now: float = 1_750_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(str(tmp_path / "bot.db"), instance="test")
    yield opened
    await opened.close()


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[PartiClient]:
    async with PartiClient(sim.api_url, retries=0, timeout=5.0) as parti:
        yield parti


@pytest.fixture
def limits() -> CommandLimits:
    return CommandLimits()


BotFactory = Callable[..., Awaitable[TelegramCommands]]


@pytest.fixture
async def make_bot(
    fake_telegram: FakeTelegram, store: Store, client: PartiClient, clock: Clock
) -> AsyncIterator[BotFactory]:
    """Starts a TelegramCommands on the fake (stopped at the end, if still running)."""
    started: list[TelegramCommands] = []

    async def make(**overrides: Any) -> TelegramCommands:
        options: dict[str, Any] = {
            "token": fake_telegram.token,
            "api_url": fake_telegram.api_url,
            "store": store,
            "client": client,
            "limits": CommandLimits(),
            "clock": clock,
        } | overrides
        bot = TelegramCommands(**options)
        await bot.start()
        started.append(bot)
        await fake_telegram.wait_polling(5)
        return bot

    yield make
    for bot in started:
        await bot.stop()


@pytest.fixture
async def bot(make_bot: BotFactory, limits: CommandLimits) -> TelegramCommands:
    return await make_bot(limits=limits)


async def say(fake: FakeTelegram, chat: int, user: int, text: str, **kw: Any) -> Message:
    """A user writes `text`; the bot's reply in that chat."""
    fake.push_message(chat, user, text, **kw)
    return await fake.wait_reply(chat, 5)


async def press(
    fake: FakeTelegram, chat: int, user: int, data: str, *, message_id: int, strict: bool = True
) -> dict[str, Any]:
    """A user presses a button; the bot's answerCallbackQuery (after any edit it made)."""
    query_id = fake.push_callback(chat, user, data, message_id=message_id, strict=strict)
    entry = await fake.wait_sent(
        lambda r: (
            r["method"] == "answerCallbackQuery"
            and r["params"].get("callback_query_id") == query_id
        ),
        5,
    )
    return {k: v for k, v in entry["params"].items()}


class LogWaiter(logging.Handler):
    """Waits for a log event by name (for effects that send nothing, such as a store write)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []
        self._changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(record.getMessage())
        self._changed.set()

    async def wait(self, name: str, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while name not in self.seen:
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
def logged() -> Iterator[LogWaiter]:
    waiter = LogWaiter()
    logger = get_logger()
    logger.addHandler(waiter)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield waiter
    logger.removeHandler(waiter)
    logger.setLevel(level)
