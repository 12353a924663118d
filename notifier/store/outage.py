"""A store outage as one part of the daemon sees it: one line when it begins, one when it
ends, a growing wait between tries, and the error in /healthz while it lasts
(`Health.store_errors`). A lost database or a full disk is waited out: it is not a crash
of the part that met it."""

from __future__ import annotations

import asyncio
import logging
import random
import weakref
from collections.abc import Callable
from typing import Any

from notifier.backoff import full_jitter
from notifier.log import event, get_logger, short_error

_log = get_logger("store")
RETRY_BASE = 0.5  # seconds: the first wait is up to this, then doubling (full jitter)
RETRY_CAP = 10.0

WAKE_EVERY = 2.0  # seconds: the parts waiting are woken at most this often
WAKE_SPREAD = 0.25  # seconds: woken parts try again over this long, not all at once
# Per event loop: set when the store answers again, for the parts waiting out an outage;
# and when they were last woken.
_ANSWERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Event] = (
    weakref.WeakKeyDictionary()
)
_WOKEN: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, float] = weakref.WeakKeyDictionary()


def store_answered() -> None:
    """The store answered a call (a part's retry, a /healthz probe): every part waiting out
    an outage (`pause`) tries again now, not at the end of its wait, so the daemon and its
    /healthz are back within moments of the store, not after the longest backoff.

    At most once every WAKE_EVERY seconds: a store that answers reads but not writes (a
    full disk, a read-only database) would otherwise have every part try again at each
    /healthz or /metrics request, not at the pace of its backoff."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    flag = _ANSWERS.get(loop)
    if flag is None:
        return
    now = loop.time()
    if now - _WOKEN.get(loop, -WAKE_EVERY) < WAKE_EVERY:
        return
    _WOKEN[loop] = now
    del _ANSWERS[loop]
    flag.set()


async def pause(seconds: float, *also: asyncio.Event) -> None:
    """Wait `seconds` between tries, or less: until the store answers another part
    (`store_answered`) or one of `also` (a stop) is set."""
    loop = asyncio.get_running_loop()
    flag = _ANSWERS.get(loop)
    if flag is None:
        flag = _ANSWERS[loop] = asyncio.Event()
    waiters = [loop.create_task(e.wait()) for e in (flag, *also)]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    if flag.is_set() and not any(e.is_set() for e in also):
        await asyncio.sleep(random.uniform(0.0, WAKE_SPREAD))  # not every part at once


class Outage:
    def __init__(
        self,
        who: str,
        errors: dict[str, str] | None,
        *,
        failed_event: str,
        recovered_event: str,
        level: int = logging.WARNING,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.who = who
        self.errors = errors  # what /healthz shows: `Health.store_errors`
        self.failed_event = failed_event
        self.recovered_event = recovered_event
        self.level = level
        self.rand = rand
        self.failures = 0  # in a row
        self.error: str | None = None  # the last one, while failing

    @property
    def failing(self) -> bool:
        return self.failures > 0

    def failed(self, error: BaseException, **fields: Any) -> float:
        """A call failed: logged (with `fields`) when the outage begins; the seconds to
        wait now."""
        text = self.error = short_error(error)
        if self.errors is not None:
            self.errors[self.who] = text
        if not self.failures:
            event(_log, self.failed_event, self.level, part=self.who, error=text, **fields)
        wait = self.wait(self.failures)
        self.failures += 1
        return wait

    def wait(self, failures: int) -> float:
        """The wait after `failures` failures in a row (of this part, or of one of the
        several it stands for, each with its own count)."""
        return full_jitter(failures, base=RETRY_BASE, cap=RETRY_CAP, rand=self.rand)

    def answered(self, *, wake: bool = True, **fields: Any) -> None:
        """A call succeeded: the outage, if there was one, is over. `wake=False` when no
        call proved it (a stage that ran a while without a fault)."""
        if not self.failures:
            return
        if self.errors is not None:
            self.errors.pop(self.who, None)
        attempts = self.failures + 1
        event(_log, self.recovered_event, part=self.who, attempts=attempts, **fields)
        self.failures = 0
        self.error = None
        if wake:
            store_answered()  # the other parts waiting it out try again now

    def close(self) -> None:
        """The part stops (cancelled, or its role lost): what it showed in /healthz goes
        with it, or it would stay there after the store answers again."""
        if self.errors is not None:
            self.errors.pop(self.who, None)
