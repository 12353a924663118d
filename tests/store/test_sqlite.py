"""SQLite only: the file's journal mode, and the health queries staying on indexes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from notifier.store import StoreError, open_store


async def test_the_state_file_is_in_wal_mode(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    await (await open_store(path, instance="a")).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


@pytest.mark.parametrize(
    "query",
    [
        "SELECT COUNT(*) FROM alerts WHERE state = 'pending'",
        "SELECT MIN(created_at) FROM alerts WHERE state = 'sending'",
    ],
)
async def test_health_queries_read_the_state_index_not_the_sent_rows(
    tmp_path: Path, query: str
) -> None:
    path = str(tmp_path / "s.db")
    await (await open_store(path, instance="a")).close()
    db = sqlite3.connect(path)
    plan = " ".join(row[-1] for row in db.execute(f"EXPLAIN QUERY PLAN {query}"))
    db.close()
    assert "INDEX alerts_state" in plan


async def test_a_state_file_in_a_missing_folder_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="unable to open"):
        await open_store(str(tmp_path / "missing" / "deeper" / "s.db"), instance="a")


async def test_a_new_store_makes_its_one_missing_folder(tmp_path: Path) -> None:
    """As systemd's StateDirectory would: `check` accepts such a path, so `run` starts."""
    store = await open_store(str(tmp_path / "new" / "s.db"), instance="a")
    await store.close()
    assert (tmp_path / "new" / "s.db").is_file()
    with pytest.raises(StoreError, match="unable to open"):  # reading never makes one
        await open_store(str(tmp_path / "other" / "s.db"), instance="a", migrate=False)
