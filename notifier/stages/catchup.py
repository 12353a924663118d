"""Pure planning of a live-list poll against the persisted live set, and of the edits a
stream's end makes (no I/O: the pollers do it)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from notifier.parti.models import LiveChannel
from notifier.render.fields import AlertView, ended_fields
from notifier.store.types import LiveRecord, NewAlert, Row


class Found(Enum):
    """What to do with a followed stream a poll found live and the live set lacks."""

    ALERT = "alert"  # it may only now pass a filter such as min_viewers
    ALERT_CAUGHT_UP = "alert_caught_up"  # missed while the stream was down or we were stopped
    RECORD_ONLY = "record_only"  # a first start with `first_start: skip`: no flood of old news


@dataclass(frozen=True)
class LivePlan:
    new: list[LiveChannel] = field(default_factory=list)  # live, not yet in the live set
    ended: list[LiveRecord] = field(default_factory=list)  # in the live set, not on the list
    peaks: dict[int, int] = field(default_factory=dict)  # viewers of streams still live


def plan_live_poll(
    channels: Mapping[int, LiveChannel],
    live_set: Mapping[int, LiveRecord],
    *,
    settled_before: float,
) -> LivePlan:
    """`live_set` is read before the list is fetched: a go-live written meanwhile is not in
    it, so it is never taken for a stream that ended. A stream that started after
    `settled_before` (when the previous poll began fetching its list) is not ended by
    this poll either: a list fetched seconds after a go-live may not show it yet; the
    next poll ends it if it is still missing.

    A listed stream that is not the one the live set holds for its channel (both known
    by event id) is the channel's next stream: the stored one has ended."""
    plan = LivePlan()
    for user_id, channel in channels.items():
        record = live_set.get(user_id)
        if record is None:
            plan.new.append(channel)
        elif not _another_stream(channel, record):
            plan.peaks[user_id] = channel.viewers_count or 0
        elif record.started_at <= settled_before:
            plan.ended.append(record)
            plan.new.append(channel)
    plan.ended.extend(
        record
        for user_id, record in live_set.items()
        if user_id not in channels and record.started_at <= settled_before
    )
    return plan


def _another_stream(channel: LiveChannel, record: LiveRecord) -> bool:
    """Whether the listed stream is known to differ from the stored one: both carry an
    event id (`live_identity`), and not the same."""
    prefix = f"live:{channel.user_id}:event:"
    if channel.event_id is None or not record.identity.startswith(prefix):
        return False
    return record.identity != f"{prefix}{channel.event_id}"


def found_mode(
    *, first_poll: bool, ran_before: bool, first_start: str, gap: bool, stream_up: bool
) -> Found:
    """How a stream found by this poll is treated.

    - the first poll of a first start (nothing in the store yet): `first_start` decides;
    - after a gap (a reconnect, a restart), or while the WebSocket is down: caught up;
    - otherwise a routine poll: a plain alert (a filter it passes only now).
    """
    if first_poll and not ran_before:
        return Found.ALERT if first_start == "alert" else Found.RECORD_ONLY
    if gap or not stream_up:
        return Found.ALERT_CAUGHT_UP
    return Found.ALERT


def ended_edits(
    rows: list[Row],
    *,
    on_end_of: Callable[[str], str],
    known: Callable[[str], bool],
    ended_at: float,
    peak_viewers: int | None,
) -> list[NewAlert]:
    """The edit (or delete) of every alert sent for a stream that has ended."""
    edits: list[NewAlert] = []
    for row in rows:
        on_end = on_end_of(row.rule)
        if on_end == "ignore" or not known(row.destination):
            continue
        view = AlertView.from_json(row.payload["view"])
        fields = ended_fields(view.fields, ended_at=ended_at, peak_viewers=peak_viewers)
        edits.append(
            NewAlert(
                key=f"{row.key}:end",
                destination=row.destination,
                rule=row.rule,
                kind=row.kind,
                subject=row.subject,
                identity=f"{row.identity}:end",
                payload={
                    "view": AlertView(view.kind, view.rule, fields).to_json(),
                    "template": None,
                },
                event_at=ended_at,
                action="delete" if on_end == "delete" else "edit",
                ref_key=row.key,
            )
        )
    return edits
