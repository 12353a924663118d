"""Telegram rendering (pure): HTML parse mode, a photo with caption when there is a picture."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from notifier.render.fields import AlertView, clean
from notifier.render.templates import render_template
from notifier.render.text import fit, shorten, tg_escape, tg_plain, tg_visible_length

TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024


@dataclass(frozen=True)
class TelegramMessage:
    html: str
    photo: str | None = None  # a photo URL: sent with send_photo, `html` as its caption

    def to_json(self) -> dict[str, Any]:
        return {"html": self.html, "photo": self.photo}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TelegramMessage:
        return cls(data["html"], data.get("photo"))


def render(view: AlertView, template: str | None = None) -> TelegramMessage:
    photo = view.fields.get("image") or None if view.kind == "live" else None
    limit = CAPTION_LIMIT if photo else TEXT_LIMIT
    if template is not None:
        escaped = {k: tg_escape(v) if isinstance(v, str) else v for k, v in view.fields.items()}
        body = render_template(template, escaped)
        text = body if tg_visible_length(body) <= limit else _plain_cut(body, limit)
        return TelegramMessage(text, photo)
    builder = _BUILDERS.get(view.kind, _test)
    text = fit(lambda budget: builder(view.fields, budget), tg_visible_length, limit, 4000)
    return TelegramMessage(text, photo)


def _plain_cut(body: str, limit: int) -> str:
    # A custom template's output that is too long: its text, escaped and cut.
    return tg_escape(shorten(tg_plain(body), limit))


def _live(f: dict[str, Any], budget: int) -> str:
    name = f'<b><a href="{tg_escape(f["url"])}">{tg_escape(f["user_name"])}</a></b>'
    head = ("🔴 " if not f.get("ended") else "⚫ ") + name
    head += " was live" if f.get("ended") else " is live"
    if f.get("caught_up"):
        head += " <i>(while we were reconnecting)</i>"
    lines = [head]
    if f.get("title"):
        lines.append(tg_escape(shorten(f["title"], budget)))
    facts = []
    if f.get("category"):
        facts.append(f"🏷 {tg_escape(f['category'])}")
    if f.get("viewers") != "" and not f.get("ended"):
        facts.append(f"👀 {f['viewers']:,} watching" if isinstance(f["viewers"], int) else "")
    if f.get("followers") != "":
        facts.append(f"👥 {f['followers']:,} followers" if isinstance(f["followers"], int) else "")
    if facts := [x for x in facts if x]:
        lines.append(" · ".join(facts))
    if f.get("ended"):
        ended = f"Stream ended · lasted {tg_escape(f.get('duration', ''))}"
        if f.get("peak_viewers") != "":
            ended += f" · peak {f['peak_viewers']:,} viewers"
        lines.append(f"<i>{ended}</i>")
    return "\n".join(lines)


def _price(f: dict[str, Any], budget: int) -> str:
    asset = f"<b>{tg_escape(f['asset'])}</b>"
    arrow = "📈" if f.get("direction") == "up" else "📉"
    if f.get("kind") == "move":
        return (
            f"{arrow} {asset} moved {tg_escape(f['change'])} within {tg_escape(f['window'])}"
            f"\nNow <b>{tg_escape(f['price'])}</b>"
        )
    side = "above" if f.get("direction") == "up" else "below"
    return (
        f"{arrow} {asset} crossed {side} <b>{tg_escape(f['line'])}</b>"
        f"\nNow <b>{tg_escape(f['price'])}</b> ({tg_escape(f['change'])} from the line)"
    )


def _scheduled(f: dict[str, Any], budget: int) -> str:
    name = f'<b><a href="{tg_escape(f["url"])}">{tg_escape(f["user_name"])}</a></b>'
    text = f"⏰ {name} goes live in {tg_escape(f['starts_in'])}"
    if f.get("title"):
        text += "\n" + tg_escape(shorten(f["title"], budget))
    return text


def _test(f: dict[str, Any], budget: int) -> str:
    return (
        f"✅ <b>parti-notifier</b> test alert for "
        f"<code>{tg_escape(clean(str(f.get('destination', ''))))}</code>"
    )


_BUILDERS = {"live": _live, "price": _price, "scheduled": _scheduled, "test": _test}
