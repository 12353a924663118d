"""Pure parsing of command arguments and button data, and the per-user flood limit."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifier.bots.commands import (
    AlertsPage,
    Callback,
    Cancel,
    CommandError,
    Direction,
    Flood,
    FloodGate,
    ListPage,
    MoveRequest,
    Mute,
    PriceRequest,
    Unfollow,
    check_argument,
    echo,
    encode_callback,
    format_duration,
    format_price,
    parse_callback,
    parse_follow_payload,
    parse_line,
    parse_move,
    parse_mute,
    parse_price,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100000", Decimal(100000)),
        ("100,000", Decimal(100000)),
        ("1,234,567.5", Decimal("1234567.5")),
        ("100_000", Decimal(100000)),
        ("0.25", Decimal("0.25")),
        (".5", Decimal("0.5")),
        ("$5", Decimal(5)),
    ],
)
def test_parse_line_reads_plain_prices(text: str, expected: Decimal) -> None:
    assert parse_line(text) == expected


@pytest.mark.parametrize(
    "text", ["", "abc", "-5", "0", "0.0", "1e5", "nan", "inf", "1,00", "1.2.3", "1" * 17, "5%"]
)
def test_parse_line_refuses_what_is_not_a_positive_price(text: str) -> None:
    with pytest.raises(CommandError):
        parse_line(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("BTC above 100000", PriceRequest("BTC", Direction.ABOVE, Decimal(100000), None)),
        ("eth < 3000 rearm 1%", PriceRequest("eth", Direction.BELOW, Decimal(3000), "1%")),
        ("BTC over 5 REARM 0.50", PriceRequest("BTC", Direction.ABOVE, Decimal(5), "0.5")),
    ],
)
def test_parse_price(text: str, expected: PriceRequest) -> None:
    assert parse_price(text) == expected


def test_parse_move() -> None:
    assert parse_move("ETH 5 90m") == MoveRequest("ETH", Decimal(5), 5400.0)


@pytest.mark.parametrize(
    ("text", "seconds"), [("30m", 1800.0), ("2h", 7200.0), ("1d", 86400.0), ("7d", 604800.0)]
)
def test_parse_mute(text: str, seconds: float) -> None:
    assert parse_mute(text) == seconds


@pytest.mark.parametrize("text", ["0s", "8d", "30", "forever", "-1h"])
def test_parse_mute_refuses(text: str) -> None:
    with pytest.raises(CommandError):
        parse_mute(text)


@pytest.mark.parametrize(
    ("seconds", "text"), [(3600, "1h"), (5400, "1h 30m"), (90061, "1d 1h"), (20, "20s"), (0, "0s")]
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("price", "text"),
    [(Decimal("103510"), "103,510"), (Decimal("0.2500"), "0.25"), (Decimal("1E+5"), "100,000")],
)
def test_format_price(price: Decimal, text: str) -> None:
    assert format_price(price) == text


def test_check_argument_folds_spaces_and_newlines() -> None:
    assert check_argument("  BTC\nabove\t 5 ") == "BTC above 5"


@pytest.mark.parametrize("text", ["a" * 201, "x\x00y", "x\x1by", "\u202eevil"])
def test_check_argument_refuses_long_or_control_text(text: str) -> None:
    with pytest.raises(CommandError):
        check_argument(text)


def test_echo_cuts_then_escapes() -> None:
    assert echo("<b>" * 20, limit=7) == "&lt;b&gt;&lt;b&gt;…"


@pytest.mark.parametrize(
    ("payload", "user_id"),
    [("f_463000", 463000), ("f_", None), ("f_-1", None), ("f_1x", None), ("hello", None)],
)
def test_parse_follow_payload(payload: str, user_id: int | None) -> None:
    assert parse_follow_payload(payload) == user_id


ids = st.integers(min_value=1, max_value=2**63 - 1)
pages = st.integers(min_value=0, max_value=10_000)
callbacks = st.one_of(
    st.builds(Unfollow, ids, st.none() | pages),
    st.builds(Mute, st.integers(min_value=1, max_value=7 * 86400)),
    st.builds(ListPage, pages),
    st.builds(AlertsPage, pages),
    st.builds(Cancel, ids, pages),
)


@given(callbacks)
def test_button_data_reads_back_as_it_was_written_within_64_bytes(action: Callback) -> None:
    data = encode_callback(action)
    assert len(data.encode()) <= 64
    assert parse_callback(data) == action


@given(st.text(max_size=80))
def test_any_button_data_parses_to_an_action_or_none(data: str) -> None:
    action = parse_callback(data)
    assert action is None or encode_callback(action) == data


@pytest.mark.parametrize(
    "data",
    ["", "uf:", "uf:0", "uf:-1", "uf:01", "uf:1:2:3", "mu:0", "mu:999999999", "zz:1", "cx:5"],
)
def test_button_data_this_bot_never_made_is_none(data: str) -> None:
    assert parse_callback(data) is None


def test_the_flood_gate_warns_once_then_drops_until_the_window_frees() -> None:
    gate = FloodGate(limit=2, window=60.0)
    verdicts = [gate.check(1, now) for now in (0.0, 1.0, 2.0, 3.0, 4.0)]
    assert verdicts == [Flood.ALLOW, Flood.ALLOW, Flood.WARN, Flood.DROP, Flood.DROP]
    assert gate.check(2, 5.0) is Flood.ALLOW  # another user is not held up
    assert gate.check(1, 60.5) is Flood.ALLOW  # the first command left the window
    assert gate.check(1, 60.6) is Flood.WARN  # warned again after a new burst
