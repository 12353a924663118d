"""Chat subscriptions as rules: the pure mapping from a stored subscription to a LiveRule or
PriceRule, and the names of the chat destinations they notify."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from pydantic import ValidationError

from notifier.rules.schema import UINT64, Defaults, LiveRule, PriceRule

# The rule name of subscription 7 is "sub:7"; it is part of the outbox key of its alerts.
SUB_PREFIX = "sub:"

PLATFORMS = ("telegram", "discord")
KINDS = ("live", "price", "move")
PARAMS: dict[str, frozenset[str]] = {
    "live": frozenset(
        {"role_id", "template", "categories", "title_matches", "min_viewers", "on_end"}
    ),
    "price": frozenset({"direction", "line", "rearm", "template"}),
    "move": frozenset({"percent", "window", "template"}),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscription:
    """A subscription as the store keeps it: who (chat) wants what (kind, target).

    `target` is a Parti user id (as text) for "live", an asset symbol or ticker for
    "price" and "move". `params` (JSON-like) holds the kind's settings:
    live: role_id, template, categories, title_matches, min_viewers, on_end;
    price: direction ("above" | "below"), line, rearm ("0.5%" or a price), template;
    move: percent ("5%" or a number), window (seconds or "1h"), template.
    """

    id: int
    platform: str  # "telegram" | "discord"
    chat_id: str  # the Telegram chat, or the Discord server (or user, for DMs)
    kind: str  # "live" | "price" | "move"
    target: str
    destination: str  # "@tg:<chat>[:<thread>]", "@dc:<channel>", "@dcdm:<user>"
    params: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def rule_name(self) -> str:
        return rule_name(self.id)


def rule_name(sub_id: int) -> str:
    return f"{SUB_PREFIX}{sub_id}"


def subscription_id(rule: str) -> int | None:
    """The subscription id of a rule name such as "sub:7", else None (a file rule)."""
    if rule.startswith(SUB_PREFIX):
        rest = rule[len(SUB_PREFIX) :]
        if rest.isdigit() and rest.isascii():
            return int(rest)
    return None


# ---- destination names ------------------------------------------------------------------

# File destination names never start with "@"; these are made up at run time per chat.
_DESTINATION = re.compile(r"@(tg|dc|dcdm):(-?[0-9]{1,20})(?::([0-9]{1,20}))?")


@dataclass(frozen=True, slots=True)
class ChatDestination:
    """A parsed dynamic destination name."""

    platform: Literal["telegram", "discord"]
    kind: Literal["chat", "channel", "dm"]
    id: str
    thread_id: int | None = None


_CHAT_IDS = {
    "telegram": re.compile(r"-?[0-9]{1,20}"),
    "discord": re.compile(r"(dm:)?[0-9]{1,20}"),  # a channel, or a user's DMs
}


def valid_chat_id(platform: str, chat_id: str) -> bool:
    """A subscription's chat id as the bots store it: ASCII digits (a Telegram group's are
    negative), or dm:<user id> for a Discord user's DMs (a snowflake: under 2**64)."""
    pattern = _CHAT_IDS.get(platform)
    if pattern is None or pattern.fullmatch(chat_id) is None:
        return False
    return platform != "discord" or int(chat_id.removeprefix("dm:")) < UINT64


def telegram_destination(chat_id: int | str, thread_id: int | None = None) -> str:
    name = f"@tg:{int(chat_id)}"
    return name if thread_id is None else f"{name}:{int(thread_id)}"


def discord_channel_destination(channel_id: int | str) -> str:
    return f"@dc:{int(channel_id)}"


def discord_dm_destination(user_id: int | str) -> str:
    return f"@dcdm:{int(user_id)}"


def chat_destination(platform: str, chat_id: str) -> str:
    """Where a stored subscription's alerts go: the Telegram chat, the Discord channel, or
    a Discord user's DMs (chat id `dm:<user id>`). The chat id is one valid_chat_id takes."""
    if platform == "telegram":
        return telegram_destination(chat_id)
    if chat_id.startswith("dm:"):
        return discord_dm_destination(chat_id.removeprefix("dm:"))
    return discord_channel_destination(chat_id)


def parse_destination(name: str) -> ChatDestination | None:
    """The chat a dynamic destination name stands for, else None (a file destination)."""
    found = _DESTINATION.fullmatch(name)
    if found is None:
        return None
    prefix, ident, thread = found.groups()
    if prefix == "tg":
        return ChatDestination("telegram", "chat", ident, None if thread is None else int(thread))
    if thread is not None or ident.startswith("-") or int(ident) >= UINT64:
        return None  # Discord ids are snowflakes (positive, 64-bit), without threads
    return ChatDestination("discord", "channel" if prefix == "dc" else "dm", ident)


# ---- the mapping ------------------------------------------------------------------------


def to_rule(sub: Subscription, defaults: Defaults | None = None) -> LiveRule | PriceRule:
    """The rule a subscription stands for, validated by the rules file's own models.

    With `defaults`, the rule carries the defaults' cooldown itself (for a rule used
    away from an engine, such as an export to YAML); the engine applies its own anyway.
    Raises ValueError with one clear line when the subscription cannot be a rule.
    """
    where = f"subscription {sub.id}"
    if sub.platform not in PLATFORMS:
        raise ValueError(f"{where}: unknown platform {sub.platform!r}")
    if sub.kind not in KINDS:
        raise ValueError(f"{where}: unknown kind {sub.kind!r}; one of live, price, move")
    _check_destination(sub, where)
    unknown = sorted(set(sub.params) - PARAMS[sub.kind])
    if unknown:
        known = ", ".join(sorted(PARAMS[sub.kind]))
        raise ValueError(f"{where}: unknown setting {unknown[0]!r} for {sub.kind}; known: {known}")
    data: dict[str, Any] = {"name": rule_name(sub.id), "notify": [sub.destination]}
    if defaults is not None:
        data["cooldown"] = defaults.cooldown
    template = sub.params.get("template")
    if template is not None:
        data["template"] = template
    if sub.kind == "live":
        data |= _live(sub, where)
    elif sub.kind == "price":
        data |= _price(sub, where)
    else:
        data |= _move(sub, where)
    try:
        rule: LiveRule | PriceRule = (
            LiveRule.model_validate(data) if sub.kind == "live" else PriceRule.model_validate(data)
        )
    except ValidationError as exc:
        raise ValueError(f"{where}: {_first_error(exc)}") from None
    if rule.template is not None:
        from notifier.rules.templates import check_template  # Jinja2 only when needed

        problem = check_template(rule.template, rule.when)
        if problem is not None:
            raise ValueError(f"{where}: {problem.message}")
    return rule


def role_id(sub: Subscription) -> int | None:
    """The Discord role a live subscription mentions (not part of matching)."""
    value = sub.params.get("role_id")
    return None if value is None else _positive_int(value, "role_id", f"subscription {sub.id}")


def _check_destination(sub: Subscription, where: str) -> None:
    parsed = parse_destination(sub.destination)
    if parsed is None:
        raise ValueError(
            f"{where}: destination {sub.destination!r} is not @tg:<chat>, @dc:<channel> "
            "or @dcdm:<user>"
        )
    if parsed.platform != sub.platform:
        raise ValueError(f"{where}: destination {sub.destination!r} is not on {sub.platform}")
    if parsed.platform == "telegram" and parsed.id != sub.chat_id.strip():
        raise ValueError(f"{where}: destination {sub.destination!r} is not chat {sub.chat_id}")


def _live(sub: Subscription, where: str) -> dict[str, Any]:
    target = sub.target.strip()
    if not (target.isascii() and target.isdigit()):
        raise ValueError(
            f"{where}: a live subscription's target is a Parti user id, not {target!r}"
        )
    data: dict[str, Any] = {"when": "live", "users": [int(target)]}
    params = sub.params
    if "role_id" in params and params["role_id"] is not None:
        _positive_int(params["role_id"], "role_id", where)
    categories = params.get("categories")
    if categories is not None:
        if isinstance(categories, str | int) or not isinstance(categories, list | tuple):
            raise ValueError(f"{where}: categories must be a list of names or ids")
        data["categories"] = list(categories)
    for key in ("title_matches", "min_viewers", "on_end"):
        if params.get(key) is not None:
            data[key] = params[key]
    return data


def _price(sub: Subscription, where: str) -> dict[str, Any]:
    direction = sub.params.get("direction")
    if direction not in ("above", "below"):
        raise ValueError(f"{where}: direction must be above or below, not {direction!r}")
    line = _number(sub.params.get("line"), "line", where)
    if line <= 0:
        raise ValueError(f"{where}: the line must be above 0, not {line}")
    data: dict[str, Any] = {"when": "price", "asset": _asset(sub, where), direction: line}
    rearm = sub.params.get("rearm")
    if rearm is not None:
        data["rearm"] = str(rearm) if isinstance(rearm, float) else rearm
    return data


def _move(sub: Subscription, where: str) -> dict[str, Any]:
    percent = sub.params.get("percent")
    if isinstance(percent, int | float | Decimal) and not isinstance(percent, bool):
        percent = f"{_number(percent, 'percent', where)}%"
    if not isinstance(percent, str):
        raise ValueError(f"{where}: percent must be a percentage such as 5%, not {percent!r}")
    window = sub.params.get("window")
    if window is None or isinstance(window, bool):
        raise ValueError(f"{where}: window must be a duration such as 1h or 3600")
    if isinstance(window, int | float) and window <= 0:
        raise ValueError(f"{where}: window must be above 0 seconds")
    return {"when": "price", "asset": _asset(sub, where), "move": percent, "within": window}


def _asset(sub: Subscription, where: str) -> str:
    asset = sub.target.strip()
    if not asset or len(asset) > 40 or any(ch.isspace() for ch in asset):
        raise ValueError(f"{where}: {sub.target!r} is not an asset symbol")
    return asset


def _number(value: Any, what: str, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError(f"{where}: {what} must be a number, not {value!r}")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{where}: {what} must be a number, not {value!r}") from None
    if not number.is_finite():
        raise ValueError(f"{where}: {what} must be a finite number, not {value!r}")
    return number


def discord_id(value: Any) -> int | None:
    """A Discord id (a snowflake: positive, under 2**64), as a number or its digits; None
    for anything else."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < UINT64:
        return value
    return None


def _positive_int(value: Any, what: str, where: str) -> int:
    number = discord_id(value)
    if number is None:
        raise ValueError(f"{where}: {what} must be a positive id under 2**64, not {value!r}")
    return number


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    loc = ".".join(str(p) for p in error["loc"] if not isinstance(p, int))
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{loc}: {message}" if loc else message
