"""Console sender: each alert as a readable line on stdout (the demo, debugging)."""

from __future__ import annotations

import itertools
import sys
from typing import Any, TextIO

from notifier.deliver.limits import SlidingWindow
from notifier.outbox.policy import Failure, Outcome
from notifier.render import console as render
from notifier.render.fields import AlertView

_ids = itertools.count(1)


class ConsoleSender:
    channel = "console"

    def __init__(self, name: str, stream: TextIO | None = None) -> None:
        self.name = name
        self._stream = stream

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def windows(self) -> list[SlidingWindow]:
        return []

    def prepare(self, payload: dict[str, Any]) -> None:
        pass  # no rate limit to wait for

    def _write(self, text: str) -> None:
        stream = self._stream or sys.stdout
        stream.write(text + "\n")
        stream.flush()

    async def send(self, payload: dict[str, Any]) -> str | None:
        view = AlertView.from_json(payload["view"])
        message_id = str(next(_ids))
        self._write(f"[{self.name}] #{message_id} {render.render(view, payload.get('template'))}")
        return message_id

    async def edit(self, message_id: str, payload: dict[str, Any]) -> None:
        view = AlertView.from_json(payload["view"])
        self._write(f"[{self.name}] #{message_id} edited: {render.render(view)}")

    async def delete(self, message_id: str) -> None:
        self._write(f"[{self.name}] #{message_id} deleted")

    def classify(self, error: BaseException) -> Failure:
        return Failure(Outcome.BACKOFF, f"{type(error).__name__}")
