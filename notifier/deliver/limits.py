"""Sliding-window rate limits with reservations (pure: times are parameters).

A chat API that enforces "N per T seconds" counts requests in any window of T, so a
leaky bucket (which allows a burst on top of the rate) would earn 429s. Each caller
reserves its own slot, so many lanes sharing one limit wait in order without polling.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence


class SlidingWindow:
    """At most `limit` slots in any `window` seconds (plus `margin` for network jitter)."""

    def __init__(self, limit: int, window: float, *, margin: float = 0.01) -> None:
        self.limit = limit
        self.window = window + margin
        self._slots: deque[float] = deque()

    def earliest(self, now: float) -> float:
        """The first time at or after `now` that a new slot fits, keeping slots in order."""
        while self._slots and self._slots[0] <= now - self.window:
            self._slots.popleft()
        at = now
        if self._slots:
            at = max(at, self._slots[-1])
        if len(self._slots) >= self.limit:
            at = max(at, self._slots[-self.limit] + self.window)
        return at

    def take(self, at: float) -> None:
        self._slots.append(at)


def reserve(windows: Sequence[SlidingWindow], now: float) -> float:
    """Reserve one slot in every window at the earliest time all allow; returns that time."""
    at = now
    for _ in range(8):  # a later slot in one window never makes another's earlier
        later = max(w.earliest(at) for w in windows)
        if later == at:
            break
        at = later
    for window in windows:
        window.take(at)
    return at
