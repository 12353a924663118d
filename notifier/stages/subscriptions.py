"""Chat subscriptions from the store into the engine, within a second, without a reload."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from importlib import import_module

from notifier.log import event, get_logger, short_error
from notifier.rules.engine import Engine
from notifier.rules.subscriptions import (
    Subscription,
    chat_destination,
    valid_chat_id,
)
from notifier.stages.context import Core
from notifier.store import Store
from notifier.store.types import Subscription as Stored

_log = get_logger("subscriptions")
SYNC_EVERY = 0.5
# The senders a platform's subscriptions need, imported once the first one is synced (a
# first go-live to 20,000 chats then does not wait for python-telegram-bot to import, and
# its memory is not counted as the fan-out's).
SENDER_MODULES = {
    "telegram": "notifier.deliver.telegram",
    "discord": "notifier.deliver.discord_chat",
}


def as_rule_subscription(stored: Stored) -> Subscription | None:
    """The engine's view of a stored subscription: where its alerts go (None for one whose
    chat id no bot would have stored: skipped, never a stop of the whole sync)."""
    if not valid_chat_id(stored.platform, stored.chat_id):
        return None
    return Subscription(
        id=stored.id,
        platform=stored.platform,
        chat_id=stored.chat_id,
        kind=stored.kind,
        target=stored.target,
        destination=chat_destination(stored.platform, stored.chat_id),
        params=stored.params,
    )


class SubscriptionSync:
    """Polls the store's change counter; applies changes to the current engine (and all
    of them again to a new engine after a reload)."""

    def __init__(
        self,
        core: Core,
        store: Store,
        *,
        every: float = SYNC_EVERY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.core = core
        self.store = store
        self.every = every
        self.clock = clock
        self.version = 0
        self._engine: Engine | None = None
        self._imported: set[str] = set()
        self.synced = asyncio.Event()  # set after each pass (tests wait on it)

    async def run(self) -> None:
        while True:
            await self.sync()
            await asyncio.sleep(self.every)

    async def sync(self) -> int:
        engine = self.core.rules.engine
        if engine is not self._engine:  # a reload: the new engine has none of them yet
            self._engine, self.version = engine, 0
        if self.version and await self.store.subscriptions_version() == self.version:
            self.synced.set()
            return 0
        changes = await self.store.subscriptions_changed_since(self.version)
        now = self.clock()
        applied = 0
        if self.version == 0:
            self.core.subscriptions.clear()
        for sub_id in changes.removed:
            applied += engine.remove_subscription(sub_id)
            self.core.subscriptions.pop(sub_id, None)
        for stored in changes.changed:
            sub = as_rule_subscription(stored)
            if sub is None:
                continue
            try:
                engine.replace_subscription(sub, now=now)
            except ValueError as exc:
                event(
                    _log,
                    "subscription.invalid",
                    logging.WARNING,
                    id=stored.id,
                    error=short_error(exc),
                )
                continue
            self.core.subscriptions[sub.id] = sub
            applied += 1
            if sub.platform not in self._imported:
                self._imported.add(sub.platform)
                import_module(SENDER_MODULES[sub.platform])
        self.version = changes.version
        if applied:
            event(_log, "subscriptions.synced", applied=applied, version=self.version)
        self.synced.set()
        return applied
