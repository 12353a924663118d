"""Discord rendering (pure): an embed within Discord's limits; markdown and mentions escaped."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from notifier.render.fields import AlertView, clean
from notifier.render.templates import render_template
from notifier.render.text import discord_escape, shorten

CONTENT_LIMIT = 2000
TITLE_LIMIT = 256
DESCRIPTION_LIMIT = 4096
FIELD_NAME_LIMIT = 256
FIELD_VALUE_LIMIT = 1024
FOOTER_LIMIT = 2048
AUTHOR_LIMIT = 256
TOTAL_LIMIT = 6000

COLOURS = {
    "live": 0xE0245E,
    "ended": 0x72767D,
    "up": 0x2ECC71,
    "down": 0xE74C3C,
    "scheduled": 0x5865F2,
    "test": 0x95A5A6,
}


@dataclass(frozen=True)
class DiscordMessage:
    content: str | None
    embed: dict[str, Any] = field(default_factory=dict)
    mention_role: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"content": self.content, "embed": self.embed, "mention_role": self.mention_role}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DiscordMessage:
        return cls(data.get("content"), dict(data.get("embed") or {}), data.get("mention_role"))


def render(
    view: AlertView, template: str | None = None, *, mention_role: int | None = None
) -> DiscordMessage:
    f = view.fields
    mention = f"<@&{int(mention_role)}> " if mention_role else ""
    content: str | None = None
    if template is not None:
        escaped = {k: discord_escape(v) if isinstance(v, str) else v for k, v in f.items()}
        content = shorten(render_template(template, escaped), CONTENT_LIMIT - len(mention))
    builder = {"live": _live, "price": _price, "scheduled": _scheduled}.get(view.kind, _test)
    embed = _within_total(builder(f))
    if mention:
        content = mention + (content or "")
    return DiscordMessage(content, embed, mention_role)


def _timestamp(at: object) -> str | None:
    if isinstance(at, int | float):
        return dt.datetime.fromtimestamp(at, tz=dt.UTC).isoformat()
    return None


def _live(f: dict[str, Any]) -> dict[str, Any]:
    ended = bool(f.get("ended"))
    name = shorten(clean(f["user_name"]), AUTHOR_LIMIT - 12)
    title = shorten(f.get("title") or "Live on Parti", TITLE_LIMIT - 40)
    embed: dict[str, Any] = {
        "author": {"name": f"{name} {'was' if ended else 'is'} live", "url": f["url"]},
        "title": discord_escape(title),
        "url": f["url"],
        "color": COLOURS["ended" if ended else "live"],
        "footer": {
            "text": "Parti" + (" · caught up after a reconnect" if f.get("caught_up") else "")
        },
    }
    if f.get("avatar"):
        embed["author"]["icon_url"] = f["avatar"]
        embed["thumbnail"] = {"url": f["avatar"]}
    if f.get("image") and not ended:
        embed["image"] = {"url": f["image"]}
    if f.get("description"):
        embed["description"] = discord_escape(shorten(f["description"], 300))
    fields = []
    if f.get("category"):
        fields.append(("Category", discord_escape(f["category"])))
    if isinstance(f.get("viewers"), int) and not ended:
        fields.append(("Viewers", f"{f['viewers']:,}"))
    if isinstance(f.get("followers"), int):
        fields.append(("Followers", f"{f['followers']:,}"))
    if ended:
        fields.append(("Ended", f"lasted {f.get('duration', '')}"))
        if isinstance(f.get("peak_viewers"), int):
            fields.append(("Peak viewers", f"{f['peak_viewers']:,}"))
    embed["fields"] = [
        {
            "name": shorten(n, FIELD_NAME_LIMIT),
            "value": shorten(v, FIELD_VALUE_LIMIT),
            "inline": True,
        }
        for n, v in fields[:25]
    ]
    if (stamp := _timestamp(f.get("at"))) is not None:
        embed["timestamp"] = stamp
    return embed


def _price(f: dict[str, Any]) -> dict[str, Any]:
    up = f.get("direction") == "up"
    arrow = "📈" if up else "📉"
    if f.get("kind") == "move":
        title = f"{arrow} {f['asset']} moved {f['change']} within {f['window']}"
        description = f"Now **{discord_escape(f['price'])}**"
    else:
        title = f"{arrow} {f['asset']} crossed {'above' if up else 'below'} {f['line']}"
        description = (
            f"Now **{discord_escape(f['price'])}** ({discord_escape(f['change'])} from the line)"
        )
    embed: dict[str, Any] = {
        "title": discord_escape(shorten(title, TITLE_LIMIT)),
        "description": description,
        "color": COLOURS["up" if up else "down"],
        "footer": {"text": f"rule {shorten(clean(f.get('rule', '')), 100)}"},
    }
    if (stamp := _timestamp(f.get("at"))) is not None:
        embed["timestamp"] = stamp
    return embed


def _scheduled(f: dict[str, Any]) -> dict[str, Any]:
    embed: dict[str, Any] = {
        "author": {"name": shorten(clean(f["user_name"]), AUTHOR_LIMIT), "url": f["url"]},
        "title": discord_escape(f"⏰ Live in {f['starts_in']}"),
        "url": f["url"],
        "color": COLOURS["scheduled"],
    }
    if f.get("title"):
        embed["description"] = discord_escape(shorten(f["title"], 1000))
    if isinstance(f.get("starts_at"), int):
        embed["timestamp"] = dt.datetime.fromtimestamp(f["starts_at"], tz=dt.UTC).isoformat()
    return embed


def _test(f: dict[str, Any]) -> dict[str, Any]:
    destination = discord_escape(shorten(clean(str(f.get("destination", ""))), 100))
    return {
        "title": "✅ parti-notifier test alert",
        "description": f"destination {destination}",
        "color": COLOURS["test"],
    }


def embed_text_length(embed: dict[str, Any]) -> int:
    """Characters Discord counts toward the 6,000 total of an embed."""
    total = len(embed.get("title", "")) + len(embed.get("description", ""))
    total += len(embed.get("author", {}).get("name", "")) + len(
        embed.get("footer", {}).get("text", "")
    )
    for item in embed.get("fields", []):
        total += len(item["name"]) + len(item["value"])
    return total


def _within_total(embed: dict[str, Any]) -> dict[str, Any]:
    # Every part is already bounded; the description yields first if the sum is too long.
    overflow = embed_text_length(embed) - TOTAL_LIMIT
    if overflow > 0 and "description" in embed:
        embed["description"] = shorten(
            embed["description"], max(0, len(embed["description"]) - overflow)
        )
    return embed
