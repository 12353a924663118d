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


def notifier(
    state: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    variables = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    variables |= {"NOTIFIER_STATE_PATH": str(state), "NOTIFIER_LOG_FORMAT": "json"}
    variables |= env or {}
    return subprocess.run(
        [sys.executable, "-m", "notifier", *args],
        capture_output=True,
        text=True,
        env=variables,
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


def test_a_discord_users_dm_watchlist_exports_and_imports_into_a_new_store(
    tmp_path: Path,
) -> None:
    state, fresh = tmp_path / "state.db", tmp_path / "fresh.db"

    async def dm_watchlist() -> None:
        store = await open_store(str(state), instance="test", durable=False)
        try:
            await store.add_subscription(
                "discord",
                "dm:77",
                kind="live",
                target="463000",
                params={},
                created_by="77",
                now=1.0,
            )
        finally:
            await store.close()

    asyncio.run(dm_watchlist())
    exported = notifier(state, "subs", "export", "--chat", "dm:77")
    assert exported.returncode == 0 and "dm:77" in exported.stdout, exported.stderr
    (tmp_path / "dm.yaml").write_text(exported.stdout)
    moved = notifier(fresh, "subs", "import", str(tmp_path / "dm.yaml"))
    assert moved.returncode == 0, moved.stderr
    listed = notifier(fresh, "subs", "list", "--chat", "dm:77")
    assert "463000" in listed.stdout and listed.stdout.strip().endswith("1 subscription")


def test_an_import_file_that_is_not_an_export_is_one_line(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    (tmp_path / "bad.yaml").write_text("- just a list\n")
    done = notifier(state, "subs", "import", str(tmp_path / "bad.yaml"))
    assert done.returncode == 1
    assert done.stderr.strip().endswith("not a watchlist export (needs version: 1 and chats:)")


def test_an_import_with_entries_the_engine_would_skip_names_each_and_imports_none(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state.db"
    (tmp_path / "bad.yaml").write_text(
        "version: 1\n"
        "chats:\n"
        "- platform: telegram\n"
        "  chat_id: '42'\n"
        "  subscriptions:\n"
        "  - {kind: live, target: '463000'}\n"
        "  - {kind: live, target: SNEAKO}\n"
        "  - {kind: price, target: BTC, params: {direction: sideways, line: '100'}}\n"
        "  - {kind: price, target: BTC, params: {direction: above, line: '-5'}}\n"
    )
    done = notifier(state, "subs", "import", str(tmp_path / "bad.yaml"))
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.splitlines()
    assert [line.split(": ")[2] for line in lines] == [
        f"chats[0].subscriptions[{n}]" for n in (1, 2, 3)
    ]
    assert "target is a Parti user id, not 'SNEAKO'" in lines[0]
    assert "direction must be above or below, not 'sideways'" in lines[1]
    listed = notifier(state, "subs", "list")
    assert listed.stdout.strip() == "0 subscriptions", listed.stderr


def test_telegram_chats_lists_the_chats_the_bot_has_seen_with_their_ids(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    asyncio.run(seed(state))
    done = notifier(state, "telegram", "chats")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.split()[:2] == ["42", "private"] and "2 subs" in line for line in lines)
    assert any(line.split()[:2] == ["-100777", "group"] and "Crew" in line for line in lines)
    assert lines[-1] == "2 chats"


def test_db_migrate_reports_the_migrations_it_applied_then_that_none_are_left(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state.db"
    first = notifier(state, "db", "migrate")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("sqlite: schema version ") and "(applied 1, " in first.stdout
    again = notifier(state, "db", "migrate")
    assert again.returncode == 0 and again.stdout.endswith("(nothing to apply)\n")


def test_db_status_of_a_store_not_set_up_yet_names_the_pending_migrations(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state.db"
    state.touch()  # an empty SQLite file: a database nothing has migrated yet
    done = notifier(state, "db", "status")
    assert done.returncode == 0, done.stderr
    assert "schema version 0 of " in done.stdout and "pending migrations: 1 outbox" in done.stdout
    assert "not set up yet: `notifier db migrate`" in done.stdout
    assert done.stderr == ""


def test_db_status_then_migrate_on_a_new_postgresql_database(tmp_path: Path, pg_url: str) -> None:
    # The order the README gives: a new database has no tables until `db migrate`.
    state = tmp_path / "unused.db"
    env = {"NOTIFIER_DATABASE_URL": pg_url}
    done = notifier(state, "db", "status", env=env)
    assert done.returncode == 0, done.stderr
    assert "backend postgres; schema version 0 of " in done.stdout
    assert "not set up yet" in done.stdout and done.stderr == ""
    migrated = notifier(state, "db", "migrate", env=env)
    assert migrated.returncode == 0 and "(applied 1, " in migrated.stdout
    after = notifier(state, "db", "status", env=env)
    assert after.returncode == 0 and "pending migrations: none" in after.stdout
    assert not state.exists()


def test_reading_commands_without_a_state_file_say_so_and_create_none(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    for args in (("db", "status"), ("outbox",), ("subs", "list"), ("telegram", "chats")):
        done = notifier(state, *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert done.stderr.count("\n") == 1 and f"no state file at {state}" in done.stderr
        assert not state.exists(), args


def test_subs_takes_a_chat_id_that_is_a_number(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    asyncio.run(seed(state))
    for wrong in ("abc", "dm:-1", "dm:", "4x2"):
        done = notifier(state, "subs", "list", "--chat", wrong)
        assert done.returncode == 2 and "a chat id is a number" in done.stderr, wrong
        assert f"not {wrong!r}" in done.stderr
    listed = notifier(state, "subs", "list", "--chat", "42")
    assert listed.returncode == 0 and listed.stdout.endswith("2 subscriptions\n")
    for right in ("-1001234567890", "dm:1300000000000000000"):  # a group, a Discord user's DMs
        assert notifier(state, "subs", "list", "--chat", right).returncode == 0, right


def test_a_database_url_in_the_state_path_is_opened_as_one_never_shown(tmp_path: Path) -> None:
    url = "postgresql://notifier:hunter2@127.0.0.1:1/parti"  # nothing listens on port 1
    done = notifier(tmp_path / "unused.db", "outbox", env={"NOTIFIER_STATE_PATH": url})
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "no state file" not in done.stderr and "hunter2" not in done.stderr + done.stdout


def test_db_status_names_the_backend_and_the_schema_version(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    assert notifier(state, "db", "migrate").returncode == 0
    done = notifier(state, "db", "status")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("backend sqlite; schema version ")
    assert "pending migrations: none" in done.stdout


def test_a_chat_id_of_other_digits_than_ascii_is_refused_and_never_stops_the_sync() -> None:
    from notifier.bots.watchlists import load_watchlists
    from notifier.stages.subscriptions import as_rule_subscription
    from notifier.store.types import Subscription as Stored

    over = str(2**64)  # a Discord id is a snowflake, under 2**64 (its JSON is 64-bit)
    for platform, chat in (
        ("telegram", "²"),
        ("discord", "dm:١٢"),
        ("telegram", "dm:1"),
        ("discord", over),
        ("discord", f"dm:{over}"),
    ):
        text = f"version: 1\nchats:\n- platform: {platform}\n  chat_id: '{chat}'\n"
        try:
            load_watchlists(text, chat=None)
        except ValueError as exc:
            assert "expected a numeric chat id" in str(exc)
        else:
            raise AssertionError(f"{platform} {chat!r} was accepted")
    # A row stored before (by an older import) is left out, not a stop of the whole sync.
    fields = {"kind": "live", "target": "463000", "params": {}, "created_by": "x"}
    bad = Stored(id=1, platform="telegram", chat_id="²", **fields, created_at=0.0, updated_at=0.0)
    assert as_rule_subscription(bad) is None
    good = Stored(
        id=2, platform="discord", chat_id="dm:12", **fields, created_at=0.0, updated_at=0.0
    )
    found = as_rule_subscription(good)
    assert found is not None and found.destination == "@dcdm:12"
