"""Mute and quiet hours (held_until), the digest message, and reading /quiet: pure, with the
clock passed in."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifier.bots.quiet import (
    DigestItem,
    QuietError,
    QuietHours,
    digest_html,
    held_until,
    parse_quiet,
)
from notifier.store.types import Chat
from tests.fakes.telegram_html import parse_html

BERLIN = ZoneInfo("Europe/Berlin")


def at(text: str, zone: dt.tzinfo = dt.UTC) -> float:
    """A wall-clock time in a zone, as a timestamp ("2025-06-01 23:30")."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=zone).timestamp()


def chat(*, mute_until: float | None = None, quiet: str | None = None) -> Chat:
    return Chat(
        platform="telegram",
        chat_id="42",
        kind="private",
        guild_id=None,
        title=None,
        paused_reason=None,
        mute_until=mute_until,
        quiet=quiet,
        created_at=0.0,
        updated_at=0.0,
    )


NIGHT = "23:00-07:00 Europe/Berlin"


@pytest.mark.parametrize(
    ("case", "held", "now", "expected"),
    [
        ("nothing set", chat(), at("2025-06-01 12:00"), None),
        (
            "muted",
            chat(mute_until=at("2025-06-01 14:00")),
            at("2025-06-01 12:00"),
            at("2025-06-01 14:00"),
        ),
        (
            "a mute that ended",
            chat(mute_until=at("2025-06-01 11:00")),
            at("2025-06-01 12:00"),
            None,
        ),
        (
            "overnight, before midnight",
            chat(quiet=NIGHT),
            at("2025-06-01 23:30", BERLIN),
            at("2025-06-02 07:00", BERLIN),
        ),
        (
            "overnight, after midnight",
            chat(quiet=NIGHT),
            at("2025-06-02 06:59", BERLIN),
            at("2025-06-02 07:00", BERLIN),
        ),
        (
            "overnight, at its start",
            chat(quiet=NIGHT),
            at("2025-06-01 23:00", BERLIN),
            at("2025-06-02 07:00", BERLIN),
        ),
        ("overnight, at its end", chat(quiet=NIGHT), at("2025-06-02 07:00", BERLIN), None),
        ("overnight, by day", chat(quiet=NIGHT), at("2025-06-02 12:00", BERLIN), None),
        (
            "same day range",
            chat(quiet="12:00-14:00 UTC"),
            at("2025-06-02 13:00"),
            at("2025-06-02 14:00"),
        ),
        ("same day range, outside", chat(quiet="12:00-14:00 UTC"), at("2025-06-02 14:30"), None),
        (
            "a mute that ends inside the quiet hours",
            chat(mute_until=at("2025-06-01 23:30", BERLIN), quiet=NIGHT),
            at("2025-06-01 22:00", BERLIN),
            at("2025-06-02 07:00", BERLIN),
        ),
        (
            "quiet hours that end inside a mute",
            chat(mute_until=at("2025-06-02 09:00", BERLIN), quiet=NIGHT),
            at("2025-06-02 01:00", BERLIN),
            at("2025-06-02 09:00", BERLIN),
        ),
        (
            "the night the clocks go back is an hour longer",
            chat(quiet=NIGHT),
            at("2025-10-25 23:30", BERLIN),
            at("2025-10-26 06:00"),  # 07:00 CET
        ),
        (
            "the night the clocks go forward is an hour shorter",
            chat(quiet=NIGHT),
            at("2025-03-29 23:30", BERLIN),
            at("2025-03-30 05:00"),  # 07:00 CEST
        ),
        (
            "an end in the skipped hour is when the clocks jump",
            chat(quiet="01:00-02:30 Europe/Berlin"),
            at("2025-03-30 01:30", BERLIN),
            at("2025-03-30 01:00"),  # 03:00 CEST
        ),
        (
            "an end in the repeated hour is its first pass",
            chat(quiet="01:00-02:30 Europe/Berlin"),
            at("2025-10-26 01:30", BERLIN),
            at("2025-10-26 00:30"),  # 02:30 CEST
        ),
        (
            "unreadable stored quiet hours hold nothing",
            chat(quiet="whenever"),
            at("2025-06-02 01:00"),
            None,
        ),
    ],
)
def test_held_until(case: str, held: Chat, now: float, expected: float | None) -> None:
    assert held_until(held, now) == expected, case


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("23:00-07:00 Europe/Berlin", QuietHours(23 * 60, 7 * 60, "Europe/Berlin")),
        ("9:30 - 17:45 UTC", QuietHours(9 * 60 + 30, 17 * 60 + 45, "UTC")),
        ("00:00-23:59 America/New_York", QuietHours(0, 23 * 60 + 59, "America/New_York")),
    ],
)
def test_parse_quiet_reads_hours_and_an_iana_zone(text: str, expected: QuietHours) -> None:
    assert parse_quiet(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "23:00-07:00",
        "23:00-07:00 Nowhere/Land",
        "23:00-07:00 ../../etc/passwd",
        "24:00-07:00 UTC",
        "23:60-07:00 UTC",
        "7-9 UTC",
        "07:00-07:00 UTC",
        "",
    ],
)
def test_parse_quiet_refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(QuietError):
        parse_quiet(text)


def test_quiet_hours_print_as_they_are_read() -> None:
    assert parse_quiet("7:05-9:00 Europe/Berlin").text == "07:05-09:00 Europe/Berlin"


# ---- the digest ------------------------------------------------------------------------


def test_a_digest_lists_the_alerts_oldest_first_with_their_times() -> None:
    text = digest_html(
        [
            DigestItem("ETH crossed 4,000", at("2025-06-02 06:10")),
            DigestItem("SNEAKO is live", at("2025-06-02 01:00"), url="https://parti.com/SNEAKO"),
        ]
    )
    assert text == (
        "<b>While this chat was quiet: 2 alerts</b>\n"
        '• 01:00 <a href="https://parti.com/SNEAKO">SNEAKO is live</a>\n'
        "• 06:10 ETH crossed 4,000"
    )


def test_a_digest_escapes_the_alert_texts() -> None:
    text = digest_html([DigestItem("<b>x</b> & y", at("2025-06-02 01:00"))])
    assert parse_html(text).endswith("<b>x</b> & y")


def test_a_digest_shows_times_in_the_given_zone() -> None:
    text = digest_html([DigestItem("live", at("2025-06-02 01:00"))], tz=BERLIN)
    assert "• 03:00 live" in text


def test_a_digest_too_long_for_one_message_ends_with_and_n_more() -> None:
    items = [DigestItem(f"streamer {n} is live " + "x" * 80, float(n)) for n in range(100)]
    text = digest_html(items)
    assert len(text) <= 4096
    shown = text.count("\n• ")
    assert text.endswith(f"\n… and {100 - shown} more")
    assert 0 < shown < 100


@given(
    texts=st.lists(st.text(max_size=300), max_size=60),
    limit=st.integers(min_value=120, max_value=4096),
)
def test_a_digest_fits_its_limit_is_valid_html_and_accounts_for_every_alert(
    texts: list[str], limit: int
) -> None:
    items = [
        DigestItem(text, float(n), url="https://parti.com/x?a=1&b=2")
        for n, text in enumerate(texts)
    ]
    text = digest_html(items, limit=limit)
    assert len(text) <= limit
    parse_html(text)  # raises on anything Telegram would refuse
    shown = text.count("\n• ")
    more = re.search(r"… and (\d+) more$", text)
    assert shown + (int(more.group(1)) if more else 0) == len(items)
