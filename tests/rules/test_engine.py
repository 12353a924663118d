"""The pure rule engine: live filters, price crossings with hysteresis, moves, cooldowns, state."""

from __future__ import annotations

import itertools
import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notifier.parti.models import CalendarEvent, ChannelLive, PriceUpdate
from notifier.rules.engine import AddResult, Engine, Reason, describe
from notifier.rules.schema import RulesFile
from notifier.rules.subscriptions import Subscription

CATEGORIES = {7: ["Gaming"], 10: ["Music"], 16: ["Valorant"]}


def engine(
    *rules: dict[str, Any], cooldown: str = "10m", state: Any = None, pending_limit: int = 100_000
) -> Engine:
    rules_file = RulesFile.model_validate(
        {
            "destinations": {"me": {"console": {}}, "room": {"console": {}}},
            "defaults": {"cooldown": cooldown},
            "rules": [{"notify": ["me"], **r} for r in rules],
        }
    )
    return Engine(rules_file, categories=CATEGORIES, state=state, pending_limit=pending_limit)


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
        "category composed in the rule, decomposed on the event",
        {"categories": ["Pok\u00e9mon"]},
        {"category_name": "Poke\u0301mon"},
        Reason.FIRED,
    ),
    (
        "category with doubled and odd spaces",
        {"categories": ["Just  Chatting"]},
        {"category_name": "just\u00a0chatting "},
        Reason.FIRED,
    ),
    (
        "user named in full-width letters",
        {"users": ["\uff33\uff2e\uff25\uff21\uff2b\uff2f"]},
        {},
        Reason.FIRED,
    ),
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
        "excluded by social username, as users matches it",
        {"categories": ["IRL"], "exclude_users": ["sneak"]},
        {"social_username": "Sneak"},
        Reason.EXCLUDED_USER,
    ),
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
    # Stamped with when the line was armed for it (microseconds; at the baseline, never
    # crossed yet: the crossing's own time).
    e = engine({"name": "p", "when": "price", "asset": "BTC", "above": 100}, cooldown="0s")
    identities = []
    for i, value in enumerate(["90", "101", "90", "101"]):
        identities += [m.identity for m in e.on_price(price(value), now=float(i)).matches]
    assert identities == ["price:BTC:above:100:1000000", "price:BTC:above:100:2000000"]


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
    path=st.lists(st.integers(min_value=1, max_value=200), min_size=1, max_size=60),
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
    assert again.identity == "price:BTC:above:100:700000000", "armed again at 700"


def keys_of(e: Engine, path: list[tuple[float, str]]) -> list[str]:
    return [m.key for at, value in path for m in e.on_price(price(value), now=at).matches]


BTC_100 = {"name": "btc", "when": "price", "asset": "BTC", "above": 100, "rearm": 1}


def test_a_later_crossing_never_takes_an_earlier_ones_key_whatever_state_went_back() -> None:
    # The outbox holds a key once (for days): a new crossing with a written key is lost.
    first = engine(BTC_100, cooldown="0s")
    written = keys_of(first, [(0, "97"), (1, "101"), (2, "98"), (3, "102")])
    assert len(set(written)) == 2
    # A reload without the rule, then with it again (its state was dropped meanwhile).
    gone = engine({"name": "other", "when": "live"}, cooldown="0s", state=first.export_state())
    back = engine(BTC_100, cooldown="0s", state=gone.export_state())
    written += keys_of(back, [(10, "97"), (11, "103")])
    # The line edited 100 -> 150 -> 100.
    edited = engine({**BTC_100, "above": 150}, cooldown="0s", state=first.export_state())
    again = engine(BTC_100, cooldown="0s", state=edited.export_state())
    written += keys_of(again, [(20, "97"), (21, "103")])
    # The state lost (unreadable, or never saved): a start from nothing.
    written += keys_of(engine(BTC_100, cooldown="0s"), [(30, "97"), (31, "103")])
    # A move edited 5% -> 6% keeps its window (the same state key): its next move is new.
    move_rule = {"name": "mv", "when": "price", "asset": "BTC", "move": "5%", "within": "1h"}
    moved = engine(move_rule, cooldown="0s")
    written += keys_of(moved, [(40, "100"), (41, "110")])
    wider = engine({**move_rule, "move": "6%"}, cooldown="0s", state=moved.export_state())
    written += keys_of(wider, [(42, "100"), (43, "120")])
    assert len(written) == 8
    assert len(set(written)) == 8, "a crossing reused a key already written"


def test_a_crossing_after_a_crash_has_its_own_key_or_the_one_already_written() -> None:
    """State saved, then a crossing alerted, then a crash before the next save: the
    successor restores the older state. The same crossing seen again gets the key already
    written (no second alert); a crossing after the price went back past the re-arm level
    (unseen by the successor) is a new one with a new key (not lost as a duplicate)."""
    old = engine(BTC_100, cooldown="0s")
    keys_of(old, [(0, "97"), (1, "101"), (2, "98")])  # crossed once, armed again at 2
    saved = old.export_state()
    (alerted,) = keys_of(old, [(3, "101")])  # then the crash, with `saved` the last save
    still_past = engine(BTC_100, cooldown="0s", state=saved)
    assert keys_of(still_past, [(10, "102")]) == [alerted], "the same crossing"
    wiggle = engine(BTC_100, cooldown="0s", state=saved)  # back inside the band: not armed
    assert keys_of(wiggle, [(10, "99.5"), (11, "100.5")]) == [alerted]
    fell = engine(BTC_100, cooldown="0s", state=saved)  # the price fell back meanwhile
    (new,) = keys_of(fell, [(10, "97"), (11, "101")])
    assert new != alerted


def test_a_lines_first_crossing_after_a_crash_has_the_key_already_written() -> None:
    """A line armed by the first price since a start has no saved stamp; its first
    crossing is alerted, then the crash comes before the next save: the successor restores
    that save and sees the crossing again. Both mark it with the save's epoch: one key."""
    old = engine(BTC_100, cooldown="0s")
    keys_of(old, [(0, "97")])
    saved = old.export_state(now=1.0, saving=True)  # the last save before the crash
    (alerted,) = keys_of(old, [(2, "101")])
    successor = engine(BTC_100, cooldown="0s", state=saved)
    assert keys_of(successor, [(10, "102")]) == [alerted], "the same crossing, deduped"
    later = engine(BTC_100, cooldown="0s", state=old.export_state(now=3.0, saving=True))
    (new,) = keys_of(later, [(4, "97"), (5, "101")])  # armed again, crossed again
    assert new != alerted


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
    e = engine({"name": "m", "when": "price", "asset": "ETH", "move": "5%", "within": "1h"})
    e.on_price(price("100", "ETH", "ethereum"), now=0.0)
    state = json.loads(json.dumps(e.export_state()))
    restored = engine(
        {"name": "m", "when": "price", "asset": "ETH", "move": "5%", "within": "1h"}, state=state
    )
    assert len(restored.on_price(price("106", "ETH", "ethereum"), now=10.0).matches) == 1


def test_prices_and_reminders_no_longer_needed_do_not_pile_up() -> None:
    """Every symbol a stream ever named kept its price (and went into every save, on the
    loop); every reminder stayed in memory for good (only the save left old ones out)."""
    e = engine(
        {"name": "b", "when": "price", "asset": "BTC", "above": 100},
        {"name": "s", "when": "scheduled", "before": "15m"},
    )
    e.on_price(price("90"), now=0.0)
    for n in range(20_000):
        e.on_price(price("1", symbol=f"S{n}", ticker=f"t{n}"), now=1.0)
        start = 10_000 + 100 * n  # one event every 100 s, each reminded 15 min before
        e.on_calendar([CalendarEvent(event_id=n, user_id=1, event_start_ts=start)], start - 900.0)
    sizes = e.index_sizes()
    assert sizes["prices"] < 10_000 and sizes["reminded"] < 10_000
    assert e.last_price("BTC") == Decimal(90), "a watched asset's price stays"
    assert e.last_price("S19999") == Decimal(1), "so does a recent one (for a new subscription)"
    assert len(e.export_state()["prices"]) == sizes["prices"]
    assert (
        e.on_calendar(
            [CalendarEvent(event_id=19_999, user_id=1, event_start_ts=10_000 + 1_999_900)],
            10_000 + 1_999_900 - 60.0,
        ).matches
        == []
    ), "a recent reminder is kept"


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


# ---- subscriptions ------------------------------------------------------------------------

CHAT = "@tg:-100123"


def follow(sub_id: int = 1, target: int = 463000, **params: Any) -> Subscription:
    return Subscription(
        id=sub_id,
        platform="telegram",
        chat_id="-100123",
        kind="live",
        target=str(target),
        destination=CHAT,
        params=params,
    )


def alert(
    sub_id: int, direction: str, line: str | int, asset: str = "BTC", **params: Any
) -> Subscription:
    return Subscription(
        id=sub_id,
        platform="telegram",
        chat_id="-100123",
        kind="price",
        target=asset,
        destination=CHAT,
        params={"direction": direction, "line": str(line), **params},
    )


def move(sub_id: int, percent: str, window: str, asset: str = "ETH") -> Subscription:
    return Subscription(
        id=sub_id,
        platform="telegram",
        chat_id="-100123",
        kind="move",
        target=asset,
        destination=CHAT,
        params={"percent": percent, "window": window},
    )


def test_a_subscription_added_at_run_time_fires_with_its_own_key() -> None:
    e = engine()
    assert e.on_live(live(), now=0.0).matches == []
    e.add_subscription(follow(7), now=1.0)
    (match,) = e.on_live(live(event_id=80695), now=2.0).matches
    assert match.key == '["sub:7", "@tg:-100123", "live:463000:event:80695"]'
    assert e.subscription_ids() == {7}


def test_a_removed_subscription_no_longer_fires() -> None:
    e = engine()
    e.add_subscription(follow(7), now=0.0)
    assert e.remove_subscription(7) is True
    assert e.on_live(live(), now=1.0).matches == []
    assert e.remove_subscription(7) is False
    assert e.subscription_ids() == frozenset()


def test_subscriptions_fire_after_the_file_rules_of_the_same_user() -> None:
    e = engine({"name": "r", "when": "live", "users": [463000]})
    e.add_subscription(follow(2), now=0.0)
    e.add_subscription(follow(1), now=0.0)
    matches = e.on_live(live(), now=1.0).matches
    assert [(m.rule, m.destination) for m in matches] == [
        ("r", "me"),
        ("sub:2", CHAT),
        ("sub:1", CHAT),
    ]


def test_adding_an_id_twice_is_refused_and_an_invalid_one_changes_nothing() -> None:
    e = engine()
    e.add_subscription(follow(1), now=0.0)
    with pytest.raises(ValueError, match="already in the engine"):
        e.add_subscription(follow(1), now=0.0)
    with pytest.raises(ValueError, match="subscription 1: title_matches"):
        e.replace_subscription(follow(1, title_matches="("), now=0.0)
    assert len(e.on_live(live(), now=1.0).matches) == 1, "the old subscription is still there"


def test_replace_changes_the_filters_at_once() -> None:
    e = engine(cooldown="0s")
    e.add_subscription(follow(1, min_viewers=100), now=0.0)
    assert e.on_live(live(event_id=1, viewers_count=5), now=1.0).matches == []
    e.replace_subscription(follow(1, min_viewers=1), now=2.0)
    assert len(e.on_live(live(event_id=2, viewers_count=5), now=3.0).matches) == 1


def test_replace_can_move_a_subscription_to_another_streamer() -> None:
    e = engine(cooldown="0s")
    e.add_subscription(follow(1, target=463000), now=0.0)
    e.replace_subscription(follow(1, target=5), now=0.0)
    assert e.on_live(live(), now=1.0).matches == []
    assert len(e.on_live(live(user_id=5, user_name="Jack"), now=2.0).matches) == 1
    assert e.index_sizes()["subscription_users"] == 1


def test_replace_of_an_absent_subscription_adds_it() -> None:
    e = engine()
    e.replace_subscription(follow(3), now=0.0)
    assert e.subscription_ids() == {3}


def test_the_cooldown_survives_a_replace() -> None:
    e = engine(cooldown="10m")
    e.add_subscription(follow(1), now=0.0)
    assert len(e.on_live(live(event_id=1), now=0.0).matches) == 1
    e.replace_subscription(follow(1, title_matches="h"), now=10.0)
    held = e.on_live(live(event_id=2), now=20.0)
    assert held.matches == []
    (decision,) = held.sub_decisions
    assert (decision.reason, decision.text) == (Reason.COOLING_DOWN, "cooling down (580s left)")


def test_subscriptions_share_cooldown_semantics_with_file_rules() -> None:
    e = engine(cooldown="10m")
    e.add_subscription(follow(1), now=0.0)
    assert len(e.on_live(live(event_id=1), now=1000.0).matches) == 1
    assert len(e.on_live(live(event_id=1), now=1500.0).matches) == 1, "same event again"
    assert e.on_live(live(event_id=2), now=2099.999).matches == []
    assert len(e.on_live(live(event_id=3), now=2100.0).matches) == 1


SUB_DECISIONS: list[tuple[str, dict[str, Any], dict[str, Any], Reason, str]] = [
    ("matched", {}, {}, Reason.FIRED, "fired"),
    (
        "category filtered",
        {"categories": ["Music"]},
        {"category_name": "Gaming"},
        Reason.CATEGORY_NOT_IN_RULE,
        "category not in the rule",
    ),
    (
        "category by id",
        {"categories": [10]},
        {"category_name": "Music"},
        Reason.FIRED,
        "fired",
    ),
    (
        "title filtered",
        {"title_matches": "ranked"},
        {"event_title": "chill"},
        Reason.TITLE_MISMATCH,
        "title does not match",
    ),
    (
        "too few viewers",
        {"min_viewers": 20},
        {"viewers_count": 5},
        Reason.TOO_FEW_VIEWERS,
        "fewer viewers than min_viewers (5 of 20)",
    ),
]


@pytest.mark.parametrize(
    ("case", "params", "event", "reason", "text"), SUB_DECISIONS, ids=[c[0] for c in SUB_DECISIONS]
)
def test_every_subscription_of_the_user_gets_a_decision_without_explain(
    case: str, params: dict[str, Any], event: dict[str, Any], reason: Reason, text: str
) -> None:
    e = engine({"name": "file", "when": "live", "users": [463000]})
    e.add_subscription(follow(4, **params), now=0.0)
    result = e.on_live(live(event_id=3, **event), now=1.0)
    (decision,) = result.sub_decisions  # the file rule is not among them
    assert (decision.rule, decision.destination, decision.reason) == ("sub:4", CHAT, reason)
    assert (decision.subscription_id, decision.identity) == (4, "live:463000:event:3")
    assert decision.text == text
    assert e.last_decision(4) == decision


def test_other_users_events_leave_no_subscription_decision() -> None:
    e = engine()
    e.add_subscription(follow(4), now=0.0)
    assert e.on_live(live(user_id=5, user_name="Jack"), now=1.0).sub_decisions == []
    assert e.last_decision(4) is None


def test_describe_uses_the_words_of_replay_explain() -> None:
    assert [describe(r) for r in Reason] == [r.value for r in Reason]
    assert describe(Reason.COOLING_DOWN, detail="9s left") == "cooling down (9s left)"


def test_explain_lists_subscription_decisions_like_file_rules() -> None:
    e = engine()
    e.add_subscription(follow(4, min_viewers=20), now=0.0)
    e.add_subscription(follow(5), now=0.0)
    decisions = e.on_live(live(viewers_count=1), now=1.0, explain=True).decisions
    assert [(d.rule, d.reason, d.destination) for d in decisions] == [
        ("sub:4", Reason.TOO_FEW_VIEWERS, None),
        ("sub:5", Reason.FIRED, CHAT),
    ]


def test_follows_includes_subscription_audiences() -> None:
    e = engine()
    assert not e.follows(live())
    e.add_subscription(follow(1, min_viewers=10), now=0.0)
    assert not e.follows(live(viewers_count=9))
    assert e.follows(live(viewers_count=10))
    e.remove_subscription(1)
    assert not e.follows(live(viewers_count=10))


def test_a_new_price_subscription_takes_the_latest_price_as_baseline() -> None:
    e = engine(cooldown="0s")
    e.on_price(price("150"), now=0.0)
    assert e.add_subscription(alert(1, "above", 100), now=1.0) == AddResult(
        already_past=True, last_price=Decimal(150)
    )
    assert e.add_subscription(alert(2, "above", 200), now=1.0) == AddResult(
        already_past=False, last_price=Decimal(150)
    )
    assert e.on_price(price("160"), now=2.0).matches == [], "already past: not this crossing"
    assert [m.rule for m in e.on_price(price("201"), now=3.0).matches] == ["sub:2"]
    e.on_price(price("90"), now=4.0)
    assert [m.rule for m in e.on_price(price("101"), now=5.0).matches] == ["sub:1"]


def test_the_baseline_comes_from_any_price_seen_even_without_rules_on_the_asset() -> None:
    e = engine(cooldown="0s")
    e.on_price(price("3000", "ETH", "ethereum"), now=0.0)
    assert e.last_price("eth") == e.last_price("Ethereum") == Decimal(3000)
    assert e.last_price("SOL") is None
    result = e.add_subscription(alert(1, "below", 2900, asset="ethereum"), now=1.0)
    assert result == AddResult(already_past=False, last_price=Decimal(3000))
    (match,) = e.on_price(price("2899", "ETH", "ethereum"), now=2.0).matches
    assert match.identity == "price:ETH:below:2900:2000000"


def test_a_price_subscription_before_any_price_waits_for_a_baseline() -> None:
    e = engine(cooldown="0s")
    assert e.add_subscription(alert(1, "above", 100), now=0.0) == AddResult()
    assert e.on_price(price("150"), now=1.0).matches == [], "the first price is the baseline"
    e.on_price(price("90"), now=2.0)
    assert len(e.on_price(price("100"), now=3.0).matches) == 1


def test_price_subscriptions_join_a_book_of_file_rules_after_seal() -> None:
    e = engine(
        {"name": "f1", "when": "price", "asset": "BTC", "above": 110},
        {"name": "f2", "when": "price", "asset": "BTC", "below": 90},
        cooldown="0s",
    )
    e.on_price(price("100"), now=0.0)
    e.add_subscription(alert(1, "above", 105), now=0.0)
    e.add_subscription(alert(2, "below", 95), now=0.0)
    e.add_subscription(alert(3, "above", 120, rearm="1%"), now=0.0)
    assert [m.rule for m in e.on_price(price("121"), now=1.0).matches] == ["sub:1", "f1", "sub:3"]
    assert [m.rule for m in e.on_price(price("89"), now=2.0).matches] == ["f2", "sub:2"]
    e.remove_subscription(1)
    e.remove_subscription(2)
    assert [m.rule for m in e.on_price(price("130"), now=3.0).matches] == ["f1", "sub:3"]
    assert [m.rule for m in e.on_price(price("80"), now=4.0).matches] == ["f2"]


def test_a_move_subscription_starts_its_window_at_the_known_price() -> None:
    e = engine(cooldown="0s")
    eth = lambda v: price(v, "ETH", "ethereum")  # noqa: E731
    e.on_price(eth("100"), now=0.0)
    assert e.add_subscription(move(1, "5%", "1h"), now=10.0).last_price == Decimal(100)
    (up,) = e.on_price(eth("105"), now=20.0).matches
    assert (up.rule, up.details["direction"], up.identity) == (
        "sub:1",
        "up",
        "price:ETH:move:up:10000000",  # the window started when the subscription came
    )


def test_replace_keeps_the_state_of_an_unchanged_line() -> None:
    e = engine(cooldown="0s")
    e.on_price(price("90"), now=0.0)
    e.add_subscription(alert(1, "above", 100), now=0.0)
    assert len(e.on_price(price("101"), now=1.0).matches) == 1
    e.replace_subscription(alert(1, "above", 100, rearm="5%"), now=2.0)
    e.on_price(price("99"), now=3.0)
    assert e.on_price(price("101"), now=4.0).matches == [], "not re-armed below 95"
    e.on_price(price("94"), now=5.0)
    (again,) = e.on_price(price("100"), now=6.0).matches
    assert again.identity == "price:BTC:above:100:5000000", "re-armed at 5, carried over"


def test_a_subscription_that_comes_back_gets_new_identities() -> None:
    # A paused chat resumed: the same rule name must not reuse an old outbox key.
    e = engine(cooldown="0s")
    e.on_price(price("90"), now=0.0)
    e.add_subscription(alert(1, "above", 100), now=0.0)
    (first,) = e.on_price(price("101"), now=1.0).matches
    e.remove_subscription(1)
    e.on_price(price("90"), now=2.0)
    e.add_subscription(alert(1, "above", 100), now=3.0)
    (second,) = e.on_price(price("101"), now=4.0).matches
    assert (first.identity, second.identity) == (
        "price:BTC:above:100:1000000",
        "price:BTC:above:100:4000000",
    )


def test_subscription_state_is_exported_and_restored_before_the_subscription_returns() -> None:
    first = engine(cooldown="10m")
    first.on_price(price("90"), now=0.0)
    first.add_subscription(alert(1, "above", 100, rearm=5), now=0.0)
    first.add_subscription(follow(2), now=0.0)
    first.add_subscription(move(3, "50%", "1h", asset="BTC"), now=0.0)
    assert len(first.on_price(price("101"), now=1.0).matches) == 1
    assert len(first.on_live(live(event_id=1), now=2.0).matches) == 1
    state = json.loads(json.dumps(first.export_state(now=3.0)))

    restarted = engine(cooldown="10m", state=state)  # the store's subscriptions come later
    # Exported again before they come back, the pending state is not lost.
    restarted = engine(cooldown="10m", state=json.loads(json.dumps(restarted.export_state())))
    assert restarted.add_subscription(alert(1, "above", 100, rearm=5), now=4.0).already_past
    restarted.add_subscription(follow(2), now=4.0)
    restarted.add_subscription(move(3, "50%", "1h", asset="BTC"), now=4.0)
    assert restarted.index_sizes()["pending"] == 0
    assert restarted.on_price(price("102"), now=5.0).matches == [], "crossed before the restart"
    assert restarted.on_live(live(event_id=2), now=6.0).matches == [], "cooldown survives"
    restarted.on_price(price("94"), now=700.0)
    (again,) = restarted.on_price(price("100"), now=701.0).matches
    assert again.identity == "price:BTC:above:100:700000000"


def test_state_restored_after_the_subscriptions_were_added_applies_to_them() -> None:
    first = engine(cooldown="0s")
    first.on_price(price("90"), now=0.0)
    first.add_subscription(alert(1, "above", 100), now=0.0)
    first.on_price(price("101"), now=1.0)
    restarted = engine(cooldown="0s")
    restarted.add_subscription(alert(1, "above", 100), now=2.0)
    restarted.add_subscription(follow(2), now=2.0)
    restarted.restore_state(first.export_state())
    assert restarted.subscription_counts() == {"live": 1, "price": 1, "move": 0}
    assert restarted.on_price(price("102"), now=3.0).matches == []
    restarted.on_price(price("90"), now=4.0)
    (again,) = restarted.on_price(price("101"), now=5.0).matches
    assert again.identity == "price:BTC:above:100:4000000"


def test_a_reload_takes_over_what_the_live_engine_did_while_it_compiled() -> None:
    rule = {"name": "f", "when": "price", "asset": "BTC", "above": 100, "rearm": 5}
    old = engine(rule, {"name": "l", "when": "live", "users": ["SNEAKO"]})
    old.on_price(price("90"), now=0.0)
    old.add_subscription(alert(1, "above", 100, rearm=5), now=0.0)
    old.add_subscription(move(2, "50%", "1h", asset="BTC"), now=0.0)
    new = engine(rule, {"name": "l", "when": "live", "users": ["SNEAKO"]}, state=old.export_state())
    # While the new rules compile: both lines cross, a go-live alerts, the window moves.
    assert len(old.on_price(price("101"), now=1.0).matches) == 2
    assert len(old.on_live(live(), now=2.0).matches) == 1
    new.take_over(old)
    new.add_subscription(alert(1, "above", 100, rearm=5), now=3.0)
    new.add_subscription(move(2, "50%", "1h", asset="BTC"), now=3.0)
    assert new.export_state(now=3.0) == old.export_state(now=3.0)
    assert new.on_price(price("102"), now=4.0).matches == [], "crossed before the swap"
    assert new.on_live(live(event_id=2), now=5.0).matches == [], "cooling down"


def test_pending_restored_state_is_bounded() -> None:
    first = engine(cooldown="0s")
    first.on_price(price("90"), now=0.0)
    for n in range(50):
        first.add_subscription(alert(n, "above", 100 + n), now=0.0)
    first.on_price(price("200"), now=1.0)
    restarted = engine(cooldown="0s", state=first.export_state(), pending_limit=10)
    assert restarted.index_sizes()["pending"] == 10


def test_churn_leaves_no_trace_in_the_indexes() -> None:
    e = engine(
        {"name": "f", "when": "price", "asset": "BTC", "above": 100, "cooldown": "0s"},
        cooldown="10m",
        pending_limit=20,
    )
    e.on_price(price("90"), now=0.0)
    before = e.index_sizes()
    for n in range(10_000):
        if n % 3 == 0:
            e.add_subscription(follow(n, target=1 + n % 50), now=float(n))
        elif n % 3 == 1:
            e.add_subscription(alert(n, "above" if n % 2 else "below", 50 + n % 100), now=0.0)
        else:
            e.add_subscription(move(n, "5%", "1h", asset=f"A{n % 7}"), now=float(n))
        e.on_live(live(user_id=1 + n % 50, event_id=n + 1), now=float(n))
        e.on_price(price(str(80 + n % 40)), now=float(n))
        e.remove_subscription(n)
    after = e.index_sizes()
    assert after == before, "nothing waits aside: a comeback's crossings are stamped anew"
    assert e.subscription_ids() == frozenset()


def subscription_strategy() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "categories": st.lists(
                st.sampled_from(["Gaming", "music", 10, 16, "IRL"]), min_size=1, max_size=3
            ),
            "title_matches": st.sampled_from(["ranked", "(?i)RANKED", "^h", "x|y"]),
            "min_viewers": st.integers(min_value=0, max_value=30),
        },
    )


LIVE_EVENTS = st.lists(
    st.fixed_dictionaries(
        {
            "user_id": st.sampled_from([463000, 5]),
            "event_id": st.integers(min_value=1, max_value=6),
            "event_title": st.sampled_from(["hello", "ranked grind", "RANKED", "chill", None]),
            "category_name": st.sampled_from(["Gaming", "Music", "Valorant", "IRL", None]),
            "viewers_count": st.none() | st.integers(min_value=0, max_value=40),
            "gap": st.sampled_from([0.0, 1.0, 300.0, 700.0]),
        }
    ),
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(params=subscription_strategy(), events=LIVE_EVENTS)
def test_a_subscription_matches_exactly_like_the_equivalent_file_rule(
    params: dict[str, Any], events: list[dict[str, Any]]
) -> None:
    file_engine = engine({"name": "r", "when": "live", "users": [463000], **params})
    sub_engine = engine()
    sub_engine.add_subscription(follow(9, **params), now=0.0)
    now = 0.0
    for fields in events:
        now += fields["gap"]
        name = "SNEAKO" if fields["user_id"] == 463000 else "Jack"
        event = live(user_name=name, **{k: v for k, v in fields.items() if k != "gap"})
        want = file_engine.on_live(event, now, explain=True)
        got = sub_engine.on_live(event, now, explain=True)
        assert [(m.identity, m.kind, m.subject, m.details) for m in got.matches] == [
            (m.identity, m.kind, m.subject, m.details) for m in want.matches
        ]
        assert {m.destination for m in got.matches} <= {CHAT}
        assert [(d.reason, d.subject) for d in got.decisions] == [
            (d.reason, d.subject) for d in want.decisions
        ]
        if fields["user_id"] == 463000:
            (decision,) = got.sub_decisions
            assert decision.reason == want.decisions[0].reason
        assert sub_engine.follows(event) == file_engine.follows(event)


@settings(max_examples=150, deadline=None)
@given(
    direction=st.sampled_from(["above", "below"]),
    line=st.integers(min_value=50, max_value=150),
    rearm=st.none() | st.integers(min_value=0, max_value=20) | st.sampled_from(["1%", "10%"]),
    path=st.lists(st.integers(min_value=1, max_value=200), min_size=1, max_size=40),
)
def test_a_price_subscription_crosses_exactly_like_the_equivalent_file_rule(
    direction: str, line: int, rearm: int | str | None, path: list[int]
) -> None:
    extra = {} if rearm is None else {"rearm": rearm}
    file_engine = engine(
        {"name": "p", "when": "price", "asset": "BTC", direction: line, **extra}, cooldown="1m"
    )
    sub_engine = engine(cooldown="1m")
    sub_engine.add_subscription(alert(1, direction, line, **extra), now=0.0)
    for i, value in enumerate(path):
        want = file_engine.on_price(price(str(value)), now=i * 30.0, explain=True)
        got = sub_engine.on_price(price(str(value)), now=i * 30.0, explain=True)
        assert [(m.identity, m.details) for m in got.matches] == [
            (m.identity, m.details) for m in want.matches
        ]
        assert [d.reason for d in got.decisions] == [d.reason for d in want.decisions]


def band(n: int, level: int) -> int:
    """A rearm band of 0 to 2, below the line (a band reaching 0 is refused)."""
    return min(n % 3, level - 1)


@settings(max_examples=100, deadline=None)
@given(
    lines=st.lists(
        st.tuples(st.sampled_from(["above", "below"]), st.integers(min_value=1, max_value=30)),
        min_size=1,
        max_size=25,
    ),
    removed=st.sets(st.integers(min_value=0, max_value=24)),
    path=st.lists(st.integers(min_value=1, max_value=31), min_size=2, max_size=30),
)
def test_a_book_changed_line_by_line_behaves_like_one_built_at_once(
    lines: list[tuple[str, int]], removed: set[int], path: list[int]
) -> None:
    incremental = engine(
        {"name": "f", "when": "price", "asset": "BTC", "above": 15, "rearm": 2}, cooldown="0s"
    )
    for n, (direction, level) in enumerate(lines):
        incremental.add_subscription(alert(n, direction, level, rearm=band(n, level)), now=0.0)
    for n in removed:
        incremental.remove_subscription(n)
    at_once = engine(
        {"name": "f", "when": "price", "asset": "BTC", "above": 15, "rearm": 2}, cooldown="0s"
    )
    for n, (direction, level) in enumerate(lines):
        if n not in removed:
            at_once.add_subscription(alert(n, direction, level, rearm=band(n, level)), now=0.0)
    for i, value in enumerate(path):
        got = incremental.on_price(price(str(value)), now=float(i)).matches
        want = at_once.on_price(price(str(value)), now=float(i)).matches
        assert sorted(m.key for m in got) == sorted(m.key for m in want)


def test_cooldowns_long_over_are_forgotten() -> None:
    e = engine({"name": "all", "when": "live"}, cooldown="1s")
    for n in range(20_000):  # every event a new streamer, one second apart
        e.on_live(live(user_id=n + 1, event_id=n + 1), now=float(n))
    assert e.index_sizes()["cooldowns"] <= 2 * 4096


def test_a_cooldown_holds_an_event_with_an_older_clock() -> None:
    e = engine({"name": "all", "when": "live"}, cooldown="10m")
    assert e.on_live(live(event_id=1), now=10_000.0).matches
    for n in range(10_000):  # many others fire within the next 1,000 s: the table is swept
        e.on_live(live(user_id=n + 1, event_id=n + 2), now=10_000.0 + n / 10)
    assert e.on_live(live(event_id=99_999), now=10_100.0).matches == [], "still cooling"
