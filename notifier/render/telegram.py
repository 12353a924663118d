"""Telegram rendering (pure): HTML parse mode, a photo with caption when there is a picture.

Every untrusted field is escaped and then cut so that the parsed text (what Telegram counts:
code points after entity parsing) fits 4096, or 1024 for a caption.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from notifier.render import tg_html
from notifier.render.fields import AlertView, cleaned
from notifier.render.templates import render_template
from notifier.render.text import TELEGRAM, Field, Part, fit, shorten, tg_escape, tg_plain

TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024

NAME_CAP = 100
LABEL_CAP = 100  # category, destination
SHORT_CAP = 64  # numbers, durations, an asset symbol
URL_LIMIT = 2048  # a longer link is left out (its text stays)

_URL = re.compile(r"https://[^\s<>\"']+")


@dataclass(frozen=True)
class TelegramMessage:
    html: str
    photo: str | None = None  # a photo URL: sent with send_photo, `html` as its caption

    @property
    def limit(self) -> int:
        return CAPTION_LIMIT if self.photo else TEXT_LIMIT

    def to_json(self) -> dict[str, Any]:
        return {"html": self.html, "photo": self.photo}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TelegramMessage:
        return cls(data["html"], data.get("photo"))


def render(view: AlertView, template: str | None = None) -> TelegramMessage:
    fields = cleaned(view.fields)
    photo = _link(fields.get("image")) if view.kind == "live" else None
    limit = CAPTION_LIMIT if photo else TEXT_LIMIT
    if template is not None:
        body = _fit_markup(render_template(template, fields, escape=tg_escape), limit)
        if tg_plain(body).strip():  # Telegram refuses an empty text: else the default below
            return TelegramMessage(body, photo)
    parts = _BUILDERS.get(view.kind, _test)(fields)
    return TelegramMessage(fit(parts, limit, TELEGRAM), photo)


def as_plain(message: TelegramMessage) -> str:
    """The message's visible text, cut to its limit: what to send without a parse mode."""
    return shorten(tg_plain(message.html), message.limit)


def _fit_markup(body: str, limit: int) -> str:
    """A template's output (trusted markup, escaped fields) within `limit`, still valid.

    Valid and short enough: as it is. Too long: cut between tokens and closed again. Not
    valid: sent as it is when it fits anyway (Telegram answers, and the alert is retried
    as plain text), else its text, escaped and cut.
    """
    try:
        return tg_html.cut(body, limit)
    except tg_html.Invalid:
        if len(body) <= limit:
            return body
        return tg_escape(shorten(tg_plain(body), limit))


def _link(url: object) -> str | None:
    if isinstance(url, str) and len(url) <= URL_LIMIT and _URL.fullmatch(url):
        return url
    return None


def _name(f: dict[str, Any]) -> list[Part]:
    name = Field(str(f.get("user_name", "")), NAME_CAP, order=2)
    url = _link(f.get("url"))
    if url is None:
        return ["<b>", name, "</b>"]
    return [f'<b><a href="{tg_escape(url)}">', name, "</a></b>"]


def _number(value: object) -> str | None:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else None


def _live(f: dict[str, Any]) -> list[Part]:
    ended = bool(f.get("ended"))
    parts: list[Part] = ["⚫ " if ended else "🔴 ", *_name(f), " was live" if ended else " is live"]
    if f.get("caught_up"):
        parts.append(" <i>(while we were reconnecting)</i>")
    if f.get("title"):
        parts += ["\n", Field(str(f["title"]), order=0)]
    facts: list[list[Part]] = []
    if f.get("category"):
        facts.append(["🏷 ", Field(str(f["category"]), LABEL_CAP, order=1)])
    if (viewers := _number(f.get("viewers"))) is not None and not ended:
        facts.append([f"👀 {viewers} watching"])
    if (followers := _number(f.get("followers"))) is not None:
        facts.append([f"👥 {followers} followers"])
    for index, fact in enumerate(facts):
        parts += ["\n" if index == 0 else " · ", *fact]
    if ended:
        parts += ["\n<i>Stream ended · lasted ", Field(str(f.get("duration", "")), SHORT_CAP)]
        if (peak := _number(f.get("peak_viewers"))) is not None:
            parts.append(f" · peak {peak} viewers")
        parts.append("</i>")
    return parts


def _price(f: dict[str, Any]) -> list[Part]:
    arrow = "📈" if f.get("direction") == "up" else "📉"
    head: list[Part] = [f"{arrow} <b>", Field(str(f.get("asset", "")), SHORT_CAP), "</b>"]
    price: list[Part] = ["\nNow <b>", Field(str(f.get("price", "")), SHORT_CAP), "</b>"]
    change = Field(str(f.get("change", "")), SHORT_CAP)
    if f.get("kind") == "move":
        window = Field(str(f.get("window", "")), SHORT_CAP)
        return [*head, " moved ", change, " within ", window, *price]
    side = "above" if f.get("direction") == "up" else "below"
    line = Field(str(f.get("line", "")), SHORT_CAP)
    return [*head, f" crossed {side} <b>", line, "</b>", *price, " (", change, " from the line)"]


def _scheduled(f: dict[str, Any]) -> list[Part]:
    starts_in = Field(str(f.get("starts_in", "")), SHORT_CAP)
    parts: list[Part] = ["⏰ ", *_name(f), " goes live in ", starts_in]
    if f.get("title"):
        parts += ["\n", Field(str(f["title"]), order=0)]
    return parts


def _test(f: dict[str, Any]) -> list[Part]:
    destination = Field(str(f.get("destination", "")), LABEL_CAP)
    return ["✅ <b>parti-notifier</b> test alert for <code>", destination, "</code>"]


_BUILDERS = {"live": _live, "price": _price, "scheduled": _scheduled, "test": _test}
