"""Frame decoding: one WebSocket text frame in, typed events out (pure, no I/O).

The frames in use are flat objects (realtime-notes.md); the decoder also accepts a
list of events and the common wrappings (`{"NewChannelLiveNotify": {...}}`,
`{"type": ..., "data": ...}`), because the undocumented price frame may come in any.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from notifier.parti.models import ChannelLive, Event, PriceUpdate

LIVE = "NewChannelLiveNotify"
PRICE = "AssetPriceRefreshNotify"
SUBSCRIPTIONS = (LIVE, PRICE)

# Frames larger than this are skipped (counted), not parsed; the transport's hard cap
# is larger so that an oversized frame does not cost the connection.
MAX_FRAME_BYTES = 256 * 1024
_MAX_EVENTS_PER_FRAME = 10_000
_TYPE_KEYS = ("type", "event", "event_type", "notify", "name", "topic", "kind")
_PAYLOAD_KEYS = ("data", "payload", "message", "body", "content", "assets", "prices", "result")


class DecodeError(ValueError):
    """A frame that carries no usable event; `reason` is a short stable code for counting."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def decode_frame(data: str | bytes) -> list[Event]:
    """Decode one frame into its events, or raise `DecodeError`."""
    if len(data) > MAX_FRAME_BYTES:
        raise DecodeError("too_large", f"{len(data)} bytes > {MAX_FRAME_BYTES}")
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        parsed = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DecodeError("not_json", _excerpt(data, exc)) from None
    events = _events(parsed, hint=None, depth=0)
    if len(events) > _MAX_EVENTS_PER_FRAME:
        raise DecodeError("too_many", f"{len(events)} events in one frame")
    return events


def _events(value: Any, hint: str | None, depth: int) -> list[Event]:
    if depth > 4:
        raise DecodeError("too_deep", "events nested more than 4 levels")
    if isinstance(value, list):
        if not value:
            return []
        out: list[Event] = []
        for item in value:
            out.extend(_events(item, hint, depth + 1))
        return out
    if not isinstance(value, dict):
        raise DecodeError("not_an_event", f"JSON {type(value).__name__}, expected object or list")
    return _from_object(value, hint, depth)


def _from_object(obj: dict[str, Any], hint: str | None, depth: int) -> list[Event]:
    # {"NewChannelLiveNotify": {...}} or {"AssetPriceRefreshNotify": [...]}
    for name in SUBSCRIPTIONS:
        if name in obj:
            return _events(obj[name], name, depth + 1)
    type_name = next((obj[k] for k in _TYPE_KEYS if isinstance(obj.get(k), str)), None)
    payload_key = next((k for k in _PAYLOAD_KEYS if k in obj), None)
    if payload_key is not None and (type_name is not None or _looks_wrapped(obj, payload_key)):
        if type_name is not None and type_name not in SUBSCRIPTIONS:
            raise DecodeError("unknown_type", f"event type {type_name[:60]!r}")
        return _events(obj[payload_key], type_name or hint, depth + 1)
    if type_name in SUBSCRIPTIONS and payload_key is None:
        hint = type_name
    elif (
        isinstance(type_name, str)
        and type_name.endswith("Notify")
        and type_name not in SUBSCRIPTIONS
    ):
        raise DecodeError("unknown_type", f"event type {type_name[:60]!r}")
    return [_flat(obj, hint)]


def _looks_wrapped(obj: dict[str, Any], payload_key: str) -> bool:
    # A payload key with nothing beside it but bookkeeping: treat as a wrapper.
    return isinstance(obj[payload_key], dict | list) and "user_id" not in obj and "price" not in obj


def _flat(obj: dict[str, Any], hint: str | None) -> Event:
    is_price = hint == PRICE or (hint is None and "price" in obj and "display_symbol" in obj)
    is_live = hint == LIVE or (hint is None and "user_id" in obj)
    try:
        if is_price:
            return PriceUpdate.model_validate(obj)
        if is_live:
            return ChannelLive.model_validate(obj)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "frame"
        kind = "price" if is_price else "live"
        raise DecodeError("invalid_fields", f"{kind} event: {where}: {error['msg']}") from None
    keys = ", ".join(sorted(str(k)[:30] for k in obj)[:8])
    raise DecodeError("unknown_shape", f"object with keys [{keys}]")


def _excerpt(data: str | bytes, exc: BaseException) -> str:
    shown = data[:60] if isinstance(data, str) else data[:60].decode("utf-8", "replace")
    return f"{type(exc).__name__} in {shown!r}"
