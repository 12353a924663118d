"""Capped exponential backoff with full jitter (pure: the random source is a parameter)."""

from __future__ import annotations

from collections.abc import Callable


def full_jitter(attempt: int, *, base: float, cap: float, rand: Callable[[], float]) -> float:
    """Delay before retry number `attempt` (0-based): uniform in [0, min(cap, base * 2**attempt)].

    Full jitter (AWS architecture blog, "Exponential Backoff And Jitter") spreads
    reconnecting clients best; `rand` returns a float in [0, 1).
    """
    ceiling: float = min(cap, base * 2.0 ** min(attempt, 62))
    return rand() * ceiling
