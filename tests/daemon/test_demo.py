"""`notifier demo --telegram-chat`: a chat that refuses the alerts is reported, exit 1."""

from __future__ import annotations

import asyncio
import os
import sys

from tests.daemon.helpers import ROOT
from tests.fakes.telegram import FakeTelegram

CHAT = 4243


async def run_demo(fake: FakeTelegram, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env |= {"NOTIFIER_TELEGRAM_TOKEN": fake.token, "NOTIFIER_TELEGRAM_API_URL": fake.api_url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "notifier",
        "demo",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(90):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_a_blocked_chat_is_reported_with_the_reason_and_exit_1(
    fake_telegram: FakeTelegram,
) -> None:
    fake_telegram.block(CHAT)
    code, out, err = await run_demo(fake_telegram, "--telegram-chat", str(CHAT))
    assert code == 1, out + err
    failures = [line for line in err.splitlines() if line.startswith("notifier demo:")]
    assert failures and all("not delivered to the chat" in line for line in failures)
    # Every one for the reason the chat gave: an edit of a message that never went out is
    # dropped, not waited for (the demo waited 30 s for it) nor reported "not sent yet".
    assert all(line.endswith("bot was blocked by the user") for line in failures)
    assert "Traceback" not in out + err


async def test_a_chat_that_takes_the_alerts_exits_0(fake_telegram: FakeTelegram) -> None:
    code, out, err = await run_demo(fake_telegram, "--telegram-chat", str(CHAT))
    assert code == 0, out + err
    assert len(fake_telegram.sent()) >= 7


async def test_a_chat_id_that_is_not_one_is_one_line_exit_2(fake_telegram: FakeTelegram) -> None:
    code, _, err = await run_demo(fake_telegram, "--telegram-chat", "not-a-chat")
    assert code == 2 and err.count("\n") == 1 and "--telegram-chat takes a chat id" in err
