"""Frame decoding: the real shapes, tolerated variants, and every kind of bad frame or element."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notifier.parti.decode import (
    MAX_FRAME_BYTES,
    REJECT_REASONS,
    Decoded,
    DecodeError,
    decode,
    decode_frame,
)
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
CHAT = {"user_id": 353044, "user_name": "DBR", "message": "hi all"}
PROFILE = {
    "user_id": 353044,
    "user_name": "DBR",
    "user_avatar_id": 9,
    "members": 4340,
    "channels_joined": 3,
}

# What no produced text may contain: controls (C0, DEL, C1), surrogates, bidirectional
# controls, zero-width and other invisible characters, line and paragraph separators.
UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\ud800-\udfff\u061c\u200b\u200e\u200f\u202a-\u202e"
    "\u2028\u2029\u2060-\u206f\ufeff]"
)
LIVE_TEXT_FIELDS = (
    "user_name",
    "event_title",
    "event_file",
    "avatar_link",
    "category_name",
    "social_media",
    "social_username",
    "channel_arn",
)
PRICE_TEXT_FIELDS = ("display_symbol", "ticker", "asset_type", "direction")


def _minimal_live() -> dict[str, object]:
    return {"user_id": 567503, "user_name": "DBR", "livestream_id": 76436}


def _one(frame: str | bytes) -> ChannelLive | PriceUpdate:
    decoded = decode(frame)
    assert decoded.rejections == (), decoded.rejections
    (event,) = decoded.events
    return event


def _reasons(decoded: Decoded) -> list[str]:
    return [r.reason for r in decoded.rejections]


def _texts(event: ChannelLive | PriceUpdate) -> list[str]:
    names = LIVE_TEXT_FIELDS if isinstance(event, ChannelLive) else PRICE_TEXT_FIELDS
    values = [getattr(event, name) for name in names]
    extras = json.dumps(event.model_extra, ensure_ascii=False)  # keeps C1, bidi, surrogates
    return [v for v in values if v is not None] + [extras]


# ---- the real shapes and tolerated variants ---------------------------------------------

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
    ("live with event_id only", {"user_id": 1, "user_name": "x", "event_id": 2}, [("live", 1)]),
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
    decoded = decode(json.dumps(frame))
    got = [
        (e.kind, e.user_id if isinstance(e, ChannelLive) else e.display_symbol)
        for e in decoded.events
    ]
    assert got == expected
    assert decoded.rejections == ()


def test_price_is_a_decimal_never_a_float() -> None:
    event = _one(json.dumps(BTC))
    assert isinstance(event, PriceUpdate)
    assert event.price == Decimal("103510")
    assert isinstance(event.price_diff, Decimal)


def test_a_price_sent_as_a_json_number_keeps_its_decimal_digits() -> None:
    event = _one('{"display_symbol": "X", "price": 0.1}')
    assert isinstance(event, PriceUpdate) and event.price == Decimal("0.1")


# ---- whole-frame faults ---------------------------------------------------------------------

BAD_FRAMES: list[tuple[str, str | bytes, str]] = [
    ("non-JSON", "hello {", "not_json"),
    ("non-JSON bytes", b"\xff\xfe{", "not_json"),
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
    ("live without user_name", json.dumps({"user_id": 5, "livestream_id": 1}), "invalid_fields"),
    ("live with non-numeric id", json.dumps({**REAL_LIVE, "user_id": "abc"}), "invalid_fields"),
    ("price NaN", json.dumps({**BTC, "price": "NaN"}), "invalid_fields"),
    ("price not a number", json.dumps({**BTC, "price": "lots"}), "invalid_fields"),
    ("1 MB frame", json.dumps({**REAL_LIVE, "event_title": "x" * 1_000_000}), "too_large"),
    ("deep nesting", "[" * 100_000 + "]" * 100_000, "not_json"),
    ("nesting of lists", json.dumps([[[[[[BTC]]]]]]), "too_deep"),
]


@pytest.mark.parametrize(("case", "frame", "reason"), BAD_FRAMES, ids=[c[0] for c in BAD_FRAMES])
def test_bad_frames_are_rejected_with_a_reason(case: str, frame: str | bytes, reason: str) -> None:
    decoded = decode(frame)
    assert decoded.events == ()
    assert _reasons(decoded) == [reason]
    assert len(str(decoded.rejections[0])) < 300, "the detail is short, never the whole frame"


def test_decode_frame_keeps_its_old_contract_for_frames_without_events() -> None:
    with pytest.raises(DecodeError) as caught:
        decode_frame('{"hello": "world"}')
    assert caught.value.reason == "unknown_shape"
    assert decode_frame("[]") == []


def test_decode_frame_returns_the_good_events_of_a_partly_bad_frame() -> None:
    events = decode_frame(json.dumps([BTC, {"hello": 1}]))
    assert [e.kind for e in events] == ["price"]


def test_frame_size_limit_is_inclusive() -> None:
    padding = MAX_FRAME_BYTES - len(json.dumps({**_minimal_live(), "event_title": ""}))
    frame = json.dumps({**_minimal_live(), "event_title": "x" * padding})
    assert len(frame) == MAX_FRAME_BYTES
    assert len(decode(frame).events) == 1


def test_every_rejection_reason_is_a_documented_code() -> None:
    frames = [f for _, f, _ in BAD_FRAMES] + [json.dumps([1, CHAT, {"type": "X", "data": []}])]
    for frame in frames:
        assert set(_reasons(decode(frame))) <= set(REJECT_REASONS)


# ---- texts: anything JSON allows, cleaned per field ----------------------------------------

TEXTS = [
    ("lone high surrogate", "a\ud800b", "a\ufffdb"),
    ("lone low surrogate", "\udfff", "\ufffd"),
    ("escaped surrogate pair is one character", "\ud83c\udfae", "🎮"),
    ("NUL", "a\x00b", "ab"),
    ("terminal escape", "\x1b[31mred\x1b[0m", "[31mred[0m"),
    ("DEL and C1", "a\x7fb\x9bc", "abc"),
    ("right-to-left override", "\u202eevil\u202c name", "evil name"),
    ("bidi isolates and marks", "\u2066x\u2069\u200e\u200f\u061c", "x"),
    ("zero-width space", "SNE\u200bAKO", "SNEAKO"),
    ("word joiner and BOM", "\ufeffa\u2060b", "ab"),
    ("zero-width joiner between ASCII letters", "SNE\u200dAKO", "SNEAKO"),
    ("zero-width joiner in an emoji sequence", "👨\u200d💻 coding", "👨\u200d💻 coding"),
    ("newlines, tabs and CR", "one\ntwo\r\nthree\tfour", "one two three four"),
    ("line and paragraph separators", "a\u2028b\u2029c\x85d", "a b c d"),
    ("20,000 characters", "y" * 20_000, "y" * 10_000),
    ("plain text is untouched", "I'm Live on Parti <b>&amp;</b>", "I'm Live on Parti <b>&amp;</b>"),
]


@pytest.mark.parametrize(("case", "raw", "clean"), TEXTS, ids=[c[0] for c in TEXTS])
@pytest.mark.parametrize("field", ["user_name", "event_title", "category_name", "social_username"])
def test_live_text_fields_are_cleaned(case: str, raw: str, clean: str, field: str) -> None:
    # json.dumps escapes a lone surrogate as \ud800, exactly as it comes over the wire.
    event = _one(json.dumps({**REAL_LIVE, field: raw}))
    assert getattr(event, field) == clean


@pytest.mark.parametrize(("case", "raw", "clean"), TEXTS, ids=[c[0] for c in TEXTS])
def test_price_text_fields_are_cleaned(case: str, raw: str, clean: str) -> None:
    event = _one(json.dumps({**BTC, "ticker": raw, "display_symbol": "B" + raw}))
    assert isinstance(event, PriceUpdate)
    assert event.ticker == clean
    assert event.display_symbol == ("B" + clean)[:10_000]


@pytest.mark.parametrize(
    "frame",
    [
        '{"user_id": 1, "livestream_id": 2, "user_name": "a\\ud800b"}',  # escaped in JSON
        '{"user_id": 1, "livestream_id": 2, "user_name": "a\ud800b"}',  # raw in a str frame
        b'{"user_id": 1, "livestream_id": 2, "user_name": "a\xffb"}',  # invalid UTF-8 bytes
        b'{"user_id": 1, "livestream_id": 2, "user_name": "a\xed\xa0\x80b"}',  # UTF-8 surrogate
    ],
    ids=["escaped surrogate", "raw surrogate in str", "invalid UTF-8", "encoded surrogate"],
)
def test_a_bad_character_costs_the_character_not_the_event(frame: str | bytes) -> None:
    event = _one(frame)
    assert isinstance(event, ChannelLive)
    assert event.user_name.startswith("a\ufffd") and event.user_name.endswith("b")


def test_a_frame_with_a_byte_order_mark_decodes() -> None:
    assert len(decode(b"\xef\xbb\xbf" + json.dumps(BTC).encode()).events) == 1


def test_unknown_fields_are_kept_with_their_texts_cleaned() -> None:
    event = _one(json.dumps({**REAL_LIVE, "note": "a\ud800\x1b", "bad\u202ekey": 1}))
    assert event.model_extra == {"note": "a\ufffd"}
    event.model_dump_json()  # no surrogate left to break a JSON dump


# ---- numbers: ids reject the event, counts become None, prices must be sane -----------------

HUGE = 10**30
LIVE_NUMBERS: list[tuple[str, str, object, object]] = [
    # (case, field, wire value, the parsed value or "reject")
    ("id as string", "user_id", "42", 42),
    ("id as string with spaces", "user_id", " 42 ", 42),
    ("id as integral float", "user_id", 42.0, 42),
    ("largest int64 id", "user_id", 2**63 - 1, 2**63 - 1),
    ("id over int64", "user_id", 2**63, "reject"),
    ("huge id", "user_id", HUGE, "reject"),
    ("huge id as string", "user_id", str(HUGE), "reject"),
    ("zero id", "user_id", 0, "reject"),
    ("negative id", "user_id", -5, "reject"),
    ("boolean id", "user_id", True, "reject"),
    ("fractional id", "user_id", 1.5, "reject"),
    ("id in exponent notation", "user_id", "1e3", "reject"),
    ("id of other digits", "user_id", "١٢", "reject"),
    ("id as object", "user_id", {"id": 1}, "reject"),
    ("huge event id", "event_id", HUGE, "reject"),
    ("negative livestream id", "livestream_id", -5, "reject"),
    ("viewers as string", "viewers_count", "12", 12),
    ("negative viewers", "viewers_count", -5, None),
    ("huge viewers", "viewers_count", HUGE, None),
    ("viewers as words", "viewers_count", "many", None),
    ("fractional viewers", "viewers_count", 2.5, None),
    ("boolean viewers", "viewers_count", True, None),
    ("avatar id as words", "user_avatar_id", "x", None),
    ("negative category id", "category_id", -1, None),
]


@pytest.mark.parametrize(
    ("case", "field", "value", "expected"), LIVE_NUMBERS, ids=[c[0] for c in LIVE_NUMBERS]
)
def test_live_numbers(case: str, field: str, value: object, expected: object) -> None:
    decoded = decode(json.dumps({**REAL_LIVE, field: value}))
    if expected == "reject":
        assert decoded.events == ()
        assert _reasons(decoded) == ["invalid_fields"]
        assert field in decoded.rejections[0].detail
    else:
        (event,) = decoded.events
        assert getattr(event, field) == expected


def test_an_id_of_thousands_of_digits_rejects_the_event_not_the_frame() -> None:
    huge = "9" * 5000  # beyond Python's int parsing limit
    frame = f'[{{"user_id": {huge}, "user_name": "x", "livestream_id": 1}}, {json.dumps(BTC)}]'
    decoded = decode(frame)
    assert [e.kind for e in decoded.events] == ["price"]
    assert _reasons(decoded) == ["invalid_fields"]


PRICES: list[tuple[str, str, object]] = [
    # (case, the price as it is written in the frame, the Decimal or "reject")
    ("string", '"103510"', Decimal("103510")),
    ("number", "103510.5", Decimal("103510.5")),
    ("tiny", '"0.00000001"', Decimal("0.00000001")),
    ("the largest", str(10**15), Decimal(10**15)),
    ("long decimal rounded", '"1.' + "1" * 60 + '"', Decimal("1." + "1" * 33)),
    ("negative", '"-1"', "reject"),
    ("zero", "0", "reject"),
    ("zero string", '"0.000"', "reject"),
    ("10**40", str(10**40), "reject"),
    ("above 10**15", '"1000000000000000.5"', "reject"),
    ("1e400 as string", '"1e400"', "reject"),
    ("1e400 as number", "1e400", "reject"),
    ("1e-400 as string", '"1e-400"', "reject"),
    ("NaN string", '"NaN"', "reject"),
    ("NaN literal", "NaN", "reject"),
    ("sNaN", '"sNaN"', "reject"),
    ("Infinity string", '"Infinity"', "reject"),
    ("-Infinity literal", "-Infinity", "reject"),
    ("empty", '""', "reject"),
    ("words", '"lots"', "reject"),
    ("underscores", '"1_000"', "reject"),
    ("boolean", "true", "reject"),
    ("null", "null", "reject"),
    ("list", "[1]", "reject"),
    ("thousands of digits", "9" * 5000, "reject"),
]


@pytest.mark.parametrize(("case", "raw", "expected"), PRICES, ids=[c[0] for c in PRICES])
def test_prices(case: str, raw: str, expected: object) -> None:
    decoded = decode(f'{{"display_symbol": "BTC", "price": {raw}}}')
    if expected == "reject":
        assert decoded.events == ()
        assert _reasons(decoded) == ["invalid_fields"]
    else:
        (event,) = decoded.events
        assert isinstance(event, PriceUpdate) and event.price == expected


@pytest.mark.parametrize(
    "symbol",
    ["", "   ", "\x00\u202e", 5.5, None, {}],
    ids=["empty", "blank", "unsafe only", "float", "null", "object"],
)
def test_a_price_without_a_usable_symbol_is_rejected(symbol: object) -> None:
    assert _reasons(decode(json.dumps({**BTC, "display_symbol": symbol}))) == ["invalid_fields"]


# ---- informational fields never reject an event ---------------------------------------------

INFORMATIONAL: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    ("price_diff empty", BTC, {"price_diff": ""}, "price_diff"),
    ("price_diff words", BTC, {"price_diff": "n/a"}, "price_diff"),
    ("price_diff NaN", BTC, {"price_diff": "NaN"}, "price_diff"),
    ("price_diff huge", BTC, {"price_diff": "1e400"}, "price_diff"),
    ("direction a number", BTC, {"direction": 5}, "direction"),
    ("ticker an object", BTC, {"ticker": {}}, "ticker"),
    ("asset_type a list", BTC, {"asset_type": [1]}, "asset_type"),
    ("viewers words", REAL_LIVE, {"viewers_count": "many"}, "viewers_count"),
    ("category an object", REAL_LIVE, {"category_name": {}}, "category_name"),
    ("avatar a number", REAL_LIVE, {"avatar_link": 5}, "avatar_link"),
    ("thumbnail a boolean", REAL_LIVE, {"event_file": True}, "event_file"),
    ("title a list", REAL_LIVE, {"event_title": ["a"]}, "event_title"),
    ("social media a number", REAL_LIVE, {"social_media": 1}, "social_media"),
    ("channel arn an object", REAL_LIVE, {"channel_arn": {"a": 1}}, "channel_arn"),
    ("avatar id an object", REAL_LIVE, {"user_avatar_id": {}}, "user_avatar_id"),
]


@pytest.mark.parametrize(
    ("case", "base", "bad", "field"), INFORMATIONAL, ids=[c[0] for c in INFORMATIONAL]
)
def test_an_informational_field_that_fails_to_parse_becomes_none(
    case: str, base: dict[str, Any], bad: dict[str, Any], field: str
) -> None:
    event = _one(json.dumps({**base, **bad}))
    assert getattr(event, field) is None


def test_a_user_name_sent_as_a_number_is_text() -> None:
    event = _one(json.dumps({**REAL_LIVE, "user_name": 1234}))
    assert isinstance(event, ChannelLive) and event.user_name == "1234"


# ---- shapes: a go-live only with its identifying fields -------------------------------------

SHAPES: list[tuple[str, dict[str, Any], str | None]] = [
    # (case, object, None when it is a go-live, else the reason)
    ("the documented go-live", REAL_LIVE, None),
    ("user and livestream ids", _minimal_live(), None),
    ("user and event ids", {"user_id": 1, "user_name": "x", "event_id": 2}, None),
    ("a chat message", CHAT, "unknown_shape"),
    ("a profile", PROFILE, "unknown_shape"),
    ("only user_id and user_name", {"user_id": 1, "user_name": "x"}, "unknown_shape"),
    (
        "ids present but null",
        {"user_id": 1, "user_name": "x", "event_id": None, "livestream_id": None},
        "unknown_shape",
    ),
    ("a stream id without a user", {"livestream_id": 1, "user_name": "x"}, "unknown_shape"),
    (
        "a channel ARN alone gives no identity",
        {"user_id": 1, "user_name": "x", "channel_arn": "arn:aws:ivs:x"},
        "invalid_fields",
    ),
    (
        "a channel record without a name",
        {"livestream_id": 7862, "user_id": 353044, "is_live": False},
        "invalid_fields",
    ),
]


@pytest.mark.parametrize(("case", "obj", "reason"), SHAPES, ids=[c[0] for c in SHAPES])
def test_a_go_live_is_recognised_by_its_identifying_fields(
    case: str, obj: dict[str, Any], reason: str | None
) -> None:
    decoded = decode(json.dumps(obj))
    if reason is None:
        assert [e.kind for e in decoded.events] == ["live"]
    else:
        assert decoded.events == () and _reasons(decoded) == [reason]


def test_a_go_live_named_by_its_wrapper_still_needs_a_stream_id() -> None:
    decoded = decode(json.dumps({"NewChannelLiveNotify": {"user_id": 1, "user_name": "x"}}))
    assert _reasons(decoded) == ["invalid_fields"]


# ---- frames of several events: a bad element costs only itself -----------------------------

MIXED: list[tuple[str, object, list[str], list[tuple[str, str]]]] = [
    # (case, frame, kinds decoded, (reason, where) of each rejection)
    (
        "list with a bad price between good ones",
        [BTC, {**BTC, "price": "NaN"}, {**BTC, "display_symbol": "ETH"}],
        ["price", "price"],
        [("invalid_fields", "[1]")],
    ),
    (
        "wrapped list with a negative price",
        {"AssetPriceRefreshNotify": [{**BTC, "price": -1}, BTC]},
        ["price"],
        [("invalid_fields", ".AssetPriceRefreshNotify[0]")],
    ),
    (
        "typed envelope with junk elements",
        {"type": "AssetPriceRefreshNotify", "data": [7, BTC, None, "x"]},
        ["price"],
        [("not_an_event", ".data[0]"), ("not_an_event", ".data[2]"), ("not_an_event", ".data[3]")],
    ),
    (
        "go-lives beside a chat message and a huge id",
        [REAL_LIVE, CHAT, {**REAL_LIVE, "user_id": HUGE}, {**REAL_LIVE, "user_id": 2}],
        ["live", "live"],
        [("unknown_shape", "[1]"), ("invalid_fields", "[2]")],
    ),
    (
        "a too-deep element beside a good one",
        [[[[[[BTC]]]]], BTC],
        ["price"],
        [("too_deep", "[0][0][0][0][0]")],
    ),
    (
        "an unknown envelope beside a good event",
        [{"type": "ChatPublic", "data": {"m": 1}}, REAL_LIVE],
        ["live"],
        [("unknown_type", "[0]")],
    ),
]


@pytest.mark.parametrize(("case", "frame", "kinds", "rejected"), MIXED, ids=[c[0] for c in MIXED])
def test_a_bad_element_is_rejected_on_its_own(
    case: str, frame: object, kinds: list[str], rejected: list[tuple[str, str]]
) -> None:
    decoded = decode(json.dumps(frame))
    assert [e.kind for e in decoded.events] == kinds
    assert [(r.reason, r.where) for r in decoded.rejections] == rejected


def test_elements_beyond_the_cap_are_counted_as_one_rejection() -> None:
    decoded = decode("[" + json.dumps(BTC) + ",1" * 10_004 + "]")
    assert [e.kind for e in decoded.events] == ["price"]
    assert _reasons(decoded) == ["not_an_event"] * 9_999 + ["too_many"]
    assert decoded.rejections[-1].detail.startswith("5 elements")


# ---- identity: per stream, never from the wire --------------------------------------------


def test_live_identity_prefers_event_id_then_livestream_id() -> None:
    with_event = _one(json.dumps(REAL_LIVE))
    without = _one(json.dumps(_minimal_live()))
    assert isinstance(with_event, ChannelLive) and isinstance(without, ChannelLive)
    assert with_event.identity == (567503, "event:80695")
    assert without.identity == (567503, "livestream:76436")


def test_a_later_stream_of_the_channel_has_its_own_identity() -> None:
    first = _one(json.dumps(_minimal_live()))
    assert isinstance(first, ChannelLive)
    second = first.with_stream_seq(1)
    assert second.identity == (567503, "livestream:76436:1")
    assert second.identity != first.identity
    assert first.with_stream_seq(1).identity == second.identity


def test_a_stream_number_with_an_event_id_changes_nothing() -> None:
    event = _one(json.dumps(REAL_LIVE))
    assert isinstance(event, ChannelLive)
    assert event.with_stream_seq(3).identity == (567503, "event:80695")


def test_a_stream_number_on_the_wire_is_ignored() -> None:
    event = _one(json.dumps({**_minimal_live(), "stream_seq": 7}))
    assert isinstance(event, ChannelLive)
    assert event.stream_seq == 0 and event.identity == (567503, "livestream:76436")


# ---- properties ------------------------------------------------------------------------------

NASTY = [
    "\ud800",
    "\udfff",
    "\x00",
    "\x1b",
    "\x7f",
    "\x85",
    "\x9b",
    "\n",
    "\r",
    "\t",
    "\u2028",
    "\u202e",
    "\u2066",
    "\u200b",
    "\u200d",
    "\ufeff",
    "🎮",
    '"',
    "\\",
]
nasty_text = st.text(st.characters(exclude_categories=()) | st.sampled_from(NASTY), max_size=30)
KEYS = [
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
    "channel_arn",
    "viewers_count",
    "event_title",
    "price_diff",
    "stream_seq",
    "kind",
    "identity",
    "model_config",
]
numbers = (
    st.integers()
    | st.integers(min_value=2**62, max_value=10**40)
    | st.floats()
    | st.sampled_from([0, -1, 1, 2**63 - 1, 2**63, 10**30])
)
scalars = st.none() | st.booleans() | numbers | nasty_text
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | nasty_text, children, max_size=6)
    ),
    max_leaves=25,
)


def _encodings(value: object) -> list[str | bytes]:
    escaped = json.dumps(value)
    raw = json.dumps(value, ensure_ascii=False)
    return [escaped, raw, raw.encode("utf-8", "surrogatepass")]


def _assert_sound(decoded: Decoded) -> None:
    assert isinstance(decoded, Decoded)
    assert all(
        r.reason in REJECT_REASONS and r.reason != "internal_error" for r in decoded.rejections
    )
    for event in decoded.events:
        assert isinstance(event, ChannelLive | PriceUpdate)
        for text in _texts(event):
            assert not UNSAFE.search(text), text
        event.model_dump_json()
        if isinstance(event, ChannelLive):
            assert 1 <= event.user_id < 2**63 and event.stream_seq == 0
            assert event.viewers_count is None or 0 <= event.viewers_count < 2**63
        else:
            assert 0 < event.price <= 10**15


@settings(max_examples=400, deadline=None)
@given(nasty_text | st.text(max_size=200))
def test_decoder_never_raises_on_arbitrary_text(text: str) -> None:
    _assert_sound(decode(text))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_decoder_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    _assert_sound(decode(data))


@settings(max_examples=600, deadline=None)
@given(json_values)
def test_decoder_never_raises_on_arbitrary_json_and_its_events_are_clean(value: object) -> None:
    for frame in _encodings(value):
        _assert_sound(decode(frame))


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {name: nasty_text for name in LIVE_TEXT_FIELDS},
        optional={"viewers_count": json_values, "category_id": json_values},
    )
)
def test_a_go_live_with_any_texts_decodes_with_clean_texts(texts: dict[str, Any]) -> None:
    for frame in _encodings({**_minimal_live(), **texts}):
        decoded = decode(frame)
        _assert_sound(decoded)
        assert len(decoded.events) == 1, decoded.rejections


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(json_values, st.just(BTC), st.just(REAL_LIVE)), max_size=8))
def test_good_events_survive_any_neighbours(elements: list[object]) -> None:
    good = sum(1 for e in elements if e is BTC or e is REAL_LIVE)
    decoded = decode(json.dumps(elements))
    _assert_sound(decoded)
    assert len(decoded.events) >= good


@settings(max_examples=300, deadline=None)
@given(numbers | st.from_regex(r"-?[0-9]{1,25}", fullmatch=True))
def test_an_id_is_accepted_exactly_when_it_is_a_positive_int64(value: int | float | str) -> None:
    decoded = decode(json.dumps({**REAL_LIVE, "user_id": value}))
    _assert_sound(decoded)
    as_int: int | None = None
    if isinstance(value, bool):
        as_int = None
    elif isinstance(value, int):
        as_int = value
    elif isinstance(value, float):
        as_int = int(value) if value.is_integer() and abs(value) <= 2**53 else None
    else:
        as_int = int(value)
    accepted = as_int is not None and 1 <= as_int < 2**63
    assert len(decoded.events) == (1 if accepted else 0)


@settings(max_examples=300, deadline=None)
@given(
    st.decimals(allow_nan=True, allow_infinity=True)
    | st.decimals(min_value=Decimal("-1e20"), max_value=Decimal("1e20"))
)
def test_a_price_is_accepted_exactly_when_it_is_positive_finite_and_at_most_1e15(
    value: Decimal,
) -> None:
    decoded = decode(json.dumps({**BTC, "price": str(value)}))
    _assert_sound(decoded)
    in_range = value.is_finite() and 0 < value <= 10**15 and value.adjusted() >= -30
    assert len(decoded.events) == (1 if in_range else 0)
