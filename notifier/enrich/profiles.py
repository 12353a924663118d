"""Profiles from Parti's profile route: TTL cache, negative cache, single flight, a budget.

When Parti is slow the alert goes out without the profile rather than late: the
look-up keeps running in the background and fills the cache for the next alert.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from notifier.log import event, get_logger, short_error
from notifier.parti.client import NotFound, PartiClient
from notifier.parti.models import UserProfile

_log = get_logger("profiles")


@dataclass
class ProfileStats:
    hits: int = 0
    misses: int = 0
    fetches: int = 0
    over_budget: int = 0
    errors: int = 0


class Profiles:
    def __init__(
        self,
        client: PartiClient,
        *,
        ttl: float = 600.0,
        negative_ttl: float = 300.0,
        budget: float = 1.5,
        max_entries: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._budget = budget
        self._max = max_entries
        self._clock = clock
        self._cache: OrderedDict[int, tuple[float, UserProfile | None]] = OrderedDict()
        self._inflight: dict[int, asyncio.Task[UserProfile | None]] = {}
        self.stats = ProfileStats()
        self._failing = False  # the last look-up failed (logged once until one answers)

    def cached(self, user_id: int) -> tuple[bool, UserProfile | None]:
        """(True, the profile or None for unknown) when the cache has a fresh answer (a
        hit), else (False, None): without a task or a turn of the event loop."""
        cached = self._cache.get(user_id)
        if cached is not None and cached[0] > self._clock():
            self._cache.move_to_end(user_id)
            self.stats.hits += 1
            return True, cached[1]
        return False, None

    async def get(self, user_id: int) -> UserProfile | None:
        """The profile, or None when unknown, failing, or not back within the budget."""
        hit, profile = self.cached(user_id)
        if hit:
            return profile
        self.stats.misses += 1
        task = self._inflight.get(user_id)
        if task is None:
            task = asyncio.create_task(self._fetch(user_id))
            self._inflight[user_id] = task
            task.add_done_callback(lambda _: self._inflight.pop(user_id, None))
        try:
            # shield: a look-up over budget keeps going and fills the cache for next time
            return await asyncio.wait_for(asyncio.shield(task), self._budget)
        except TimeoutError:
            self.stats.over_budget += 1
            return None

    async def _fetch(self, user_id: int) -> UserProfile | None:
        self.stats.fetches += 1
        try:
            profile: UserProfile | None = await self._client.profile(user_id)
            expires = self._clock() + self._ttl
        except NotFound:
            profile, expires = None, self._clock() + self._negative_ttl
        except Exception as exc:  # any failure is "no profile": never the alert's fault
            self.stats.errors += 1
            if not self._failing:
                self._failing = True
                event(_log, "profile.unavailable", logging.WARNING, error=short_error(exc))
            return None  # not cached: the next alert asks again
        self._failing = False
        self._cache[user_id] = (expires, profile)
        self._cache.move_to_end(user_id)
        while len(self._cache) > self._max:
            self._cache.popitem(last=False)
        return profile
