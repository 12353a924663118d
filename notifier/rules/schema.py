"""Pydantic schema of the rules file (DESIGN.md, "Rules file")."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, Literal, NewType

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from notifier.units import UnitError, parse_duration, parse_percent

RuleName = NewType("RuleName", str)
DestinationName = NewType("DestinationName", str)

Duration = Annotated[
    float,
    Field(json_schema_extra={"type": "string", "pattern": r"^\d+(\.\d+)?(ms|s|m|h|d)$"}),
]
# A user or a category: a name (string) or an id (integer).
NameOrId = StrictInt | StrictStr


def _duration(value: Any) -> float:
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        try:
            return parse_duration(value)
        except UnitError as exc:
            raise ValueError(str(exc)) from None
    raise ValueError("invalid duration: expected e.g. 30s, 10m, 1h, 1d")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---- destinations ------------------------------------------------------------


class TelegramTarget(_Strict):
    chat_id: int | str = Field(description="numeric chat id, or @channelusername")
    thread_id: int | None = Field(default=None, description="forum topic (message_thread_id)")
    silent: bool = Field(default=False, description="send without notification sound")

    @field_validator("chat_id")
    @classmethod
    def _chat_id(cls, value: int | str) -> int | str:
        if isinstance(value, str) and not re.fullmatch(r"@[A-Za-z0-9_]{4,}", value):
            raise ValueError("chat_id must be a number or an @channelusername")
        return value


class DiscordTarget(_Strict):
    webhook_url: str | None = None
    channel_id: int | None = Field(default=None, description="needs NOTIFIER_DISCORD_BOT_TOKEN")
    mention_role: int | None = Field(
        default=None, description="the only mention ever allowed; none by default"
    )
    username: str | None = Field(default=None, description="webhook display name")

    @model_validator(mode="after")
    def _one_target(self) -> DiscordTarget:
        if (self.webhook_url is None) == (self.channel_id is None):
            raise ValueError("a discord destination needs exactly one of webhook_url, channel_id")
        if self.webhook_url is not None and not re.match(r"^https?://", self.webhook_url):
            raise ValueError("webhook_url must be an http(s) URL")
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

    _cooldown = field_validator("cooldown", mode="before")(classmethod(lambda cls, v: _duration(v)))


class _RuleBase(_Strict):
    name: str = Field(min_length=1, max_length=100)
    notify: list[str] = Field(min_length=1, description="destination names")
    cooldown: Duration | None = Field(default=None, description="overrides defaults.cooldown")
    template: str | None = Field(default=None, description="Jinja2 (sandboxed)")

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
    title_matches: str | None = Field(default=None, description="Python regular expression")
    min_viewers: int | None = Field(default=None, ge=0)
    exclude_users: list[NameOrId] = Field(default_factory=list)
    on_end: Literal["edit", "delete", "ignore"] | None = None

    @field_validator("title_matches")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regex: {exc}") from None
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
        classmethod(lambda cls, v: None if v is None else _duration(v))
    )

    @field_validator("above", "below", mode="before")
    @classmethod
    def _no_float(cls, value: Any) -> Any:
        # YAML floats become exact decimals through their text, never binary floats.
        return str(value) if isinstance(value, float) else value

    @field_validator("rearm", mode="before")
    @classmethod
    def _rearm(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().endswith("%"):
            try:
                parse_percent(value)
            except UnitError as exc:
                raise ValueError(str(exc)) from None
            return value.strip()
        if isinstance(value, int | float | str) and not isinstance(value, bool):
            try:
                number = Decimal(str(value))
            except ArithmeticError:
                raise ValueError(f"invalid rearm {value!r}: a price or a percentage") from None
            if not number.is_finite() or number < 0:
                raise ValueError(f"invalid rearm {value!r}: must be a positive number")
            return number
        return value

    @field_validator("move")
    @classmethod
    def _move(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                if parse_percent(value) <= 0:
                    raise ValueError("move must be above 0%")
            except UnitError as exc:
                raise ValueError(str(exc)) from None
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
        if self.rearm is None:
            return Decimal(0)
        if isinstance(self.rearm, str):
            return line * parse_percent(self.rearm) / 100
        return self.rearm


class ScheduledRule(_RuleBase):
    when: Literal["scheduled"]
    users: list[NameOrId] = Field(default_factory=list)
    categories: list[NameOrId] = Field(default_factory=list)
    before: Duration = Field(default=900.0, description="remind this long before the start")

    _before = field_validator("before", mode="before")(classmethod(lambda cls, v: _duration(v)))


Rule = Annotated[LiveRule | PriceRule | ScheduledRule, Field(discriminator="when")]


class RulesFile(_Strict):
    version: Literal[1] = 1
    destinations: dict[str, Destination] = Field(min_length=1)
    defaults: Defaults = Defaults()
    rules: list[Rule] = Field(default_factory=list)

    @field_validator("rules", mode="before")
    @classmethod
    def _empty_rules(cls, value: Any) -> Any:
        return [] if value is None else value  # `rules:` with nothing under it
