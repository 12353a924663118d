"""The SQLite outbox: once per key, leases, crash recovery, dead letters, migrations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from notifier.outbox.store import DEAD, PENDING, SENDING, SENT, NewAlert, Outbox


def alert(key: str, destination: str = "me") -> NewAlert:
    return NewAlert(
        key=key,
        destination=destination,
        rule="r",
        kind="live",
        subject="1",
        identity=f"id-{key}",
        payload={"view": {"x": key}},
        event_at=1.0,
    )


def test_schema_is_migrated_by_user_version_in_wal_mode(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    outbox = Outbox(path)
    assert outbox.schema_version == 1
    outbox.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    db.close()
    Outbox(path).close()  # opening again runs no migration twice


def test_enqueueing_a_key_twice_is_a_no_op(tmp_path: Path) -> None:
    outbox = Outbox(str(tmp_path / "s.db"))
    assert outbox.enqueue([alert("a"), alert("b")], now=10.0) == ["a", "b"]
    assert outbox.enqueue([alert("a")], now=11.0) == []
    assert outbox.counts() == {PENDING: 2}


def test_enqueue_writes_state_in_the_same_transaction(tmp_path: Path) -> None:
    outbox = Outbox(str(tmp_path / "s.db"))
    outbox.enqueue([alert("a")], now=1.0, state={"engine": '{"v": 1}'})
    assert outbox.get_state("engine") == '{"v": 1}'


def test_claim_leases_due_rows_of_one_destination(tmp_path: Path) -> None:
    outbox = Outbox(str(tmp_path / "s.db"))
    outbox.enqueue([alert("a"), alert("b", "other")], now=1.0)
    (row,) = outbox.claim("me", now=2.0, lease=30.0)
    assert (row.key, row.state, row.attempts, row.lease_until) == ("a", SENDING, 1, 32.0)
    assert outbox.claim("me", now=3.0, lease=30.0) == [], "leased rows are not claimed twice"


def test_a_row_whose_worker_died_is_claimed_again_after_the_lease(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    first = Outbox(path)
    first.enqueue([alert("a")], now=1.0)
    first.claim("me", now=2.0, lease=30.0)
    first.close()  # the worker is gone; its lease remains
    second = Outbox(path)
    assert second.claim("me", now=31.9, lease=30.0) == []
    (row,) = second.claim("me", now=32.0, lease=30.0)
    assert row.key == "a" and row.attempts == 2


def test_sent_rows_record_the_message_id_and_are_never_claimed(tmp_path: Path) -> None:
    outbox = Outbox(str(tmp_path / "s.db"))
    outbox.enqueue([alert("a")], now=1.0)
    outbox.claim("me", now=1.0, lease=5.0)
    outbox.mark_sent("a", message_id="t:42", now=2.0)
    row = outbox.get("a")
    assert row is not None and (row.state, row.message_id) == (SENT, "t:42")
    assert outbox.claim("me", now=100.0, lease=5.0) == []


def test_reschedule_dead_letter_retry_and_drop(tmp_path: Path) -> None:
    outbox = Outbox(str(tmp_path / "s.db"))
    outbox.enqueue([alert("a"), alert("b")], now=1.0)
    outbox.claim("me", now=1.0, lease=500.0, limit=2)
    outbox.reschedule("a", at=50.0, error="5xx", payload={"plain": True})
    assert outbox.claim("me", now=49.0, lease=5.0) == []
    (again,) = outbox.claim("me", now=50.0, lease=5.0)
    assert again.payload == {"plain": True} and again.last_error == "5xx"
    outbox.mark_sent("a", message_id="1", now=50.0)
    outbox.mark_dead("b", reason="bot was blocked", now=2.0)
    dead = outbox.get("b")
    assert dead is not None and (dead.state, dead.last_error) == (DEAD, "bot was blocked")
    assert outbox.retry("b", now=60.0)
    assert outbox.claim("me", now=60.0, lease=5.0)[0].key == "b"
    assert outbox.drop("b") and not outbox.drop("missing")


def test_live_set_records_each_identity_once(tmp_path: Path) -> None:
    outbox = Outbox(str(tmp_path / "s.db"))
    assert outbox.set_live(1, identity="e1", started_at=5.0, viewers=3, data={"n": "a"})
    assert not outbox.set_live(1, identity="e1", started_at=6.0, viewers=9, data={})
    assert outbox.live_set()[1]["peak_viewers"] == 9
    ended = outbox.end_live(1)
    assert ended is not None and ended["identity"] == "e1" and outbox.live_set() == {}


def test_leases_of_a_gone_process_are_released_at_start(tmp_path: Path) -> None:
    outbox = Outbox(str(tmp_path / "s.db"))
    keys, rows = outbox.enqueue_leased(
        [alert("a"), alert("b"), alert("c")], now=1.0, lease=300.0, room={"me": 2}
    )
    assert keys == ["a", "b", "c"]
    assert [(r.key, r.state) for r in rows] == [("a", SENDING), ("b", SENDING)]
    assert outbox.get("c").state == PENDING, "no room in the lane: waits in the outbox"  # type: ignore[union-attr]
    again = outbox.enqueue_leased([alert("a")], now=2.0, lease=300.0, room={"me": 9})
    assert again == ([], []), "once per key"
    assert [r.key for r in outbox.claim("me", now=3.0, lease=5.0, limit=5)] == ["c"]
    assert outbox.release_leases() == 3
    assert [r.key for r in outbox.claim("me", now=4.0, lease=5.0, limit=5)] == ["a", "b", "c"]
