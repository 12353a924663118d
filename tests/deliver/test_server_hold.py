"""`ServerHold`: a webhook's bucket as Discord announces it (pure: times are parameters)."""

from __future__ import annotations

import pytest

from notifier.deliver.limits import ServerHold


def test_free_until_an_answer_says_the_bucket_is_empty() -> None:
    hold = ServerHold()
    assert hold.wait_time(100.0) == 0.0
    assert hold.quiet(100.0)


def test_one_request_at_a_time_its_answer_decides_the_next() -> None:
    hold = ServerHold()
    slot = hold.take(100.0)
    assert hold.wait_time(100.0) is None  # in flight: wait for its answer
    assert not hold.quiet(100.0)
    slot.settle(100.1)
    assert hold.wait_time(100.1) == 0.0  # the answer did not empty the bucket


def test_an_empty_bucket_holds_until_its_reset_and_a_margin_for_the_rounding() -> None:
    # Discord announces the reset to the millisecond: a request sent the instant the
    # rounded reset runs out could arrive just before it (a 429).
    hold = ServerHold(margin=0.002)
    slot = hold.take(100.0)
    hold.hold(101.5)  # set by the answer, before the request's slot is settled
    slot.settle(100.1)
    assert hold.wait_time(100.1) == pytest.approx(1.402)
    assert hold.wait_time(101.5) == pytest.approx(0.002)
    assert hold.wait_time(101.503) == 0.0
    hold.hold(101.0)  # an older answer's reset never shortens the hold
    assert hold.until == pytest.approx(101.502)
