"""Frame decoding: the real shapes, tolerated variants, and every kind of bad frame."""

from __future__ import annotations

import contextlib
import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notifier.parti.decode import MAX_FRAME_BYTES, DecodeError, decode_frame
from notifier.parti.models import ChannelLive, PriceUpdate

REAL_LIVE = {
    "livestream_id": 76436,
    "user_id": 567503,
    "user_name": "DBR",
    "user_avatar_id": 9,
    "avatar_link": "https://assets.parti.com/a.png",
    "event_id": 80695,
    "event_title": "I'm Live on Parti",
    "event_file": "https://assets.parti.com/t.png",
    "category_name": "Other",
    "viewers_count": 0,
    "social_media": "parti",
    "social_username": "DBR",
    "channel_arn": "arn:aws:ivs:x:channel/y",
}
BTC = {
    "asset_type": "Crypto",
    "display_symbol": "BTC",
    "ticker": "bitcoin",
    "price": "103510",
    "direction": "up",
    "price_diff": "0.01",
}


def _minimal_live() -> dict[str, object]:
    return {"user_id": 567503, "user_name": "DBR", "livestream_id": 76436}


GOOD_FRAMES = [
    ("real live shape", REAL_LIVE, [("live", 567503)]),
    ("live with optional fields absent", _minimal_live(), [("live", 567503)]),
    (
        "live with optional fields null",
        {
            **REAL_LIVE,
            "avatar_link": None,
            "event_file": None,
            "category_name": None,
            "viewers_count": None,
        },
        [("live", 567503)],
    ),
    ("ids as strings", {**REAL_LIVE, "user_id": "567503", "event_id": "80695"}, [("live", 567503)]),
    ("unknown fields kept", {**REAL_LIVE, "brand_new_field": {"x": 1}}, [("live", 567503)]),
    ("price object", BTC, [("price", "BTC")]),
    (
        "price list",
        [BTC, {**BTC, "display_symbol": "ETH", "price": "3890.1"}],
        [("price", "BTC"), ("price", "ETH")],
    ),
    ("price wrapped by name", {"AssetPriceRefreshNotify": [BTC]}, [("price", "BTC")]),
    ("live wrapped by name", {"NewChannelLiveNotify": REAL_LIVE}, [("live", 567503)]),
    ("typed envelope", {"type": "AssetPriceRefreshNotify", "data": [BTC]}, [("price", "BTC")]),
    ("envelope without type", {"data": [BTC]}, [("price", "BTC")]),
    ("price as number", {**BTC, "price": 103510.5}, [("price", "BTC")]),
    (
        "list of live events",
        [REAL_LIVE, {**REAL_LIVE, "user_id": 1}],
        [("live", 567503), ("live", 1)],
    ),
    ("empty list", [], []),
]


@pytest.mark.parametrize(
    ("case", "frame", "expected"), GOOD_FRAMES, ids=[c[0] for c in GOOD_FRAMES]
)
def test_good_frames_decode_to_typed_events(
    case: str, frame: object, expected: list[tuple[str, object]]
) -> None:
    events = decode_frame(json.dumps(frame))
    got = [(e.kind, e.user_id if isinstance(e, ChannelLive) else e.display_symbol) for e in events]
    assert got == expected


def test_price_is_a_decimal_never_a_float() -> None:
    (event,) = decode_frame(json.dumps(BTC))
    assert isinstance(event, PriceUpdate)
    assert event.price == Decimal("103510")
    assert isinstance(event.price_diff, Decimal)


def test_live_identity_prefers_event_id_then_livestream_id() -> None:
    (with_event,) = decode_frame(json.dumps(REAL_LIVE))
    (without,) = decode_frame(json.dumps(_minimal_live()))
    assert isinstance(with_event, ChannelLive) and isinstance(without, ChannelLive)
    assert with_event.identity == (567503, "event:80695")
    assert without.identity == (567503, "livestream:76436")


BAD_FRAMES = [
    ("non-JSON", "hello {", "not_json"),
    ("JSON scalar", "42", "not_an_event"),
    ("JSON string", '"NewChannelLiveNotify"', "not_an_event"),
    ("JSON null", "null", "not_an_event"),
    (
        "unknown event type",
        json.dumps({"type": "ChatPublic", "data": {"msg": "hi"}}),
        "unknown_type",
    ),
    (
        "unknown notify name",
        json.dumps({"type": "LivestreamLiveViewersUpdateNotify"}),
        "unknown_type",
    ),
    ("object of no known shape", json.dumps({"hello": "world"}), "unknown_shape"),
    ("live without user_name", json.dumps({"user_id": 5}), "invalid_fields"),
    ("live with non-numeric id", json.dumps({**REAL_LIVE, "user_id": "abc"}), "invalid_fields"),
    ("price NaN", json.dumps({**BTC, "price": "NaN"}), "invalid_fields"),
    ("price not a number", json.dumps({**BTC, "price": "lots"}), "invalid_fields"),
    ("1 MB frame", json.dumps({**REAL_LIVE, "event_title": "x" * 1_000_000}), "too_large"),
    ("invalid UTF-8 bytes", b'{"user_id": "\xff"}', "not_json"),
    ("deep nesting", "[" * 100_000 + "]" * 100_000, "not_json"),
    ("nesting of lists", json.dumps([[[[[[BTC]]]]]]), "too_deep"),
]


@pytest.mark.parametrize(("case", "frame", "reason"), BAD_FRAMES, ids=[c[0] for c in BAD_FRAMES])
def test_bad_frames_raise_decode_error_with_a_reason(
    case: str, frame: str | bytes, reason: str
) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_frame(frame)
    assert caught.value.reason == reason
    assert len(str(caught.value)) < 300, "the message is short, never the whole frame"


def test_frame_size_limit_is_inclusive() -> None:
    padding = MAX_FRAME_BYTES - len(json.dumps({**_minimal_live(), "event_title": ""}))
    frame = json.dumps({**_minimal_live(), "event_title": "x" * padding})
    assert len(frame) == MAX_FRAME_BYTES
    assert len(decode_frame(frame)) == 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "user_id",
                    "user_name",
                    "price",
                    "display_symbol",
                    "type",
                    "data",
                    "NewChannelLiveNotify",
                    "AssetPriceRefreshNotify",
                    "event_id",
                    "livestream_id",
                ]
            )
            | st.text(max_size=8),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=200))
def test_decoder_raises_only_decode_error_on_arbitrary_text(text: str) -> None:
    with contextlib.suppress(DecodeError):
        decode_frame(text)


@settings(max_examples=600, deadline=None)
@given(json_values)
def test_decoder_raises_only_decode_error_on_arbitrary_json(value: object) -> None:
    try:
        events = decode_frame(json.dumps(value))
    except DecodeError:
        return
    assert all(isinstance(e, ChannelLive | PriceUpdate) for e in events)
