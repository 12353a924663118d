"""A store outage as one part of the daemon sees it: one line when it begins, one when it
ends, a growing wait between tries, and the error in /healthz while it lasts
(`Health.store_errors`). A lost database or a full disk is waited out: it is not a crash
of the part that met it."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

from notifier.backoff import full_jitter
from notifier.log import event, get_logger, short_error

_log = get_logger("store")
RETRY_BASE = 0.5  # seconds: the first wait is up to this, then doubling (full jitter)
RETRY_CAP = 10.0


class Outage:
    def __init__(
        self,
        who: str,
        errors: dict[str, str] | None,
        *,
        failed_event: str = "store.failed",
        recovered_event: str = "store.recovered",
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

    def failed(self, error: BaseException) -> float:
        """A call failed: logged when the outage begins; the seconds to wait now."""
        text = self.error = short_error(error)
        if self.errors is not None:
            self.errors[self.who] = text
        if not self.failures:
            event(_log, self.failed_event, self.level, part=self.who, error=text)
        wait = full_jitter(self.failures, base=RETRY_BASE, cap=RETRY_CAP, rand=self.rand)
        self.failures += 1
        return wait

    def answered(self) -> None:
        """A call succeeded: the outage, if there was one, is over."""
        if not self.failures:
            return
        if self.errors is not None:
            self.errors.pop(self.who, None)
        event(_log, self.recovered_event, part=self.who, attempts=self.failures + 1)
        self.failures = 0
        self.error = None

    def close(self) -> None:
        """The part stops (cancelled, or its role lost): what it showed in /healthz goes
        with it, or it would stay there after the store answers again."""
        if self.errors is not None:
            self.errors.pop(self.who, None)
