"""Sliding-window rate limits that hold on the server's clock (pure: times are parameters).

A chat API that enforces "N per T seconds" counts requests by when they *arrive*, which
a client cannot see: a request may wait for a connection or the CPU before it leaves.
So a slot counts from when its request was started until its answer came back, and a
new request may start only once fewer than N slots lie within T of now, counting a slot
still in flight as if it ended now. Between the first of N+1 requests arriving (before
its answer) and the last arriving (after its start) there are then always T seconds.
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class Slot:
    started: float
    ended: float | None = None  # None while the request is in flight

    def settle(self, at: float) -> None:
        self.ended = at


class SlidingWindow:
    """At most `limit` requests in any `window` seconds (plus `margin` for clock jitter)."""

    def __init__(
        self, limit: int, window: float, *, margin: float = 0.002, shared: bool = False
    ) -> None:
        self.limit = limit
        self.window = window + margin
        self.shared = shared  # used by many destinations (a bot), not one chat
        self._slots: deque[Slot] = deque()  # in start order
        self.acquiring = 0  # sends between asking for this window and taking a slot

    def quiet(self, now: float) -> bool:
        """Nobody is about to take a slot, none is in flight, and every one ended a whole
        window ago: the same as a new window."""
        horizon = now - self.window
        return not self.acquiring and all(
            s.ended is not None and s.ended <= horizon for s in self._slots
        )

    def wait_time(self, now: float) -> float | None:
        """0.0 when a request may start now; else seconds to wait, or None when only an
        answer still in flight can free a slot (wait for it to settle)."""
        horizon = now - self.window
        slots = self._slots
        while slots and slots[0].ended is not None and slots[0].ended <= horizon:
            slots.popleft()
        if len(slots) < self.limit:
            return 0.0  # the common case, without a scan
        self._slots = deque(s for s in slots if s.ended is None or s.ended > horizon)
        excess = len(self._slots) - self.limit + 1
        if excess <= 0:
            return 0.0
        ended = sorted(s.ended for s in self._slots if s.ended is not None)
        if len(ended) < excess:
            return None
        return max(0.0, ended[excess - 1] - horizon)

    def take(self, now: float) -> Slot:
        slot = Slot(now)
        self._slots.append(slot)
        return slot


class ServerHold(SlidingWindow):
    """A bucket the server counts and announces itself (a Discord webhook's
    X-RateLimit-* headers): one request at a time, and after an answer that says the
    bucket is empty, none until the reset that answer gave. A send waits for it in the
    gate, before its send timeout starts, like for any window."""

    def __init__(self, *, margin: float = 0.002) -> None:
        super().__init__(1, 0.0, margin=0.0)
        self.until = 0.0
        # The reset is announced to the millisecond, rounded: a request sent the instant
        # it runs out may reach the server just before it (a 429).
        self.margin = margin

    def hold(self, until: float) -> None:
        self.until = max(self.until, until + self.margin)

    def quiet(self, now: float) -> bool:
        return not self.acquiring and not self._slots and now >= self.until

    def wait_time(self, now: float) -> float | None:
        slots = self._slots
        while slots and slots[0].ended is not None:
            slots.popleft()
        if slots:
            return None  # a request is out: its answer says whether the bucket is empty
        return max(0.0, self.until - now)


_SWEEP_AT = 1024  # windows kept before the first sweep


class KeyedWindows:
    """One window per key (a chat), shared by everything sent there: alerts of every lane
    of the chat and command replies. A quiet window is the same as a new one, so it is let
    go: after a go-live to 20,000 chats the windows of the last few seconds stay, not
    20,000 (the table is swept each time it has doubled, so the work stays in proportion).

    Whoever sends asks for the window each time, just before `Gate.acquire` (which marks it
    `acquiring` before its first wait): a window kept from earlier may have been let go
    since, and two windows for one chat would let twice the limit through."""

    def __init__(
        self, make: Callable[[str], SlidingWindow], *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._make = make
        self._clock = clock
        self._windows: dict[str, SlidingWindow] = {}
        self._sweep_at = _SWEEP_AT

    def get(self, key: str) -> SlidingWindow:
        window = self._windows.get(key)
        if window is None:
            if len(self._windows) >= self._sweep_at:
                self._sweep()
            window = self._windows[key] = self._make(key)
        return window

    def __len__(self) -> int:
        return len(self._windows)

    def _sweep(self) -> None:
        now = self._clock()
        self._windows = {k: w for k, w in self._windows.items() if not w.quiet(now)}
        self._sweep_at = max(2 * len(self._windows), _SWEEP_AT)


@dataclass(frozen=True, slots=True)
class BotWindows:
    """A bot's rate windows: its own (every message it sends) and each chat's."""

    bot: SlidingWindow
    chats: KeyedWindows


class WindowBank:
    """Each bot's windows for as long as the daemon runs. Telegram and Discord count what a
    bot sent, not which of our objects sent it: the senders a reload builds for the same
    bot (token, API, limits) take its windows over, and so do the command bot's replies,
    instead of starting with empty windows next to the full ones (twice the limit, 429s).
    Bots are known by a digest of their token."""

    def __init__(self) -> None:
        self._banked: dict[tuple[object, ...], BotWindows] = {}

    def windows(
        self, platform: str, token: str, *details: object, make: Callable[[], BotWindows]
    ) -> BotWindows:
        digest = hashlib.sha256(token.encode()).hexdigest()
        key = (platform, digest, *details)
        found = self._banked.get(key)
        if found is None:
            found = self._banked[key] = make()
        return found


def bot_windows(
    bank: WindowBank | None,
    platform: str,
    token: str | None,
    *details: object,
    make: Callable[[], BotWindows],
) -> BotWindows:
    """The bot's windows from `bank`, or windows of its own (no bank, or no bot: a
    Discord hub for webhooks only)."""
    if bank is None or token is None:
        return make()
    return bank.windows(platform, token, *details, make=make)
