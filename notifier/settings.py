"""Process settings from `NOTIFIER_*` environment variables and `.env` (DESIGN.md, "Settings")."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from notifier.units import UnitError, parse_duration


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="NOTIFIER_", env_file=".env", extra="ignore", hide_input_in_errors=True
    )

    rules: str = "rules.yaml"
    parti_api_url: str = "https://api-backend.parti.com"
    parti_ws_url: str = "wss://ws-backend.parti.com/"
    telegram_token: SecretStr | None = None
    telegram_api_url: str = "https://api.telegram.org"
    discord_bot_token: SecretStr | None = None
    discord_api_url: str = "https://discord.com/api/v10"
    state_path: str = "./notifier.db"
    http_addr: str = "127.0.0.1:9464"
    log_format: Literal["auto", "console", "json"] = "auto"
    live_poll: float = Field(default=60.0, description="seconds; accepts 30s, 1m, ...")

    @field_validator("live_poll", mode="before")
    @classmethod
    def _duration(cls, value: object) -> float:
        if isinstance(value, str | int | float):
            try:
                return parse_duration(value)
            except UnitError as exc:
                raise ValueError(str(exc)) from None
        raise ValueError("expected a duration such as 60s")
