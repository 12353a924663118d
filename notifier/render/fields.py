"""The fields of an alert, built from a match and its enrichment (pure).

Every text field here is untrusted (written by streamers); `clean` removes what no
target should ever show: control characters (terminal escapes, NUL) and bidirectional
overrides (which can make a name read as something else), and replaces lone surrogates
(which no chat accepts and no terminal prints) with U+FFFD.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from notifier.parti.models import CalendarEvent, ChannelLive, PriceUpdate, UserProfile
from notifier.rules.engine import Match

_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c\ufeff\ufff9-\ufffb]"
)
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean(text: str | None, *, single_line: bool = True) -> str:
    if not text:
        return ""
    text = _SURROGATE.sub("\ufffd", _UNSAFE.sub("", text))
    if single_line:
        text = " ".join(text.split())
    return text


def cleaned(fields: dict[str, Any]) -> dict[str, Any]:
    """`fields` with every text cleaned again: a renderer trusts no stored value."""
    return {
        key: clean(value, single_line=key != "description") if isinstance(value, str) else value
        for key, value in fields.items()
    }


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


@dataclass(frozen=True)
class AlertView:
    """What a renderer needs: the kind, the fields, and where it came from."""

    kind: str  # live | price | scheduled | test
    rule: str
    fields: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "rule": self.rule, "fields": self.fields}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AlertView:
        return cls(data["kind"], data["rule"], dict(data["fields"]))


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
        return AlertView(
            "live",
            match.rule,
            {
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
            },
        )
    if isinstance(event, PriceUpdate):
        details = match.details
        window = details.get("window")
        return AlertView(
            "price",
            match.rule,
            {
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
            },
        )
    assert isinstance(event, CalendarEvent)
    name = (
        clean(event.user_name)
        or (clean(profile.user_name) if profile else "")
        or str(event.user_id)
    )
    return AlertView(
        "scheduled",
        match.rule,
        {
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
        },
    )


def test_view(destination: str, at: float) -> AlertView:
    """The alert `notifier send-test` sends."""
    return AlertView("test", "send-test", {"destination": destination, "at": at})


def ended_fields(
    fields: dict[str, Any], *, ended_at: float, peak_viewers: int | None
) -> dict[str, Any]:
    """The fields of a live alert once its stream ended (for the edit)."""
    started = float(fields.get("at") or ended_at)
    return {
        **fields,
        "ended": True,
        "duration": _duration(max(0.0, ended_at - started)),
        "peak_viewers": peak_viewers if peak_viewers is not None else "",
    }
