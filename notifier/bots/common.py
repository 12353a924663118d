"""What the Telegram and the Discord command bots share beyond parsing: the replies to a
fault (and how each is logged), and the look-ups both make in Parti's answers and the rules."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from notifier.log import event, short_error
from notifier.parti.client import PartiClient, PartiError
from notifier.parti.models import AssetPrice
from notifier.rules.subscriptions import Subscription as RuleSubscription
from notifier.rules.subscriptions import to_rule
from notifier.store.errors import StoreError

# Plain text: each reads the same as Telegram HTML and as Discord markdown.
SLOW_DOWN: Final = "Slow down, please: I answer again in a minute."
PARTI_DOWN: Final = "Parti is not answering right now; please try again in a minute."
STORE_DOWN: Final = "I can't reach my database right now; please try again in a minute."
FAILED: Final = "Sorry, that went wrong on my side; please try again later."
KNOWN_ASSETS_SHOWN: Final = 20


@dataclass(slots=True)
class _Held:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # holding it or waiting for it


class KeyedLocks:
    """One lock a key (a chat, a server): a command that counts a chat's subscriptions
    and then adds one holds it, so a burst of commands (handled side by side) cannot
    pass the chat's limit. A key nobody holds or waits for keeps no lock."""

    def __init__(self) -> None:
        self._held: dict[Hashable, _Held] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        held = self._held.setdefault(key, _Held())
        held.users += 1
        try:
            async with held.lock:
                yield
        finally:
            held.users -= 1
            if not held.users:  # 20,000 chats are not 20,000 locks
                del self._held[key]

    def __len__(self) -> int:
        return len(self._held)


def failure_text(log: logging.Logger, exc: Exception, *, what: str) -> str:
    """The one-line reply to a command `what` that failed for a reason other than the
    user's, logged once: Parti or the store unreachable is a warning, anything else an
    error."""
    if isinstance(exc, PartiError):
        event(log, "bot.lookup_failed", logging.WARNING, command=what, error=short_error(exc))
        return PARTI_DOWN
    if isinstance(exc, StoreError):
        event(log, "bot.store_failed", logging.WARNING, command=what, error=short_error(exc))
        return STORE_DOWN
    event(log, "bot.command_failed", logging.ERROR, command=what, error=short_error(exc))
    return FAILED


async def live_now(client: PartiClient, user_id: int) -> bool | None:
    """Whether the streamer is live now; None when Parti cannot say."""
    try:
        info = await client.channel(user_id)
    except PartiError:
        return None
    return bool(info.is_streaming_live_now or info.channel_info.channel.is_live)


def asset_named(prices: Sequence[AssetPrice], text: str) -> AssetPrice | None:
    """The asset whose symbol or ticker `text` is (any case, spaces around ignored)."""
    wanted = text.strip().lower()
    for asset in prices:
        if wanted in (asset.display_symbol.lower(), (asset.ticker or "").lower()):
            return asset
    return None


def known_assets(prices: Sequence[AssetPrice]) -> str:
    """Some symbols to suggest when a name matches no asset: `BTC, ETH, ...` (unescaped)."""
    return ", ".join(sorted({a.display_symbol.upper() for a in prices})[:KNOWN_ASSETS_SHOWN])


def subscription_problem(
    *,
    platform: str,
    chat_id: str,
    kind: str,
    target: str,
    destination: str,
    params: Mapping[str, Any],
) -> str | None:
    """Why the rules would refuse this subscription (the compiler's own words, unescaped),
    None when they take it: a command checks before it saves."""
    candidate = RuleSubscription(
        id=0,
        platform=platform,
        chat_id=chat_id,
        kind=kind,
        target=target,
        destination=destination,
        params=params,
    )
    try:
        to_rule(candidate)
    except ValueError as exc:
        # "subscription 0: line: ..." -> the part after the id
        return str(exc).partition(": ")[2] or str(exc)
    return None
