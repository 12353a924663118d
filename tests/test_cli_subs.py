"""`notifier subs`, `notifier telegram chats` and `notifier db` as an operator runs them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from notifier.store import open_store

ROOT = Path(__file__).resolve().parents[1]


def notifier(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env |= {"NOTIFIER_STATE_PATH": str(state), "NOTIFIER_LOG_FORMAT": "json"}
    return subprocess.run(
        [sys.executable, "-m", "notifier", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=state.parent,
        timeout=60,
        check=False,
    )


async def seed(state: Path) -> None:
    store = await open_store(str(state), instance="test", durable=False)
    try:
        now = time.time()
        await store.upsert_chat("telegram", "42", kind="private", now=now, title="Ann")
        await store.upsert_chat("telegram", "-100777", kind="group", now=now, title="Crew")
        await store.add_subscription(
            "telegram", "42", kind="live", target="463000", params={}, created_by="1", now=now
        )
        await store.add_subscription(
            "telegram",
            "42",
            kind="price",
            target="BTC",
            params={"direction": "above", "line": "100000"},
            created_by="1",
            now=now,
        )
    finally:
        await store.close()


def test_export_then_import_moves_a_watchlist_into_another_chat(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    asyncio.run(seed(state))
    exported = notifier(state, "subs", "export", "--chat", "42")
    assert exported.returncode == 0, exported.stderr
    (tmp_path / "ann.yaml").write_text(exported.stdout)
    moved = notifier(state, "subs", "import", str(tmp_path / "ann.yaml"), "--chat", "43")
    assert moved.returncode == 0, moved.stderr
    assert moved.stdout.strip() == "2 subscriptions imported (0 already there)"
    again = notifier(state, "subs", "import", str(tmp_path / "ann.yaml"), "--chat", "43")
    assert again.stdout.strip() == "0 subscriptions imported (2 already there)"
    listed = notifier(state, "subs", "list", "--chat", "43")
    assert "463000" in listed.stdout and "line=100000" in listed.stdout
    assert listed.stdout.strip().endswith("2 subscriptions")


def test_an_import_file_that_is_not_an_export_is_one_line(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    (tmp_path / "bad.yaml").write_text("- just a list\n")
    done = notifier(state, "subs", "import", str(tmp_path / "bad.yaml"))
    assert done.returncode == 1
    assert done.stderr.strip().endswith("not a watchlist export (needs version: 1 and chats:)")


def test_telegram_chats_lists_the_chats_the_bot_has_seen_with_their_ids(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    asyncio.run(seed(state))
    done = notifier(state, "telegram", "chats")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.split()[:2] == ["42", "private"] and "2 subs" in line for line in lines)
    assert any(line.split()[:2] == ["-100777", "group"] and "Crew" in line for line in lines)
    assert lines[-1] == "2 chats"


def test_db_status_names_the_backend_and_the_schema_version(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    assert notifier(state, "db", "migrate").returncode == 0
    done = notifier(state, "db", "status")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("backend sqlite; schema version ")
    assert "pending migrations: none" in done.stdout
