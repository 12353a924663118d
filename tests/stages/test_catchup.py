"""The pure catch-up planner: which streams a live-list poll alerts, records or ends."""

from __future__ import annotations

import pytest

from notifier.parti.models import LiveChannel
from notifier.stages.catchup import Found, found_mode, plan_live_poll


def channel(user_id: int, viewers: int = 5) -> LiveChannel:
    return LiveChannel(user_id=user_id, user_name=f"u{user_id}", viewers_count=viewers)


def test_plan_splits_new_still_live_and_ended_streams() -> None:
    channels = {1: channel(1, 7), 2: channel(2, 9)}
    plan = plan_live_poll(channels, {2: object(), 3: object()})
    assert [c.user_id for c in plan.new] == [1]
    assert plan.peaks == {2: 9}
    assert plan.ended == [3]


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
