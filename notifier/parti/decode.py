"""Frame decoding: one WebSocket frame in, typed events and per-event rejections out (pure).

The frames in use are flat objects (realtime-notes.md); the decoder also accepts a
list of events and the common wrappings (`{"NewChannelLiveNotify": {...}}`,
`{"type": ..., "data": ...}`), because the undocumented price frame may come in any.
Each element of a frame is decoded on its own: a bad one is rejected with a reason and
the good ones still come out. `decode` never raises.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from notifier.parti.models import ChannelLive, Event, PriceUpdate
from notifier.parti.sanitize import clean_line

LIVE = "NewChannelLiveNotify"
PRICE = "AssetPriceRefreshNotify"
SUBSCRIPTIONS = (LIVE, PRICE)

# Frames larger than this are skipped (counted), not parsed; the transport's hard cap
# is larger so that an oversized frame does not cost the connection.
MAX_FRAME_BYTES = 256 * 1024
_MAX_EVENTS_PER_FRAME = 10_000
_MAX_DEPTH = 4
_TYPE_KEYS = ("type", "event", "event_type", "notify", "name", "topic", "kind")
_PAYLOAD_KEYS = ("data", "payload", "message", "body", "content", "assets", "prices", "result")
# A go-live is told from other objects that carry `user_id` and `user_name` (chat
# messages, profiles) by the stream's own ids: the documented frame has all three.
_LIVE_MARKERS = ("livestream_id", "event_id", "channel_arn")
# ... and only the first two give it an identity (DESIGN.md, "Event identity").
_LIVE_IDS = ("event_id", "livestream_id")
# Integers longer than this are no id, count or price we accept; parsing them is costly
# (and above 4300 digits an error), so they become infinities, which every field refuses.
_MAX_INT_DIGITS = 40

# Every reason a rejection can have (stable codes: metrics labels, counters).
REJECT_REASONS = (
    "too_large",  # the frame is over MAX_FRAME_BYTES
    "not_json",
    "not_an_event",  # a JSON scalar where an event object was expected
    "unknown_type",  # an envelope or notify name for a subscription we do not decode
    "unknown_shape",  # an object that is neither a go-live nor a price
    "invalid_fields",  # a go-live or price whose needed fields do not parse
    "too_deep",  # events nested more than _MAX_DEPTH levels
    "too_many",  # elements beyond _MAX_EVENTS_PER_FRAME
    "internal_error",  # a decoder bug, contained to one element
)


@dataclass(frozen=True)
class Rejection:
    """One element (or the whole frame) that gave no event: a stable reason and a short detail.

    `where` locates the element in the frame (`[2]`, `.data[0]`); empty for the frame itself.
    The detail is cleaned and cut: safe to log, never the whole frame.
    """

    reason: str
    detail: str
    where: str = ""

    def __str__(self) -> str:
        place = f" at {self.where}" if self.where else ""
        return f"{self.reason}{place}: {self.detail}"


@dataclass(frozen=True)
class Decoded:
    """What one frame gave: its events in frame order, and what was rejected."""

    events: tuple[Event, ...] = ()
    rejections: tuple[Rejection, ...] = ()


class DecodeError(ValueError):
    """A frame that carries no usable event; `reason` is a short stable code for counting."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def decode(data: str | bytes) -> Decoded:
    """Decode one frame (text or bytes, any content): never raises."""
    if len(data) > MAX_FRAME_BYTES:
        return _rejected("too_large", f"{len(data)} bytes > {MAX_FRAME_BYTES}")
    # Invalid UTF-8 costs the characters it spoils (U+FFFD), not the frame.
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    try:
        parsed = json.loads(text.removeprefix("\ufeff"), parse_int=_parse_int)
    except (ValueError, RecursionError) as exc:
        return _rejected("not_json", _excerpt(text, exc))
    walk = _Walk()
    walk.value(parsed, None, 0, "")
    return walk.result()


def decode_frame(data: str | bytes) -> list[Event]:
    """The events of one frame; `DecodeError` (first reason) when it has none and a rejection.

    Kept for callers that count whole frames; `decode` also reports the elements it
    rejected beside the good ones.
    """
    decoded = decode(data)
    if not decoded.events and decoded.rejections:
        first = decoded.rejections[0]
        raise DecodeError(first.reason, first.detail)
    return list(decoded.events)


def _rejected(reason: str, detail: str) -> Decoded:
    return Decoded(rejections=(Rejection(reason, detail),))


def _parse_int(digits: str) -> int | float:
    if len(digits) > _MAX_INT_DIGITS:
        return float("-inf") if digits.startswith("-") else float("inf")
    return int(digits)


class _Walk:
    """Collects the events and rejections of one frame, element by element."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.rejections: list[Rejection] = []
        self.elements = 0
        self.beyond = 0

    def result(self) -> Decoded:
        if self.beyond:
            detail = f"{self.beyond} elements beyond {_MAX_EVENTS_PER_FRAME} skipped"
            self.rejections.append(Rejection("too_many", detail))
        return Decoded(tuple(self.events), tuple(self.rejections))

    def reject(self, reason: str, detail: str, where: str) -> None:
        self.rejections.append(Rejection(reason, _short(detail), where))

    def value(self, value: Any, hint: str | None, depth: int, where: str) -> None:
        if depth > _MAX_DEPTH:
            self.reject("too_deep", f"events nested more than {_MAX_DEPTH} levels", where)
            return
        if isinstance(value, list):
            for index, item in enumerate(value):
                self.value(item, hint, depth + 1, f"{where}[{index}]")
            return
        if not isinstance(value, dict):
            if self._count():
                kind = type(value).__name__
                self.reject("not_an_event", f"JSON {kind}, expected object or list", where)
            return
        try:
            self.object(value, hint, depth, where)
        except Exception as exc:  # contain a decoder bug to its element
            self.reject("internal_error", type(exc).__name__, where)

    def _count(self) -> bool:
        self.elements += 1
        if self.elements > _MAX_EVENTS_PER_FRAME:
            self.beyond += 1
            return False
        return True

    def object(self, obj: dict[str, Any], hint: str | None, depth: int, where: str) -> None:
        # {"NewChannelLiveNotify": {...}} or {"AssetPriceRefreshNotify": [...]}
        for name in SUBSCRIPTIONS:
            if name in obj:
                self.value(obj[name], name, depth + 1, f"{where}.{name}")
                return
        type_name = next((obj[k] for k in _TYPE_KEYS if isinstance(obj.get(k), str)), None)
        payload_key = next((k for k in _PAYLOAD_KEYS if k in obj), None)
        if payload_key is not None and (type_name is not None or _looks_wrapped(obj, payload_key)):
            if type_name is not None and type_name not in SUBSCRIPTIONS:
                if self._count():
                    self.reject("unknown_type", f"event type {type_name[:60]!r}", where)
                return
            self.value(obj[payload_key], type_name or hint, depth + 1, f"{where}.{payload_key}")
            return
        if not self._count():
            return
        if type_name in SUBSCRIPTIONS and payload_key is None:
            hint = type_name
        elif (
            isinstance(type_name, str)
            and type_name.endswith("Notify")
            and type_name not in SUBSCRIPTIONS
        ):
            self.reject("unknown_type", f"event type {type_name[:60]!r}", where)
            return
        event = self.flat(obj, hint, where)
        if event is not None:
            self.events.append(event)

    def flat(self, obj: dict[str, Any], hint: str | None, where: str) -> Event | None:
        is_price = hint == PRICE or (hint is None and "price" in obj and "display_symbol" in obj)
        is_live = hint == LIVE or (
            hint is None and _present(obj, "user_id") and _present(obj, *_LIVE_MARKERS)
        )
        if not is_price and not is_live:
            keys = ", ".join(sorted(str(k)[:30] for k in obj)[:8])
            self.reject("unknown_shape", f"object with keys [{keys}]", where)
            return None
        kind = "price" if is_price else "live"
        if is_live and not is_price and not _present(obj, *_LIVE_IDS):
            self.reject("invalid_fields", "live event: no event_id or livestream_id", where)
            return None
        try:
            if is_price:
                return PriceUpdate.model_validate(obj)
            return ChannelLive.model_validate(obj)
        except ValidationError as exc:
            error = exc.errors(include_url=False, include_input=False)[0]
            field = ".".join(str(p) for p in error["loc"]) or "frame"
            self.reject("invalid_fields", f"{kind} event: {field}: {error['msg']}", where)
            return None


def _present(obj: dict[str, Any], *keys: str) -> bool:
    return any(obj.get(k) is not None for k in keys)


def _looks_wrapped(obj: dict[str, Any], payload_key: str) -> bool:
    # A payload key with nothing beside it but bookkeeping: treat as a wrapper.
    return isinstance(obj[payload_key], dict | list) and "user_id" not in obj and "price" not in obj


def _short(detail: str) -> str:
    # Details reach logs: cleaned like any wire text, and cut.
    detail = clean_line(detail)
    return detail if len(detail) <= 200 else detail[:199] + "…"


def _excerpt(text: str, exc: BaseException) -> str:
    return _short(f"{type(exc).__name__} in {clean_line(text[:60])!r}")
