"""Views stored in outboxes before the fields were typed: the same JSON, the same messages.

`stored_views.json` was written by the code before typed fields (commit 0d0db0d): each
case is an outbox payload as it was stored, and what the three renderers made of it then.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from notifier.parti.models import CalendarEvent, ChannelLive, PriceUpdate, UserProfile
from notifier.render import console, discord, telegram
from notifier.render import fields as alert_fields
from notifier.render.fields import AlertView, ended_fields, view_of
from notifier.rules.engine import Match

STORED = json.loads((Path(__file__).parent / "stored_views.json").read_text(encoding="utf-8"))
AT = 1_764_300_000.0
TEMPLATE = "<b>{{ user_name }}</b>: {{ title }} ({{ viewers }})"


def views() -> dict[str, tuple[AlertView, str | None]]:
    """The views of the stored cases, made by today's code (with the template they had)."""
    event = ChannelLive(
        user_id=463000,
        user_name="SNEAKO",
        event_id=1,
        livestream_id=2,
        event_title="Tom & <Jerry> **live** @everyone",
        category_name="IRL",
        viewers_count=1234,
        event_file="https://assets.parti.com/t.png",
        avatar_link="https://assets.parti.com/a.png",
        social_media="parti",
        social_username="SNEAKO",
    )
    profile = UserProfile(
        user_id=463000,
        user_name="SNEAKO",
        members=4340,
        description="Streaming daily\nsecond line",
    )
    live_match = Match("friends", "me", "live", "463000", "live:463000:event:1", AT, event)
    live = view_of(live_match, profile, caught_up=True)
    ended = AlertView(
        "live", "friends", ended_fields(live.fields, ended_at=AT + 3900, peak_viewers=2000)
    )
    btc = PriceUpdate(display_symbol="btc", ticker="bitcoin", price=Decimal("100250.5"))
    line_details = {
        "kind": "line",
        "direction": "up",
        "line": Decimal(100000),
        "change": Decimal("0.2505"),
    }
    eth = PriceUpdate(display_symbol="ETH", ticker="ethereum", price=Decimal("2999.125"))
    move_details = {"kind": "move", "direction": "down", "change": Decimal("-5.5"), "window": 900}
    calendar = CalendarEvent(
        event_id=5,
        user_id=1,
        user_name="Chilly",
        event_title="Q&A night",
        event_start_ts=int(AT) + 5400,
    )
    return {
        "live": (live, None),
        "ended": (ended, None),
        "line": (view_of(Match("btc", "me", "price", "BTC", "p", AT, btc, line_details)), None),
        "move": (view_of(Match("eth", "me", "price", "ETH", "p", AT, eth, move_details)), None),
        "scheduled": (view_of(Match("s", "me", "scheduled", "5", "s:5", AT, calendar)), None),
        "test": (alert_fields.test_view("group", AT), None),
        "template": (live, TEMPLATE),
    }


def render_all(payload: dict[str, Any]) -> dict[str, Any]:
    """What each sender makes of a stored payload (Discord with a role to mention)."""
    view = AlertView.from_json(payload["view"])
    template = payload.get("template")
    return {
        "telegram": telegram.render(view, template).to_json(),
        "discord": discord.render(view, template, mention_role=42).to_json(),
        "console": console.render(view, template),
    }


def stored_payload(view: AlertView, template: str | None) -> str:
    """The payload's text as the outbox stores it."""
    return json.dumps({"view": view.to_json(), "template": template}, ensure_ascii=False)


@pytest.mark.parametrize("case", STORED["cases"], ids=lambda case: case["name"])
def test_a_view_stored_before_typed_fields_renders_the_same(case: dict[str, Any]) -> None:
    assert render_all(json.loads(case["payload"])) == case["rendered"]


@pytest.mark.parametrize("case", STORED["cases"], ids=lambda case: case["name"])
def test_views_are_stored_as_the_same_json(case: dict[str, Any]) -> None:
    view, template = views()[case["name"]]
    assert stored_payload(view, template) == case["payload"], "same keys, same order"


def write_stored_views(path: Path) -> None:
    """Record today's payloads and renderings (run once, by hand, before a format change)."""
    cases = []
    for name, (view, template) in views().items():
        payload = stored_payload(view, template)
        cases.append(
            {"name": name, "payload": payload, "rendered": render_all(json.loads(payload))}
        )
    path.write_text(json.dumps({"cases": cases}, ensure_ascii=False, indent=1) + "\n")


if __name__ == "__main__":
    write_stored_views(Path(__file__).parent / "stored_views.json")
