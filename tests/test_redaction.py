"""Redaction: registered secrets in every spelling and cut, secret-shaped strings, errors."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, SecretStr

from notifier.redact import REDACTED, Redactor, short_error
from notifier.settings import Settings

SENTINEL = "7777777:SENTINEL-SECRET-abcdefghijklmnopqrstuvwxyz012345"
SECRET_PART = SENTINEL.split(":", 1)[1]
WEBHOOK_TOKEN = "WEBHOOK-sentinel-token_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"
DB_URL = "postgresql://notifier:Pg-Sentinel-Pass-0987@db.internal:5432/notifier"
DB_PASSWORD = "Pg-Sentinel-Pass-0987"


def leaked(text: str, secret: str = SECRET_PART) -> list[str]:
    """Every 12-character slice of `secret` found in `text` (none is the goal)."""
    return [secret[i : i + 12] for i in range(len(secret) - 11) if secret[i : i + 12] in text]


def registered() -> Redactor:
    redactor = Redactor()
    for secret in (SENTINEL, WEBHOOK_TOKEN, DB_URL):
        redactor.register(secret)
    return redactor


REGISTERED_CASES = [
    ("alone", SENTINEL, REDACTED),
    ("in a sentence", f"token {SENTINEL} was rejected", f"token {REDACTED} was rejected"),
    (
        "in a Telegram URL",
        f"https://api.telegram.org/bot{SENTINEL}/getMe",
        f"https://api.telegram.org/bot{REDACTED}/getMe",
    ),
    ("URL-quoted", f"?t={quote(SENTINEL, safe='')}&x=1", f"?t={REDACTED}&x=1"),
    ("quote_plus", f"body {quote_plus(SENTINEL)} end", f"body {REDACTED} end"),
    ("the part after the colon", f"secret {SECRET_PART}.", f"secret {REDACTED}."),
    ("twice", f"{SENTINEL}|{SENTINEL}", f"{REDACTED}|{REDACTED}"),
    ("in a dict repr", repr({"token": SENTINEL}), repr({"token": REDACTED})),
    ("cut to 20", f"failed: {SENTINEL}"[:20], f"failed: {REDACTED}"),
    ("cut to 40", f"failed: {SENTINEL}"[:40], f"failed: {REDACTED}"),
    ("cut to 80", f"failed: {SENTINEL} and more text after it"[:80], None),
    ("cut with an ellipsis", f"{SENTINEL}"[:30] + "...", f"{REDACTED}..."),
    ("a webhook token alone", f"token={WEBHOOK_TOKEN[:50]}", f"token={REDACTED}"),
    ("a database URL", f"connect {DB_URL} failed", f"connect {REDACTED} failed"),
    ("the database password alone", f"bad password {DB_PASSWORD}", f"bad password {REDACTED}"),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [case[1:] for case in REGISTERED_CASES],
    ids=[case[0] for case in REGISTERED_CASES],
)
def test_registered_secrets_are_redacted_in_every_spelling(text: str, expected: str | None) -> None:
    out = registered().redact(text)
    if expected is not None:
        assert out == expected
    for secret in (SECRET_PART, WEBHOOK_TOKEN, DB_PASSWORD):
        assert leaked(out, secret) == []


PATTERN_CASES = [
    ("a Telegram token", "5555555:UNKNOWN-abcdefghijklmnopqrstuvwxyz0123 rejected", "[R] rejected"),
    ("a URL-quoted Telegram token", "t=x&k=5555555%3AUNKNOWN-abcdefghijklmnopqrstuvwxyz0123", None),
    (
        "a short token in a bot URL",
        "https://api.telegram.org/bot123:short/getMe",
        "https://api.telegram.org/bot[R]/getMe",
    ),
    (
        "a Discord webhook URL keeps its id",
        "https://discord.com/api/webhooks/112233445566/AbC-def_GHI?wait=true",
        "https://discord.com/api/webhooks/112233445566/[R]?wait=true",
    ),
    (
        "an Authorization header",
        "Authorization: Bot MTk4NjIyNDgzNDcxOTI1MjQ4.Cl2FMQ.ZnCjm1XVW7vRze4b7Cq4se7kKWs",
        "Authorization: Bot [R]",
    ),
    (
        "headers as a dict repr",
        "{'authorization': 'Bearer abc.def.ghi', 'x': 1}",
        "{'authorization': 'Bearer [R]', 'x': 1}",
    ),
    (
        "a bare Bot credential",
        "sent Bot MTk4NjIyNDgzNDcxOTI1MjQ4.Cl2FMQ.ZnCjm1XVW7vRze4b7Cq4se7kKWs",
        "sent Bot [R]",
    ),
    (
        "a PostgreSQL URL keeps its user",
        "postgresql://bob:hunter2pw@db:5432/x",
        "postgresql://bob:[R]@db:5432/x",
    ),
    (
        "a driver-qualified URL",
        "postgresql+psycopg://bob:p%40ss@db/x",
        "postgresql+psycopg://bob:[R]@db/x",
    ),
    ("a token parameter", "GET /api?token=abc123&limit=5", "GET /api?token=[R]&limit=5"),
    ("a libpq password", "host=db password=hunter2 user=bob", "host=db password=[R] user=bob"),
    ("an alert key", "live:12345:67890", "live:12345:67890"),
    ("a plain URL", "https://api.parti.com/live?limit=10", "https://api.parti.com/live?limit=10"),
    ("an address", "127.0.0.1:9464", "127.0.0.1:9464"),
    ("a port and a path", "https://host:8443/a@b", "https://host:8443/a@b"),
    ("Bot in a sentence", "Bot started for chat 42", "Bot started for chat 42"),
    ("a path starting with bot", "/bottom/line", "/bottom/line"),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [case[1:] for case in PATTERN_CASES],
    ids=[case[0] for case in PATTERN_CASES],
)
def test_secret_shaped_strings_are_redacted_without_registration(
    text: str, expected: str | None
) -> None:
    out = Redactor().redact(text)
    if expected is not None:
        assert out == expected.replace("[R]", REDACTED)
    assert "UNKNOWN-abcdefghijkl" not in out


@given(
    before=st.text(max_size=40),
    after=st.text(max_size=40),
    cut=st.integers(min_value=0, max_value=140),
)
def test_a_registered_secret_cut_anywhere_leaves_no_recognisable_part(
    before: str, after: str, cut: int
) -> None:
    out = registered().redact((before + SENTINEL + after)[:cut])
    assert leaked(out) == []


def test_two_secrets_sharing_a_beginning_are_each_redacted_whole() -> None:
    redactor = Redactor()
    redactor.register("7777777:SHARED-BEGINNING-" + "a" * 30)
    redactor.register("SHARED-BEGINNING-" + "b" * 24)  # shorter, the same first characters
    out = redactor.redact(f"x SHARED-BEGINNING-{'b' * 24} y SHARED-BEGINNING-{'a' * 30}")
    assert out == "x [REDACTED] y [REDACTED]"


@pytest.mark.parametrize("limit", [20, 40, 80, 300])
def test_short_error_redacts_before_it_cuts(limit: int) -> None:
    text = short_error(RuntimeError(f"token {SENTINEL} rejected by the API"), limit=limit)
    assert len(text) <= limit
    assert leaked(text) == []
    assert SENTINEL not in text


def test_short_error_is_one_line_with_the_type() -> None:
    text = short_error(ValueError("first line\nsecond line\r\nthird"))
    assert text == "ValueError: first line second line third"


def test_values_are_redacted_recursively_and_numbers_kept() -> None:
    redactor = registered()
    value = {
        "list": [SENTINEL, 1, 2.5, True, None],
        "nested": {"deeper": (SENTINEL, {SENTINEL})},
        SENTINEL: "key",
        "error": RuntimeError(SENTINEL),
        "path": Path("/tmp") / SENTINEL,
    }
    out = redactor.redact_value(value)
    assert out == {
        "list": [REDACTED, 1, 2.5, True, None],
        "nested": {"deeper": [REDACTED, [REDACTED]]},
        REDACTED: "key",
        "error": REDACTED,
        "path": f"/tmp/{REDACTED}",
    }


def test_a_cyclic_value_is_flattened_to_text_not_recursed_forever() -> None:
    cycle: list[object] = [SENTINEL]
    cycle.append(cycle)
    out = repr(registered().redact_value(cycle))
    assert leaked(out) == []


def test_a_secret_shorter_than_six_characters_is_not_registered() -> None:
    redactor = Redactor()
    redactor.register("abc")
    redactor.register("")
    assert redactor.redact("abc and abcabc") == "abc and abcabc"


class _Inner(BaseModel):
    webhook: SecretStr


class _Outer(BaseModel):
    token: SecretStr | None
    inner: _Inner
    name: str = "not-a-secret-value"


def test_register_model_registers_every_secret_field_nested_included() -> None:
    redactor = Redactor()
    redactor.register_model(_Outer(token=SecretStr(SENTINEL), inner=_Inner(webhook=WEBHOOK_TOKEN)))
    out = redactor.redact(f"{SENTINEL} {WEBHOOK_TOKEN} not-a-secret-value")
    assert out == f"{REDACTED} {REDACTED} not-a-secret-value"


def test_register_model_takes_the_settings_tokens() -> None:
    redactor = Redactor()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        telegram_token=SecretStr(SENTINEL),
        discord_bot_token=SecretStr(WEBHOOK_TOKEN),
    )
    redactor.register_model(settings)
    assert redactor.redact(f"{SECRET_PART}/{WEBHOOK_TOKEN}") == f"{REDACTED}/{REDACTED}"
