"""A worker killed with SIGKILL between the chat's answer and the outbox's record."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from notifier.store import PENDING, SENDING, SENT, Store, open_store
from tests.deliver.harness import live_view, new_alert
from tests.fakes.telegram import FakeTelegram

ROOT = Path(__file__).resolve().parents[2]


async def start_worker(db: Path, rules: Path, fake: FakeTelegram) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "NOTIFIER_TELEGRAM_TOKEN": fake.token,
        "NOTIFIER_TELEGRAM_API_URL": fake.api_url,
        "NOTIFIER_LOG_FORMAT": "json",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.deliver.worker_main",
        str(db),
        str(rules),
        "2.0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        while b"worker ready" not in await proc.stdout.readline():
            pass
    return proc


async def sent_keys(worker: asyncio.subprocess.Process, keys: set[str]) -> None:
    """Read the worker's log until it has recorded every key as sent."""
    assert worker.stdout is not None
    waiting = set(keys)
    async with asyncio.timeout(30):
        while waiting:
            line = json.loads(await worker.stdout.readline())
            if line["event"] == "alert.sent":
                waiting.discard(line["key"])


def delivered(fake: FakeTelegram) -> list[str]:
    texts = [
        r["params"]["text"]
        for r in fake.requests
        if r["method"] == "sendMessage" and r["status"] in (200, None)
    ]
    return sorted(next(w for w in t.split() if w.startswith("alert-")) for t in texts)


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[Store]:
    """The worker's outbox file, opened beside it by the test (WAL: both read and write)."""
    store = await open_store(str(tmp_path / "outbox.db"), instance="test", durable=False)
    yield store
    await store.close()


async def test_sigkill_between_send_and_record_redelivers_only_what_was_in_flight(
    tmp_path: Path, outbox: Store, fake_telegram: FakeTelegram
) -> None:
    db, rules = tmp_path / "outbox.db", tmp_path / "rules.yaml"
    rules.write_text("destinations: {group: {telegram: {chat_id: -100123}}}\n")
    alerts = [new_alert("group", live_view(f"alert-{n}"), key=f"key-{n}") for n in range(5)]
    await outbox.enqueue(alerts, now=time.time(), fence=None)
    # The third message reaches Telegram, but its answer never reaches the worker.
    fake_telegram.fail(200, "", delay=60.0, methods=("sendMessage",), skip=2)
    worker = await start_worker(db, rules, fake_telegram)
    await sent_keys(worker, {"key-0", "key-1"})
    await fake_telegram.wait_for(
        lambda: sum(1 for r in fake_telegram.requests if r["method"] == "sendMessage") == 3
    )
    worker.send_signal(signal.SIGKILL)
    await worker.wait()

    states = {r.key: r.state for r in await outbox.rows()}
    # key-3 and key-4 were claimed with the batch (leased to the dead worker) or not yet.
    assert {k: v for k, v in states.items() if k in ("key-0", "key-1", "key-2")} == {
        "key-0": SENT,
        "key-1": SENT,
        "key-2": SENDING,
    }
    assert {states["key-3"], states["key-4"]} <= {PENDING, SENDING}

    restarted = await start_worker(db, rules, fake_telegram)
    try:
        await sent_keys(restarted, {"key-2", "key-3", "key-4"})
        assert {r.key: r.state for r in await outbox.rows()} == dict.fromkeys(states, SENT)
    finally:
        restarted.terminate()
        await restarted.wait()
    counts = {name: delivered(fake_telegram).count(name) for name in set(delivered(fake_telegram))}
    assert counts == {"alert-0": 1, "alert-1": 1, "alert-2": 2, "alert-3": 1, "alert-4": 1}, (
        "acknowledged alerts are not re-sent; the one in flight at the kill is sent again"
    )
