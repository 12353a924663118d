"""`notifier send-test` and `notifier outbox` as an operator runs them."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

from notifier.store import DEAD, DROPPED, PENDING, open_store
from tests.deliver.harness import new_alert
from tests.fakes.discord import FakeDiscord
from tests.fakes.silent import SilentServer
from tests.fakes.telegram import FakeTelegram, parse_html

ROOT = Path(__file__).resolve().parents[1]


async def notifier(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "notifier",
        *args,
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_send_test_reports_what_telegram_answered(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "destinations:\n  me: {telegram: {chat_id: 1001}}\n  gone: {telegram: {chat_id: 1002}}\n"
    )
    fake_telegram.blocked.add(1002)
    env = {
        "NOTIFIER_TELEGRAM_TOKEN": fake_telegram.token,
        "NOTIFIER_TELEGRAM_API_URL": fake_telegram.api_url,
        "NOTIFIER_LOG_FORMAT": "json",
    }
    code, out, _ = await notifier("send-test", "me", "--rules", str(rules), env=env)
    assert code == 0 and out.strip() == "me: sent (message id t:1)"
    (sent,) = fake_telegram.sent("sendMessage")
    assert parse_html(sent["params"]["text"]) == "✅ parti-notifier test alert for me"
    code, _, err = await notifier("send-test", "gone", "--rules", str(rules), env=env)
    assert code == 1
    assert "gone: permanent: forbidden: Forbidden: bot was blocked by the user" in err
    assert fake_telegram.token not in err
    code, _, err = await notifier("send-test", "nobody", "--rules", str(rules), env=env)
    assert code == 1 and "no destination 'nobody'" in err and "known: gone, me" in err


async def test_send_test_redacts_a_webhook_token_before_it_cuts_the_reason(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """Before: Discord's error text was cut to 200 characters before the webhook's token
    was replaced, so the 10 characters of it left before the cut were printed."""
    token = "SENTINEL-HOOK-" + "m2Xc7Bv4Nl9Jh0Gd" * 3
    rules = tmp_path / "rules.yaml"
    url = fake_discord.add_webhook(7, token)
    rules.write_text(f"destinations: {{hook: {{discord: {{webhook_url: '{url}'}}}}}}\n")
    fake_discord.fail(403, "x" * 190 + token, code=50013)
    env = {"NOTIFIER_DISCORD_API_URL": fake_discord.api_url, "NOTIFIER_LOG_FORMAT": "json"}
    code, out, err = await notifier("send-test", "hook", "--rules", str(rules), env=env)
    assert code == 1 and "hook: permanent: rejected 403 50013: xxx" in err, err
    pieces = {token[i : i + 8] for i in range(len(token) - 7)}
    assert not [piece for piece in pieces if piece in out + err], err


async def test_send_test_without_a_token_names_the_variable(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("destinations: {me: {telegram: {chat_id: 1}}}\n")
    env = {"NOTIFIER_TELEGRAM_TOKEN": "", "NOTIFIER_LOG_FORMAT": "json"}
    code, _, err = await notifier(
        "send-test", "me", "--rules", str(rules), env={k: v for k, v in env.items() if v}
    )
    assert code == 2 and "needs NOTIFIER_TELEGRAM_TOKEN" in err


async def test_outbox_lists_retries_and_drops(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    outbox = await open_store(str(state), instance="test", durable=False)
    dead, pending = new_alert("me", key="dead-one"), new_alert("me", key="pending-one")
    # Only the sender holding a row's lease records its outcome: lease the one to kill.
    await outbox.enqueue_leased([dead], now=time.time(), lease=60.0, room={"me": 1}, fence=None)
    await outbox.enqueue([pending], now=time.time(), fence=None)
    assert await outbox.mark_dead("dead-one", reason="forbidden: bot was blocked", now=time.time())
    await outbox.close()
    env = {"NOTIFIER_STATE_PATH": str(state)}
    code, out, _ = await notifier("outbox", env=env)
    lines = out.splitlines()
    assert code == 0
    assert any(
        line.startswith("dead") and "dead-one" in line and "forbidden: bot was blocked" in line
        for line in lines
    )
    assert any(line.startswith("pending") and "pending-one" in line for line in lines)
    assert lines[-1].endswith("1 dead, 1 pending")
    assert (await notifier("outbox", "retry", "dead-one", env=env))[0] == 0
    assert (await notifier("outbox", "drop", "pending-one", env=env))[0] == 0
    code, _, err = await notifier("outbox", "retry", "nope", env=env)
    assert code == 1 and "no dead alert with key nope" in err
    code, out, _ = await notifier("outbox", "--all", env=env)  # the dropped one is listed too
    assert code == 0 and any(
        line.startswith("dropped") and "pending-one" in line for line in out.splitlines()
    )
    check = await open_store(str(state), instance="test", durable=False)
    try:
        states = {r.key: r.state for r in await check.rows()}
        assert states == {"dead-one": PENDING, "pending-one": DROPPED}
        assert DEAD not in await check.counts()
    finally:
        await check.close()


async def test_send_test_gives_up_on_an_api_that_never_answers(tmp_path: Path) -> None:
    """A server that takes the connection and the request and never answers: one line
    after --timeout, on either platform (aiohttp's own 5 minute default is off for
    webhooks: a lane's send timeout bounds them in the daemon)."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "destinations:\n"
        "  hook: {discord: {webhook_url: 'https://discord.com/api/webhooks/123456789012345678/"
        "sentinel-webhook-token'}}\n"
        "  chat: {telegram: {chat_id: 1001}}\n"
    )
    async with SilentServer() as silent:
        env = {
            "NOTIFIER_DISCORD_API_URL": f"http://127.0.0.1:{silent.port}/api/v10",
            "NOTIFIER_TELEGRAM_API_URL": f"http://127.0.0.1:{silent.port}",
            "NOTIFIER_TELEGRAM_TOKEN": "123:sentinel-telegram-token",
            "NOTIFIER_LOG_FORMAT": "json",
        }
        for destination in ("hook", "chat"):
            code, out, err = await notifier(
                "send-test", destination, "--rules", str(rules), "--timeout", "0.5", env=env
            )
            assert code == 1, err
            assert err.strip() == (
                f"notifier send-test: {destination}: no answer within 0.5 s "
                "(or the chat's rate limit still holds it)"
            )
            assert "sentinel" not in out + err
        assert silent.held  # the requests did reach the server


@pytest.mark.parametrize("command", [["send-test", "me"], ["discord", "sync", "--guild", "1"]])
@pytest.mark.parametrize("bad", ["0", "0.05", "1e-320", "-1", "nan", "inf", "601", "soon", ""])
def test_a_timeout_that_is_not_a_number_of_seconds_is_one_line(
    command: list[str], bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from notifier.cli import build_parser

    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([*command, "--timeout", bad])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "a number of seconds from 0.1 to 600" in err and "Traceback" not in err
