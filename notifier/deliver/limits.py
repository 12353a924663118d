"""Sliding-window rate limits that hold on the server's clock (pure: times are parameters).

A chat API that enforces "N per T seconds" counts requests by when they *arrive*, which
a client cannot see: a request may wait for a connection or the CPU before it leaves.
So a slot counts from when its request was started until its answer came back, and a
new request may start only once fewer than N slots lie within T of now, counting a slot
still in flight as if it ended now. Between the first of N+1 requests arriving (before
its answer) and the last arriving (after its start) there are then always T seconds.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass
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
