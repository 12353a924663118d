"""Remembers the engine's latest decision per chat and streamer for `/why`, written in the
background: a popular streamer's go-live decides for thousands of chats at once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from notifier.deliver.chats import chat_of
from notifier.log import event, get_logger
from notifier.rules.engine import SubDecision
from notifier.store import Store
from notifier.store.outage import Outage
from notifier.store.types import DecisionEntry

_log = get_logger("decisions")
FLUSH_EVERY = 1.0
WRITE_BATCH = 1_000  # decisions a transaction: a store call each, not one per decision
MAX_PENDING = 50_000  # beyond this the oldest waiting decisions are forgotten (only /why)


class DecisionRecorder:
    def __init__(self, store: Store, *, every: float = FLUSH_EVERY) -> None:
        self.store = store
        self.every = every
        # (platform, chat id, subject) -> (text, at); a newer decision replaces an older one
        self._pending: dict[tuple[str, str, str], tuple[str, float]] = {}
        self._outage = Outage(
            "decisions",
            None,
            failed_event="decisions.write_failed",
            recovered_event="decisions.write_recovered",
        )

    def add(self, decisions: Iterable[SubDecision]) -> None:
        for decision in decisions:
            chat = chat_of(decision.destination)
            if chat is None:
                continue
            key = (*chat, decision.subject)
            self._pending.pop(key, None)
            self._pending[key] = (decision.text, decision.at)
        while len(self._pending) > MAX_PENDING:
            del self._pending[next(iter(self._pending))]

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            await self.flush()

    async def flush(self) -> int:
        pending, self._pending = self._pending, {}
        entries = [
            DecisionEntry(platform, chat_id, subject, text, at)
            for (platform, chat_id, subject), (text, at) in pending.items()
        ]
        written = 0
        try:
            for first in range(0, len(entries), WRITE_BATCH):
                batch = entries[first : first + WRITE_BATCH]
                await self.store.record_decisions(batch)
                written += len(batch)
        except Exception as exc:  # /why may be a little stale meanwhile; alerts are not
            # The rest wait for the next round, unless a newer decision replaced them.
            unwritten = dict(list(pending.items())[written:])
            unwritten.update(self._pending)
            self._pending = unwritten
            self.add(())  # the cap
            self._outage.failed(exc)  # the next round comes after `every`: no wait of its own
        else:
            self._outage.answered()
        if written:
            event(_log, "decisions.recorded", decisions=written)
        return written
