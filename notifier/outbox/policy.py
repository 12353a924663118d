"""Retry policy (pure: the clock and the random source are parameters)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from notifier.backoff import full_jitter


class Outcome(Enum):
    """How a failed send is handled; one classifier per channel maps errors to these."""

    RETRY_AFTER = "retry_after"  # the chat API said when: honour it exactly
    BACKOFF = "backoff"  # transient: exponential backoff with jitter
    PLAIN_TEXT = "plain_text"  # markup rejected: retry once as plain text
    MIGRATED = "migrated"  # the chat moved: retry at once with the new id
    PERMANENT = "permanent"  # never going to work: dead letter
    # The destination, not the alert, is the problem (token rejected, API unreachable):
    # the whole lane waits with backoff, the row keeps its attempts, until the max age.
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class Failure:
    outcome: Outcome
    reason: str
    retry_after: float | None = None
    new_chat_id: int | None = None


class Next(Enum):
    RETRY = "retry"
    DEAD = "dead"


@dataclass(frozen=True)
class Decision:
    next: Next
    at: float
    reason: str


@dataclass(frozen=True)
class RetryPolicy:
    base: float = 2.0
    cap: float = 300.0
    max_age: float = 24 * 3600.0  # after this, a row that still fails goes to dead letter

    def decide(
        self,
        failure: Failure,
        *,
        attempts: int,
        created_at: float,
        now: float,
        rand: Callable[[], float],
    ) -> Decision:
        """What to do after attempt number `attempts` (1-based) failed with `failure`."""
        if failure.outcome is Outcome.PERMANENT:
            return Decision(Next.DEAD, now, failure.reason)
        if failure.outcome is Outcome.RETRY_AFTER and failure.retry_after is not None:
            at = now + max(0.0, failure.retry_after)
        elif failure.outcome in (Outcome.PLAIN_TEXT, Outcome.MIGRATED):
            at = now
        else:
            at = now + full_jitter(attempts - 1, base=self.base, cap=self.cap, rand=rand)
        if at - created_at > self.max_age:
            return Decision(Next.DEAD, now, f"gave up after {attempts} attempts: {failure.reason}")
        return Decision(Next.RETRY, at, failure.reason)
