"""What a chat subscription's destination may receive now: paused chats (blocked, removed)
get nothing, muted ones or those in quiet hours get their alerts later as one digest."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from notifier.bots.quiet import DigestItem, build_digest, digest_html, held_until
from notifier.render import console
from notifier.render.fields import AlertView
from notifier.rules.subscriptions import parse_destination
from notifier.store import Store
from notifier.store.types import Chat, Row

CACHE_SECONDS = 1.0  # a /mute or /start reaches the lanes within about a second


class Verdict(Enum):
    SEND = "send"
    HOLD = "hold"  # muted or quiet hours: wait, then one digest
    DROP = "drop"  # the chat is paused: the bot was blocked or removed


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    until: float | None = None
    reason: str = ""


def chat_of(destination: str) -> tuple[str, str] | None:
    """(platform, chat id as the store keeps it) of a chat destination, else None."""
    found = parse_destination(destination)
    if found is None:
        return None
    if found.platform == "telegram":
        return "telegram", found.id
    return "discord", found.id if found.kind == "channel" else f"dm:{found.id}"


def decide(chat: Chat | None, now: float) -> Decision:
    """Pure: what a chat's row gets now."""
    if chat is None:
        return Decision(Verdict.SEND)
    if chat.paused_reason:
        return Decision(Verdict.DROP, reason=f"chat paused: {chat.paused_reason}")
    until = held_until(chat, now)
    if until is not None:
        return Decision(Verdict.HOLD, until, "held: muted or quiet hours")
    return Decision(Verdict.SEND)


class Chats:
    """Reads chat rows for the lanes, cached briefly (one lane per chat asks often)."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.clock = clock
        self._cache: dict[str, tuple[float, Chat | None]] = {}

    async def decide(self, destination: str, now: float) -> Decision:
        key = chat_of(destination)
        if key is None:
            return Decision(Verdict.SEND)
        cached = self._cache.get(destination)
        if cached is None or cached[0] < self.clock():
            chat = await self.store.get_chat(*key)
            self._cache[destination] = (self.clock() + CACHE_SECONDS, chat)
            if len(self._cache) > 10_000:
                self._cache.clear()
        else:
            chat = cached[1]
        return decide(chat, now)

    def forget(self, destination: str) -> None:
        self._cache.pop(destination, None)

    async def pause(self, destination: str, reason: str, now: float) -> None:
        """The chat refused us for good (blocked, removed): pause its subscriptions' alerts
        until /start (or /parti resume) clears it."""
        key = chat_of(destination)
        if key is None:
            return
        platform, chat_id = key
        if await self.store.get_chat(platform, chat_id) is None:
            kind = "private" if not chat_id.startswith("-") else "group"
            await self.store.upsert_chat(platform, chat_id, kind=kind, now=now)
        await self.store.set_chat_fields(platform, chat_id, now=now, paused_reason=reason)
        self.forget(destination)

    async def migrated(self, destination: str, new_chat_id: int, now: float) -> None:
        key = chat_of(destination)
        if key is not None and key[0] == "telegram":
            await self.store.migrate_chat("telegram", key[1], str(new_chat_id), now=now)
            self.forget(destination)


def digest_payload(rows: Sequence[Row]) -> tuple[dict[str, object], int]:
    """One message for the oldest of the rows that waited (in the order given, oldest
    first), as many as it shows in full, each alert a line of plain text; and how many
    that is (at least one)."""
    items = [
        DigestItem(console.render(AlertView.from_json(r.payload["view"])), r.event_at) for r in rows
    ]
    fits = max(1, build_digest(items)[1])
    return {"html": digest_html(items[:fits]), "digest": fits}, fits
