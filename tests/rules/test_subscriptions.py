"""Subscriptions as rules: the mapping to LiveRule / PriceRule and the chat destination names."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifier.rules.schema import Defaults, LiveRule, PriceRule
from notifier.rules.subscriptions import (
    ChatDestination,
    Subscription,
    discord_channel_destination,
    discord_dm_destination,
    discord_id,
    parse_destination,
    role_id,
    rule_name,
    subscription_id,
    telegram_destination,
    to_rule,
)


def sub(kind: str = "live", target: str = "463000", **fields: Any) -> Subscription:
    base: dict[str, Any] = {
        "id": 7,
        "platform": "telegram",
        "chat_id": "-100123",
        "kind": kind,
        "target": target,
        "destination": "@tg:-100123",
        "params": {},
    }
    return Subscription(**(base | fields))


VALID: list[tuple[str, Subscription, dict[str, Any]]] = [
    (
        "live: one user by id",
        sub(),
        {"name": "sub:7", "when": "live", "users": [463000], "notify": ["@tg:-100123"]},
    ),
    (
        "live: discord filters",
        sub(
            platform="discord",
            chat_id="555",
            destination="@dc:9001",
            params={
                "role_id": "42",
                "categories": ["Gaming", 7],
                "title_matches": "(?i)ranked",
                "min_viewers": 20,
                "on_end": "delete",
                "template": "{{ user_name }} is live",
            },
        ),
        {
            "categories": ["Gaming", 7],
            "title_matches": "(?i)ranked",
            "min_viewers": 20,
            "on_end": "delete",
            "template": "{{ user_name }} is live",
        },
    ),
    (
        "price above with a percent rearm",
        sub("price", "BTC", params={"direction": "above", "line": "100000", "rearm": "0.5%"}),
        {"when": "price", "asset": "BTC", "above": Decimal(100000), "rearm": "0.5%"},
    ),
    (
        "price below, a float line read through its text",
        sub("price", "eth", params={"direction": "below", "line": 3999.9}),
        {"asset": "eth", "below": Decimal("3999.9"), "above": None},
    ),
    (
        "move with a number percent and seconds",
        sub("move", "BTC", params={"percent": 5, "window": 3600}),
        {"move": "5%", "within": 3600.0},
    ),
    (
        "move with text units",
        sub("move", "BTC", params={"percent": "2.5%", "window": "1h"}),
        {"move": "2.5%", "within": 3600.0},
    ),
    (
        "telegram forum topic",
        sub(destination="@tg:-100123:77"),
        {"notify": ["@tg:-100123:77"]},
    ),
    ("discord DM", sub(platform="discord", destination="@dcdm:31"), {"notify": ["@dcdm:31"]}),
]


@pytest.mark.parametrize(("case", "subscription", "expected"), VALID, ids=[c[0] for c in VALID])
def test_a_valid_subscription_becomes_the_equivalent_rule(
    case: str, subscription: Subscription, expected: dict[str, Any]
) -> None:
    rule = to_rule(subscription)
    for key, value in expected.items():
        assert getattr(rule, key) == value, key


INVALID: list[tuple[str, Subscription, str]] = [
    ("unknown platform", sub(platform="irc"), "unknown platform 'irc'"),
    ("unknown kind", sub(kind="news"), "unknown kind 'news'"),
    ("file destination name", sub(destination="me"), "is not @tg:<chat>"),
    ("destination on the other platform", sub(destination="@dc:1"), "is not on telegram"),
    ("destination of another chat", sub(destination="@tg:5"), "is not chat -100123"),
    ("discord channel id negative", sub(platform="discord", destination="@dc:-1"), "is not @tg"),
    ("live target a name", sub(target="SNEAKO"), "target is a Parti user id"),
    ("unknown setting", sub(params={"colour": "red"}), "unknown setting 'colour' for live"),
    ("bad regex", sub(params={"title_matches": "("}), "title_matches: invalid regex"),
    ("negative min_viewers", sub(params={"min_viewers": -1}), "min_viewers"),
    ("categories not a list", sub(params={"categories": "Gaming"}), "categories must be a list"),
    ("role not an id", sub(params={"role_id": "@here"}), "role_id must be a positive id"),
    ("role 0", sub(params={"role_id": "0"}), "role_id must be a positive id"),
    ("role over 64 bits", sub(params={"role_id": 2**64}), "role_id must be a positive id"),
    ("role digits over 64 bits", sub(params={"role_id": str(2**64)}), "under 2**64"),
    ("bad on_end", sub(params={"on_end": "explode"}), "on_end"),
    ("unknown template field", sub(params={"template": "{{ x }}"}), "unknown template field"),
    ("template syntax", sub(params={"template": "{{"}), "template syntax"),
    (
        "price without direction",
        sub("price", "BTC", params={"line": "1"}),
        "direction must be above or below",
    ),
    (
        "price line not a number",
        sub("price", "BTC", params={"direction": "above", "line": "lots"}),
        "line must be a number",
    ),
    (
        "price line negative",
        sub("price", "BTC", params={"direction": "above", "line": "-5"}),
        "the line must be above 0",
    ),
    (
        "price line infinite",
        sub("price", "BTC", params={"direction": "above", "line": "Infinity"}),
        "finite",
    ),
    (
        "bad rearm",
        sub("price", "BTC", params={"direction": "above", "line": "5", "rearm": "x%"}),
        "rearm",
    ),
    (
        "asset with a space",
        sub("price", "B TC", params={"direction": "above", "line": "5"}),
        "not an asset symbol",
    ),
    ("move percent zero", sub("move", "BTC", params={"percent": 0, "window": 60}), "above 0%"),
    ("move without window", sub("move", "BTC", params={"percent": 5}), "window must be"),
    (
        "move window zero",
        sub("move", "BTC", params={"percent": 5, "window": 0}),
        "window must be above 0",
    ),
    (
        "move window text",
        sub("move", "BTC", params={"percent": 5, "window": "soon"}),
        "invalid duration",
    ),
    # As a rules file refuses them: a window or rearm band under which nothing ever fires.
    (
        "move window zero as text",
        sub("move", "BTC", params={"percent": 5, "window": "0s"}),
        "within: must be above 0 seconds",
    ),
    (
        "rearm the whole line",
        sub("price", "BTC", params={"direction": "above", "line": "50", "rearm": "100%"}),
        "rearm: rearm 100% would re-arm the line 50 only at a price of 0 or below",
    ),
    (
        "rearm past the line",
        sub("price", "BTC", params={"direction": "above", "line": "50", "rearm": 60}),
        "the band must be smaller than the line",
    ),
]


@pytest.mark.parametrize(("case", "subscription", "message"), INVALID, ids=[c[0] for c in INVALID])
def test_an_invalid_subscription_raises_one_clear_line(
    case: str, subscription: Subscription, message: str
) -> None:
    with pytest.raises(ValueError, match=r"^subscription 7: ") as raised:
        to_rule(subscription)
    text = str(raised.value)
    assert message in text
    assert "\n" not in text


def test_defaults_give_the_rule_its_cooldown() -> None:
    rule = to_rule(sub(), Defaults.model_validate({"cooldown": "5m"}))
    assert isinstance(rule, LiveRule)
    assert rule.cooldown == 300.0
    assert to_rule(sub()).cooldown is None


def test_price_and_move_become_price_rules() -> None:
    assert isinstance(to_rule(sub("move", "BTC", params={"percent": 1, "window": 1})), PriceRule)


def test_role_id_is_read_but_is_not_part_of_the_rule() -> None:
    assert role_id(sub(params={"role_id": "42"})) == 42
    assert role_id(sub()) is None


def test_rule_names_and_ids() -> None:
    assert rule_name(12) == "sub:12" == sub(id=12).rule_name
    assert subscription_id("sub:12") == 12
    assert subscription_id("sub:x") is None
    assert subscription_id("my rule") is None


DESTINATIONS: list[tuple[str, ChatDestination | None]] = [
    ("@tg:-100123", ChatDestination("telegram", "chat", "-100123")),
    ("@tg:5:77", ChatDestination("telegram", "chat", "5", 77)),
    ("@dc:9001", ChatDestination("discord", "channel", "9001")),
    ("@dcdm:31", ChatDestination("discord", "dm", "31")),
    ("@dc:9001:1", None),
    ("@dcdm:-31", None),
    (f"@dcdm:{2**64 - 1}", ChatDestination("discord", "dm", str(2**64 - 1))),
    (f"@dcdm:{2**64}", None),  # not a snowflake: no JSON of discord.py's can carry it
    (f"@dc:{2**64}", None),
    ("me", None),
    ("@tg:", None),
    ("@tg:12x", None),
    ("@tg:１２", None),  # fullwidth digits are not ids
]


@pytest.mark.parametrize(("name", "expected"), DESTINATIONS, ids=[d[0] for d in DESTINATIONS])
def test_parse_destination(name: str, expected: ChatDestination | None) -> None:
    assert parse_destination(name) == expected


@given(
    chat=st.integers(min_value=-(10**15), max_value=10**15),
    thread=st.none() | st.integers(min_value=0, max_value=10**9),
    other=st.integers(min_value=1, max_value=10**19),
)
def test_destination_names_round_trip(chat: int, thread: int | None, other: int) -> None:
    assert parse_destination(telegram_destination(chat, thread)) == ChatDestination(
        "telegram", "chat", str(chat), thread
    )
    assert parse_destination(discord_channel_destination(other)) == ChatDestination(
        "discord", "channel", str(other)
    )
    assert parse_destination(discord_dm_destination(other)) == ChatDestination(
        "discord", "dm", str(other)
    )


@given(st.text(max_size=40))
def test_parse_destination_never_raises_and_file_names_are_not_chats(text: str) -> None:
    parsed = parse_destination(text)
    if not text.startswith("@"):
        assert parsed is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, 1),
        ("1", 1),
        (2**64 - 1, 2**64 - 1),
        (str(2**64 - 1), 2**64 - 1),
        (2**64, None),
        (str(2**64), None),
        (0, None),
        ("0", None),
        (-5, None),
        ("-5", None),
        (True, None),
        (1.0, None),
        ("1e3", None),
        (" 1", None),
        ("\u0663", None),  # an Arabic-Indic digit: isdigit() but not an id
        ("", None),
        (None, None),
        ([1], None),
    ],
)
def test_a_discord_id_is_a_positive_snowflake_under_2_64_and_nothing_else(
    value: object, expected: int | None
) -> None:
    """One rule for every Discord id a subscription or a stored payload carries (chat ids,
    roles, the mention role a chat alert pings)."""
    assert discord_id(value) == expected


def test_a_discord_id_of_thousands_of_digits_is_none_not_an_error() -> None:
    assert discord_id("9" * 5000) is None  # int() refuses over 4,300 digits
