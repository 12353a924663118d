"""Discord rendering (pure): an embed within Discord's limits; markdown and mentions inert.

Discord counts characters (code points) after escaping, so every part is escaped first and
then cut: an escaped `*` counts two. Markdown shows in the title, the description and the
fields; the author and the footer show plain text, so there only `@` is made inert.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

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
from notifier.render.text import (
    DISCORD,
    DISCORD_PLAIN,
    DoesNotFit,
    Field,
    Part,
    Syntax,
    cut_units,
    discord_escape,
    fit,
)

CONTENT_LIMIT = 2000
TITLE_LIMIT = 256
DESCRIPTION_LIMIT = 4096
FIELD_NAME_LIMIT = 256
FIELD_VALUE_LIMIT = 1024
FOOTER_LIMIT = 2048
AUTHOR_LIMIT = 256
TOTAL_LIMIT = 6000
FIELDS_LIMIT = 25
URL_LIMIT = 2048

NAME_CAP = 100
LABEL_CAP = 256  # a category, a destination, a rule name
SHORT_CAP = 64  # numbers, durations, an asset symbol
PROFILE_CAP = 600  # the streamer's profile text under a live alert

COLOURS = {
    "live": 0xE0245E,
    "ended": 0x72767D,
    "up": 0x2ECC71,
    "down": 0xE74C3C,
    "scheduled": 0x5865F2,
    "test": 0x95A5A6,
}

_URL = re.compile(r"https://[^\s<>\"']+")
# Pings a template's own text could carry: made inert, only the configured role pings.
_PING = re.compile(r"@(?=everyone|here)|<@(?=[!&]?[0-9]+>)")


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
    view = view.cleaned()
    mention = f"<@&{int(mention_role)}> " if mention_role else ""
    content: str | None = None
    # A link field that is a plain URL (see `templates.is_link`) goes in as it is:
    # escaped, `https\://...` is no longer a link. Every other field is escaped.
    made = None
    if template is not None:
        made = render_template(
            template, view.fields, escape=discord_escape, link=str, rule=view.rule
        )
    if made is not None:  # None: the template failed, the default embed alone is sent
        body = _PING.sub(lambda m: m.group(0) + "\u200b", made)
        content = _cut_markdown(body, CONTENT_LIMIT - len(mention))
    embed = _embed(view).build()
    if mention:
        content = mention + (content or "")
    return DiscordMessage(content, embed, mention_role)


def _embed(view: AlertView) -> _Embed:
    if is_live(view):
        return _live(view.fields)
    if is_price(view):
        return _price(view.fields)
    if is_scheduled(view):
        return _scheduled(view.fields)
    # A test alert, or a kind this version does not know: the test alert's embed.
    return _test(view.fields["destination"] if is_test(view) else "")


def _cut_markdown(text: str, limit: int) -> str:
    """Trusted markdown with escaped fields, cut at a character that is not escaped."""
    if len(text) <= limit:
        return text
    units: list[str] = []
    for char in text:  # a backslash stays with the character it escapes
        if units and units[-1] == "\\":
            units[-1] += char
        else:
            units.append(char)
    return cut_units(units, limit, len)


def _link(url: object) -> str | None:
    if isinstance(url, str) and len(url) <= URL_LIMIT and _URL.fullmatch(url):
        return url
    return None


def _timestamp(at: object) -> str | None:
    if not isinstance(at, int | float) or isinstance(at, bool):
        return None
    try:
        return dt.datetime.fromtimestamp(at, tz=dt.UTC).isoformat()
    except (OverflowError, OSError, ValueError):  # a time no calendar holds: leave it out
        return None


def _number(value: object) -> str | None:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass
class _Text:
    """One text of the embed: its parts, how Discord reads it, its own limit."""

    parts: list[Part]
    syntax: Syntax
    limit: int
    text: str = ""

    def fit(self, limit: int) -> bool:
        try:
            self.text = fit(self.parts, min(limit, self.limit), self.syntax)
        except DoesNotFit:
            self.text = ""
        return bool(self.text)


@dataclass
class _Embed:
    """An embed being built; `build` fits every text to its limit and all to 6000."""

    colour: int
    title: list[Part] = field(default_factory=list)
    description: list[Part] = field(default_factory=list)
    author: list[Part] = field(default_factory=list)
    footer: list[Part] = field(default_factory=list)
    fields: list[tuple[str, list[Part]]] = field(default_factory=list)
    url: str | None = None
    author_url: str | None = None
    icon: str | None = None
    image: str | None = None
    timestamp: str | None = None

    def build(self) -> dict[str, Any]:
        title = _Text(self.title, DISCORD, TITLE_LIMIT)
        description = _Text(self.description, DISCORD, DESCRIPTION_LIMIT)
        author = _Text(self.author, DISCORD_PLAIN, AUTHOR_LIMIT)
        footer = _Text(self.footer, DISCORD_PLAIN, FOOTER_LIMIT)
        fields = [
            (_Text([name], DISCORD, FIELD_NAME_LIMIT), _Text(value, DISCORD, FIELD_VALUE_LIMIT))
            for name, value in self.fields[:FIELDS_LIMIT]
        ]
        texts = [title, description, author, footer, *(t for pair in fields for t in pair)]
        for text in texts:
            text.fit(text.limit)
        # Over the 6000 total: the description gives way first, then the field values
        # (last first), then everything else; a text that cannot keep its own words goes.
        for text in [description, *(value for _, value in reversed(fields)), *texts]:
            over = sum(len(t.text) for t in texts) - TOTAL_LIMIT
            if over <= 0:
                break
            text.fit(max(0, len(text.text) - over))
        embed: dict[str, Any] = {"color": self.colour}
        if title.text:
            embed["title"] = title.text
        if self.url and title.text:
            embed["url"] = self.url
        if description.text:
            embed["description"] = description.text
        if author.text:
            embed["author"] = {"name": author.text}
            if self.author_url:
                embed["author"]["url"] = self.author_url
            if self.icon:
                embed["author"]["icon_url"] = self.icon
        if self.icon:
            embed["thumbnail"] = {"url": self.icon}
        if self.image:
            embed["image"] = {"url": self.image}
        if footer.text:
            embed["footer"] = {"text": footer.text}
        kept = [(name.text, value.text) for name, value in fields if name.text and value.text]
        if kept:
            embed["fields"] = [{"name": n, "value": v, "inline": True} for n, v in kept]
        if self.timestamp:
            embed["timestamp"] = self.timestamp
        return embed


def _live(f: LiveFields) -> _Embed:
    ended = is_ended(f)
    url = _link(f["url"])
    name = Field(str(f["user_name"]), NAME_CAP)
    embed = _Embed(
        COLOURS["ended" if ended else "live"],
        title=[Field(str(f["title"] or "") or "Live on Parti")],
        author=[name, " was live" if ended else " is live"],
        footer=["Parti" + (" · caught up after a reconnect" if f["caught_up"] else "")],
        url=url,
        author_url=url,
        icon=_link(f["avatar"]),
        image=None if ended else _link(f["image"]),
        timestamp=_timestamp(f["at"]),
    )
    if f["description"]:
        embed.description = [Field(str(f["description"]), PROFILE_CAP)]
    if f["category"]:
        embed.fields.append(("Category", [Field(str(f["category"]), LABEL_CAP)]))
    if (viewers := _number(f["viewers"])) is not None and not ended:
        embed.fields.append(("Viewers", [viewers]))
    if (followers := _number(f["followers"])) is not None:
        embed.fields.append(("Followers", [followers]))
    if is_ended(f):
        embed.fields.append(("Ended", ["lasted ", Field(str(f["duration"]), SHORT_CAP)]))
        if (peak := _number(f["peak_viewers"])) is not None:
            embed.fields.append(("Peak viewers", [peak]))
    return embed


def _price(f: PriceFields) -> _Embed:
    up = f["direction"] == "up"
    arrow = "📈" if up else "📉"
    asset = Field(str(f["asset"]), SHORT_CAP)
    change = Field(str(f["change"]), SHORT_CAP)
    price = Field(str(f["price"]), SHORT_CAP)
    if f["kind"] == "move":
        window = Field(str(f["window"]), SHORT_CAP)
        title: list[Part] = [f"{arrow} ", asset, " moved ", change, " within ", window]
        description: list[Part] = ["Now **", price, "**"]
    else:
        side = "above" if up else "below"
        line = Field(str(f["line"]), SHORT_CAP)
        title = [f"{arrow} ", asset, f" crossed {side} ", line]
        description = ["Now **", price, "** (", change, " from the line)"]
    return _Embed(
        COLOURS["up" if up else "down"],
        title=title,
        description=description,
        footer=["rule ", Field(str(f["rule"]), LABEL_CAP)],
        timestamp=_timestamp(f["at"]),
    )


def _scheduled(f: ScheduledFields) -> _Embed:
    url = _link(f["url"])
    embed = _Embed(
        COLOURS["scheduled"],
        title=["⏰ Live in ", Field(str(f["starts_in"]), SHORT_CAP)],
        author=[Field(str(f["user_name"]), NAME_CAP)],
        url=url,
        author_url=url,
        timestamp=_timestamp(f["starts_at"]),
    )
    if f["title"]:
        embed.description = [Field(str(f["title"]))]
    return embed


def _test(destination: str) -> _Embed:
    return _Embed(
        COLOURS["test"],
        title=["✅ parti-notifier test alert"],
        description=["destination ", Field(str(destination), LABEL_CAP)],
    )


def embed_text_length(embed: dict[str, Any]) -> int:
    """Characters Discord counts toward the 6,000 total of an embed."""
    total = len(embed.get("title", "")) + len(embed.get("description", ""))
    total += len(embed.get("author", {}).get("name", ""))
    total += len(embed.get("footer", {}).get("text", ""))
    for item in embed.get("fields", []):
        total += len(item["name"]) + len(item["value"])
    return total
