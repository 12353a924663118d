"""Every text field can carry anything: through every renderer and alert kind, the output
is valid, within every limit as each chat counts it, and pings nobody unexpected."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notifier.parti.models import CalendarEvent, ChannelLive, PriceUpdate, UserProfile
from notifier.render import console, discord, telegram
from notifier.render import fields as alert_fields
from notifier.render.fields import AlertView, ended_fields, view_of
from notifier.rules.engine import Match
from tests.fakes.discord import pinged
from tests.fakes.telegram_html import parse_html

ROLE = 1234

HOSTILE = {
    "markdown": ("*_~`|>#[]()-:\\<>&\"'@!." * 230)[:5000],
    "html": ("<>&\"'" * 1000),
    "lt": "<" * 5000,
    "amp": "&" * 5000,
    "star": "*" * 5000,
    "astral": "😀" * 5000,
    "zwj_family": "👨\u200d👩\u200d👧" * 1000,
    "surrogates": "a\ud800b\udfffc" * 10,
    "controls": "nul\x00 bell\x07 esc\x1b[31m del\x7f nel\x85 cr\r lf\n tab\t",
    "mentions": "@everyone @here <@&123456789012345678> <@1> <@!2> <#3> <t:1700000000:R> </c:4>",
    "script": "</b><script>alert(1)</script><b>",
    "entities": "&amp; &lt; &#60; &nbsp; &#xD800; &bogus;",
    "links": "[text](https://evil.example) **b** __u__ ~~s~~ ||s|| `c` ```c```",
    "zero_width": "@\u200beveryone <@\u200b&5> \u200b\u200d\u2060\ufeff",
    "rtl": "\u202eevil\u202c \u2066isolate\u2069 \u200f",
    "line_starts": "# h\n## h\n- item\n* item\n1. one\n> quote\n-# sub",
    "spaces": " " * 5000,
    "empty": "",
}

PROFILE = UserProfile(
    user_id=463000, user_name="SNEAKO", members=4340, description="Streaming daily"
)
AT = 1_764_300_000.0


def _live() -> AlertView:
    event = ChannelLive(
        user_id=463000,
        user_name="SNEAKO",
        event_id=1,
        livestream_id=2,
        event_title="Morning stream",
        category_name="IRL",
        viewers_count=12,
        event_file="https://assets.parti.com/t.png",
        avatar_link="https://assets.parti.com/a.png",
        social_media="parti",
        social_username="SNEAKO",
    )
    match = Match("friends", "me", "live", "463000", "live:463000:event:1", AT, event)
    return view_of(match, PROFILE, caught_up=True)


def _ended() -> AlertView:
    live = _live()
    fields = ended_fields(live.fields, ended_at=AT + 3900, peak_viewers=230)
    return AlertView("live", live.rule, fields)


def _price(kind: str) -> AlertView:
    event = PriceUpdate(display_symbol="BTC", ticker="bitcoin", price=Decimal("100250.5"))
    details: dict[str, Any] = {
        "kind": kind,
        "direction": "up",
        "line": Decimal(100000),
        "change": Decimal("0.2505"),
        "window": 300.0,
    }
    return view_of(Match("btc", "me", "price", "BTC", "price:BTC", AT, event, details))


def _scheduled() -> AlertView:
    event = CalendarEvent(
        event_id=5, user_id=1, user_name="SNEAKO", event_title="Q&A", event_start_ts=int(AT) + 900
    )
    return view_of(Match("s", "me", "scheduled", "5", "scheduled:5", AT, event))


VIEWS = {
    "live": _live(),
    "ended": _ended(),
    "price_move": _price("move"),
    "price_cross": _price("above"),
    "scheduled": _scheduled(),
    "test": alert_fields.test_view("me", AT),
}
TEMPLATES = {
    "live": "<b>{{ user_name }}</b> is live: <i>{{ title }}</i> [{{ category }}] {{ description }}",
    "price": "<b>{{ asset }}</b> {{ price }} {{ change }} {{ line }} {{ window }} {{ rule }}",
    "scheduled": "<b>{{ user_name }}</b> in {{ starts_in }}: {{ title }} {{ category }}",
}
CASES = [
    (view_name, key)
    for view_name, view in VIEWS.items()
    for key, value in view.fields.items()
    if isinstance(value, str)
]


def _with(view: AlertView, **values: str) -> AlertView:
    return AlertView(view.kind, view.rule, {**view.fields, **values})


# --- what every output must satisfy ---------------------------------------------------

_VISIBLE_MENTION = re.compile(
    r"@everyone|@here|<@[!&]?\d+>|<#\d+>|<t:-?\d+(:\w)?>|</[^>\s]+:\d+>|<a?:\w+:\d+>"
)
_MASKED_LINK = re.compile(r"(?<!\\)\[[^\]]*(?<!\\)\]\(")
_BLOCK_START = re.compile(r"(?m)^[ \t]*(#|-#|>|[-*+][ \t]|\d+\.)")


def assert_telegram_ok(message: telegram.TelegramMessage) -> None:
    visible = parse_html(message.html)  # raises HtmlError as Telegram would refuse it
    assert len(visible) <= (1024 if message.photo else 4096)
    assert visible.strip(), "Telegram refuses an empty message"
    assert message.photo is None or message.photo.startswith("https://")


def assert_discord_ok(message: discord.DiscordMessage, *, role: int | None) -> None:
    embed = message.embed
    texts = {
        "title": (embed.get("title", ""), 256),
        "description": (embed.get("description", ""), 4096),
        "author": (embed.get("author", {}).get("name", ""), 256),
        "footer": (embed.get("footer", {}).get("text", ""), 2048),
    }
    fields = embed.get("fields", [])
    assert len(fields) <= 25
    for index, item in enumerate(fields):
        assert item["name"] and item["value"], "Discord refuses an empty field"
        texts[f"field {index} name"] = (item["name"], 256)
        texts[f"field {index} value"] = (item["value"], 1024)
    for where, (text, limit) in texts.items():
        assert len(text) <= limit, f"{where} is {len(text)} over {limit}"
        assert not _VISIBLE_MENTION.search(text), f"{where} shows a mention"
        if where not in ("author", "footer"):  # the two texts Discord shows without markdown
            assert not _MASKED_LINK.search(text), f"{where} shows a masked link"
            assert not _BLOCK_START.search(text), f"{where} starts a markdown block"
        assert "\x00" not in text and "\x1b" not in text and "\u202e" not in text
    assert sum(len(text) for text, _ in texts.values()) <= 6000
    assert embed.get("title") or embed.get("description") or fields, "an embed shows nothing"
    for key in ("url",):
        assert key not in embed or embed[key].startswith("https://")
    content = message.content or ""
    assert len(content) <= 2000
    everything = {"parse": ["everyone", "roles", "users"]}
    expected = {"everyone": False, "roles": [role] if role else [], "users": []}
    assert pinged(content, everything) == expected, "only the configured role is mentioned"
    shown = _VISIBLE_MENTION.findall(content.replace(f"<@&{role}>", "", 1) if role else content)
    assert not shown, "content shows a mention nobody configured"


def assert_console_ok(line: str) -> None:
    assert len(line) <= 1000
    assert line == line.strip() and "\n" not in line
    assert not re.search("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]", line)
    line.encode("utf-8")  # printable on a UTF-8 terminal


# --- the corpus -------------------------------------------------------------------------


@pytest.mark.parametrize(("view_name", "key"), CASES)
@pytest.mark.parametrize("hostile", list(HOSTILE), ids=list(HOSTILE))
def test_telegram_hostile_field_stays_valid_and_fits(
    view_name: str, key: str, hostile: str
) -> None:
    view = _with(VIEWS[view_name], **{key: HOSTILE[hostile]})
    assert_telegram_ok(telegram.render(view))
    if view.kind in TEMPLATES:
        assert_telegram_ok(telegram.render(view, TEMPLATES[view.kind]))


@pytest.mark.parametrize(("view_name", "key"), CASES)
@pytest.mark.parametrize("hostile", list(HOSTILE), ids=list(HOSTILE))
def test_discord_hostile_field_stays_inert_and_within_limits(
    view_name: str, key: str, hostile: str
) -> None:
    view = _with(VIEWS[view_name], **{key: HOSTILE[hostile]})
    assert_discord_ok(discord.render(view), role=None)
    assert_discord_ok(discord.render(view, mention_role=ROLE), role=ROLE)
    if view.kind in TEMPLATES:
        assert_discord_ok(discord.render(view, TEMPLATES[view.kind], mention_role=ROLE), role=ROLE)


@pytest.mark.parametrize(("view_name", "key"), CASES)
@pytest.mark.parametrize("hostile", list(HOSTILE), ids=list(HOSTILE))
def test_console_hostile_field_stays_one_clean_line(view_name: str, key: str, hostile: str) -> None:
    view = _with(VIEWS[view_name], **{key: HOSTILE[hostile]})
    assert_console_ok(console.render(view))
    if view.kind in TEMPLATES:
        assert_console_ok(console.render(view, TEMPLATES[view.kind]))


@pytest.mark.parametrize("view_name", list(VIEWS))
@pytest.mark.parametrize("hostile", list(HOSTILE), ids=list(HOSTILE))
def test_every_field_hostile_at_once_still_fits_everywhere(view_name: str, hostile: str) -> None:
    base = VIEWS[view_name]
    view = _with(
        base, **{k: HOSTILE[hostile] for k, v in base.fields.items() if isinstance(v, str)}
    )
    template = TEMPLATES.get(view.kind)
    assert_telegram_ok(telegram.render(view))
    assert_discord_ok(discord.render(view, mention_role=ROLE), role=ROLE)
    assert_console_ok(console.render(view))
    if template is not None:
        assert_telegram_ok(telegram.render(view, template))
        assert_discord_ok(discord.render(view, template, mention_role=ROLE), role=ROLE)


def test_a_5000_character_name_of_specials_is_cut_after_escaping() -> None:
    view = _with(VIEWS["live"], user_name=HOSTILE["html"], category=HOSTILE["markdown"])
    html = telegram.render(view).html
    visible = parse_html(html)
    assert visible.startswith("🔴 <>&\"'<>&")
    assert "…" in visible and len(visible) <= 1024
    embed = discord.render(view).embed
    assert embed["author"]["name"].endswith("… is live")
    assert embed["fields"][0]["value"].endswith("…")
    assert len(embed["fields"][0]["value"]) <= 256  # escaped: each special counts two


def test_astral_characters_count_once_as_telegram_counts_them() -> None:
    view = _with(VIEWS["live"], title=HOSTILE["astral"], image="")
    visible = parse_html(telegram.render(view).html)
    assert len(visible) == 4096, "code points, not UTF-16 units: the room is used"


# --- any value at all ---------------------------------------------------------------------

_SPECIALS = list("<>&\"'*_~`|#@[]()-:.\\\n\t\x00\x1b\u200b\u200d\u202e\ud800😀👍🏽")
_CHUNK = st.text(
    alphabet=st.one_of(st.characters(exclude_categories=()), st.sampled_from(_SPECIALS)),
    max_size=12,
)
_VALUE = st.builds(lambda chunk, times: chunk * times, _CHUNK, st.integers(0, 600))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(VIEWS)), st.data())
def test_any_field_values_render_valid_and_within_limits(view_name: str, data: Any) -> None:
    base = VIEWS[view_name]
    values = {
        key: data.draw(_VALUE, label=key)
        for key, value in base.fields.items()
        if isinstance(value, str)
    }
    view = _with(base, **values)
    assert_telegram_ok(telegram.render(view))
    assert_discord_ok(discord.render(view, mention_role=ROLE), role=ROLE)
    assert_console_ok(console.render(view))
    if (template := TEMPLATES.get(view.kind)) is not None:
        assert_telegram_ok(telegram.render(view, template))
        assert_discord_ok(discord.render(view, template), role=None)


@pytest.mark.parametrize("view_name", list(VIEWS))
@pytest.mark.parametrize("hostile", list(HOSTILE), ids=list(HOSTILE))
def test_telegram_default_message_never_shows_the_rule_name(view_name: str, hostile: str) -> None:
    # The sender renders a fan-out once for every chat subscription ("sub:1", "sub:2", ...)
    # on this promise; a template may show the rule, and is rendered per rule.
    view = VIEWS[view_name]
    named = AlertView(view.kind, "sub:1", {**view.fields, "rule": "sub:1"})
    hostile_name = AlertView(view.kind, HOSTILE[hostile], {**view.fields, "rule": HOSTILE[hostile]})
    assert telegram.render(named) == telegram.render(hostile_name)


@pytest.mark.parametrize("view_name", list(VIEWS))
@pytest.mark.parametrize("hostile", ["markdown", "mentions", "empty"])
def test_discord_default_embed_shows_the_rule_name_only_for_prices(
    view_name: str, hostile: str
) -> None:
    # The Discord senders render a fan-out once for every kind not in SHOWS_RULE.
    from notifier.deliver.discord import SHOWS_RULE

    view = VIEWS[view_name]
    named = AlertView(view.kind, "sub:1", {**view.fields, "rule": "sub:1"})
    hostile_name = AlertView(view.kind, HOSTILE[hostile], {**view.fields, "rule": HOSTILE[hostile]})
    same = discord.render(named, mention_role=ROLE) == discord.render(
        hostile_name, mention_role=ROLE
    )
    assert same is (view.kind not in SHOWS_RULE)
