"""The Discord bot's buttons: self-describing custom_ids (`parti:notify:<user id>`,
`parti:page:<scope>:<page>`) parsed by `discord.ui.DynamicItem`s, so a button on an old
message works after a restart, and the component JSON the alert senders attach."""

from __future__ import annotations

import re
from typing import Any, Final, Protocol

import discord

NOTIFY_PREFIX: Final = "parti:notify:"
PAGE_PREFIX: Final = "parti:page:"
NOTIFY_LABEL: Final = "Notify me"
# Scopes of a paginated list: the server's alerts, or the member's own DM alerts.
SERVER_LIST: Final = "g"
MEMBER_LIST: Final = "me"
MAX_PAGE: Final = 9999
_ID: Final = r"[1-9][0-9]{0,18}"

BUTTON_STYLE_PRIMARY: Final = 1
BUTTON_STYLE_SECONDARY: Final = 2


class ButtonHandler(Protocol):
    """What the bot does when one of its buttons is pressed (the client carries it)."""

    async def notify_pressed(self, interaction: discord.Interaction[Any], user_id: int) -> None: ...

    async def page_pressed(
        self, interaction: discord.Interaction[Any], scope: str, page: int
    ) -> None: ...


# ---- the JSON the alert senders attach (pure) -------------------------------------------


def notify_custom_id(user_id: int) -> str:
    return f"{NOTIFY_PREFIX}{int(user_id)}"


def notify_button_components(user_id: int) -> list[dict[str, Any]]:
    """The message components of a go-live alert in a server channel: one "Notify me"
    button that adds (or removes) the presser's DM alerts for this streamer."""
    return [
        {
            "type": 1,
            "components": [
                {
                    "type": 2,
                    "style": BUTTON_STYLE_PRIMARY,
                    "label": NOTIFY_LABEL,
                    "emoji": {"name": "🔔"},
                    "custom_id": notify_custom_id(user_id),
                }
            ],
        }
    ]


def live_alert_components(payload: dict[str, Any]) -> list[dict[str, Any]] | None:
    """`components_for` of a channel sender: the Notify-me button on live alerts (also once
    ended: it asks for the next stream), None (leave the message's components) otherwise."""
    view = payload.get("view")
    if not isinstance(view, dict) or view.get("kind") != "live":
        return None
    fields = view.get("fields")
    user_id = fields.get("user_id") if isinstance(fields, dict) else None
    if isinstance(user_id, str) and user_id.isascii() and user_id.isdigit():
        user_id = int(user_id)
    if not isinstance(user_id, int) or isinstance(user_id, bool) or not 0 < user_id < 2**63:
        return None
    return notify_button_components(user_id)


def parse_notify(custom_id: str) -> int | None:
    found = re.fullmatch(re.escape(NOTIFY_PREFIX) + f"({_ID})", custom_id)
    return int(found.group(1)) if found else None


def page_custom_id(scope: str, page: int) -> str:
    return f"{PAGE_PREFIX}{scope}:{int(page)}"


# ---- the items discord.py dispatches -----------------------------------------------------


async def _handler(interaction: discord.Interaction[Any]) -> ButtonHandler | None:
    """The bot that serves the press; None, once the presser is told the button no longer
    works, in a client that has none."""
    handler: ButtonHandler | None = getattr(interaction.client, "buttons", None)
    if handler is None:
        await interaction.response.send_message("This button no longer works.", ephemeral=True)
    return handler


class NotifyButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=re.escape(NOTIFY_PREFIX) + f"(?P<user_id>{_ID})",
):
    """ "Notify me" under a go-live alert: toggles the presser's DM alerts for the streamer."""

    def __init__(self, user_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                label=NOTIFY_LABEL,
                emoji="🔔",
                style=discord.ButtonStyle.primary,
                custom_id=notify_custom_id(user_id),
            )
        )
        self.user_id = user_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
    ) -> NotifyButton:
        return cls(int(match["user_id"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        handler = await _handler(interaction)
        if handler is not None:
            await handler.notify_pressed(interaction, self.user_id)


class PageButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=re.escape(PAGE_PREFIX)
    + f"(?P<scope>{SERVER_LIST}|{MEMBER_LIST}):(?P<page>0|[1-9][0-9]{{0,3}})",
):
    """« Prev / Next » under a list: redraws the list at that page."""

    def __init__(self, scope: str, page: int, label: str) -> None:
        super().__init__(
            discord.ui.Button(
                label=label,
                style=discord.ButtonStyle.secondary,
                custom_id=page_custom_id(scope, page),
            )
        )
        self.scope = scope
        self.page = page

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
    ) -> PageButton:
        label = getattr(item, "label", None) or "Page"
        return cls(match["scope"], int(match["page"]), str(label))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        handler = await _handler(interaction)
        if handler is not None:
            await handler.page_pressed(interaction, self.scope, self.page)


def page_view(scope: str, page: int, pages: int) -> discord.ui.View | None:
    """Prev/Next buttons for page `page` of `pages` (None when there is one page)."""
    if pages <= 1:
        return None
    view = discord.ui.View(timeout=None)
    if page > 0:
        view.add_item(PageButton(scope, page - 1, "« Prev"))
    if page < pages - 1:
        view.add_item(PageButton(scope, min(page + 1, MAX_PAGE), "Next »"))
    return view


def notify_view(user_id: int) -> discord.ui.View:
    """The Notify-me button as a discord.py view (for messages the bot itself posts)."""
    view = discord.ui.View(timeout=None)
    view.add_item(NotifyButton(user_id))
    return view


DYNAMIC_ITEMS: Final = (NotifyButton, PageButton)

__all__ = [
    "DYNAMIC_ITEMS",
    "MEMBER_LIST",
    "NOTIFY_PREFIX",
    "SERVER_LIST",
    "ButtonHandler",
    "NotifyButton",
    "PageButton",
    "live_alert_components",
    "notify_button_components",
    "notify_view",
    "page_view",
    "parse_notify",
]
