"""Console rendering (pure): one readable line per alert, safe for any terminal."""

from __future__ import annotations

from notifier.render.fields import (
    AlertView,
    LiveFields,
    PriceFields,
    ScheduledFields,
    clean,
    is_ended,
    is_live,
    is_price,
    is_scheduled,
    is_test,
)
from notifier.render.templates import render_template
from notifier.render.text import PLAIN, Field, Part, fit, shorten

LINE_LIMIT = 1000
TEMPLATE_LIMIT = 500
NAME_CAP = 100
LABEL_CAP = 100
SHORT_CAP = 64
TITLE_CAP = 120


def render(view: AlertView, template: str | None = None) -> str:
    view = view.cleaned()
    made = None
    if template is not None:
        made = render_template(template, view.fields, escape=str, rule=view.rule)
    if made is not None:  # None: the template failed, the default line is shown
        # No escaping on a terminal; `clean` removes control characters and overrides.
        return shorten(clean(made), TEMPLATE_LIMIT)
    return clean(fit(_parts(view), LINE_LIMIT, PLAIN))


def _parts(view: AlertView) -> list[Part]:
    if is_live(view):
        return _live(view.fields)
    if is_price(view):
        return _price(view.fields)
    if is_scheduled(view):
        return _scheduled(view.fields)
    # A test alert, or a kind this version does not know: the test alert's words.
    return _test(view.fields["destination"] if is_test(view) else "")


def _number(value: object) -> str | None:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: object, cap: int, order: int = 1) -> Field:
    return Field(str(value), cap, order)


def _live(f: LiveFields) -> list[Part]:
    name = _text(f["user_name"], NAME_CAP, order=2)
    if is_ended(f):
        parts: list[Part] = ["⚫ ", name, " ended the stream (lasted "]
        parts.append(_text(f["duration"], SHORT_CAP) if f["duration"] else "?")
        if (peak := _number(f["peak_viewers"])) is not None:
            parts.append(f", peak {peak} viewers")
        return [*parts, ")"]
    parts = ["🔴 ", name, " is live"]
    if f["title"]:
        parts += [": ", _text(f["title"], TITLE_CAP, order=0)]
    facts: list[list[Part]] = []
    if f["category"]:
        facts.append([_text(f["category"], LABEL_CAP)])
    if (viewers := _number(f["viewers"])) is not None:
        facts.append([f"{viewers} watching"])
    if (followers := _number(f["followers"])) is not None:
        facts.append([f"{followers} followers"])
    if facts:
        parts.append(" [")
        for index, fact in enumerate(facts):
            parts += [", ", *fact] if index else fact
        parts.append("]")
    if f["caught_up"]:
        parts.append(" (caught up after a reconnect)")
    url = str(f["url"])
    return [*parts, " ", Field(url, LINE_LIMIT // 4)] if url else parts


def _price(f: PriceFields) -> list[Part]:
    arrow = "📈" if f["direction"] == "up" else "📉"
    asset, price = _text(f["asset"], SHORT_CAP), _text(f["price"], SHORT_CAP)
    change = _text(f["change"], SHORT_CAP)
    if f["kind"] == "move":
        window = _text(f["window"], SHORT_CAP)
        return [f"{arrow} ", asset, " moved ", change, " within ", window, ": now ", price]
    side = "above" if f["direction"] == "up" else "below"
    line = _text(f["line"], SHORT_CAP)
    return [f"{arrow} ", asset, f" crossed {side} ", line, ": now ", price, " (", change, ")"]


def _scheduled(f: ScheduledFields) -> list[Part]:
    name, starts_in = _text(f["user_name"], NAME_CAP, 2), _text(f["starts_in"], SHORT_CAP)
    return ["⏰ ", name, " goes live in ", starts_in, ": ", _text(f["title"], TITLE_CAP, 0)]


def _test(destination: str) -> list[Part]:
    return ["✅ parti-notifier test alert for ", _text(destination, LABEL_CAP)]
