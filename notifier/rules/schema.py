"""Pydantic schema of the rules file (DESIGN.md, "Rules file" and "Two-way bots"): shapes,
ranges and every check that needs no other part of the file."""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal, NewType
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from notifier.rules.regex import PatternError, compile_title_pattern
from notifier.units import UnitError, parse_duration, parse_percent

RuleName = NewType("RuleName", str)
DestinationName = NewType("DestinationName", str)

Duration = Annotated[
    float,
    Field(json_schema_extra={"type": "string", "pattern": r"^\d+(\.\d+)?(ms|s|m|h|d)$"}),
]
# A user or a category: a name (string) or an id (integer).
NameOrId = StrictInt | StrictStr


MAX_DURATION = 365 * 86400.0  # a cooldown, reminder or window longer than a year is a typo
MAX_PRICE = Decimal(10) ** 15
INT64 = 2**63
UINT64 = 2**64


_INT_TEXT = re.compile(r"\s*[0-9]{1,50}\s*")  # ASCII digits: int() takes other digits too


def _duration(value: Any) -> float:
    if isinstance(value, str) and _INT_TEXT.fullmatch(value):
        value = int(value)  # seconds, as a plain integer reads (a ${VAR} is text)
    if isinstance(value, str | int | float | Decimal) and not isinstance(value, bool):
        try:
            seconds = parse_duration(float(value) if isinstance(value, Decimal) else value)
        except UnitError as exc:
            raise ValueError(str(exc)) from None
        except OverflowError:
            seconds = math.inf
        if not math.isfinite(seconds) or seconds > MAX_DURATION:
            raise ValueError(f"duration {value!r} is too long: at most 365d")
        return seconds
    raise ValueError("invalid duration: expected e.g. 30s, 10m, 1h, 1d")


def _positive_duration(value: Any) -> float:
    """A window or a lead time: 0 would never fire (chat subscriptions refuse it too)."""
    seconds = _duration(value)
    if seconds <= 0:
        raise ValueError("must be above 0 seconds (0 would never fire)")
    return seconds


def _number(value: Any) -> Any:
    """A number where a number is expected: YAML's `true`/`yes` is not one."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, not a boolean ({str(value).lower()})")
    return value


def _integer(value: Any) -> Any:
    """`_number`, and an integer's text (a quoted one, a ${VAR}) read as the integer."""
    _number(value)
    return int(value) if isinstance(value, str) and _INT_TEXT.fullmatch(value) else value


class _Range:
    """An integer in [low, high] (pydantic's own message would print 2**64 as a float)."""

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high

    def __call__(self, value: int) -> int:
        if not self.low <= value <= self.high:
            raise ValueError(f"out of range: must be from {self.low} to {self.high}")
        return value

    def schema(self) -> Any:
        return Field(json_schema_extra={"minimum": self.low, "maximum": self.high})


# Integers in a range; a boolean is refused, a quoted number taken.
_NotBool = BeforeValidator(_number)
_ID, _THREAD, _VIEWERS, _LIMIT = (
    _Range(1, UINT64 - 1),
    _Range(1, 2**31 - 1),
    _Range(0, 1_000_000_000),
    _Range(0, 100_000),
)
DiscordId = Annotated[int, _NotBool, AfterValidator(_ID), _ID.schema()]
ThreadId = Annotated[int, _NotBool, AfterValidator(_THREAD), _THREAD.schema()]
Viewers = Annotated[int, _NotBool, AfterValidator(_VIEWERS), _VIEWERS.schema()]
Limit = Annotated[int, _NotBool, AfterValidator(_LIMIT), _LIMIT.schema()]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---- destinations ------------------------------------------------------------


class TelegramTarget(_Strict):
    chat_id: int | str = Field(description="numeric chat id, or @channelusername")
    thread_id: ThreadId | None = Field(default=None, description="forum topic (message_thread_id)")
    silent: bool = Field(default=False, description="send without notification sound")

    @field_validator("chat_id", mode="before")
    @classmethod
    def _chat_id(cls, value: Any) -> int | str:
        _number(value)
        if isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]{1,30}\s*", value):
            value = int(value)  # a quoted id, as ${VAR} and YAML quoting give it
        if isinstance(value, int):
            if not -INT64 <= value < INT64:
                raise ValueError("chat_id is out of range for a Telegram chat id (64 bits)")
            return value
        if isinstance(value, str) and re.fullmatch(r"@[A-Za-z0-9_]{4,}", value):
            return value
        raise ValueError("chat_id must be a number or an @channelusername")


DISCORD_HOSTS = frozenset(
    {"discord.com", "discordapp.com", "ptb.discord.com", "canary.discord.com"}
)
DEFAULT_DISCORD_API = "https://discord.com/api/v10"
_DISCORD_WEBHOOK = re.compile(
    r"/api(?:/v[0-9]{1,2})?/webhooks/([0-9]{1,20})/[A-Za-z0-9_.\-]{1,200}/?"
)
_ANY_WEBHOOK = re.compile(r"/webhooks/([0-9]{1,20})/[A-Za-z0-9_.\-]{1,200}/?")
_BAD_WEBHOOK = "not a Discord webhook URL (https://discord.com/api/webhooks/ID/TOKEN)"


def _origin(url: str) -> tuple[str, str, int | None] | None:
    try:
        parts = urlsplit(url.strip())
        port = parts.port or {"https": 443, "http": 80}.get(parts.scheme.lower())
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.scheme.lower(), parts.hostname.lower(), port


def webhook_url_problem(url: str, api_url: str | None) -> str | None:
    """Why `url` is not a webhook `notifier run` can post to, in words that never repeat the
    URL (its token is a secret); None when it is one.

    A Discord host with the path /api[/vN]/webhooks/ID/TOKEN, the id a snowflake (17 to 20
    digits). A URL on the origin of NOTIFIER_DISCORD_API_URL (a test server, a proxy) passes
    with any /webhooks/ID/TOKEN; so do small ids when that API is not Discord's, since the
    requests then go there and not to Discord.
    """
    origin = _origin(url)
    api = _origin(api_url or DEFAULT_DISCORD_API)
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return _BAD_WEBHOOK
    if origin is None:
        return _BAD_WEBHOOK
    if api is not None and origin == api and api[1] not in DISCORD_HOSTS:
        found = _ANY_WEBHOOK.search(parts.path)
        return None if found and int(found.group(1)) < UINT64 else _BAD_WEBHOOK
    scheme, host, port = origin
    if scheme != "https" or host not in DISCORD_HOSTS or port != 443 or parts.username:
        return _BAD_WEBHOOK
    found = _DISCORD_WEBHOOK.fullmatch(parts.path)
    if found is None or parts.query or parts.fragment:
        return _BAD_WEBHOOK
    webhook_id = found.group(1)
    real_discord = api is None or api[1] in DISCORD_HOSTS
    if int(webhook_id) >= UINT64 or (real_discord and not 17 <= len(webhook_id) <= 20):
        return _BAD_WEBHOOK
    return None


_FORBIDDEN_IN_NAME = ("discord", "clyde", "@", "#", ":", "```")


class DiscordTarget(_Strict):
    webhook_url: str | None = None
    channel_id: DiscordId | None = Field(
        default=None, description="needs NOTIFIER_DISCORD_BOT_TOKEN"
    )
    mention_role: DiscordId | None = Field(
        default=None, description="the only mention ever allowed; none by default"
    )
    username: str | None = Field(default=None, description="webhook display name")

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if not re.match(r"^https?://", value):
            raise ValueError(_BAD_WEBHOOK)
        # Host and path are checked when the file is compiled, which knows the API URL.
        context = info.context if isinstance(info.context, dict) else None
        if context is not None and "discord_api_url" in context:
            problem = webhook_url_problem(value, context["discord_api_url"])
            if problem is not None:
                raise ValueError(problem)
        return value

    @field_validator("username")
    @classmethod
    def _username(cls, value: str | None) -> str | None:
        if value is None:
            return None
        name = " ".join(value.split())  # Discord trims and squeezes whitespace
        if not 1 <= len(name) <= 80:
            raise ValueError("a webhook username has 1 to 80 characters")
        folded = name.casefold()
        for part in _FORBIDDEN_IN_NAME:
            if part in folded:
                raise ValueError(f"Discord refuses a webhook username containing {part!r}")
        if folded in ("everyone", "here", "system message"):
            raise ValueError(f"Discord refuses the webhook username {name!r}")
        return value

    @model_validator(mode="after")
    def _one_target(self) -> DiscordTarget:
        if (self.webhook_url is None) == (self.channel_id is None):
            raise ValueError("a discord destination needs exactly one of webhook_url, channel_id")
        return self


class ConsoleTarget(_Strict):
    pass


class Destination(_Strict):
    telegram: TelegramTarget | None = None
    discord: DiscordTarget | None = None
    console: ConsoleTarget | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Destination:
        kinds = [k for k in ("telegram", "discord", "console") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(
                "a destination needs exactly one of telegram, discord, console"
                + (f" (has {', '.join(kinds)})" if kinds else "")
            )
        return self

    @property
    def kind(self) -> Literal["telegram", "discord", "console"]:
        if self.telegram is not None:
            return "telegram"
        if self.discord is not None:
            return "discord"
        return "console"


# ---- rules ---------------------------------------------------------------------


class Defaults(_Strict):
    cooldown: Duration = Field(default=600.0, description="e.g. 10m")
    on_end: Literal["edit", "delete", "ignore"] = "edit"
    first_start: Literal["alert", "skip"] = Field(
        default="skip",
        description="on the very first start, alert streams already live (alert) or not (skip)",
    )

    _cooldown = field_validator("cooldown", mode="before")(classmethod(lambda cls, v: _duration(v)))


class _RuleBase(_Strict):
    name: str = Field(min_length=1, max_length=100)
    notify: list[str] = Field(min_length=1, description="destination names")
    cooldown: Duration | None = Field(default=None, description="overrides defaults.cooldown")
    template: str | None = Field(default=None, max_length=10_000, description="Jinja2 (sandboxed)")

    _cooldown = field_validator("cooldown", mode="before")(
        classmethod(lambda cls, v: None if v is None else _duration(v))
    )

    @field_validator("notify")
    @classmethod
    def _unique_notify(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a destination is named twice")
        return value


class LiveRule(_RuleBase):
    when: Literal["live"]
    users: list[NameOrId] = Field(default_factory=list)
    categories: list[NameOrId] = Field(default_factory=list)
    title_matches: str | None = Field(
        default=None,
        description="regular expression, run by RE2 (linear time: no backreferences, "
        "no lookarounds)",
    )
    min_viewers: Viewers | None = None
    exclude_users: list[NameOrId] = Field(default_factory=list)
    on_end: Literal["edit", "delete", "ignore"] | None = None

    @field_validator("title_matches")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                compile_title_pattern(value)
            except PatternError as exc:
                raise ValueError(str(exc)) from None
        return value


class PriceRule(_RuleBase):
    when: Literal["price"]
    asset: str = Field(min_length=1, description="display_symbol or ticker")
    above: Decimal | None = Field(default=None, allow_inf_nan=False)
    below: Decimal | None = Field(default=None, allow_inf_nan=False)
    rearm: str | Decimal | None = Field(
        default=None, description="hysteresis: absolute (500) or percent of the line (0.5%)"
    )
    move: str | None = Field(default=None, description="percentage, e.g. 5%")
    within: Duration | None = None
    fire_on_start: bool = False

    _within = field_validator("within", mode="before")(
        classmethod(lambda cls, v: None if v is None else _positive_duration(v))
    )

    @field_validator("above", "below", mode="before")
    @classmethod
    def _no_float(cls, value: Any) -> Any:
        _number(value)
        # YAML floats become exact decimals through their text, never binary floats.
        return str(value) if isinstance(value, float) else value

    @field_validator("above", "below")
    @classmethod
    def _price_range(cls, value: Decimal | None) -> Decimal | None:
        if value is not None:
            _price(value)
            if value <= 0:  # a price is never at or below 0: the line would never cross
                raise ValueError(f"the line must be above 0, not {value}")
        return value

    @field_validator("rearm", mode="before")
    @classmethod
    def _rearm(cls, value: Any) -> Any:
        _number(value)
        if isinstance(value, str) and value.strip().endswith("%"):
            try:
                percent = parse_percent(value)
            except UnitError as exc:
                raise ValueError(str(exc)) from None
            if percent > 100:
                raise ValueError(f"rearm {value.strip()} is too large: at most 100%")
            return value.strip()
        if isinstance(value, int | float | str | Decimal):
            try:
                number = Decimal(str(value))
            except ArithmeticError:
                raise ValueError(f"invalid rearm {value!r}: a price or a percentage") from None
            if not number.is_finite() or number < 0:
                raise ValueError("invalid rearm: must be a positive number")
            return _price(number)
        return value

    @field_validator("rearm")
    @classmethod
    def _rearm_band(cls, value: str | Decimal | None, info: ValidationInfo) -> Any:
        above = info.data.get("above")
        # An above line re-arms once the price falls below line - band: never, then.
        if value is not None and isinstance(above, Decimal) and rearm_band(value, above) >= above:
            raise ValueError(
                f"rearm {value} would re-arm the line {above} only at a price of 0 or "
                "below, so never: the band must be smaller than the line"
            )
        return value

    @field_validator("move")
    @classmethod
    def _move(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                percent = parse_percent(value)
            except UnitError as exc:
                raise ValueError(str(exc)) from None
            if percent <= 0:
                raise ValueError("move must be above 0%")
            if percent > 1000:
                raise ValueError(f"move {value.strip()} is too large: at most 1000%")
        return value

    @model_validator(mode="after")
    def _a_trigger(self) -> PriceRule:
        if self.above is None and self.below is None and self.move is None:
            raise ValueError("a price rule needs one of above, below, move")
        if (self.move is None) != (self.within is None):
            raise ValueError("move and within go together")
        if self.rearm is not None and self.above is None and self.below is None:
            raise ValueError("rearm needs above or below")
        return self

    def rearm_band(self, line: Decimal) -> Decimal:
        """The hysteresis band for `line`, as an absolute price."""
        return rearm_band(self.rearm, line)


def rearm_band(rearm: str | Decimal | None, line: Decimal) -> Decimal:
    """The hysteresis band of a line, as an absolute price: `rearm` a percentage of the
    line (`0.5%`) or a price."""
    if rearm is None:
        return Decimal(0)
    if isinstance(rearm, str):
        return line * parse_percent(rearm) / 100
    return rearm


class ScheduledRule(_RuleBase):
    when: Literal["scheduled"]
    users: list[NameOrId] = Field(default_factory=list)
    categories: list[NameOrId] = Field(default_factory=list)
    before: Duration = Field(default=900.0, description="remind this long before the start")

    _before = field_validator("before", mode="before")(
        classmethod(lambda cls, v: _positive_duration(v))
    )


Rule = Annotated[LiveRule | PriceRule | ScheduledRule, Field(discriminator="when")]


def _price(value: Decimal) -> Decimal:
    try:
        if abs(value) >= MAX_PRICE:
            raise ValueError("price out of range: at most 15 digits before the point")
        if value != 0 and value.adjusted() < -18:
            raise ValueError("price out of range: at most 18 digits after the point")
    except InvalidOperation:
        raise ValueError("not a price") from None
    return value


# ---- two-way bots (DESIGN.md, "Two-way bots") ----------------------------------------


class TelegramBot(_Strict):
    commands: bool = Field(default=False, description="answer chat commands (long polling)")
    max_follows: Limit = Field(default=200, description="follows per chat")
    max_price_alerts: Limit = Field(default=50, description="price alerts per chat")


class DiscordBot(_Strict):
    commands: bool = Field(default=False, description="answer /parti commands (gateway)")
    max_follows: Limit = Field(default=200, description="follows per server")


class Bots(_Strict):
    telegram: TelegramBot = TelegramBot()
    discord: DiscordBot = DiscordBot()

    @field_validator("telegram", "discord", mode="before")
    @classmethod
    def _empty(cls, value: Any) -> Any:
        return {} if value is None else value  # `telegram:` with nothing under it


class RulesFile(_Strict):
    version: Annotated[Literal[1], BeforeValidator(_integer)] = 1
    destinations: dict[str, Destination] = Field(min_length=1)
    defaults: Defaults = Defaults()
    bots: Bots = Field(default=Bots(), description="chat commands (DESIGN.md, Two-way bots)")
    rules: list[Rule] = Field(default_factory=list)

    @field_validator("rules", mode="before")
    @classmethod
    def _empty_rules(cls, value: Any) -> Any:
        return [] if value is None else value  # `rules:` with nothing under it

    @field_validator("defaults", "bots", mode="before")
    @classmethod
    def _empty_block(cls, value: Any) -> Any:
        return {} if value is None else value  # `bots:` with nothing under it
