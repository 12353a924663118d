"""The SQLite outbox and the daemon's other durable state (the only module with SQL).

WAL mode; schema migrations keyed on `PRAGMA user_version`. An alert is enqueued under
its unique key in one transaction (again: a no-op); workers claim due rows with a
lease and record the chat's message id; a row whose worker died is claimed again
once its lease has run out.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

PENDING = "pending"
SENDING = "sending"
SENT = "sent"
DEAD = "dead"
DROPPED = "dropped"

MIGRATIONS: list[str] = [
    # 1: the outbox, key-value state, and the live set
    """
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
    """,
]


@dataclass(frozen=True)
class Row:
    key: str
    destination: str
    rule: str
    kind: str
    action: str
    ref_key: str | None
    subject: str
    identity: str
    payload: dict[str, Any]
    state: str
    attempts: int
    created_at: float
    event_at: float
    next_attempt_at: float
    lease_until: float | None
    message_id: str | None
    sent_at: float | None
    last_error: str | None


@dataclass(frozen=True)
class NewAlert:
    key: str
    destination: str
    rule: str
    kind: str
    subject: str
    identity: str
    payload: dict[str, Any]
    event_at: float
    action: str = "send"
    ref_key: str | None = None


@dataclass(frozen=True)
class LiveEntry:
    """A followed channel that is live, with what the stream-ended edit needs."""

    user_id: int
    identity: str
    started_at: float
    viewers: int | None
    data: dict[str, Any]


_COLUMNS = ", ".join(Row.__dataclass_fields__)
_PLACEHOLDERS = ", ".join("?" for _ in Row.__dataclass_fields__)


def _values(row: Row) -> tuple[Any, ...]:
    """A row's column values in `_COLUMNS` order, the payload as JSON."""
    return tuple(
        json.dumps(row.payload, ensure_ascii=False) if name == "payload" else getattr(row, name)
        for name in Row.__dataclass_fields__
    )


def _row(values: Sequence[Any]) -> Row:
    data = dict(zip(Row.__dataclass_fields__, values, strict=True))
    data["payload"] = json.loads(data["payload"])
    return Row(**data)


class Outbox:
    """Synchronous and thread-safe; the daemon calls it from one worker thread."""

    def __init__(self, path: str, *, durable: bool = True) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL fsyncs every commit (survives power loss); NORMAL survives process crashes.
        self._durable = durable
        self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._migrate()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _migrate(self) -> None:
        with self._lock, self._tx():
            (version,) = self._db.execute("PRAGMA user_version").fetchone()
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in filter(str.strip, script.split(";")):
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={number}")

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    @contextmanager
    def _lease_tx(self) -> Iterator[None]:
        """A transaction that need not survive a power cut: a lost lease only makes its
        row due again, so it is written to the WAL without waiting for the disk (the next
        durable commit flushes it)."""
        if self._durable:
            self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            with self._tx():
                yield
        finally:
            if self._durable:
                self._db.execute("PRAGMA synchronous=FULL")

    @contextmanager
    def _tx(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # ---- alerts -----------------------------------------------------------------

    def enqueue(
        self,
        alerts: Sequence[NewAlert],
        *,
        now: float,
        state: dict[str, str] | None = None,
        lives: Sequence[LiveEntry] = (),
    ) -> list[str]:
        """Write alerts, kv state and live channels in one transaction; returns the new keys."""
        keys, _ = self.enqueue_leased(alerts, now=now, lease=0.0, room={}, lives=lives, state=state)
        return keys

    def enqueue_leased(
        self,
        alerts: Sequence[NewAlert],
        *,
        now: float,
        lease: float,
        room: Mapping[str, int],
        lives: Sequence[LiveEntry] = (),
        state: dict[str, str] | None = None,
    ) -> tuple[list[str], list[Row]]:
        """Like `enqueue`, but up to `room[destination]` new rows per destination come back
        already leased to the caller, who sends them at once (one transaction instead of an
        enqueue and a claim); the rest wait, pending, to be claimed. Returns the new keys
        and the leased rows."""
        added: list[str] = []
        rows: list[Row] = []
        left = dict(room)
        with self._lock, self._tx():
            for live in lives:
                self._set_live(live)
            for alert in alerts:
                leased = left.get(alert.destination, 0) > 0
                row = Row(
                    alert.key,
                    alert.destination,
                    alert.rule,
                    alert.kind,
                    alert.action,
                    alert.ref_key,
                    alert.subject,
                    alert.identity,
                    alert.payload,
                    SENDING if leased else PENDING,
                    1 if leased else 0,
                    now,
                    alert.event_at,
                    now,
                    now + lease if leased else None,
                    None,
                    None,
                    None,
                )
                cursor = self._db.execute(
                    f"INSERT OR IGNORE INTO alerts ({_COLUMNS}) VALUES ({_PLACEHOLDERS})",
                    _values(row),
                )
                if not cursor.rowcount:
                    continue
                added.append(alert.key)
                if leased:
                    left[alert.destination] -= 1
                    rows.append(row)
            for name, value in (state or {}).items():
                self._set(name, value)
        return added, rows

    def release_leases(self) -> int:
        """At start-up: rows leased by a process that is gone are due again at once (one
        daemon owns a state file, so no lease can belong to a live process)."""
        with self._lock, self._tx():
            cursor = self._db.execute(
                "UPDATE alerts SET state = ?, lease_until = NULL WHERE state = ?",
                (PENDING, SENDING),
            )
        return cursor.rowcount

    def claim(self, destination: str, *, now: float, lease: float, limit: int = 1) -> list[Row]:
        """Due rows of one destination, leased to the caller until now + lease."""
        with self._lock, self._lease_tx():
            rows = self._db.execute(
                f"UPDATE alerts SET state = ?, lease_until = ?, attempts = attempts + 1"
                f" WHERE key IN (SELECT key FROM alerts WHERE destination = ? AND ("
                f"   (state = ? AND next_attempt_at <= ?) OR (state = ? AND lease_until <= ?))"
                f"   ORDER BY next_attempt_at, created_at LIMIT ?)"
                f" RETURNING {_COLUMNS}",
                (SENDING, now + lease, destination, PENDING, now, SENDING, now, limit),
            ).fetchall()
        return sorted((_row(r) for r in rows), key=lambda r: (r.next_attempt_at, r.created_at))

    def mark_sent(self, key: str, *, message_id: str | None, now: float) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE alerts SET state = ?, message_id = COALESCE(?, message_id), sent_at = ?,"
                " lease_until = NULL, last_error = NULL WHERE key = ?",
                (SENT, message_id, now, key),
            )

    def reschedule(
        self,
        key: str,
        *,
        at: float,
        error: str,
        payload: dict[str, Any] | None = None,
        refund: bool = False,
    ) -> None:
        """Back to pending until `at`; `refund` gives back the attempt (not the row's fault)."""
        with self._lock:
            self._db.execute(
                "UPDATE alerts SET state = ?, next_attempt_at = ?, lease_until = NULL,"
                " last_error = ?, payload = COALESCE(?, payload),"
                " attempts = attempts - ? WHERE key = ?",
                (
                    PENDING,
                    at,
                    error[:500],
                    None if payload is None else json.dumps(payload),
                    1 if refund else 0,
                    key,
                ),
            )

    def mark_dead(self, key: str, *, reason: str, now: float) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE alerts SET state = ?, lease_until = NULL, last_error = ?,"
                " next_attempt_at = ? WHERE key = ?",
                (DEAD, reason[:500], now, key),
            )

    def retry(self, key: str, *, now: float) -> bool:
        """A dead (or dropped) row back to pending, due now (`notifier outbox retry`)."""
        with self._lock:
            cursor = self._db.execute(
                "UPDATE alerts SET state = ?, next_attempt_at = ?, attempts = 0, created_at = ?"
                " WHERE key = ? AND state IN (?, ?)",
                (PENDING, now, now, key, DEAD, DROPPED),
            )
        return cursor.rowcount == 1

    def drop(self, key: str) -> bool:
        with self._lock:
            cursor = self._db.execute(
                "UPDATE alerts SET state = ?, lease_until = NULL WHERE key = ? AND state != ?",
                (DROPPED, key, SENT),
            )
        return cursor.rowcount == 1

    def get(self, key: str) -> Row | None:
        with self._lock:
            found = self._db.execute(
                f"SELECT {_COLUMNS} FROM alerts WHERE key = ?", (key,)
            ).fetchone()
        return None if found is None else _row(found)

    def rows(self, *, states: Sequence[str] | None = None, limit: int = 1000) -> list[Row]:
        query = f"SELECT {_COLUMNS} FROM alerts"
        params: list[Any] = []
        if states:
            query += f" WHERE state IN ({', '.join('?' for _ in states)})"
            params += list(states)
        query += " ORDER BY created_at LIMIT ?"
        with self._lock:
            return [_row(r) for r in self._db.execute(query, (*params, limit)).fetchall()]

    def by_identity(self, identity: str) -> list[Row]:
        with self._lock:
            found = self._db.execute(
                f"SELECT {_COLUMNS} FROM alerts WHERE identity = ? AND action = 'send'",
                (identity,),
            ).fetchall()
        return [_row(r) for r in found]

    def next_due(self, destination: str) -> float | None:
        with self._lock:
            (at,) = self._db.execute(
                "SELECT MIN(CASE WHEN state = ? THEN next_attempt_at ELSE lease_until END)"
                " FROM alerts WHERE destination = ? AND state IN (?, ?)",
                (PENDING, destination, PENDING, SENDING),
            ).fetchone()
        return None if at is None else float(at)

    def counts(self) -> dict[str, int]:
        with self._lock:
            found = self._db.execute("SELECT state, COUNT(*) FROM alerts GROUP BY state").fetchall()
        return {state: int(n) for state, n in found}

    def oldest_pending_at(self) -> float | None:
        with self._lock:
            (at,) = self._db.execute(
                "SELECT MIN(created_at) FROM alerts WHERE state IN (?, ?)", (PENDING, SENDING)
            ).fetchone()
        return None if at is None else float(at)

    # ---- key-value state ---------------------------------------------------------

    def _set(self, name: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO kv (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, value),
        )

    def set_state(self, name: str, value: str) -> None:
        with self._lock:
            self._set(name, value)

    def get_state(self, name: str) -> str | None:
        with self._lock:
            found = self._db.execute("SELECT value FROM kv WHERE name = ?", (name,)).fetchone()
        return None if found is None else str(found[0])

    # ---- the live set ------------------------------------------------------------

    def live_set(self) -> dict[int, dict[str, Any]]:
        with self._lock:
            found = self._db.execute(
                "SELECT user_id, identity, started_at, peak_viewers, data FROM live"
            ).fetchall()
        return {
            uid: {
                "identity": ident,
                "started_at": started,
                "peak_viewers": peak,
                "data": json.loads(data),
            }
            for uid, ident, started, peak, data in found
        }

    def set_live(
        self,
        user_id: int,
        *,
        identity: str,
        started_at: float,
        viewers: int | None,
        data: dict[str, Any],
    ) -> bool:
        """Record a live channel; False when this identity was already known."""
        with self._lock, self._tx():
            return self._set_live(LiveEntry(user_id, identity, started_at, viewers, data))

    def _set_live(self, live: LiveEntry) -> bool:
        found = self._db.execute(
            "SELECT identity, peak_viewers FROM live WHERE user_id = ?", (live.user_id,)
        ).fetchone()
        if found is not None and found[0] == live.identity:
            peak = max(found[1] or 0, live.viewers or 0)
            self._db.execute(
                "UPDATE live SET peak_viewers = ? WHERE user_id = ?", (peak, live.user_id)
            )
            return False
        self._db.execute(
            "INSERT OR REPLACE INTO live (user_id, identity, started_at, peak_viewers, data)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                live.user_id,
                live.identity,
                live.started_at,
                live.viewers,
                json.dumps(live.data, ensure_ascii=False),
            ),
        )
        return True

    def update_peaks(self, viewers: dict[int, int]) -> None:
        """Raise the peak viewers of live channels seen in a poll."""
        with self._lock, self._tx():
            for user_id, count in viewers.items():
                self._db.execute(
                    "UPDATE live SET peak_viewers = MAX(COALESCE(peak_viewers, 0), ?)"
                    " WHERE user_id = ?",
                    (count, user_id),
                )

    def end_live(self, user_id: int) -> dict[str, Any] | None:
        with self._lock, self._tx():
            found = self._db.execute(
                "SELECT identity, started_at, peak_viewers, data FROM live WHERE user_id = ?",
                (user_id,),
            ).fetchone()
            if found is None:
                return None
            self._db.execute("DELETE FROM live WHERE user_id = ?", (user_id,))
        identity, started, peak, data = found
        return {
            "identity": identity,
            "started_at": started,
            "peak_viewers": peak,
            "data": json.loads(data),
        }
