"""Escaping and fitting helpers shared by the renderers (pure)."""

from __future__ import annotations

import html
import re
from collections.abc import Callable

_TAG = re.compile(r"<[^>]*>")


def tg_escape(text: object) -> str:
    """Text for Telegram HTML: <, >, & and quotes become entities."""
    return html.escape(str(text), quote=True)


def tg_plain(markup: str) -> str:
    """The text a reader sees: tags removed, entities decoded."""
    return html.unescape(_TAG.sub("", markup))


def tg_visible_length(markup: str) -> int:
    """Length Telegram counts, in UTF-16 code units."""
    return len(tg_plain(markup).encode("utf-16-le")) // 2


def discord_escape(text: object) -> str:
    """Markdown and mentions neutralised: \\ before markdown, a zero-width space after @."""
    escaped = re.sub(r"([\\*_~`|>#\[\]()\-:])", r"\\\1", str(text))
    return escaped.replace("@", "@\u200b")


def shorten(text: str, limit: int) -> str:
    """At most `limit` characters, with an ellipsis when cut."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)].rstrip() + "…"


def fit(
    build: Callable[[int], str], measure: Callable[[str], int], limit: int, longest: int
) -> str:
    """`build(budget)` with the largest budget (for the untrusted free text) that fits `limit`.

    The budget shortens the plain text *before* it is escaped and placed, so a cut never
    lands inside a tag or an entity.
    """
    result = build(longest)
    if measure(result) <= limit:
        return result
    low, high = 0, longest
    while low < high:
        middle = (low + high + 1) // 2
        if measure(build(middle)) <= limit:
            low = middle
        else:
            high = middle - 1
    return build(low)
