"""Versioned migrations: from an empty database, from the outbox file of before, explicit."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from notifier.store import PENDING, SENDING, SENT, SchemaTooNew, Store, open_store
from notifier.store.migrations import LATEST
from tests.store.conftest import OpenStore, alert


async def test_an_empty_database_is_migrated_to_the_latest_version_at_open(store: Store) -> None:
    status = await store.status()
    assert (status.backend, status.version, status.latest, status.pending) == (
        store.backend,
        LATEST,
        LATEST,
        (),
    )


async def test_opening_again_applies_nothing(store: Store, open_instance: OpenStore) -> None:
    await store.enqueue([alert("a")], now=1.0, fence=None)
    again = await open_instance("b")
    assert await again.migrate() == []
    assert await again.get("a") is not None


async def test_without_migrate_status_lists_pending_and_migrate_applies_them(
    store_url: str,
) -> None:
    store = await open_store(store_url, instance="a", migrate=False)
    try:
        status = await store.status()
        assert status.version == 0 and len(status.pending) == LATEST
        assert status.pending[0].startswith("1 ")
        assert await store.migrate() == list(range(1, LATEST + 1))
        assert (await store.status()).pending == ()
    finally:
        await store.close()


# The schema of the outbox file that came before the store package (its version 1), as
# that code wrote it: kept here verbatim, so the upgrade is tested against the real thing.
V1_SCHEMA = """
CREATE TABLE alerts (
    key TEXT PRIMARY KEY,
    destination TEXT NOT NULL,
    rule TEXT NOT NULL,
    kind TEXT NOT NULL,
    action TEXT NOT NULL DEFAULT 'send',
    ref_key TEXT,
    subject TEXT NOT NULL,
    identity TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    event_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL,
    lease_until REAL,
    message_id TEXT,
    sent_at REAL,
    last_error TEXT
);
CREATE INDEX alerts_due ON alerts (destination, state, next_attempt_at);
CREATE INDEX alerts_identity ON alerts (identity);
CREATE TABLE kv (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE live (
    user_id INTEGER PRIMARY KEY,
    identity TEXT NOT NULL,
    started_at REAL NOT NULL,
    peak_viewers INTEGER,
    data TEXT NOT NULL
);
"""


def write_v1_file(path: str) -> None:
    """A version-1 file in WAL mode as the old outbox left it: three alerts enqueued at
    1.0, two claimed at 2.0 with a 30 s lease, one of them sent; engine state; a live
    channel."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(V1_SCHEMA)
    db.execute("PRAGMA user_version=1")
    columns = (
        "key, destination, rule, kind, subject, identity, payload, state, attempts,"
        " created_at, event_at, next_attempt_at, lease_until, message_id, sent_at"
    )
    db.executemany(
        f"INSERT INTO alerts ({columns}) VALUES (?, 'me', 'r', 'live', '1', ?, ?, ?, ?,"
        " 1.0, 1.0, 1.0, ?, ?, ?)",
        [
            ("a", "id-a", '{"view": {"k": "a"}}', "sent", 1, None, "t:1", 3.0),
            ("b", "id-b", '{"view": {"k": "b"}}', "sending", 1, 32.0, None, None),
            ("c", "id-c", '{"view": {"k": "c"}}', "pending", 0, None, None, None),
        ],
    )
    db.execute("INSERT INTO kv (name, value) VALUES (?, ?)", ("engine", '{"v": 1}'))
    db.execute(
        "INSERT INTO live (user_id, identity, started_at, peak_viewers, data)"
        " VALUES (?, ?, ?, ?, ?)",
        (5, "e5", 1.0, 4, '{"rule": "r"}'),
    )
    db.close()


async def test_the_outbox_file_of_before_is_upgraded_in_place_with_its_rows(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "state.db")
    write_v1_file(path)

    store = await open_store(path, instance="a")
    try:
        assert (await store.status()).version == LATEST
        assert await store.counts() == {SENT: 1, SENDING: 1, PENDING: 1}
        sent = await store.get("a")
        assert sent is not None and (sent.message_id, sent.payload) == ("t:1", {"view": {"k": "a"}})
        assert await store.get_state("engine") == '{"v": 1}'
        assert (await store.live_set())[5].peak_viewers == 4
        assert await store.release_leases() == 1, "the old process's lease is released"
        assert [r.key for r in await store.claim("me", now=4.0, lease=5.0, limit=5)] == ["b", "c"]
    finally:
        await store.close()


async def test_a_state_file_from_a_newer_notifier_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={LATEST + 1}")
    db.close()
    with pytest.raises(SchemaTooNew, match="newer"):
        await open_store(path, instance="a")
