"""Telegram rendering (pure): HTML parse mode, a photo with caption when there is a picture.

Every untrusted field is escaped and then cut so that the parsed text (what Telegram counts:
code points after entity parsing) fits 4096, or 1024 for a caption.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from notifier.render import tg_html
from notifier.render.fields import (
    AlertView,
    LiveFields,
    PriceFields,
    ScheduledFields,
    is_ended,
    is_live,
    is_price,
    is_scheduled,
    is_test,
)
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
    view = view.cleaned()
    photo = _link(view.fields["image"]) if is_live(view) else None
    limit = CAPTION_LIMIT if photo else TEXT_LIMIT
    made = None
    if template is not None:
        # A link field whole (escaped, as an href needs, and still a link): a cut one leads
        # nowhere. None: the template failed, the default message below is sent.
        made = render_template(
            template, view.fields, escape=tg_escape, link=tg_escape, rule=view.rule
        )
    if made is not None:
        body = _fit_markup(made, limit)
        if tg_plain(body).strip():  # Telegram refuses an empty text: else the default below
            return TelegramMessage(body, photo)
    return TelegramMessage(fit(_parts(view), limit, TELEGRAM), photo)


def _parts(view: AlertView) -> list[Part]:
    if is_live(view):
        return _live(view.fields)
    if is_price(view):
        return _price(view.fields)
    if is_scheduled(view):
        return _scheduled(view.fields)
    # A test alert, or a kind this version does not know: the test alert's words.
    return _test(view.fields["destination"] if is_test(view) else "")


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


def _name(f: LiveFields | ScheduledFields) -> list[Part]:
    name = Field(str(f["user_name"]), NAME_CAP, order=2)
    url = _link(f["url"])
    if url is None:
        return ["<b>", name, "</b>"]
    return [f'<b><a href="{tg_escape(url)}">', name, "</a></b>"]


def _number(value: object) -> str | None:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else None


def _live(f: LiveFields) -> list[Part]:
    ended = is_ended(f)
    parts: list[Part] = ["⚫ " if ended else "🔴 ", *_name(f), " was live" if ended else " is live"]
    if f["caught_up"]:
        parts.append(" <i>(while we were reconnecting)</i>")
    if f["title"]:
        parts += ["\n", Field(str(f["title"]), order=0)]
    facts: list[list[Part]] = []
    if f["category"]:
        facts.append(["🏷 ", Field(str(f["category"]), LABEL_CAP, order=1)])
    if (viewers := _number(f["viewers"])) is not None and not ended:
        facts.append([f"👀 {viewers} watching"])
    if (followers := _number(f["followers"])) is not None:
        facts.append([f"👥 {followers} followers"])
    for index, fact in enumerate(facts):
        parts += ["\n" if index == 0 else " · ", *fact]
    if is_ended(f):
        parts += ["\n<i>Stream ended · lasted ", Field(str(f["duration"]), SHORT_CAP)]
        if (peak := _number(f["peak_viewers"])) is not None:
            parts.append(f" · peak {peak} viewers")
        parts.append("</i>")
    return parts


def _price(f: PriceFields) -> list[Part]:
    arrow = "📈" if f["direction"] == "up" else "📉"
    head: list[Part] = [f"{arrow} <b>", Field(str(f["asset"]), SHORT_CAP), "</b>"]
    price: list[Part] = ["\nNow <b>", Field(str(f["price"]), SHORT_CAP), "</b>"]
    change = Field(str(f["change"]), SHORT_CAP)
    if f["kind"] == "move":
        window = Field(str(f["window"]), SHORT_CAP)
        return [*head, " moved ", change, " within ", window, *price]
    side = "above" if f["direction"] == "up" else "below"
    line = Field(str(f["line"]), SHORT_CAP)
    return [*head, f" crossed {side} <b>", line, "</b>", *price, " (", change, " from the line)"]


def _scheduled(f: ScheduledFields) -> list[Part]:
    starts_in = Field(str(f["starts_in"]), SHORT_CAP)
    parts: list[Part] = ["⏰ ", *_name(f), " goes live in ", starts_in]
    if f["title"]:
        parts += ["\n", Field(str(f["title"]), order=0)]
    return parts


def _test(destination: str) -> list[Part]:
    return [
        "✅ <b>parti-notifier</b> test alert for <code>",
        Field(str(destination), LABEL_CAP),
        "</code>",
    ]
