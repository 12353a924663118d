"""The fields of an alert, built from a match and its enrichment (pure).

Every text field here is untrusted (written by streamers); `clean` removes what no
target should ever show: control characters (terminal escapes, NUL) and bidirectional
overrides (which can make a name read as something else), and replaces lone surrogates
(which no chat accepts and no terminal prints) with U+FFFD.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Generic, Literal, TypedDict, cast
from urllib.parse import quote

from typing_extensions import TypeIs, TypeVar

from notifier.parti.models import CalendarEvent, ChannelLive, PriceUpdate, UserProfile
from notifier.rules.engine import Match

_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c\ufeff\ufff9-\ufffb]"
)
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean(text: str | None, *, single_line: bool = True) -> str:
    if not text:
        return ""
    if not (text.isascii() and text.isprintable()):  # else there is nothing to remove
        text = _SURROGATE.sub("\ufffd", _UNSAFE.sub("", text))
    if single_line:
        text = " ".join(text.split())
    return text


# The fields of each kind of alert, as stored in the outbox payload (JSON, in this key
# order) and handed to the renderers and to rule templates. "" stands for a number
# Parti did not give.


class LiveFields(TypedDict):
    user_name: str
    user_id: int
    title: str
    category: str
    viewers: int | Literal[""]
    url: str
    avatar: str
    image: str
    followers: int | Literal[""]
    description: str  # the only text that keeps its line breaks
    rule: str
    caught_up: bool
    event_id: int | Literal[""]
    livestream_id: int | Literal[""]
    at: float


class EndedFields(LiveFields):
    """A live alert once its stream ended (the edit's fields)."""

    ended: Literal[True]
    duration: str
    peak_viewers: int | Literal[""]


class PriceFields(TypedDict):
    asset: str
    ticker: str
    price: str
    line: str  # "" for a move
    direction: str  # up | down
    change: str
    window: str  # "" for a line
    rule: str
    kind: str  # "move", or the side a line was crossed on ("above" | "below")
    at: float


class ScheduledFields(TypedDict):
    user_name: str
    user_id: int
    title: str
    category: str
    starts_at: int
    starts_in: str
    url: str
    rule: str
    event_id: int
    at: float


class TestFields(TypedDict):
    destination: str
    at: float


AlertFields = LiveFields | EndedFields | PriceFields | ScheduledFields | TestFields
FieldsT = TypeVar("FieldsT", bound=AlertFields)


def cleaned(fields: FieldsT) -> FieldsT:
    """`fields` with every text cleaned again: a renderer trusts no stored value."""
    return cast(
        FieldsT,
        {
            key: clean(value, single_line=key != "description") if isinstance(value, str) else value
            for key, value in fields.items()
        },
    )


def creator_url(social_media: str | None, social_username: str | None, user_name: str) -> str:
    """The creator page a person can click (realtime-notes.md, "Links")."""
    platform = (clean(social_media) or "parti").lower()
    username = clean(social_username) or clean(user_name)
    url = f"https://parti.com/creator/{quote(platform, safe='')}/{quote(username, safe='')}"
    return url + "/0" if platform == "discord" else url


def _safe_url(url: str | None) -> str:
    """Only https URLs of Parti's asset hosts reach a message; anything else is dropped."""
    if url and re.match(r"^https://([a-z0-9-]+\.)*parti\.com/", url) and '"' not in url:
        return url
    return ""


# Covariant: a view of live fields is a view of some alert's fields. Without a type
# argument, `AlertView` means any kind's.
F = TypeVar("F", bound=AlertFields, covariant=True, default=AlertFields)


@dataclass(frozen=True)
class AlertView(Generic[F]):
    """What a renderer needs: the kind, the fields, and where it came from. `is_live`
    and its siblings tell the kind, and with it the type of the fields."""

    kind: str  # live | price | scheduled | test
    rule: str
    fields: F

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "rule": self.rule, "fields": self.fields}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AlertView:
        """A view read back from an outbox payload (written by `to_json`, so its fields
        are those of its kind)."""
        return AlertView(data["kind"], data["rule"], cast(AlertFields, dict(data["fields"])))

    def cleaned(self) -> AlertView[F]:
        """This view with every text of its fields cleaned again (see `cleaned`)."""
        return AlertView(self.kind, self.rule, cleaned(self.fields))


def is_live(view: AlertView) -> TypeIs[AlertView[LiveFields]]:
    """A live alert, while the stream is on or (`is_ended`) after it ended."""
    return view.kind == "live"


def is_ended(fields: LiveFields) -> TypeIs[EndedFields]:
    return bool(fields.get("ended"))


def is_price(view: AlertView) -> TypeIs[AlertView[PriceFields]]:
    return view.kind == "price"


def is_scheduled(view: AlertView) -> TypeIs[AlertView[ScheduledFields]]:
    return view.kind == "scheduled"


def is_test(view: AlertView) -> TypeIs[AlertView[TestFields]]:
    return view.kind == "test"


def _number(value: Decimal | int | float | None) -> str:
    if value is None:
        return ""
    decimal = Decimal(str(value))
    if decimal == decimal.to_integral_value():
        return f"{int(decimal):,}"
    text = f"{decimal:,.8f}".rstrip("0").rstrip(".")
    return text


def _percent(value: Decimal | None) -> str:
    if value is None:
        return ""
    return f"{Decimal(value):+.2f}%"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 3600:
        return f"{max(1, seconds // 60)}m" if seconds >= 60 else f"{seconds}s"
    if seconds < 86400:
        return f"{seconds // 3600}h" + (f" {seconds % 3600 // 60:02d}m" if seconds % 3600 else "")
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"


def view_of(
    match: Match, profile: UserProfile | None = None, *, caught_up: bool = False
) -> AlertView:
    event = match.event
    if isinstance(event, ChannelLive):
        name = clean(event.user_name) or str(event.user_id)
        social_media = event.social_media or (profile.social_media if profile else None)
        social_username = event.social_username or (profile.social_username if profile else None)
        avatar = _safe_url(event.avatar_link) or _safe_url(profile.avatar_link if profile else None)
        live: LiveFields = {
            "user_name": name,
            "user_id": event.user_id,
            "title": clean(event.event_title),
            "category": clean(event.category_name),
            "viewers": event.viewers_count if event.viewers_count is not None else "",
            "url": creator_url(clean(social_media), clean(social_username), name),
            "avatar": avatar,
            "image": _safe_url(event.event_file) or avatar,
            "followers": profile.members if profile and profile.members is not None else "",
            "description": clean(profile.description or profile.bio, single_line=False)[:500]
            if profile
            else "",
            "rule": match.rule,
            "caught_up": caught_up,
            "event_id": event.event_id or "",
            "livestream_id": event.livestream_id or "",
            "at": match.at,
        }
        return AlertView("live", match.rule, live)
    if isinstance(event, PriceUpdate):
        details = match.details
        window = details.get("window")
        price: PriceFields = {
            "asset": clean(event.display_symbol).upper(),
            "ticker": clean(event.ticker),
            "price": _number(event.price),
            "line": _number(details.get("line")),
            "direction": details.get("direction", ""),
            "change": _percent(details.get("change")),
            "window": _duration(window) if window else "",
            "rule": match.rule,
            "kind": details.get("kind", ""),
            "at": match.at,
        }
        return AlertView("price", match.rule, price)
    assert isinstance(event, CalendarEvent)
    name = (
        clean(event.user_name)
        or (clean(profile.user_name) if profile else "")
        or str(event.user_id)
    )
    scheduled: ScheduledFields = {
        "user_name": name,
        "user_id": event.user_id,
        "title": clean(event.event_title),
        "category": clean(event.category_name),
        "starts_at": event.event_start_ts,
        "starts_in": _duration(max(0.0, event.event_start_ts - match.at)),
        "url": creator_url(
            profile.social_media if profile else None,
            profile.social_username if profile else None,
            name,
        ),
        "rule": match.rule,
        "event_id": event.event_id,
        "at": match.at,
    }
    return AlertView("scheduled", match.rule, scheduled)


def test_view(destination: str, at: float) -> AlertView[TestFields]:
    """The alert `notifier send-test` sends."""
    return AlertView("test", "send-test", {"destination": destination, "at": at})


def ended_fields(fields: AlertFields, *, ended_at: float, peak_viewers: int | None) -> EndedFields:
    """The fields of a live alert once its stream ended (for the edit). Typed for any
    kind, as read back from the outbox: the caller edits only the sends of a stream."""
    started = float(fields["at"] or ended_at)
    return {
        **cast(LiveFields, fields),
        "ended": True,
        "duration": _duration(max(0.0, ended_at - started)),
        "peak_viewers": peak_viewers if peak_viewers is not None else "",
    }
