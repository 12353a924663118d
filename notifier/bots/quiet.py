"""Pure: a chat's mute and quiet hours (is an alert held now, and until when) and the digest
message that sends the held alerts when the quiet period ends."""

from __future__ import annotations

import datetime as dt
import html
import re
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from notifier.store.types import Chat

TELEGRAM_TEXT_LIMIT: Final = 4096
_QUIET = re.compile(r"([0-9]{1,2}):([0-9]{2})\s*-\s*([0-9]{1,2}):([0-9]{2})")
_MAX_STEPS: Final = 4  # mute, then quiet, then mute: a few steps settle any mix


class QuietError(ValueError):
    """Quiet hours that cannot be read: the message is one plain line."""


@dataclass(frozen=True, slots=True)
class QuietHours:
    """From `start` to `end` (minutes after local midnight) every day in `tz`; a start
    after the end runs overnight (23:00-07:00)."""

    start: int
    end: int
    tz: str

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.tz)

    @property
    def text(self) -> str:
        """As the store keeps it, and as /quiet takes it: `23:00-07:00 Europe/Berlin`."""
        return f"{_hhmm(self.start)}-{_hhmm(self.end)} {self.tz}"

    def contains(self, local: dt.datetime) -> bool:
        minute = local.hour * 60 + local.minute
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def parse_quiet(text: str) -> QuietHours:
    """`HH:MM-HH:MM TZ` with an IANA time zone (`Europe/Berlin`, `UTC`)."""
    range_text, _, tz_name = text.strip().rpartition(" ")
    found = _QUIET.fullmatch(range_text.strip())
    if found is None or not tz_name:
        raise QuietError("write the hours as HH:MM-HH:MM TZ, e.g. 23:00-07:00 Europe/Berlin")
    hour1, minute1, hour2, minute2 = (int(part) for part in found.groups())
    if hour1 > 23 or hour2 > 23 or minute1 > 59 or minute2 > 59:
        raise QuietError("hours run from 00:00 to 23:59")
    start, end = hour1 * 60 + minute1, hour2 * 60 + minute2
    if start == end:
        raise QuietError("the start and the end are the same; use /mute for a whole day")
    return QuietHours(start, end, _zone_name(tz_name))


def _zone_name(name: str) -> str:
    if len(name) > 64 or not re.fullmatch(r"[A-Za-z0-9_+\-/]+", name) or ".." in name:
        raise QuietError("unknown time zone; use a name such as Europe/Berlin or UTC")
    try:
        zone = zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise QuietError("unknown time zone; use a name such as Europe/Berlin or UTC") from None
    return str(zone.key)


def chat_quiet(chat: Chat) -> QuietHours | None:
    """The chat's quiet hours, or None (none set, or a stored value no longer readable)."""
    if not chat.quiet:
        return None
    try:
        return parse_quiet(chat.quiet)
    except QuietError:
        return None


def chat_zone(chat: Chat | None) -> dt.tzinfo:
    """The time zone to show a chat its times in: its quiet hours' zone, else UTC."""
    quiet = chat_quiet(chat) if chat is not None else None
    return quiet.zone if quiet is not None else dt.UTC


def held_until(chat: Chat, now: float) -> float | None:
    """When alerts to this chat may go again, if they are held now (muted, or in its quiet
    hours); None when they may go now. A mute that ends inside the quiet hours holds on
    until the quiet hours end, and the other way round."""
    quiet = chat_quiet(chat)
    at = now
    for _ in range(_MAX_STEPS):
        moved = at
        if chat.mute_until is not None and chat.mute_until > moved:
            moved = chat.mute_until
        if quiet is not None:
            end = quiet_end(quiet, moved)
            if end is not None:
                moved = end
        if moved == at:
            break
        at = moved
    return at if at > now else None


def quiet_end(quiet: QuietHours, now: float) -> float | None:
    """The first moment after `now` outside the quiet hours, if `now` is inside them.

    The end is wall-clock time in the chat's zone, so a DST change shifts it with the
    clocks; an end that falls in a skipped hour (spring forward) is when the clocks jump."""
    zone = quiet.zone
    local = dt.datetime.fromtimestamp(now, zone)
    if not quiet.contains(local):
        return None
    day = local.date()
    if quiet.start > quiet.end and local.hour * 60 + local.minute >= quiet.start:
        day += dt.timedelta(days=1)
    wall = dt.datetime.combine(day, dt.time(quiet.end // 60, quiet.end % 60))
    candidates = sorted(wall.replace(tzinfo=zone, fold=fold).timestamp() for fold in (0, 1))
    early, late = candidates
    if early > now and not quiet.contains(dt.datetime.fromtimestamp(early, zone)):
        return early  # the usual case; in a repeated hour, its first pass
    # The end's wall time does not exist that day (the clocks skip it): find the jump.
    low, high = max(early, now), late
    if quiet.contains(dt.datetime.fromtimestamp(high, zone)):
        return high  # not expected with real zones; never hold forever
    while high - low > 1.0:
        middle = (low + high) / 2
        if quiet.contains(dt.datetime.fromtimestamp(middle, zone)):
            low = middle
        else:
            high = middle
    return float(int(high))


# ---- the digest -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DigestItem:
    """One alert that waited: plain text (escaped here), when it happened, an optional link."""

    text: str
    at: float
    url: str | None = None


_ITEM_TEXT_LIMIT: Final = 200


def digest_html(
    items: Sequence[DigestItem],
    *,
    limit: int = TELEGRAM_TEXT_LIMIT,
    tz: dt.tzinfo = dt.UTC,
    title: str = "While this chat was quiet",
) -> str:
    """One Telegram HTML message listing the held alerts, oldest first, within `limit`
    characters (of the HTML itself, which is never shorter than what Telegram counts);
    the alerts that don't fit become "and N more"."""
    return build_digest(items, limit=limit, tz=tz, title=title)[0]


def build_digest(
    items: Sequence[DigestItem],
    *,
    limit: int = TELEGRAM_TEXT_LIMIT,
    tz: dt.tzinfo = dt.UTC,
    title: str = "While this chat was quiet",
) -> tuple[str, int]:
    """The digest message (see `digest_html`) and how many items it shows in full."""
    ordered = sorted(items, key=lambda item: item.at)
    count = len(ordered)
    header = f"<b>{html.escape(title, quote=False)}: {count} alert{'' if count == 1 else 's'}</b>"
    lines = [header]
    used = len(header)
    for index, item in enumerate(ordered):
        line = "\n" + _digest_line(item, tz)
        left = count - index - 1
        # room for this line, and for the "and N more" line if any come after it
        reserve = len(_more(left)) if left else 0
        if used + len(line) + reserve > limit:
            more = _more(count - index)
            if used + len(more) <= limit:
                lines.append(more)
            return "".join(lines), index
        lines.append(line)
        used += len(line)
    return "".join(lines), count


def _more(count: int) -> str:
    return f"\n… and {count} more"


def _digest_line(item: DigestItem, tz: dt.tzinfo) -> str:
    when = dt.datetime.fromtimestamp(item.at, tz).strftime("%H:%M")
    text = " ".join(item.text.split())
    if len(text) > _ITEM_TEXT_LIMIT:
        text = text[: _ITEM_TEXT_LIMIT - 1] + "…"
    body = html.escape(text, quote=False)
    if item.url and item.url.startswith(("https://", "http://")):
        body = f'<a href="{html.escape(item.url, quote=True)}">{body}</a>'
    return f"• {when} {body}"
