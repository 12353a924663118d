"""The pure rule engine: live filters, price crossings with hysteresis, moves, cooldowns, state."""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notifier.parti.models import CalendarEvent, ChannelLive, PriceUpdate
from notifier.rules.engine import Engine, Reason
from notifier.rules.schema import RulesFile

CATEGORIES = {7: ["Gaming"], 10: ["Music"], 16: ["Valorant"]}


def engine(*rules: dict[str, Any], cooldown: str = "10m", state: Any = None) -> Engine:
    rules_file = RulesFile.model_validate(
        {
            "destinations": {"me": {"console": {}}, "room": {"console": {}}},
            "defaults": {"cooldown": cooldown},
            "rules": [{"notify": ["me"], **r} for r in rules],
        }
    )
    return Engine(rules_file, categories=CATEGORIES, state=state)


def live(**fields: Any) -> ChannelLive:
    base: dict[str, Any] = {
        "user_id": 463000,
        "user_name": "SNEAKO",
        "event_id": 1,
        "livestream_id": 9,
        "event_title": "hello",
        "category_name": "IRL",
        "viewers_count": 0,
    }
    return ChannelLive.model_validate(base | fields)


def price(value: str | Decimal, symbol: str = "BTC", ticker: str = "bitcoin") -> PriceUpdate:
    return PriceUpdate(display_symbol=symbol, ticker=ticker, price=Decimal(value))


LIVE_CASES: list[tuple[str, dict[str, Any], dict[str, Any], Reason | None]] = [
    ("user by name, any case", {"users": ["sneako"]}, {}, Reason.FIRED),
    ("user by id", {"users": [463000]}, {}, Reason.FIRED),
    ("user by id given as text", {"users": ["463000"]}, {}, Reason.FIRED),
    ("user by social username", {"users": ["sneak"]}, {"social_username": "Sneak"}, Reason.FIRED),
    ("other user", {"users": ["Jack Doherty"]}, {}, None),
    ("category by name", {"categories": ["gaming"]}, {"category_name": "Gaming"}, Reason.FIRED),
    ("category by id", {"categories": [10]}, {"category_name": "Music"}, Reason.FIRED),
    (
        "category with only a display name",
        {"categories": [16]},
        {"category_name": "Valorant"},
        Reason.FIRED,
    ),
    (
        "category id on the event",
        {"categories": ["Gaming"]},
        {"category_id": 7, "category_name": None},
        Reason.FIRED,
    ),
    ("other category", {"categories": ["Music"]}, {"category_name": "Gaming"}, None),
    (
        "users and categories must both match",
        {"users": ["SNEAKO"], "categories": ["Music"]},
        {"category_name": "IRL"},
        Reason.CATEGORY_NOT_IN_RULE,
    ),
    ("catch-all", {}, {}, Reason.FIRED),
    (
        "title matches",
        {"title_matches": "(?i)RANKED"},
        {"event_title": "ranked grind"},
        Reason.FIRED,
    ),
    (
        "title does not match",
        {"title_matches": "ranked"},
        {"event_title": "chill"},
        Reason.TITLE_MISMATCH,
    ),
    (
        "no title is an empty title",
        {"title_matches": "x"},
        {"event_title": None},
        Reason.TITLE_MISMATCH,
    ),
    ("enough viewers", {"min_viewers": 20}, {"viewers_count": 20}, Reason.FIRED),
    ("too few viewers", {"min_viewers": 20}, {"viewers_count": 19}, Reason.TOO_FEW_VIEWERS),
    (
        "unknown viewers count as zero",
        {"min_viewers": 1},
        {"viewers_count": None},
        Reason.TOO_FEW_VIEWERS,
    ),
    ("excluded by name", {"exclude_users": ["sneako"]}, {}, Reason.EXCLUDED_USER),
    (
        "excluded by id",
        {"categories": ["IRL"], "exclude_users": [463000]},
        {},
        Reason.EXCLUDED_USER,
    ),
]


@pytest.mark.parametrize(
    ("case", "rule", "event", "expected"), LIVE_CASES, ids=[c[0] for c in LIVE_CASES]
)
def test_live_rule_keys(
    case: str, rule: dict[str, Any], event: dict[str, Any], expected: Reason | None
) -> None:
    e = engine({"name": "r", "when": "live", **rule})
    result = e.on_live(live(**event), now=0.0, explain=True)
    fired = [m.rule for m in result.matches]
    if expected is Reason.FIRED:
        assert fired == ["r"]
    else:
        assert fired == []
        reasons = [d.reason for d in result.decisions]
        assert reasons == ([expected] if expected else [Reason.NO_RULE])


def test_live_match_carries_the_event_identity_and_outbox_key() -> None:
    e = engine({"name": "r", "when": "live", "users": ["SNEAKO"], "notify": ["me", "room"]})
    matches = e.on_live(live(event_id=80695), now=5.0).matches
    assert [(m.destination, m.identity) for m in matches] == [
        ("me", "live:463000:event:80695"),
        ("room", "live:463000:event:80695"),
    ]
    assert matches[0].key == '["r", "me", "live:463000:event:80695"]'
    no_event = e.on_live(
        live(event_id=None, livestream_id=77, user_id=1, user_name="SNEAKO"), now=10_000.0
    ).matches
    assert no_event[0].identity == "live:1:livestream:77"


def test_cooldown_boundaries_with_an_injected_clock() -> None:
    e = engine({"name": "r", "when": "live", "users": ["SNEAKO"]}, cooldown="10m")
    assert len(e.on_live(live(event_id=1), now=1000.0).matches) == 1
    cooling = e.on_live(live(event_id=2), now=1000.0 + 599.999, explain=True)
    assert cooling.matches == []
    assert [d.reason for d in cooling.decisions] == [Reason.COOLING_DOWN]
    assert len(e.on_live(live(event_id=3), now=1000.0 + 600.0).matches) == 1


def test_cooldown_is_per_rule_subject_and_destination() -> None:
    e = engine(
        {"name": "a", "when": "live", "users": ["SNEAKO", "Jack"], "notify": ["me"]},
        {
            "name": "b",
            "when": "live",
            "users": ["SNEAKO"],
            "notify": ["me", "room"],
            "cooldown": "0s",
        },
    )
    first = e.on_live(live(), now=0.0).matches
    again = e.on_live(live(event_id=2), now=1.0).matches
    other = e.on_live(live(user_id=5, user_name="Jack"), now=1.0).matches
    assert [(m.rule, m.destination) for m in first] == [("a", "me"), ("b", "me"), ("b", "room")]
    assert [(m.rule, m.destination) for m in again] == [("b", "me"), ("b", "room")]
    assert [(m.rule, m.destination) for m in other] == [("a", "me")]


PRICE_PATHS: list[tuple[str, dict[str, Any], list[str], list[int]]] = [
    ("above fires when crossing up", {"above": 100}, ["90", "99", "100", "101"], [2]),
    ("first price past the line sets the baseline", {"above": 100}, ["105", "110"], []),
    (
        "fire_on_start fires on a first price past the line",
        {"above": 100, "fire_on_start": True},
        ["105", "110"],
        [0],
    ),
    (
        "without rearm it re-arms below the line",
        {"above": 100},
        ["90", "101", "99.99", "100"],
        [1, 3],
    ),
    (
        "rearm band blocks re-firing inside it",
        {"above": 100, "rearm": 5},
        ["90", "101", "96", "101", "94.99", "100"],
        [1, 5],
    ),
    (
        "percent rearm",
        {"above": 100, "rearm": "10%"},
        ["80", "120", "91", "130", "89", "100"],
        [1, 5],
    ),
    (
        "below mirrors above",
        {"below": 300, "rearm": "1%"},
        ["310", "300", "302", "299", "303.01", "250"],
        [1, 5],
    ),
    (
        "above and below on one rule",
        {"above": 110, "below": 90},
        ["100", "111", "89", "100", "111"],
        [1, 2, 4],
    ),
    ("a jump over the line fires once", {"above": 100}, ["50", "1000"], [1]),
]


@pytest.mark.parametrize(
    ("case", "rule", "path", "fires_at"), PRICE_PATHS, ids=[c[0] for c in PRICE_PATHS]
)
def test_price_lines(case: str, rule: dict[str, Any], path: list[str], fires_at: list[int]) -> None:
    e = engine({"name": "p", "when": "price", "asset": "btc", **rule}, cooldown="0s")
    fired = [i for i, p in enumerate(path) if e.on_price(price(p), now=float(i)).matches]
    assert fired == fires_at


def test_price_rule_matches_ticker_or_symbol() -> None:
    e = engine({"name": "p", "when": "price", "asset": "Bitcoin", "above": 10}, cooldown="0s")
    e.on_price(price("5"), now=0.0)
    assert len(e.on_price(price("11"), now=1.0).matches) == 1
    assert e.on_price(price("11", symbol="ETH", ticker="ethereum"), now=2.0).matches == []


def test_each_crossing_has_its_own_identity() -> None:
    e = engine({"name": "p", "when": "price", "asset": "BTC", "above": 100}, cooldown="0s")
    identities = []
    for i, value in enumerate(["90", "101", "90", "101"]):
        identities += [m.identity for m in e.on_price(price(value), now=float(i)).matches]
    assert identities == ["price:BTC:above:100:1", "price:BTC:above:100:2"]


def test_price_match_details() -> None:
    e = engine({"name": "p", "when": "price", "asset": "BTC", "above": 100000})
    e.on_price(price("99000"), now=0.0)
    (match,) = e.on_price(price("101000"), now=1.0).matches
    assert match.details["line"] == Decimal(100000)
    assert match.details["direction"] == "up"
    assert match.details["change"] == Decimal(1)


def test_move_fires_on_the_percentage_within_the_window_then_restarts() -> None:
    e = engine(
        {"name": "m", "when": "price", "asset": "ETH", "move": "5%", "within": "1h"}, cooldown="0s"
    )
    eth = lambda v: price(v, "ETH", "ethereum")  # noqa: E731
    assert e.on_price(eth("100"), now=0.0).matches == []
    assert e.on_price(eth("104.99"), now=60.0).matches == []
    (up,) = e.on_price(eth("105"), now=120.0).matches
    assert up.details["direction"] == "up"
    assert e.on_price(eth("100.1"), now=180.0).matches == [], "the window restarted at 105"
    (down,) = e.on_price(eth("99.75"), now=240.0).matches
    assert down.details["direction"] == "down"


def test_move_forgets_prices_older_than_the_window() -> None:
    e = engine(
        {"name": "m", "when": "price", "asset": "ETH", "move": "5%", "within": "1h"}, cooldown="0s"
    )
    eth = lambda v: price(v, "ETH", "ethereum")  # noqa: E731
    e.on_price(eth("100"), now=0.0)
    e.on_price(eth("102"), now=3000.0)
    assert e.on_price(eth("105"), now=3601.0).matches == [], "100 is out of the window"
    assert len(e.on_price(eth("107.2"), now=3700.0).matches) == 1


@settings(max_examples=300, deadline=None)
@given(
    line=st.integers(min_value=50, max_value=150),
    band=st.integers(min_value=0, max_value=20),
    path=st.lists(st.integers(min_value=0, max_value=200), min_size=1, max_size=60),
)
def test_above_fires_exactly_once_per_crossing_given_hysteresis(
    line: int, band: int, path: list[int]
) -> None:
    e = engine(
        {"name": "p", "when": "price", "asset": "BTC", "above": line, "rearm": band}, cooldown="0s"
    )
    # The model: armed below line - band; fires on reaching the line while armed.
    armed = path[0] < line
    expected = []
    for i, p in enumerate(path):
        if i > 0 and armed and p >= line:
            expected.append(i)
            armed = False
        elif not armed and p < line - band:
            armed = True
    fired = [i for i, p in enumerate(path) if e.on_price(price(str(p)), now=float(i)).matches]
    assert fired == expected
    # Never fires twice without leaving the band in between.
    for a, b in itertools.pairwise(fired):
        assert min(path[a : b + 1]) < line - band


@settings(max_examples=200, deadline=None)
@given(st.lists(st.decimals(min_value=95, max_value=105, places=2), min_size=2, max_size=40))
def test_move_never_fires_for_changes_under_the_percentage(path: list[Decimal]) -> None:
    # Every price within [95, 105]: the largest possible change is 10.53%.
    e = engine(
        {"name": "m", "when": "price", "asset": "BTC", "move": "11%", "within": "1d"}, cooldown="0s"
    )
    assert not any(e.on_price(price(p), now=float(i)).matches for i, p in enumerate(path))


def test_state_export_and_restore_prevents_firing_a_crossing_again() -> None:
    rule = {"name": "p", "when": "price", "asset": "BTC", "above": 100, "rearm": 5}
    first = engine(rule, {"name": "r", "when": "live", "users": ["SNEAKO"]})
    first.on_price(price("90"), now=0.0)
    assert first.on_price(price("101"), now=1.0).matches
    first.on_live(live(), now=2.0)
    state = first.export_state(now=3.0)

    restarted = engine(rule, {"name": "r", "when": "live", "users": ["SNEAKO"]}, state=state)
    assert restarted.on_price(price("102"), now=4.0).matches == [], "already crossed"
    assert restarted.on_live(live(event_id=2), now=5.0).matches == [], "cooldown survives"
    restarted.on_price(price("94"), now=700.0)
    (again,) = restarted.on_price(price("100"), now=701.0).matches
    assert again.identity == "price:BTC:above:100:2", "the crossing counter survives"


def test_a_new_rule_takes_its_baseline_from_the_restored_price() -> None:
    old = engine({"name": "a", "when": "price", "asset": "BTC", "above": 100})
    old.on_price(price("150"), now=0.0)
    new = engine(
        {"name": "a", "when": "price", "asset": "BTC", "above": 100},
        {"name": "b", "when": "price", "asset": "BTC", "above": 120},
        state=old.export_state(),
    )
    assert new.on_price(price("160"), now=1.0).matches == []
    e = new.on_price(price("119"), now=2.0)
    assert e.matches == []


def test_state_is_json_serialisable() -> None:
    import json

    e = engine({"name": "m", "when": "price", "asset": "ETH", "move": "5%", "within": "1h"})
    e.on_price(price("100", "ETH", "ethereum"), now=0.0)
    state = json.loads(json.dumps(e.export_state()))
    restored = engine(
        {"name": "m", "when": "price", "asset": "ETH", "move": "5%", "within": "1h"}, state=state
    )
    assert len(restored.on_price(price("106", "ETH", "ethereum"), now=10.0).matches) == 1


def test_scheduled_reminds_once_before_the_start() -> None:
    e = engine({"name": "s", "when": "scheduled", "users": [398350], "before": "15m"})
    event = CalendarEvent(
        event_id=15207, user_id=398350, event_title="PANELS", event_start_ts=10_000, category_id=22
    )
    other = CalendarEvent(event_id=1, user_id=5, event_start_ts=10_000)
    assert e.on_calendar([event, other], now=10_000 - 901.0).matches == []
    (match,) = e.on_calendar([event, other], now=10_000 - 900.0).matches
    assert match.identity == "scheduled:15207"
    later = e.on_calendar([event], now=10_000 - 60.0, explain=True)
    assert later.matches == []
    assert [d.reason for d in later.decisions] == [Reason.ALREADY_REMINDED]
    assert [d.reason for d in e.on_calendar([event], now=10_001.0, explain=True).decisions] == [
        Reason.ALREADY_STARTED
    ]


def test_the_same_event_again_is_not_held_back_by_its_own_cooldown() -> None:
    # A catch-up after a crash re-evaluates an event whose alert may not have been written;
    # it must fire again (the outbox key dedups it), while a new event still cools down.
    e = engine({"name": "r", "when": "live", "users": ["SNEAKO"]}, cooldown="10m")
    (first,) = e.on_live(live(event_id=7), now=0.0).matches
    (again,) = e.on_live(live(event_id=7), now=5.0).matches
    assert again.key == first.key
    assert e.on_live(live(event_id=8), now=6.0).matches == []
