"""One function per channel classifies every failure: the tables."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

import aiohttp
import discord
import pytest
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TimedOut,
)

from notifier.deliver import discord as discord_sender
from notifier.deliver import discord_chat, tg_request
from notifier.deliver import telegram as telegram_sender
from notifier.log import register_secret
from notifier.outbox.policy import Outcome
from notifier.rules.schema import DiscordTarget

TELEGRAM = [
    ("429 retry_after", RetryAfter(dt.timedelta(seconds=7)), Outcome.RETRY_AFTER, 7.0),
    ("429 retry_after as int", RetryAfter(3), Outcome.RETRY_AFTER, 3.0),
    ("timeout", TimedOut(), Outcome.BACKOFF, None),
    ("refused connection", NetworkError("httpx.ConnectError: refused"), Outcome.BACKOFF, None),
    ("5xx", NetworkError("Bad Gateway"), Outcome.BACKOFF, None),
    (
        "unexpected telegram error",
        Conflict("terminated by other getUpdates"),
        Outcome.BACKOFF,
        None,
    ),
    ("os error", ConnectionResetError(), Outcome.BACKOFF, None),
    (
        "can't parse entities",
        BadRequest("Can't parse entities: unsupported start tag"),
        Outcome.PLAIN_TEXT,
        None,
    ),
    ("bot blocked", Forbidden("Forbidden: bot was blocked by the user"), Outcome.PERMANENT, None),
    (
        "kicked from group",
        Forbidden("Forbidden: bot was kicked from the group chat"),
        Outcome.PERMANENT,
        None,
    ),
    ("chat not found", BadRequest("Chat not found"), Outcome.PERMANENT, None),
    (
        "not enough rights",
        BadRequest("Not enough rights to send text messages"),
        Outcome.PERMANENT,
        None,
    ),
    ("invalid token", InvalidToken(), Outcome.UNREACHABLE, None),
    ("migrated chat", ChatMigrated(-1009876), Outcome.MIGRATED, None),
]


@pytest.mark.parametrize(
    ("case", "error", "outcome", "retry_after"), TELEGRAM, ids=[c[0] for c in TELEGRAM]
)
def test_telegram_failures(
    case: str, error: BaseException, outcome: Outcome, retry_after: float | None
) -> None:
    failure = telegram_sender.classify(error)
    assert failure.outcome is outcome
    assert failure.retry_after == retry_after
    if outcome is Outcome.MIGRATED:
        assert failure.new_chat_id == -1009876


def http_error(
    status: int, code: int = 0, message: str = "x", headers: dict[str, str] | None = None
) -> discord.HTTPException:
    response: Any = SimpleNamespace(status=status, reason="r", headers=headers or {})
    data = {"code": code, "message": message}
    if status == 403:
        return discord.Forbidden(response, data)
    if status == 404:
        return discord.NotFound(response, data)
    if status >= 500:
        return discord.DiscordServerError(response, data)
    return discord.HTTPException(response, data)


DISCORD = [
    (
        "429 with Retry-After",
        http_error(429, headers={"Retry-After": "2.5"}),
        Outcome.RETRY_AFTER,
        2.5,
    ),
    ("library rate limit", discord.RateLimited(12.0), Outcome.RETRY_AFTER, 12.0),
    ("5xx", http_error(502), Outcome.BACKOFF, None),
    ("timeout", TimeoutError(), Outcome.BACKOFF, None),
    ("refused connection", aiohttp.ClientConnectionError("refused"), Outcome.BACKOFF, None),
    ("unknown webhook", http_error(404, 10015, "Unknown Webhook"), Outcome.PERMANENT, None),
    ("unknown channel", http_error(404, 10003, "Unknown Channel"), Outcome.PERMANENT, None),
    ("missing permissions", http_error(403, 50013, "Missing Permissions"), Outcome.PERMANENT, None),
    ("missing access", http_error(403, 50001, "Missing Access"), Outcome.PERMANENT, None),
    (
        "invalid webhook token",
        http_error(401, 50027, "Invalid Webhook Token"),
        Outcome.PERMANENT,
        None,
    ),
    ("bot token rejected", http_error(401, 0, "401: Unauthorized"), Outcome.UNREACHABLE, None),
    ("bot login failed", discord.LoginFailure("Improper token"), Outcome.UNREACHABLE, None),
    ("invalid form body", http_error(400, 50035, "Invalid Form Body"), Outcome.PERMANENT, None),
    ("bad webhook url", discord_sender.BadWebhookUrl("no id"), Outcome.PERMANENT, None),
    # A TypeError (orjson's encode error is one) may be a bug or an odd answer: retried.
    ("type error", TypeError("string indices must be integers"), Outcome.BACKOFF, None),
]


@pytest.mark.parametrize(
    ("case", "error", "outcome", "retry_after"), DISCORD, ids=[c[0] for c in DISCORD]
)
def test_discord_failures(
    case: str, error: BaseException, outcome: Outcome, retry_after: float | None
) -> None:
    failure = discord_sender.classify(error)
    assert failure.outcome is outcome
    assert failure.retry_after == retry_after


def test_webhook_urls_are_parsed_without_discord_hosts_only() -> None:
    assert discord_sender.parse_webhook(
        "https://discord.com/api/webhooks/123456789012345678/abc-DEF_1.2"
    ) == (123456789012345678, "abc-DEF_1.2")
    assert discord_sender.parse_webhook("http://127.0.0.1:9/api/v10/webhooks/1/tok") == (1, "tok")
    with pytest.raises(discord_sender.BadWebhookUrl) as caught:
        discord_sender.parse_webhook("https://discord.com/api/hooks/1/secret-token")
    assert "secret-token" not in str(caught.value)


# A secret placed where a reason is cut (200 characters of an error's text, 300 of a
# transport error, 200 of a pause notice): redacted before the cut, no piece of it shows.
CUT_SECRET = "SENTINEL-CUT-" + "q8Zr3Vn6Wp1Ks5Yt" * 3
CUT_WEBHOOK = "SENTINEL-HOOK-" + "m2Xc7Bv4Nl9Jh0Gd" * 3
CUT_TG_SHAPE = "8888888:" + "AAHq7Zr3Vn6Wp1Ks5Yt8Lm4Xc2Bv9Nj0Gd"  # never registered: its shape


def shown(text: str, secret: str) -> list[str]:
    """Every 8-character slice of `secret` (its part after a colon) found in `text`."""
    part = secret.partition(":")[2] or secret
    return [part[i : i + 8] for i in range(len(part) - 7) if part[i : i + 8] in text]


def cut_paths(secret: str, hub: discord_sender.DiscordHub) -> dict[str, str]:
    """Each describe of a chat API failure, given a text with `secret` 10 characters
    before its cut."""
    webhook = discord_sender.DiscordSender(
        "hook",
        DiscordTarget(webhook_url=f"https://discord.com/api/webhooks/1/{CUT_WEBHOOK}"),
        hub,
    )
    chat = discord_chat.DiscordChannelSender("chat", 2, hub)
    text = "x" * 190 + secret
    error = http_error(403, 50013, text)
    url = "https://api.telegram.org/bot1:TOKEN/sendMessage"
    return {
        "discord classify": discord_sender.classify(error).reason,
        "discord webhook sender": webhook.classify(error).reason,
        "discord chat sender": chat.classify(error).reason,
        "telegram classify": telegram_sender.classify(BadRequest(text)).reason,
        "telegram transport": tg_request._describe(OSError("x" * 282 + secret), url),
        "discord pause notice": discord_chat.pause_notice(2, text),
    }


@pytest.mark.parametrize("secret", [CUT_SECRET, CUT_WEBHOOK, CUT_TG_SHAPE])
def test_a_secret_at_the_cut_of_a_failure_is_redacted_before_it(secret: str) -> None:
    """Before: the Discord reason was cut to 200 characters and then redacted, so the 10
    characters of a token left before the cut were no longer recognised (nor replaced by the
    sender, which looked for the whole token), and showed in logs, the outbox, send-test
    and a server's pause notice."""
    register_secret(CUT_SECRET)  # as the settings' tokens are
    hub = discord_sender.DiscordHub("http://127.0.0.1:9/api/v10", None)
    for path, reason in cut_paths(secret, hub).items():
        assert not shown(reason, secret), f"{path}: {reason}"
