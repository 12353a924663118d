"""Escaping and fitting shared by the renderers (pure): untrusted text is cut after escaping.

A message is a sequence of parts: trusted text already in the target's syntax (our own
markup) and `Field`s (untrusted text, unescaped). `fit` escapes every field, measures it
as the chat counts it, and cuts the fields (whole escaped characters only, so never
inside a tag, an entity or an escape) until the whole message fits its limit.
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from notifier.render import tg_html

ELLIPSIS = "…"
UNLIMITED = 1 << 30

# Not worth ending a cut on: spaces, and joiners or selectors left without their emoji.
_DANGLING = " \t\n\u200b\u200c\u200d\u2060\ufe0e\ufe0f"


@dataclass(frozen=True)
class Field:
    """Untrusted text: escaped for the target, counted as the chat counts it, cut to fit.

    `cap` is the most it may take (counted after escaping); fields with a lower `order`
    give up their room first when the whole message is too long.
    """

    value: str
    cap: int = UNLIMITED
    order: int = 0


Part = str | Field


@dataclass(frozen=True)
class Syntax:
    """How a chat reads text: each character's escaped form, and what it counts."""

    units: Callable[[str], list[str]]  # the escaped form of each character of a value
    weight: Callable[[str], int]  # what the chat counts for one escaped character
    trusted_length: Callable[[str], int]  # what the chat counts for our own markup
    # True for a value whose escaped form is itself, each character counting one (most
    # names and titles): it is then neither escaped nor weighed character by character.
    shown_as_is: Callable[[str], bool] = lambda value: False


class DoesNotFit(ValueError):
    """Our own text alone is longer than the limit (a renderer bug, or a tiny limit)."""


def fit(parts: Sequence[Part], limit: int, syntax: Syntax) -> str:
    """The parts joined, every field escaped and cut so the whole counts at most `limit`."""
    trusted = sum(syntax.trusted_length(p) for p in parts if isinstance(p, str))
    units: dict[int, Sequence[str]] = {}
    sizes: dict[int, int] = {}
    budget: dict[int, int] = {}
    for index, part in enumerate(parts):
        if isinstance(part, Field):
            value = part.value
            if syntax.shown_as_is(value):  # a str is the sequence of its characters
                units[index], sizes[index] = value, len(value)
            else:
                escaped = units[index] = syntax.units(value)
                sizes[index] = sum(map(syntax.weight, escaped))
            budget[index] = min(part.cap, sizes[index])
    over = trusted + sum(budget.values()) - limit
    for index in sorted(budget, key=lambda i: _order(parts[i])):
        if over <= 0:
            break
        given = min(over, budget[index])
        budget[index] -= given
        over -= given
    if over > 0:
        raise DoesNotFit(f"{trusted} characters of fixed text, limit {limit}")
    return "".join(
        part
        if isinstance(part, str)
        else "".join(units[index])
        if budget[index] >= sizes[index]
        else cut_units(units[index], budget[index], syntax.weight)
        for index, part in enumerate(parts)
    )


def _order(part: Part) -> int:
    return part.order if isinstance(part, Field) else 0


def cut_units(units: Sequence[str], budget: int, weight: Callable[[str], int]) -> str:
    """The longest run of whole escaped characters that fits `budget` with an ellipsis."""
    weights = [weight(u) for u in units]
    if sum(weights) <= budget:
        return "".join(units)
    if budget <= 0:
        return ""
    kept, used = 0, weight(ELLIPSIS)
    while kept < len(units) and used + weights[kept] <= budget:
        used += weights[kept]
        kept += 1
    while kept and units[kept - 1] in _DANGLING:
        kept -= 1
    return "".join(units[:kept]) + ELLIPSIS


def shorten(text: str, limit: int) -> str:
    """At most `limit` code points, with an ellipsis when cut."""
    return cut_units(list(text), limit, _one)


def _one(unit: str) -> int:
    return 1


# --- Telegram HTML -------------------------------------------------------------------


def tg_escape(text: object) -> str:
    """Text for Telegram HTML: <, >, & and quotes become entities."""
    return tg_html.escape(str(text))


_TAG = re.compile(r"<[^>]*>")


def tg_plain(markup: str) -> str:
    """The text a reader sees: tags removed, entities decoded (best effort if invalid)."""
    try:
        return tg_html.visible(markup)
    except tg_html.Invalid:
        return html.unescape(_TAG.sub("", markup))


_TG_CHANGED = re.compile("[&<>\"']")  # what tg_html.escape changes


def _tg_units(value: str) -> list[str]:
    return [tg_html.escape(c) for c in value]


@functools.lru_cache(maxsize=4096)  # a few dozen fragments, and the links of recent alerts
def _tg_trusted_length(markup: str) -> int:
    # Our own fragments (an opening tag here, its closing tag in a later part): tags count
    # nothing, an entity counts one.
    return len(html.unescape(_TAG.sub("", markup)))


TELEGRAM = Syntax(
    units=_tg_units,
    weight=_one,
    trusted_length=_tg_trusted_length,
    shown_as_is=lambda value: _TG_CHANGED.search(value) is None,
)

# --- Discord markdown ----------------------------------------------------------------

_MARKDOWN = frozenset("\\*_~`|>#[]()-:")
_LIST_NUMBER = re.compile(r"(?m)^[ \t]*[0-9]+\.")


def discord_units(text: str) -> list[str]:
    """Each character of `text` made inert in Discord markdown, counted as Discord counts.

    A backslash before markdown characters (also `:` and `#`, which make `<t:...>`,
    `<#channel>` and custom emoji inert), a zero-width space after `@` (no @everyone, no
    <@&role>), and the dot of `1.` at a line start (no ordered list).
    """
    list_dots = {m.end() - 1 for m in _LIST_NUMBER.finditer(text)}
    units = []
    for index, char in enumerate(text):
        if char in _MARKDOWN or index in list_dots:
            units.append("\\" + char)
        elif char == "@":
            units.append("@\u200b")
        else:
            units.append(char)
    return units


def discord_escape(text: object) -> str:
    """Markdown and mentions neutralised (see `discord_units`)."""
    return "".join(discord_units(str(text)))


def discord_inert_mentions(text: str) -> list[str]:
    """Plain text where Discord shows no markdown (author, footer), with mentions made inert
    anyway: a zero-width space after `@` and `<` (no @everyone, <#channel>, <t:...>)."""
    return [c + "\u200b" if c in "@<" else c for c in text]


_DISCORD_CHANGED = re.compile("[" + re.escape("".join(sorted(_MARKDOWN))) + "@]")


def _discord_as_is(text: str) -> bool:
    return _DISCORD_CHANGED.search(text) is None and _LIST_NUMBER.search(text) is None


DISCORD = Syntax(units=discord_units, weight=len, trusted_length=len, shown_as_is=_discord_as_is)
DISCORD_PLAIN = Syntax(
    units=discord_inert_mentions,
    weight=len,
    trusted_length=len,
    shown_as_is=lambda value: "@" not in value and "<" not in value,
)
PLAIN = Syntax(units=list, weight=_one, trusted_length=len, shown_as_is=lambda value: True)
