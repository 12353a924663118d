"""What every sender offers the delivery lanes."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol

from notifier.deliver.limits import SlidingWindow, reserve
from notifier.outbox.policy import Failure


class NotModified(Exception):
    """An edit that changes nothing: the chat already shows it (counts as done)."""


class Sender(Protocol):
    name: str
    channel: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def send(self, payload: dict[str, Any]) -> str | None:
        """Send; returns the chat's message id (None where there is none)."""

    async def edit(self, message_id: str, payload: dict[str, Any]) -> None: ...

    async def delete(self, message_id: str) -> None: ...

    def classify(self, error: BaseException) -> Failure: ...

    def windows(self) -> list[SlidingWindow]: ...


async def wait_turn(windows: list[SlidingWindow]) -> None:
    """Sleep until this sender's rate limits all allow one more message."""
    if not windows:
        return
    at = reserve(windows, time.monotonic())
    delay = at - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
