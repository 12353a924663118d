"""The pure catch-up planner: which streams a live-list poll alerts, records or ends."""

from __future__ import annotations

import pytest

from notifier.parti.models import LiveChannel
from notifier.stages.catchup import Found, found_mode, plan_live_poll
from notifier.store import LiveRecord


def channel(user_id: int, viewers: int = 5) -> LiveChannel:
    return LiveChannel(user_id=user_id, user_name=f"u{user_id}", viewers_count=viewers)


def record(user_id: int, identity: str, started_at: float = 1.0) -> LiveRecord:
    return LiveRecord(user_id, identity, started_at, None, {})


def test_plan_splits_new_still_live_and_ended_streams() -> None:
    channels = {1: channel(1, 7), 2: channel(2, 9)}
    gone = record(3, "live:3:event:30")
    plan = plan_live_poll(
        channels, {2: record(2, "live:2:livestream:2"), 3: gone}, settled_before=10.0
    )
    assert [c.user_id for c in plan.new] == [1]
    assert plan.peaks == {2: 9}
    assert plan.ended == [gone]


def test_a_stream_stored_after_the_previous_list_was_fetched_is_not_ended() -> None:
    """A list fetched seconds after a go-live may not show it yet: the next poll ends it
    if it is still missing then."""
    live_set = {3: record(3, "live:3:event:30", started_at=11.0)}
    assert plan_live_poll({}, live_set, settled_before=10.0).ended == []
    plan = plan_live_poll({}, live_set, settled_before=12.0)
    assert [r.user_id for r in plan.ended] == [3]


def test_a_listed_stream_of_another_event_ends_the_stored_one() -> None:
    """A stream that ended and started again while events were missed: the stored one
    has ended, the listed one is news."""
    listed = LiveChannel(user_id=3, user_name="u3", event_id=31)
    old = record(3, "live:3:event:30")
    plan = plan_live_poll({3: listed}, {3: old}, settled_before=10.0)
    assert (plan.ended, plan.new, plan.peaks) == ([old], [listed], {})
    # the same event, or no event id to tell them apart: the same stream
    for same in (record(3, "live:3:event:31"), record(3, "live:3:livestream:7")):
        plan = plan_live_poll({3: listed}, {3: same}, settled_before=10.0)
        assert (plan.ended, plan.new, plan.peaks) == ([], [], {3: 0})
    # a stored stream of seconds ago and a list that may be behind: neither, this time
    young = record(3, "live:3:event:30", started_at=11.0)
    plan = plan_live_poll({3: listed}, {3: young}, settled_before=10.0)
    assert (plan.ended, plan.new, plan.peaks) == ([], [], {})


MODES = [
    # (first_poll, ran_before, first_start, gap, stream_up) -> mode
    ("fresh install, skip", True, False, "skip", False, True, Found.RECORD_ONLY),
    ("fresh install, alert", True, False, "alert", False, True, Found.ALERT),
    ("fresh install, stream down", True, False, "skip", False, False, Found.RECORD_ONLY),
    ("restart after a stop", True, True, "skip", True, True, Found.ALERT_CAUGHT_UP),
    ("reconnect after a gap", False, True, "skip", True, True, Found.ALERT_CAUGHT_UP),
    # the race of issue 9: a routine poll while the WebSocket is down found it missed
    ("routine poll, stream down", False, True, "skip", False, False, Found.ALERT_CAUGHT_UP),
    ("routine poll, stream up", False, True, "skip", False, True, Found.ALERT),
    ("routine poll, fresh install", False, False, "skip", False, True, Found.ALERT),
]


@pytest.mark.parametrize(
    ("case", "first_poll", "ran_before", "first_start", "gap", "stream_up", "mode"),
    MODES,
    ids=[m[0] for m in MODES],
)
def test_found_mode(
    case: str,
    first_poll: bool,
    ran_before: bool,
    first_start: str,
    gap: bool,
    stream_up: bool,
    mode: Found,
) -> None:
    got = found_mode(
        first_poll=first_poll,
        ran_before=ran_before,
        first_start=first_start,
        gap=gap,
        stream_up=stream_up,
    )
    assert got is mode
