"""Rendering: hostile input stays literal text, within every limit, mentioning nobody."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest

from notifier.parti.models import CalendarEvent, ChannelLive, PriceUpdate, UserProfile
from notifier.render import console, discord, telegram
from notifier.render.fields import AlertView, ended_fields, view_of
from notifier.rules.engine import Match
from tests.fakes.discord import embed_problems, pinged
from tests.fakes.telegram_html import parse_html, text_length

HOSTILE = [
    "<b>bold</b> <i>unclosed",
    '<a href="javascript:alert(1)">click</a>',
    "a < b && c > d",
    "lone & ampersand",
    "&lt; looks like an entity &amp; &#60; &bogus;",
    "@everyone @here free crypto",
    "<@&123456789012345678> <@123456789012345678> <@!1>",
    "[markdown link](https://evil.example) **bold** __u__ ~~s~~ ||spoiler|| `code` ```block```",
    "x" * 10_000,
    "zero\u200bwidth\u200d joiner \u202eevil\u202c rtl \u2066isolate\u2069",
    "nul\x00byte and \x1b[31mANSI\x1b[0m escape",
    "emoji 🎮🔥 and 𝕦𝕟𝕚𝕔𝕠𝕕𝕖",
    "\n\nnew\nlines\r\n",
]


def live_match(title: str, name: str = "SNEAKO") -> Match:
    event = ChannelLive(
        user_id=463000,
        user_name=name,
        event_id=1,
        livestream_id=2,
        event_title=title,
        category_name="IRL <3",
        viewers_count=12,
        event_file="https://assets.parti.com/t.png",
        avatar_link="https://assets.parti.com/a.png",
        social_media="parti",
        social_username=name,
    )
    return Match("friends", "me", "live", "463000", "live:463000:event:1", 1_764_300_000.0, event)


PROFILE = UserProfile(
    user_id=463000, user_name="SNEAKO", members=4340, description="Streaming @everyone <b>daily</b>"
)


@pytest.mark.parametrize("title", HOSTILE, ids=range(len(HOSTILE)))
def test_telegram_html_is_accepted_and_shows_the_title_literally(title: str) -> None:
    view = view_of(live_match(title, name=title[:40] or "x"), PROFILE)
    message = telegram.render(view)
    visible = parse_html(message.html)  # raises like Telegram's "can't parse entities"
    assert len(visible) <= (1024 if message.photo else 4096)
    expected = view.fields["title"]
    assert expected[:200].rstrip() in visible or visible.count("…") == 1
    assert "\x00" not in visible and "\x1b" not in visible and "\u202e" not in visible


@pytest.mark.parametrize("title", HOSTILE, ids=range(len(HOSTILE)))
def test_telegram_text_message_without_photo_fits_4096(title: str) -> None:
    view = view_of(live_match(title * 3))
    view.fields["image"] = ""
    message = telegram.render(view)
    assert message.photo is None
    assert text_length(message.html) <= 4096


def test_long_title_is_cut_without_breaking_a_tag_or_entity() -> None:
    title = "&<>" * 2000
    message = telegram.render(view_of(live_match(title), PROFILE))
    visible = parse_html(message.html)
    assert len(visible) <= 1024
    assert "…" in visible
    assert len(visible) >= 1020, "the budget is used, not wasted"


@pytest.mark.parametrize("title", HOSTILE, ids=range(len(HOSTILE)))
def test_discord_mentions_nobody_and_fits_the_limits(title: str) -> None:
    view = view_of(live_match(title, name=title[:40] or "x"), PROFILE)
    message = discord.render(view)
    assert embed_problems(message.embed) == []
    allowed: dict[str, list[str]] = {"parse": []}
    texts = [
        message.content or "",
        message.embed.get("title", ""),
        message.embed.get("description", ""),
    ]
    for text in texts:
        assert pinged(text, {"parse": ["everyone", "roles", "users"]}) == {
            "everyone": False,
            "roles": [],
            "users": [],
        }, "escaped: would not ping at all"
        assert pinged(text, allowed)["everyone"] is False


def test_discord_mentions_only_the_configured_role() -> None:
    message = discord.render(view_of(live_match("@everyone <@&999>")), mention_role=1234)
    assert message.content == "<@&1234> "
    assert pinged(message.content, {"parse": [], "roles": ["1234"]}) == {
        "everyone": False,
        "roles": [1234],
        "users": [],
    }


def test_discord_template_fields_are_escaped() -> None:
    view = view_of(live_match("**loud** @everyone"))
    message = discord.render(view, "🎮 {{ user_name }}: {{ title }}")
    assert message.content == "🎮 SNEAKO: \\*\\*loud\\*\\* @\u200beveryone"


def test_telegram_template_fields_are_escaped_and_template_markup_kept() -> None:
    view = view_of(live_match("<script>&"))
    message = telegram.render(view, "<b>{{ user_name }}</b> {{ title }}")
    assert message.html == "<b>SNEAKO</b> &lt;script&gt;&amp;"
    assert parse_html(message.html) == "SNEAKO <script>&"


def test_live_alert_shows_the_enriched_profile_everywhere() -> None:
    view = view_of(live_match("Morning stream"), PROFILE)
    html = telegram.render(view).html
    assert '<b><a href="https://parti.com/creator/parti/SNEAKO">SNEAKO</a></b> is live' in html
    assert "4,340 followers" in html
    assert "👀 12 watching" in html
    embed = discord.render(view).embed
    assert {"name": "Followers", "value": "4,340", "inline": True} in embed["fields"]
    assert embed["url"] == "https://parti.com/creator/parti/SNEAKO"
    assert embed["image"]["url"] == "https://assets.parti.com/t.png"
    line = console.render(view)
    assert line.startswith(
        "🔴 SNEAKO is live: Morning stream [IRL <3, 12 watching, 4,340 followers]"
    )


def test_non_parti_image_urls_are_dropped() -> None:
    match = live_match("t")
    event = match.event.model_copy(
        update={"event_file": "javascript:alert(1)", "avatar_link": "http://evil.example/a.png"}
    )
    view = view_of(Match(match.rule, "me", "live", "1", "x", 0.0, event))
    assert view.fields["image"] == "" and view.fields["avatar"] == ""
    assert telegram.render(view).photo is None


def test_discord_creator_links_end_in_zero() -> None:
    match = live_match("t")
    event = match.event.model_copy(update={"social_media": "discord", "social_username": "abc"})
    view = view_of(Match("r", "me", "live", "1", "x", 0.0, event))
    assert view.fields["url"] == "https://parti.com/creator/discord/abc/0"


def test_price_alerts_render_in_every_target() -> None:
    event = PriceUpdate(display_symbol="BTC", ticker="bitcoin", price=Decimal("100250.5"))
    match = Match(
        "btc",
        "me",
        "price",
        "BTC",
        "price:BTC:above:100000:1",
        0.0,
        event,
        {
            "kind": "above",
            "direction": "up",
            "line": Decimal(100000),
            "price": Decimal("100250.5"),
            "change": Decimal("0.2505"),
        },
    )
    view = view_of(match)
    assert telegram.render(view).html == (
        "📈 <b>BTC</b> crossed above <b>100,000</b>\nNow <b>100,250.5</b> (+0.25% from the line)"
    )
    assert discord.render(view).embed["title"] == "📈 BTC crossed above 100,000"
    assert console.render(view) == "📈 BTC crossed above 100,000: now 100,250.5 (+0.25%)"


def test_scheduled_and_ended_views() -> None:
    event = CalendarEvent(
        event_id=5, user_id=1, user_name="SNEAKO", event_title="Q&A", event_start_ts=1000
    )
    view = view_of(Match("s", "me", "scheduled", "5", "scheduled:5", 100.0, event))
    assert "goes live in 15m" in telegram.render(view).html
    ended = AlertView(
        "live",
        "r",
        ended_fields(
            view_of(live_match("t")).fields, ended_at=1_764_300_000.0 + 3900, peak_viewers=230
        ),
    )
    html = telegram.render(ended).html
    assert "was live" in html and "lasted 1h 05m" in html and "peak 230 viewers" in html
    assert discord.render(ended).embed["color"] == discord.COLOURS["ended"]


# --- templates: trusted markup, escaped fields, cut so the result stays valid -------------


def test_telegram_template_too_long_is_cut_between_tokens_and_closed() -> None:
    view = view_of(live_match("&<>" * 2000), PROFILE)
    message = telegram.render(view, "<b>{{ user_name }}</b> <i>{{ title }} {{ title }}</i>")
    visible = parse_html(message.html)
    assert message.html.endswith("…</i>")
    assert len(visible) == 1024, "cut to the caption limit, no room wasted"


def test_telegram_template_that_is_not_valid_html_is_sent_as_written_when_it_fits() -> None:
    # Telegram refuses it and the delivery retries the alert as plain text.
    message = telegram.render(view_of(live_match("t")), "Tom < Jerry: {{ title }}")
    assert message.html == "Tom < Jerry: t"


def test_telegram_template_not_valid_and_too_long_becomes_escaped_plain_text() -> None:
    view = view_of(live_match("x" * 5000))
    message = telegram.render(view, "<b>{{ title }} {{ title }}")
    visible = parse_html(message.html)
    assert visible.startswith("xxx") and visible.endswith("…")
    assert len(visible) <= 1024


def test_telegram_template_that_shows_nothing_falls_back_to_the_default_message() -> None:
    message = telegram.render(view_of(live_match("Morning")), "<b>{{ category[:0] }}</b>")
    assert parse_html(message.html).startswith("🔴 SNEAKO is live")


def test_telegram_plain_fallback_fits_the_caption() -> None:
    message = telegram.render(view_of(live_match("<x>" * 2000)), "{{ title }}{{ title }}")
    assert message.photo is not None
    plain = telegram.as_plain(message)
    assert len(plain) <= 1024 and plain.startswith("<x><x>")


def test_discord_template_shows_no_mention_the_operator_text_carries() -> None:
    view = view_of(live_match("t"))
    message = discord.render(view, "@everyone <@&999> <@5> {{ title }}", mention_role=1234)
    everything = {"parse": ["everyone", "roles", "users"]}
    assert pinged(message.content or "", everything) == {
        "everyone": False,
        "roles": [1234],
        "users": [],
    }


def test_discord_template_content_fits_2000_with_the_mention() -> None:
    view = view_of(live_match("*" * 5000))
    message = discord.render(view, "{{ title }}{{ title }}{{ title }}", mention_role=1234)
    content = message.content or ""
    assert content.startswith("<@&1234> \\*\\*") and content.endswith("…")
    assert len(content) <= 2000
    assert not content.endswith("\\…"), "an escape is never cut from its character"


def test_discord_title_is_cut_after_escaping() -> None:
    embed = discord.render(view_of(live_match("_" * 5000))).embed
    assert embed["title"] == "\\_" * 127 + "…"


def test_discord_timestamps_no_calendar_holds_are_left_out() -> None:
    view = view_of(live_match("t"))
    far = AlertView(view.kind, view.rule, {**view.fields, "at": 1e300})
    assert "timestamp" not in discord.render(far).embed


def test_discord_embed_over_6000_gives_way_from_the_description_then_the_last_fields() -> None:
    embed = discord._Embed(
        0,
        title=[discord.Field("t" * 300)],
        description=[discord.Field("d" * 5000)],
        fields=[(f"f{i}", [discord.Field("v" * 2000)]) for i in range(30)],
    ).build()
    assert embed_problems(embed) == []
    assert "description" not in embed, "the description went first"
    assert [f["name"] for f in embed["fields"]] == [f"f{i}" for i in range(6)], "then the last"
    assert len(embed["title"]) == 256


def test_console_strips_controls_and_lone_surrogates() -> None:
    view = view_of(live_match("t"))
    line = console.render(
        AlertView(view.kind, view.rule, {**view.fields, "title": "a\x1b[31m\ud800b\x07"})
    )
    assert "a[31m\ufffdb" in line
    line.encode("utf-8")


# --- a template that fails at run time; links a template inserts ---------------------------


def test_a_template_that_fails_at_run_time_sends_the_default_and_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Before: the whole alert was `(template error: ZeroDivisionError)`, and nothing said
    which rule. 12 viewers, a value no sample had, divides by zero."""
    view = view_of(live_match("Morning"))
    failing = "{{ 100 // (viewers - 12) }} watching {{ user_name }}"
    with caplog.at_level(logging.WARNING, logger="notifier"):
        html = telegram.render(view, failing).html
        message = discord.render(view, failing, mention_role=1234)
        line = console.render(view, failing)
        telegram.render(view, failing)
    assert html == telegram.render(view).html
    assert parse_html(html).startswith("🔴 SNEAKO is live")
    assert message.content == "<@&1234> " and message.embed == discord.render(view).embed
    assert line == console.render(view)
    failed = [r for r in caplog.records if r.getMessage() == "template.failed"]
    assert len(failed) == 1
    assert failed[0].notifier_fields["rule"] == "friends"  # type: ignore[attr-defined]
    assert "ZeroDivisionError" in failed[0].notifier_fields["error"]  # type: ignore[attr-defined]


def test_discord_template_links_stay_links_while_text_is_escaped() -> None:
    """Before: `{{ url }}` came out as `https\\://parti.com/...`, which Discord shows as
    text, not a link."""
    view = view_of(live_match("**loud**", name="a_b"))
    message = discord.render(view, "{{ user_name }} {{ title }}: {{ url }} [watch]({{ url }})")
    url = "https://parti.com/creator/parti/a_b"
    assert message.content == f"a\\_b \\*\\*loud\\*\\*: {url} [watch]({url})"


@pytest.mark.parametrize("target", ["discord", "telegram"])
def test_a_link_field_that_is_no_plain_url_stays_escaped_text(target: str) -> None:
    view = view_of(live_match("t"))
    hostile = "https://parti.com/x) [y](https://evil.example) <b>@everyone"
    view.fields["url"] = hostile
    if target == "discord":
        content = discord.render(view, "{{ url }}").content or ""
        assert content.startswith("https\\://parti.com/x\\)") and "@\u200beveryone" in content
    else:
        html = telegram.render(view, '<a href="{{ url }}">x</a>').html
        assert parse_html(html) == "x" and "&lt;b&gt;" in html


def test_telegram_template_links_are_not_cut() -> None:
    """A link longer than a field's cap (1000) was cut with `…`: a link to nowhere."""
    view = view_of(live_match("t"))
    long_url = "https://parti.com/creator/parti/" + "a" * 1500
    view.fields["url"], view.fields["image"] = long_url, ""  # no photo: 4096, not 1024
    html = telegram.render(view, '<a href="{{ url }}">watch</a> {{ url }}').html
    assert html == f'<a href="{long_url}">watch</a> {long_url}'
