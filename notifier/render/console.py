"""Console rendering (pure): one readable line per alert, safe for any terminal."""

from __future__ import annotations

from typing import Any

from notifier.render.fields import AlertView, clean, cleaned
from notifier.render.templates import render_template
from notifier.render.text import PLAIN, Field, Part, fit, shorten

LINE_LIMIT = 1000
TEMPLATE_LIMIT = 500
NAME_CAP = 100
LABEL_CAP = 100
SHORT_CAP = 64
TITLE_CAP = 120


def render(view: AlertView, template: str | None = None) -> str:
    f = cleaned(view.fields)
    if template is not None:
        # No escaping on a terminal; `clean` removes control characters and overrides.
        return shorten(clean(render_template(template, f, escape=str)), TEMPLATE_LIMIT)
    return clean(fit(_BUILDERS.get(view.kind, _test)(f), LINE_LIMIT, PLAIN))


def _number(value: object) -> str | None:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else None


def _text(f: dict[str, Any], key: str, cap: int, order: int = 1) -> Field:
    return Field(str(f.get(key, "")), cap, order)


def _live(f: dict[str, Any]) -> list[Part]:
    name = _text(f, "user_name", NAME_CAP, order=2)
    if f.get("ended"):
        parts: list[Part] = ["⚫ ", name, " ended the stream (lasted "]
        parts.append(_text(f, "duration", SHORT_CAP) if f.get("duration") else "?")
        if (peak := _number(f.get("peak_viewers"))) is not None:
            parts.append(f", peak {peak} viewers")
        return [*parts, ")"]
    parts = ["🔴 ", name, " is live"]
    if f.get("title"):
        parts += [": ", _text(f, "title", TITLE_CAP, order=0)]
    facts: list[list[Part]] = []
    if f.get("category"):
        facts.append([_text(f, "category", LABEL_CAP)])
    if (viewers := _number(f.get("viewers"))) is not None:
        facts.append([f"{viewers} watching"])
    if (followers := _number(f.get("followers"))) is not None:
        facts.append([f"{followers} followers"])
    if facts:
        parts.append(" [")
        for index, fact in enumerate(facts):
            parts += [", ", *fact] if index else fact
        parts.append("]")
    if f.get("caught_up"):
        parts.append(" (caught up after a reconnect)")
    url = str(f.get("url", ""))
    return [*parts, " ", Field(url, LINE_LIMIT // 4)] if url else parts


def _price(f: dict[str, Any]) -> list[Part]:
    arrow = "📈" if f.get("direction") == "up" else "📉"
    asset, price = _text(f, "asset", SHORT_CAP), _text(f, "price", SHORT_CAP)
    change = _text(f, "change", SHORT_CAP)
    if f.get("kind") == "move":
        window = _text(f, "window", SHORT_CAP)
        return [f"{arrow} ", asset, " moved ", change, " within ", window, ": now ", price]
    side = "above" if f.get("direction") == "up" else "below"
    line = _text(f, "line", SHORT_CAP)
    return [f"{arrow} ", asset, f" crossed {side} ", line, ": now ", price, " (", change, ")"]


def _scheduled(f: dict[str, Any]) -> list[Part]:
    name, starts_in = _text(f, "user_name", NAME_CAP, 2), _text(f, "starts_in", SHORT_CAP)
    return ["⏰ ", name, " goes live in ", starts_in, ": ", _text(f, "title", TITLE_CAP, 0)]


def _test(f: dict[str, Any]) -> list[Part]:
    return ["✅ parti-notifier test alert for ", _text(f, "destination", LABEL_CAP)]


_BUILDERS = {"live": _live, "price": _price, "scheduled": _scheduled, "test": _test}
