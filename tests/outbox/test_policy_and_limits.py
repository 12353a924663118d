"""Pure parts of delivery: the retry policy and the sliding-window rate limits."""

from __future__ import annotations

import pytest

from notifier.deliver.limits import SlidingWindow, reserve
from notifier.outbox.policy import Failure, Next, Outcome, RetryPolicy

POLICY = RetryPolicy(base=2.0, cap=60.0, max_age=3600.0)


@pytest.mark.parametrize(
    ("failure", "attempts", "now", "expected_next", "expected_at"),
    [
        (Failure(Outcome.RETRY_AFTER, "429", 7.0), 1, 100.0, Next.RETRY, 107.0),
        (Failure(Outcome.BACKOFF, "5xx"), 1, 100.0, Next.RETRY, 102.0),
        (Failure(Outcome.BACKOFF, "5xx"), 3, 100.0, Next.RETRY, 108.0),
        (Failure(Outcome.BACKOFF, "5xx"), 30, 100.0, Next.RETRY, 160.0),
        (Failure(Outcome.PLAIN_TEXT, "markup"), 1, 100.0, Next.RETRY, 100.0),
        (Failure(Outcome.MIGRATED, "moved", new_chat_id=-5), 1, 100.0, Next.RETRY, 100.0),
        (Failure(Outcome.PERMANENT, "blocked"), 1, 100.0, Next.DEAD, 100.0),
        (Failure(Outcome.BACKOFF, "5xx"), 9, 3599.0, Next.DEAD, 3599.0),
        (Failure(Outcome.RETRY_AFTER, "429", 3601.0), 1, 0.0, Next.DEAD, 0.0),
    ],
    ids=[
        "retry-after exactly",
        "first backoff",
        "third backoff",
        "capped backoff",
        "plain text at once",
        "migrated at once",
        "permanent",
        "too old",
        "retry past max age",
    ],
)
def test_retry_policy(
    failure: Failure, attempts: int, now: float, expected_next: Next, expected_at: float
) -> None:
    decision = POLICY.decide(failure, attempts=attempts, created_at=0.0, now=now, rand=lambda: 1.0)
    assert decision.next is expected_next
    assert decision.at == pytest.approx(expected_at)


def test_backoff_is_jittered_by_the_random_source() -> None:
    failure = Failure(Outcome.BACKOFF, "x")
    low = POLICY.decide(failure, attempts=4, created_at=0, now=10, rand=lambda: 0.0)
    high = POLICY.decide(failure, attempts=4, created_at=0, now=10, rand=lambda: 0.5)
    assert (low.at, high.at) == (10.0, 18.0)


def test_sliding_window_never_allows_more_than_n_in_any_window() -> None:
    window = SlidingWindow(3, 1.0, margin=0.0)
    slots = [reserve([window], 0.0) for _ in range(7)]
    assert slots == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0]
    for i in range(len(slots) - 3):
        assert slots[i + 3] - slots[i] >= 1.0


def test_reservations_take_the_later_of_two_windows_in_order() -> None:
    bot = SlidingWindow(30, 1.0, margin=0.0)
    chat_a = SlidingWindow(1, 1.0, margin=0.0)
    chat_b = SlidingWindow(1, 1.0, margin=0.0)
    assert [reserve([bot, chat_a], 0.0) for _ in range(3)] == [0.0, 1.0, 2.0]
    assert reserve([bot, chat_b], 0.5) == 2.0, "slots stay in order across chats"


def test_the_margin_widens_the_window() -> None:
    window = SlidingWindow(1, 1.0, margin=0.01)
    assert reserve([window], 0.0) == 0.0
    assert reserve([window], 0.0) == pytest.approx(1.01)
