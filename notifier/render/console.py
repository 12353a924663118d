"""Console rendering (pure): one readable line per alert, safe for any terminal."""

from __future__ import annotations

from typing import Any

from notifier.render.fields import AlertView, clean
from notifier.render.templates import render_template
from notifier.render.text import shorten


def render(view: AlertView, template: str | None = None) -> str:
    f = {k: clean(v) if isinstance(v, str) else v for k, v in view.fields.items()}
    if template is not None:
        return clean(shorten(render_template(template, f), 500))
    return clean(_BUILDERS.get(view.kind, _test)(f))


def _live(f: dict[str, Any]) -> str:
    if f.get("ended"):
        text = f"⚫ {f['user_name']} ended the stream (lasted {f.get('duration', '?')}"
        if f.get("peak_viewers") != "":
            text += f", peak {f['peak_viewers']} viewers"
        return text + ")"
    text = f"🔴 {f['user_name']} is live"
    if f.get("title"):
        text += f": {shorten(f['title'], 120)}"
    facts = [str(f["category"])] if f.get("category") else []
    if f.get("viewers") != "":
        facts.append(f"{f['viewers']} watching")
    if f.get("followers") != "":
        facts.append(f"{f['followers']:,} followers" if isinstance(f["followers"], int) else "")
    if facts := [x for x in facts if x]:
        text += f" [{', '.join(facts)}]"
    if f.get("caught_up"):
        text += " (caught up after a reconnect)"
    return f"{text} {f['url']}"


def _price(f: dict[str, Any]) -> str:
    arrow = "📈" if f.get("direction") == "up" else "📉"
    if f.get("kind") == "move":
        return f"{arrow} {f['asset']} moved {f['change']} within {f['window']}: now {f['price']}"
    side = "above" if f.get("direction") == "up" else "below"
    return f"{arrow} {f['asset']} crossed {side} {f['line']}: now {f['price']} ({f['change']})"


def _scheduled(f: dict[str, Any]) -> str:
    return f"⏰ {f['user_name']} goes live in {f['starts_in']}: {shorten(f.get('title', ''), 120)}"


def _test(f: dict[str, Any]) -> str:
    return f"✅ parti-notifier test alert for {f.get('destination', '')}"


_BUILDERS = {"live": _live, "price": _price, "scheduled": _scheduled, "test": _test}
