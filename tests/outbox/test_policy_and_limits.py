"""Pure parts of delivery: the retry policy and the sliding-window rate limits."""

from __future__ import annotations

import pytest

from notifier.deliver.limits import SlidingWindow
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


def test_a_window_admits_n_then_waits_for_the_oldest_answer() -> None:
    window = SlidingWindow(3, 1.0, margin=0.0)
    slots = [window.take(0.0) for _ in range(3)]
    assert window.wait_time(0.0) is None, "all three in flight: wait for an answer"
    slots[0].settle(0.2)
    assert window.wait_time(0.5) == pytest.approx(0.7), "one window after the first answer"
    assert window.wait_time(1.2) == pytest.approx(0.0, abs=1e-9)


def test_a_slot_counts_until_its_answer_not_from_its_start() -> None:
    # The request may reach the server late; counting from the answer stays safe.
    window = SlidingWindow(1, 1.0, margin=0.0)
    slot = window.take(0.0)
    slot.settle(0.9)
    assert window.wait_time(1.0) == pytest.approx(0.9)
    assert window.wait_time(1.9) == pytest.approx(0.0, abs=1e-9)


def test_the_margin_widens_the_window() -> None:
    window = SlidingWindow(1, 1.0, margin=0.01)
    window.take(0.0).settle(0.0)
    assert window.wait_time(1.0) == pytest.approx(0.01)


async def test_the_gate_spaces_a_shared_window_and_keeps_order() -> None:
    import time

    from notifier.deliver.base import Gate

    gate = Gate()
    bot = SlidingWindow(2, 0.2, margin=0.0, shared=True)
    started: list[float] = []

    async def send(n: int) -> None:
        windows = [bot, SlidingWindow(5, 1.0)]
        slots = await gate.acquire(windows)
        started.append(time.monotonic())
        gate.release(windows, slots)

    import asyncio

    await asyncio.gather(*(send(n) for n in range(6)))
    for first, third in zip(started, started[2:], strict=False):
        assert third - first >= 0.2 - 1e-3, "never more than 2 in any 0.2 s"
