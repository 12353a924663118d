"""Saves the engine's state, never ahead of the alerts it produced, and prunes old rows."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

from notifier.log import event, get_logger, short_error
from notifier.stages.context import Core
from notifier.store.base import Store

_log = get_logger("state")
ENGINE_STATE = "engine_state"
STATE_EVERY = 5.0
PRUNE_EVERY = 3600.0
_SLICE = 1_000  # entries of a large table encoded at a time


def state_text(state: dict[str, Any]) -> str:
    """The engine state as JSON text, made on the event loop (the engine is live) every
    few seconds while events come: by orjson, into one buffer, five times quicker than
    json (36,000 cooldowns: 5 ms against 22). Should orjson refuse a text (a lone
    surrogate), json makes it, its large tables (one cooldown per rule, subject and
    destination) a slice at a time: one json `dumps` of the whole keeps five times the
    text in small pieces until it joins them (7 MB for 1.1 MB of text)."""
    try:
        return orjson.dumps(state).decode()
    except TypeError:
        pass
    pieces = ["{"]
    for key, value in state.items():
        if len(pieces) > 1:
            pieces.append(",")
        pieces += (json.dumps(key), ":")
        if not isinstance(value, dict) or len(value) <= _SLICE:
            pieces.append(json.dumps(value))
            continue
        entries = iter(value.items())
        pieces.append("{")
        while part := dict(itertools.islice(entries, _SLICE)):
            if pieces[-1] != "{":
                pieces.append(",")
            pieces.append(json.dumps(part)[1:-1])
        pieces.append("}")
    pieces.append("}")
    return "".join(pieces)


class StateSaver:
    def __init__(
        self,
        core: Core,
        store: Store,
        *,
        idle: Callable[[], bool],
        fence: Callable[[], int | None] = lambda: None,
        every: float = STATE_EVERY,
    ) -> None:
        self.core = core
        self.store = store
        self.idle = idle  # every evaluated match is in the outbox
        self.fence = fence
        self.every = every

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            await self.save()

    async def save(self) -> None:
        # Saved only when every evaluated match is in the outbox, so the saved state never
        # runs ahead of the alerts (an older state is safe: outbox keys dedup a re-fire).
        if not self.core.state_dirty or not self.idle():
            return
        self.core.state_dirty = False
        state = state_text(self.core.rules.engine.export_state(now=time.time(), saving=True))
        try:
            await self.store.set_state(ENGINE_STATE, state, fence=self.fence())
        except Exception:
            self.core.state_dirty = True  # saved next time
            raise

    async def load(self) -> None:
        text = await self.store.get_state(ENGINE_STATE)
        if not text:
            return
        # A damaged state (edited by hand, a disk's fault) costs what it held, not the
        # start: price lines take their baseline from the known price, and the outbox's
        # keys keep a re-evaluated event from alerting twice.
        try:
            damaged = self.core.rules.engine.restore_state(json.loads(text))
        except Exception as exc:  # any damage, whatever it raises
            event(
                _log,
                "state.unreadable",
                logging.WARNING,
                error=short_error(exc),
                note="the engine starts without the saved state (or with part of it)",
            )
            return
        if damaged:  # entries the engine could not read: skipped, the rest restored
            event(
                _log,
                "state.unreadable",
                logging.WARNING,
                damaged_entries=damaged,
                note="the engine starts without those entries, with the rest of the state",
            )


class Pruner:
    """Deletes sent and dropped rows older than the retention period, in small batches."""

    def __init__(self, store: Store, *, retention: float, every: float = PRUNE_EVERY) -> None:
        self.store = store
        self.retention = retention
        self.every = every

    async def run(self) -> None:
        while True:
            try:
                await self.prune()
            except Exception as exc:  # the next round tries again
                event(_log, "outbox.prune_failed", logging.WARNING, error=short_error(exc))
            await asyncio.sleep(self.every)

    async def prune(self) -> int:
        before = self.store.clock() - self.retention  # the clock the rows were stamped in
        total = 0
        while (deleted := await self.store.prune_sent(before, limit=5_000)) > 0:
            total += deleted
        if total:
            event(_log, "outbox.pruned", rows=total)
        return total
