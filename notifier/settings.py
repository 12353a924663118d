"""Process settings from `NOTIFIER_*` environment variables and `.env` (DESIGN.md, "Settings")."""

from __future__ import annotations

import math
import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from notifier.units import UnitError, parse_duration

# Durations' bounds, in seconds, with the unit they are said in. A poll runs under a timeout
# of its interval: below a second it could never finish.
_DURATIONS = {
    "live_poll": (1.0, 86400.0, "1s", "1d"),
    "retention": (3600.0, 3650 * 86400.0, "1h", "3650d"),
}
_PORT = re.compile(r"[0-9]{1,5}")  # ASCII digits: int() takes other digits too


def _url(value: str, schemes: tuple[str, ...], example: str) -> str:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError:
        raise ValueError(f"not a URL (expected e.g. {example})") from None
    if parts.scheme not in schemes or not parts.hostname:
        wanted = " or ".join(f"{s}://" for s in schemes)
        raise ValueError(f"must start with {wanted} and name a host (e.g. {example})")
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="NOTIFIER_", env_file=".env", extra="ignore", hide_input_in_errors=True
    )

    rules: str = "rules.yaml"
    parti_api_url: str = "https://api-backend.parti.com"
    parti_ws_url: str = "wss://ws-backend.parti.com/"
    telegram_token: SecretStr | None = None
    telegram_api_url: str = "https://api.telegram.org"
    # Telegram's bot-wide limit is 30 messages/s, or up to 1,000/s with paid broadcasts
    # (each message beyond the free rate costs Telegram Stars).
    telegram_paid_broadcast: bool = False
    discord_bot_token: SecretStr | None = None
    discord_api_url: str = "https://discord.com/api/v10"
    discord_gateway_url: str = "wss://gateway.discord.gg/"
    state_path: str = "./notifier.db"
    # postgresql://user:password@host/db: a secret, since it may carry the password.
    database_url: SecretStr | None = None
    # Names this process among instances sharing a database (default: the host name);
    # set it when several run on one host.
    instance: str = ""
    http_addr: str = "127.0.0.1:9464"
    log_format: Literal["auto", "console", "json"] = "auto"
    live_poll: float = Field(default=60.0, description="seconds; accepts 30s, 1m, ...")
    retention: float = Field(default=7 * 86400.0, description="how long sent alerts are kept")

    @field_validator("live_poll", "retention", mode="before")
    @classmethod
    def _duration(cls, value: object, info: ValidationInfo) -> float:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            try:
                seconds = parse_duration(value)
            except UnitError as exc:
                raise ValueError(str(exc)) from None
            if not math.isfinite(seconds):
                raise ValueError("too long a duration (use e.g. 30s, 10m, 1h, 7d)")
            if seconds <= 0:
                raise ValueError("must be longer than 0s")
            low, high, low_text, high_text = _DURATIONS[str(info.field_name)]
            if seconds < low:
                raise ValueError(f"too short: at least {low_text}")
            if seconds > high:
                raise ValueError(f"too long a duration: at most {high_text}")
            return seconds
        raise ValueError("expected a duration such as 60s")

    @field_validator("telegram_token", "discord_bot_token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        # `NOTIFIER_TELEGRAM_TOKEN=` in an env file means no token: the start-up checks
        # then name the variable, instead of a bot library refusing an empty one later.
        if value is None or not value.get_secret_value().strip():
            return None
        return value

    @field_validator(
        "parti_ws_url",
        "discord_gateway_url",
        "parti_api_url",
        "telegram_api_url",
        "discord_api_url",
    )
    @classmethod
    def _service_url(cls, value: str, info: ValidationInfo) -> str:
        # The field's own default is the example: it names the scheme and the service.
        default = str(cls.model_fields[str(info.field_name)].default)
        schemes = ("ws", "wss") if default.startswith("wss://") else ("http", "https")
        return _url(value, schemes, default)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        scheme = value.get_secret_value().partition("://")[0]
        if scheme not in ("postgresql", "postgres"):
            # The value may hold a password: never echo it.
            raise ValueError("must be a postgresql:// URL (or unset for the SQLite file)")
        return value

    @field_validator("http_addr")
    @classmethod
    def _addr(cls, value: str) -> str:
        if not value:
            return value  # disabled
        host, sep, port = value.rpartition(":")
        if not sep or not _PORT.fullmatch(port) or not 0 <= int(port) <= 65535:
            raise ValueError("expected HOST:PORT such as 127.0.0.1:9464 (empty disables)")
        bracketed = host.startswith("[") and host.endswith("]")
        if host.startswith("[") != host.endswith("]") or (":" in host and not bracketed):
            raise ValueError("an IPv6 host goes in brackets, e.g. [::1]:9464")
        if any(ch.isspace() for ch in host):
            raise ValueError("expected HOST:PORT such as 127.0.0.1:9464: the host has a space")
        return value

    @field_validator("*", mode="before")
    @classmethod
    def _blank(cls, value: object, info: ValidationInfo) -> object:
        """`NOTIFIER_X=` (empty or blank) means the default, for every setting, as an unset
        variable does; but an empty NOTIFIER_HTTP_ADDR disables the ops server. (Defined
        last: pydantic runs `before` validators last-defined first.)"""
        if isinstance(value, str):
            if not value.strip():
                name = str(info.field_name)
                return "" if name == "http_addr" else cls.model_fields[name].default
            if any(ord(ch) < 32 or ch == "\x7f" for ch in value):
                raise ValueError("must not contain control characters (a tab, a line break ...)")
        return value
