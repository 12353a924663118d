"""Versioned migrations: from an empty database, from the outbox file of before, explicit."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from notifier.outbox.store import NewAlert as OldAlert
from notifier.outbox.store import Outbox
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


async def test_the_outbox_file_of_before_is_upgraded_in_place_with_its_rows(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "state.db")
    old = Outbox(path)
    old.enqueue(
        [
            OldAlert(
                key=k,
                destination="me",
                rule="r",
                kind="live",
                subject="1",
                identity=f"id-{k}",
                payload={"view": {"k": k}},
                event_at=1.0,
            )
            for k in "abc"
        ],
        now=1.0,
        state={"engine": '{"v": 1}'},
    )
    old.claim("me", now=2.0, lease=30.0, limit=2)
    old.mark_sent("a", message_id="t:1", now=3.0)
    old.set_live(5, identity="e5", started_at=1.0, viewers=4, data={"rule": "r"})
    assert old.schema_version == 1
    old.close()

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
