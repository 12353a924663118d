"""The embedded SQLite store: one file, one process, the calls on one dedicated thread (an
event's few alerts are written on the caller's thread when that one has nothing to do).

WAL mode, `synchronous=NORMAL`: every commit is in the WAL before its caller hears back,
which survives a killed process. A durable store also survives a power cut by fsyncing
the WAL in groups on a thread of its own (group commit): calls queued behind each other
share one transaction, and every commit that needs the disk is covered by the next fsync
that starts after it, so one fsync serves all the writers that came while the last one
ran. Fresh alerts (with the engine state of their batch) and claims hear back after their
commit and their fsync starts within `_SOON_AFTER` (2 ms): the send does not wait for the
disk, and an fsync started at once would compete with that send for the two cores (a
third of a millisecond of an alert's latency, measured). A killed process loses nothing
committed; a power cut in the few milliseconds before that fsync loses the batch as it
would the frames that came in those milliseconds, and an alert already sent from it goes
out again when the restarted daemon's catch-up finds the stream live. Subscriptions and
the other state hear back after their fsync; outcomes of sends hear back after their
commit and are fsynced with the next alert, or within `_FLUSH_AFTER` (a power cut in
between makes the alert go out again, never lost: an fsync of its own would make a busy
lane's next insert wait behind it); leases and clean-up wait for no fsync at all (a lost
lease only makes its row due again). With one process owning the file every role is
simply held by it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import json
import os
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, ParamSpec, TypeVar

from notifier.store.base import INGEST, OutboxWatch
from notifier.store.errors import FencedOut, SchemaTooNew, StoreError, StoreUnavailable
from notifier.store.migrations import LATEST, MIGRATIONS
from notifier.store.types import (
    CHAT_FIELDS,
    DEAD,
    DROPPED,
    OPEN_STATES,
    PENDING,
    ROW_FIELDS,
    SENDING,
    SENT,
    SUBSCRIPTION_FIELDS,
    UNSET,
    Chat,
    Decision,
    DecisionEntry,
    EndedStream,
    JsonObject,
    LiveEntry,
    LiveRecord,
    NewAlert,
    RoleHolder,
    Row,
    SchemaStatus,
    Subscription,
    SubscriptionChanges,
    Unset,
    params_hash,
    to_json,
)

P = ParamSpec("P")
T = TypeVar("T")

_COLUMNS = ", ".join(ROW_FIELDS)
_PLACEHOLDERS = ", ".join("?" for _ in ROW_FIELDS)
_CHAT_COLUMNS = ", ".join(CHAT_FIELDS)
_SUB_COLUMNS = ", ".join(SUBSCRIPTION_FIELDS)


def _obj(text: str) -> JsonObject:
    value = json.loads(text)
    return value if isinstance(value, dict) else {}


def _values(row: Row) -> tuple[Any, ...]:
    """A row's column values in `_COLUMNS` order, the payload as JSON."""
    return tuple(
        to_json(row.payload) if name == "payload" else getattr(row, name) for name in ROW_FIELDS
    )


def _row(values: Sequence[Any]) -> Row:
    data = dict(zip(ROW_FIELDS, values, strict=True))
    data["payload"] = _obj(data["payload"])
    return Row(**data)


def _chat(values: Sequence[Any]) -> Chat:
    return Chat(**dict(zip(CHAT_FIELDS, values, strict=True)))


def _subscription(values: Sequence[Any]) -> Subscription:
    data = dict(zip(SUBSCRIPTION_FIELDS, values, strict=True))
    data["params"] = _obj(data["params"])
    return Subscription(**data)


def _live(values: Sequence[Any]) -> LiveRecord:
    user_id, identity, started_at, peak, data = values
    return LiveRecord(int(user_id), identity, float(started_at), peak, _obj(data))


class _Core:
    """The synchronous store; only ever called from the store's one thread."""

    def __init__(self, path: str, *, instance: str) -> None:
        self.instance = instance
        # Inside the runner's transaction, where a savepoint makes each call atomic.
        self.grouped = False
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
        self.wal = self.db.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
        # The durable store fsyncs the WAL itself, in groups (see `_Flusher`).
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(f"PRAGMA busy_timeout={_BUSY_MS}")
        self._db = self.db

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[None]:
        if self.grouped:
            yield
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _one(self, query: str, params: Sequence[Any] = ()) -> Any:
        found = self._db.execute(query, params).fetchone()
        return None if found is None else found[0]

    # ---- schema -------------------------------------------------------------------

    def version(self) -> int:
        return int(self._one("PRAGMA user_version"))

    def migrate(self) -> list[int]:
        applied: list[int] = []
        with self._tx():  # BEGIN IMMEDIATE: a second process waits, then finds it done
            version = self.version()
            if version > LATEST:
                raise SchemaTooNew(
                    f"the state file's schema (version {version}) is newer than this"
                    f" notifier's ({LATEST}): upgrade the notifier"
                )
            for migration in MIGRATIONS[version:]:
                for statement in migration.statements("sqlite"):
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={migration.version}")
                applied.append(migration.version)
        return applied

    def status(self) -> SchemaStatus:
        version = self.version()
        pending = tuple(f"{m.version} {m.name}" for m in MIGRATIONS if m.version > version)
        return SchemaStatus("sqlite", version, LATEST, pending)

    def _check_fence(self, fence: int | None) -> None:
        if fence is None:
            return
        current = self._one("SELECT generation FROM roles WHERE role = ?", (INGEST,))
        if current != fence:
            raise FencedOut(INGEST, fence, None if current is None else int(current))

    # ---- outbox -------------------------------------------------------------------

    def enqueue_leased(
        self,
        alerts: Sequence[NewAlert],
        *,
        now: float,
        lease: float,
        room: Mapping[str, int],
        fence: int | None,
        lives: Sequence[LiveEntry],
        state: Mapping[str, str] | None,
    ) -> tuple[list[str], list[Row]]:
        added: list[str] = []
        rows: list[Row] = []
        left = dict(room)
        with self._tx():
            self._check_fence(fence)
            for live in lives:
                self._set_live(live)
            for alert in alerts:
                leased = left.get(alert.destination, 0) > 0
                row = Row(
                    key=alert.key,
                    destination=alert.destination,
                    rule=alert.rule,
                    kind=alert.kind,
                    action=alert.action,
                    ref_key=alert.ref_key,
                    subject=alert.subject,
                    identity=alert.identity,
                    payload=alert.payload,
                    state=SENDING if leased else PENDING,
                    attempts=1 if leased else 0,
                    created_at=now,
                    event_at=alert.event_at,
                    next_attempt_at=now,
                    lease_until=now + lease if leased else None,
                    message_id=None,
                    sent_at=None,
                    last_error=None,
                    lease_owner=self.instance if leased else None,
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

    def release_leases_of(self, owner: str) -> int:
        with self._tx():
            cursor = self._db.execute(
                "UPDATE alerts SET state = ?, lease_until = NULL, lease_owner = NULL"
                " WHERE state = ? AND lease_owner = ?",
                (PENDING, SENDING, owner),
            )
            self._db.execute("DELETE FROM destination_leases WHERE owner = ?", (owner,))
        return cursor.rowcount

    def release_leases(self) -> int:
        with self._tx():
            cursor = self._db.execute(
                "UPDATE alerts SET state = ?, lease_until = NULL, lease_owner = NULL"
                " WHERE state = ?",
                (PENDING, SENDING),
            )
            self._db.execute("DELETE FROM destination_leases")
        return cursor.rowcount

    def claim(self, destination: str, *, now: float, lease: float, limit: int) -> list[Row]:
        with self._tx():
            found = self._db.execute(
                f"UPDATE alerts SET state = ?, lease_until = ?, lease_owner = ?,"
                f" attempts = attempts + 1"
                f" WHERE key IN (SELECT key FROM alerts WHERE destination = ? AND ("
                f"   (state = ? AND next_attempt_at <= ?) OR (state = ? AND lease_until <= ?))"
                f"   ORDER BY next_attempt_at, created_at LIMIT ?)"
                f" RETURNING {_COLUMNS}",
                (
                    SENDING,
                    now + lease,
                    self.instance,
                    destination,
                    PENDING,
                    now,
                    SENDING,
                    now,
                    limit,
                ),
            ).fetchall()
        return sorted((_row(r) for r in found), key=lambda r: (r.next_attempt_at, r.created_at))

    _MARK_SENT = (
        "UPDATE alerts SET state = ?, message_id = COALESCE(?, message_id), sent_at = ?,"
        " lease_until = NULL, lease_owner = NULL, last_error = NULL"
        " WHERE key = ? AND state = ? AND lease_owner = ?"
    )

    def mark_sent(self, key: str, *, message_id: str | None, now: float) -> bool:
        cursor = self._db.execute(
            self._MARK_SENT, (SENT, message_id, now, key, SENDING, self.instance)
        )
        return cursor.rowcount == 1

    def mark_sent_many(self, sent: Sequence[tuple[str, str | None]], *, now: float) -> list[str]:
        done: list[str] = []
        with self._tx():
            for key, message_id in sent:
                cursor = self._db.execute(
                    self._MARK_SENT, (SENT, message_id, now, key, SENDING, self.instance)
                )
                if cursor.rowcount == 1:
                    done.append(key)
        return done

    def reschedule(
        self, key: str, *, at: float, error: str, payload: JsonObject | None, refund: bool
    ) -> bool:
        cursor = self._db.execute(
            "UPDATE alerts SET state = ?, next_attempt_at = ?, lease_until = NULL,"
            " lease_owner = NULL, last_error = ?, payload = COALESCE(?, payload),"
            " attempts = attempts - ? WHERE key = ? AND state = ? AND lease_owner = ?",
            (
                PENDING,
                at,
                error[:500],
                None if payload is None else to_json(payload),
                1 if refund else 0,
                key,
                SENDING,
                self.instance,
            ),
        )
        return cursor.rowcount == 1

    def mark_dead(self, key: str, *, reason: str, now: float) -> bool:
        cursor = self._db.execute(
            "UPDATE alerts SET state = ?, lease_until = NULL, lease_owner = NULL,"
            " last_error = ?, next_attempt_at = ? WHERE key = ? AND state = ? AND lease_owner = ?",
            (DEAD, reason[:500], now, key, SENDING, self.instance),
        )
        return cursor.rowcount == 1

    def retry(self, key: str, *, now: float) -> bool:
        cursor = self._db.execute(
            "UPDATE alerts SET state = ?, next_attempt_at = ?, attempts = 0, created_at = ?"
            " WHERE key = ? AND state IN (?, ?)",
            (PENDING, now, now, key, DEAD, DROPPED),
        )
        return cursor.rowcount == 1

    def drop(self, key: str) -> bool:
        cursor = self._db.execute(
            "UPDATE alerts SET state = ?, lease_until = NULL, lease_owner = NULL"
            " WHERE key = ? AND state != ?",
            (DROPPED, key, SENT),
        )
        return cursor.rowcount == 1

    def get(self, key: str) -> Row | None:
        found = self._db.execute(f"SELECT {_COLUMNS} FROM alerts WHERE key = ?", (key,)).fetchone()
        return None if found is None else _row(found)

    def rows(self, *, states: Sequence[str] | None, limit: int) -> list[Row]:
        query = f"SELECT {_COLUMNS} FROM alerts"
        params: list[Any] = []
        if states:
            query += f" WHERE state IN ({', '.join('?' for _ in states)})"
            params += list(states)
        query += " ORDER BY created_at LIMIT ?"
        return [_row(r) for r in self._db.execute(query, (*params, limit)).fetchall()]

    def by_identity(self, identity: str) -> list[Row]:
        found = self._db.execute(
            f"SELECT {_COLUMNS} FROM alerts WHERE identity = ? AND action = 'send'",
            (identity,),
        ).fetchall()
        return [_row(r) for r in found]

    def next_due(self, destination: str) -> float | None:
        # The first pending row is the first entry of its (destination, state,
        # next_attempt_at) index range, whatever the backlog; the leased rows are few.
        at = self._one(
            "SELECT MIN(at) FROM ("
            " SELECT MIN(next_attempt_at) AS at FROM alerts WHERE destination = ? AND state = ?"
            " UNION ALL SELECT MIN(lease_until) FROM alerts WHERE destination = ? AND state = ?)",
            (destination, PENDING, destination, SENDING),
        )
        return None if at is None else float(at)

    def waiting_destinations(self) -> dict[str, int]:
        found = self._db.execute(
            "SELECT destination, COUNT(*) FROM alerts WHERE state IN (?, ?) GROUP BY destination",
            (PENDING, SENDING),
        ).fetchall()
        return {str(destination): int(n) for destination, n in found}

    def dead_letter(
        self, destination: str, *, reason: str, now: float, created_before: float
    ) -> int:
        cursor = self._db.execute(
            "UPDATE alerts SET state = ?, lease_until = NULL, lease_owner = NULL,"
            " last_error = ?, next_attempt_at = ? WHERE destination = ? AND created_at < ?"
            " AND (state = ? OR (state = ? AND lease_until <= ?))",
            (DEAD, reason[:500], now, destination, created_before, PENDING, SENDING, now),
        )
        return cursor.rowcount

    def counts(self) -> dict[str, int]:
        found = self._db.execute("SELECT state, COUNT(*) FROM alerts GROUP BY state").fetchall()
        return {state: int(n) for state, n in found}

    def depth(self) -> dict[str, int]:
        counts = dict.fromkeys(OPEN_STATES, 0)
        for state in OPEN_STATES:  # one index range each
            counts[state] = int(self._one("SELECT COUNT(*) FROM alerts WHERE state = ?", (state,)))
        return counts

    def oldest_pending_at(self) -> float | None:
        # MIN per state reads the first entry of the (state, created_at) index.
        at = self._one(
            "SELECT MIN(at) FROM ("
            " SELECT MIN(created_at) AS at FROM alerts WHERE state = ?"
            " UNION ALL SELECT MIN(created_at) FROM alerts WHERE state = ?)",
            (PENDING, SENDING),
        )
        return None if at is None else float(at)

    def prune_sent(self, before: float, *, limit: int) -> int:
        with self._tx():
            cursor = self._db.execute(
                "DELETE FROM alerts WHERE key IN (SELECT key FROM alerts"
                " WHERE state IN (?, ?) AND created_at < ? AND COALESCE(sent_at, created_at) < ?"
                " LIMIT ?)",
                (SENT, DROPPED, before, before, limit),
            )
        return cursor.rowcount

    # ---- destination leases ------------------------------------------------------

    def try_lease_destination(self, destination: str, *, now: float, ttl: float) -> bool:
        with self._tx():
            found = self._db.execute(
                "INSERT INTO destination_leases (destination, owner, lease_until)"
                " VALUES (?, ?, ?) ON CONFLICT (destination) DO UPDATE"
                " SET owner = excluded.owner, lease_until = excluded.lease_until"
                " WHERE destination_leases.owner = excluded.owner"
                " OR destination_leases.lease_until <= ?"
                " RETURNING owner",
                (destination, self.instance, now + ttl, now),
            ).fetchone()
        return found is not None

    def extend_lease(self, key: str, *, now: float, until: float) -> bool:
        with self._tx():
            cursor = self._db.execute(
                "UPDATE alerts SET lease_until = ? WHERE key = ? AND state = ?"
                " AND lease_owner = ? AND lease_until > ?",
                (until, key, SENDING, self.instance, now),
            )
        return cursor.rowcount == 1

    def renew_destination(self, destination: str, *, now: float, ttl: float) -> bool:
        with self._tx():
            cursor = self._db.execute(
                "UPDATE destination_leases SET lease_until = ? WHERE destination = ? AND owner = ?",
                (now + ttl, destination, self.instance),
            )
        return cursor.rowcount == 1

    def release_destination(self, destination: str) -> None:
        with self._tx():
            self._db.execute(
                "DELETE FROM destination_leases WHERE destination = ? AND owner = ?",
                (destination, self.instance),
            )

    # ---- engine state and live set -----------------------------------------------

    def _set(self, name: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO kv (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, value),
        )

    def set_state(self, name: str, value: str, *, fence: int | None) -> None:
        with self._tx():
            self._check_fence(fence)
            self._set(name, value)

    def get_state(self, name: str) -> str | None:
        value = self._one("SELECT value FROM kv WHERE name = ?", (name,))
        return None if value is None else str(value)

    def live_set(self) -> dict[int, LiveRecord]:
        found = self._db.execute(
            "SELECT user_id, identity, started_at, peak_viewers, data FROM live"
        ).fetchall()
        return {record.user_id: record for record in map(_live, found)}

    def set_live(self, live: LiveEntry, *, fence: int | None) -> bool:
        with self._tx():
            self._check_fence(fence)
            return self._set_live(live)

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
        if found is not None:  # the channel's next stream: the one it replaces has ended
            self._keep_ended(live.user_id, ended_at=live.started_at)
        self._db.execute(
            "INSERT OR REPLACE INTO live (user_id, identity, started_at, peak_viewers, data)"
            " VALUES (?, ?, ?, ?, ?)",
            (live.user_id, live.identity, live.started_at, live.viewers, to_json(live.data)),
        )
        return True

    def update_peaks(self, viewers: Mapping[int, int], *, fence: int | None) -> None:
        with self._tx():
            self._check_fence(fence)
            for user_id, count in viewers.items():
                self._db.execute(
                    "UPDATE live SET peak_viewers = MAX(COALESCE(peak_viewers, 0), ?)"
                    " WHERE user_id = ?",
                    (count, user_id),
                )

    def _keep_ended(self, user_id: int, *, ended_at: float) -> None:
        self._db.execute(
            "INSERT INTO live_ended"
            " (identity, user_id, started_at, peak_viewers, data, ended_at)"
            " SELECT identity, user_id, started_at, peak_viewers, data, ? FROM live"
            " WHERE user_id = ? ON CONFLICT (identity) DO NOTHING",
            (ended_at, user_id),
        )

    def end_live(
        self, user_id: int, *, identity: str, ended_at: float, fence: int | None
    ) -> LiveRecord | None:
        with self._tx():
            self._check_fence(fence)
            found = self._db.execute(
                "SELECT user_id, identity, started_at, peak_viewers, data FROM live"
                " WHERE user_id = ? AND identity = ?",
                (user_id, identity),
            ).fetchone()
            if found is None:
                return None
            self._keep_ended(user_id, ended_at=ended_at)
            self._db.execute("DELETE FROM live WHERE user_id = ?", (user_id,))
            self._db.execute(
                "INSERT INTO stream_seqs (user_id, seq) VALUES (?, 1)"
                " ON CONFLICT (user_id) DO UPDATE SET seq = seq + 1",
                (user_id,),
            )
        return _live(found)

    def ended_streams(self) -> list[EndedStream]:
        found = self._db.execute(
            "SELECT user_id, identity, started_at, peak_viewers, data, ended_at"
            " FROM live_ended ORDER BY ended_at, identity"
        ).fetchall()
        return [EndedStream(_live(row[:5]), float(row[5])) for row in found]

    def forget_ended(self, identities: Sequence[str], *, fence: int | None) -> None:
        with self._tx():
            self._check_fence(fence)
            self._db.executemany(
                "DELETE FROM live_ended WHERE identity = ?", [(i,) for i in identities]
            )

    def stream_seqs(self) -> dict[int, int]:
        found = self._db.execute("SELECT user_id, seq FROM stream_seqs").fetchall()
        return {int(user_id): int(seq) for user_id, seq in found}

    # ---- roles -------------------------------------------------------------------

    def take_role(self, role: str, *, holder: str, now: float) -> int:
        with self._tx():
            generation = self._one(
                "INSERT INTO roles (role, generation, holder, since) VALUES (?, 1, ?, ?)"
                " ON CONFLICT (role) DO UPDATE SET generation = generation + 1,"
                " holder = excluded.holder, since = excluded.since RETURNING generation",
                (role, holder, now),
            )
        return int(generation)

    def roles(self) -> dict[str, RoleHolder]:
        found = self._db.execute("SELECT role, generation, holder, since FROM roles").fetchall()
        return {
            role: RoleHolder(role, int(gen), holder, since) for role, gen, holder, since in found
        }

    # ---- chats -------------------------------------------------------------------

    def upsert_chat(
        self,
        platform: str,
        chat_id: str,
        *,
        kind: str,
        now: float,
        title: str | None,
        guild_id: str | None,
    ) -> Chat:
        with self._tx():
            found = self._db.execute(
                "INSERT INTO chats (platform, chat_id, kind, guild_id, title, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (platform, chat_id) DO UPDATE SET kind = excluded.kind,"
                " guild_id = COALESCE(excluded.guild_id, chats.guild_id),"
                " title = COALESCE(excluded.title, chats.title), updated_at = excluded.updated_at"
                f" RETURNING {_CHAT_COLUMNS}",
                (platform, chat_id, kind, guild_id, title, now, now),
            ).fetchone()
        return _chat(found)

    def get_chat(self, platform: str, chat_id: str) -> Chat | None:
        found = self._db.execute(
            f"SELECT {_CHAT_COLUMNS} FROM chats WHERE platform = ? AND chat_id = ?",
            (platform, chat_id),
        ).fetchone()
        return None if found is None else _chat(found)

    def list_chats(self, platform: str | None, limit: int) -> list[Chat]:
        query = f"SELECT {_CHAT_COLUMNS} FROM chats"
        params: tuple[object, ...] = ()
        if platform is not None:
            query, params = query + " WHERE platform = ?", (platform,)
        rows = self._db.execute(query + " ORDER BY updated_at DESC LIMIT ?", (*params, limit))
        return [_chat(found) for found in rows.fetchall()]

    def set_chat_fields(
        self, platform: str, chat_id: str, *, now: float, fields: Mapping[str, object]
    ) -> bool:
        assignments = "".join(f", {name} = ?" for name in fields)
        cursor = self._db.execute(
            f"UPDATE chats SET updated_at = ?{assignments} WHERE platform = ? AND chat_id = ?",
            (now, *fields.values(), platform, chat_id),
        )
        return cursor.rowcount == 1

    def migrate_chat(self, platform: str, old_id: str, new_id: str, *, now: float) -> int:
        moved = 0
        with self._tx():
            if self.get_chat(platform, new_id) is None:
                self._db.execute(
                    "UPDATE chats SET chat_id = ?, updated_at = ?"
                    " WHERE platform = ? AND chat_id = ?",
                    (new_id, now, platform, old_id),
                )
            else:
                self._db.execute(
                    "DELETE FROM chats WHERE platform = ? AND chat_id = ?", (platform, old_id)
                )
            changed: list[int] = []
            removed: list[int] = []
            found = self._db.execute(
                "SELECT id, kind, target, params_hash FROM subscriptions"
                " WHERE platform = ? AND chat_id = ?",
                (platform, old_id),
            ).fetchall()
            for sub_id, kind, target, digest in found:
                exists = self._one(
                    "SELECT id FROM subscriptions WHERE platform = ? AND chat_id = ? AND kind = ?"
                    " AND target = ? AND params_hash = ?",
                    (platform, new_id, kind, target, digest),
                )
                if exists is None:
                    self._db.execute(
                        "UPDATE subscriptions SET chat_id = ?, updated_at = ? WHERE id = ?",
                        (new_id, now, sub_id),
                    )
                    changed.append(int(sub_id))
                    moved += 1
                else:  # the new chat already has it: the old copy goes
                    self._db.execute("DELETE FROM subscriptions WHERE id = ?", (sub_id,))
                    removed.append(int(sub_id))
            self._record_changes(changed, removed=False)
            self._record_changes(removed, removed=True)
            self._db.execute(
                "UPDATE OR IGNORE decisions SET chat_id = ? WHERE platform = ? AND chat_id = ?",
                (new_id, platform, old_id),
            )
            self._db.execute(
                "DELETE FROM decisions WHERE platform = ? AND chat_id = ?", (platform, old_id)
            )
        return moved

    # ---- subscriptions -----------------------------------------------------------

    def _record_changes(self, ids: Sequence[int], *, removed: bool) -> None:
        if not ids:
            return
        version = self._one(
            "UPDATE counters SET value = value + 1 WHERE name = 'subscriptions' RETURNING value"
        )
        self._db.executemany(
            "INSERT INTO subscription_changes (sub_id, version, removed) VALUES (?, ?, ?)"
            " ON CONFLICT (sub_id) DO UPDATE SET version = excluded.version,"
            " removed = excluded.removed",
            [(sub_id, version, int(removed)) for sub_id in ids],
        )

    def add_subscription(
        self,
        platform: str,
        chat_id: str,
        *,
        kind: str,
        target: str,
        params: JsonObject,
        created_by: str | None,
        now: float,
    ) -> int | None:
        with self._tx():
            sub_id = self._one(
                "INSERT INTO subscriptions (platform, chat_id, kind, target, params, params_hash,"
                " created_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING RETURNING id",
                (
                    platform,
                    chat_id,
                    kind,
                    target,
                    to_json(params),
                    params_hash(params),
                    created_by,
                    now,
                    now,
                ),
            )
            if sub_id is None:
                return None
            self._record_changes([int(sub_id)], removed=False)
        return int(sub_id)

    def update_subscription(self, subscription_id: int, *, params: JsonObject, now: float) -> bool:
        with self._tx():
            cursor = self._db.execute(
                "UPDATE OR IGNORE subscriptions SET params = ?, params_hash = ?, updated_at = ?"
                " WHERE id = ?",
                (to_json(params), params_hash(params), now, subscription_id),
            )
            if cursor.rowcount != 1:
                return False
            self._record_changes([subscription_id], removed=False)
        return True

    def remove_subscription(
        self,
        platform: str,
        chat_id: str,
        *,
        kind: str,
        target: str,
        params: JsonObject | None,
    ) -> int:
        query = (
            "DELETE FROM subscriptions WHERE platform = ? AND chat_id = ? AND kind = ?"
            " AND target = ?"
        )
        args: list[Any] = [platform, chat_id, kind, target]
        if params is not None:
            query += " AND params_hash = ?"
            args.append(params_hash(params))
        with self._tx():
            ids = [int(r[0]) for r in self._db.execute(query + " RETURNING id", args).fetchall()]
            self._record_changes(ids, removed=True)
        return len(ids)

    def remove_subscription_id(self, subscription_id: int) -> bool:
        with self._tx():
            cursor = self._db.execute("DELETE FROM subscriptions WHERE id = ?", (subscription_id,))
            if cursor.rowcount:
                self._record_changes([subscription_id], removed=True)
        return cursor.rowcount == 1

    def list_subscriptions(
        self, *, platform: str | None, chat_id: str | None, kind: str | None
    ) -> list[Subscription]:
        where = [
            (column, value)
            for column, value in (("platform", platform), ("chat_id", chat_id), ("kind", kind))
            if value is not None
        ]
        query = f"SELECT {_SUB_COLUMNS} FROM subscriptions"
        if where:
            query += " WHERE " + " AND ".join(f"{column} = ?" for column, _ in where)
        query += " ORDER BY id"
        found = self._db.execute(query, [value for _, value in where]).fetchall()
        return [_subscription(r) for r in found]

    def count_subscriptions(self, platform: str, chat_id: str, *, kind: str | None) -> int:
        query = "SELECT COUNT(*) FROM subscriptions WHERE platform = ? AND chat_id = ?"
        args: list[Any] = [platform, chat_id]
        if kind is not None:
            query += " AND kind = ?"
            args.append(kind)
        return int(self._one(query, args))

    def subscriptions_version(self) -> int:
        return int(self._one("SELECT value FROM counters WHERE name = 'subscriptions'"))

    def subscriptions_changed_since(self, version: int) -> SubscriptionChanges:
        with self._tx():  # one snapshot for the version and the changes
            current = self.subscriptions_version()
            found = self._db.execute(
                f"SELECT c.sub_id, c.removed, {', '.join('s.' + f for f in SUBSCRIPTION_FIELDS)}"
                " FROM subscription_changes c LEFT JOIN subscriptions s ON s.id = c.sub_id"
                " WHERE c.version > ? AND c.version <= ? ORDER BY c.version, c.sub_id",
                (version, current),
            ).fetchall()
        changed = tuple(_subscription(r[2:]) for r in found if r[2] is not None)
        removed = tuple(int(r[0]) for r in found if r[2] is None)
        return SubscriptionChanges(current, changed, removed)

    # ---- decisions ---------------------------------------------------------------

    def record_decisions(self, entries: Sequence[DecisionEntry]) -> None:
        with self._tx():
            self._db.executemany(
                "INSERT INTO decisions (platform, chat_id, subject, text, at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (platform, chat_id, subject)"
                " DO UPDATE SET text = excluded.text, at = excluded.at",
                [(e.platform, e.chat_id, e.subject, e.text[:2000], e.at) for e in entries],
            )

    def last_decision(self, platform: str, chat_id: str, subject: str) -> Decision | None:
        found = self._db.execute(
            "SELECT text, at FROM decisions WHERE platform = ? AND chat_id = ? AND subject = ?",
            (platform, chat_id, subject),
        ).fetchone()
        return None if found is None else Decision(found[0], float(found[1]))


class _Sync(enum.Enum):
    """How far a call's commit gets before its caller hears back (durable stores)."""

    DISK = "disk"  # its fsync: subscriptions, chats, roles, migrations
    SOON = "soon"  # its commit; fsynced within _SOON_AFTER: alerts and their batch, claims
    COMMIT = "commit"  # its commit; fsynced within _FLUSH_AFTER: outcomes of sends
    LEASE = "lease"  # its commit; fsynced with whatever comes next: leases, clean-up
    READ = "read"  # writes nothing: needs no write transaction either


# Calls by name that need less than the disk (every other call that writes needs it).
_SYNC: Final = {
    "enqueue_leased": _Sync.SOON,
    "claim": _Sync.SOON,
    "mark_sent": _Sync.COMMIT,
    "mark_sent_many": _Sync.COMMIT,
    "reschedule": _Sync.COMMIT,
    "mark_dead": _Sync.COMMIT,
    "dead_letter": _Sync.COMMIT,
    "release_leases": _Sync.LEASE,
    "record_decisions": _Sync.LEASE,  # for /why only: a power cut may lose the latest
    "prune_sent": _Sync.LEASE,
    "try_lease_destination": _Sync.LEASE,
    "extend_lease": _Sync.LEASE,
    "renew_destination": _Sync.LEASE,
    "release_destination": _Sync.LEASE,
} | dict.fromkeys(
    (
        "get",
        "rows",
        "by_identity",
        "next_due",
        "waiting_destinations",
        "counts",
        "depth",
        "oldest_pending_at",
        "get_state",
        "live_set",
        "ended_streams",
        "stream_seqs",
        "roles",
        "get_chat",
        "list_subscriptions",
        "count_subscriptions",
        "subscriptions_version",
        "last_decision",
        "status",
    ),
    _Sync.READ,
)
_GROUP: Final = 256  # calls in one transaction at most
_HERE_AT_MOST: Final = 16  # alerts and live entries an enqueue may write on its caller's thread
# Commits between two checkpoints of the WAL by the store's thread (SQLite's automatic
# checkpoint, off here, comes every 1,000 pages: some 200 commits of an alert or two).
_CHECKPOINT_AFTER: Final = 200
_BUSY_MS: Final = 30_000  # how long a call waits for another process's write lock
_FLUSH_AFTER: Final = 0.1  # seconds a commit nobody waits for stays un-fsynced at most
# Seconds before an alert's fsync starts (unless a caller waits for one sooner): time for
# the send that the alert's commit let go to leave first, and for the alerts of the next
# few milliseconds to share the fsync.
_SOON_AFTER: Final = 0.002
_CLOSED: Final = "the store is closed"


@dataclass(slots=True)
class _Job:
    work: Callable[[], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    sync: _Sync
    solo: bool = False  # outside any group: opening, migrations, closing


_Result = tuple[_Job, bool, Any]  # the call, whether it succeeded, its value or error


def _settle(results: list[_Result]) -> None:
    for job, ok, value in results:
        if job.future.done():  # its caller was cancelled
            continue
        if ok:
            job.future.set_result(value)
        else:
            job.future.set_exception(value)


def _post(results: list[_Result]) -> None:
    """Hand results to the callers' event loops (one wake-up per loop)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Result]] = {}
    for result in results:
        by_loop.setdefault(result[0].loop, []).append(result)
    for loop, some in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody is waiting
            loop.call_soon_threadsafe(_settle, some)


class _Flusher:
    """Fsyncs the WAL on a thread of its own. A commit that needs the disk is covered by
    the first fsync that starts after it; while one fsync runs the commits behind it
    gather for the next, so a busy store does one fsync for many writers, and a quiet
    one starts an fsync as soon as a caller waits for it. A `soon` commit (fresh alerts)
    has its fsync start `_SOON_AFTER` seconds after it was made at most (or after the
    fsync that was running then ended); other commits nobody waits for (outcomes) are
    fsynced with the next fsync, or `_FLUSH_AFTER` seconds after they were made.
    An fsync of another descriptor of the same file makes SQLite's own writes durable:
    it is the file's pages that are flushed."""

    def __init__(self, wal: str, main: str) -> None:
        self._wal = wal
        self._main = main
        self._fd = -1
        self._cond = threading.Condition()
        self._wanted = 0  # commits to cover (numbered)
        self._urgent = 0  # the last of them somebody waits for
        self._soon = 0  # the last `soon` one
        self._soon_since = 0.0  # when the first `soon` commit after `_synced` was made
        self._synced = 0  # the last one an fsync covered
        self._dirty_since = 0.0  # when the first commit after `_synced` was made
        self._waiting: deque[tuple[int, list[_Result]]] = deque()
        self._closing = False
        self._thread = threading.Thread(target=self._serve, name="store-fsync", daemon=True)
        self._thread.start()

    def committed(self, waiting: list[_Result], *, soon: bool = False) -> None:
        """A commit to make durable; `waiting` hear back once an fsync covers it. `soon`:
        its fsync starts within `_SOON_AFTER` although nobody waits for it."""
        with self._cond:
            self._wanted += 1
            if self._wanted == self._synced + 1:
                self._dirty_since = time.monotonic()
                self._cond.notify()  # start the clock
            if soon:
                if self._soon <= self._synced:
                    self._soon_since = time.monotonic()
                    self._cond.notify()  # start the shorter clock
                self._soon = self._wanted
            if waiting:
                self._urgent = self._wanted
                self._waiting.append((self._wanted, waiting))
                self._cond.notify()

    def close(self) -> None:
        """Finish the fsyncs owed, then stop."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _due(self) -> bool:
        """Wait (holding the condition) until an fsync is due; False: stop."""
        while True:
            if self._urgent > self._synced:
                return True
            if self._wanted == self._synced:
                if self._closing:
                    return False
                self._cond.wait()
                continue
            if self._closing:
                return True
            left = self._dirty_since + _FLUSH_AFTER - time.monotonic()
            if self._soon > self._synced:
                left = min(left, self._soon_since + _SOON_AFTER - time.monotonic())
            if left <= 0:
                return True
            self._cond.wait(left)

    def _serve(self) -> None:
        while True:
            with self._cond:
                if not self._due():
                    return
                target = self._wanted
            error = self._sync()
            ready: list[_Result] = []
            with self._cond:
                self._synced = target
                if self._wanted > target:  # made while this fsync ran: its clock runs
                    self._dirty_since = time.monotonic()
                    if self._soon > target:
                        self._soon_since = self._dirty_since
                while self._waiting and self._waiting[0][0] <= target:
                    ready += self._waiting.popleft()[1]
            if error is not None:
                ready = [(job, False, error) for job, _, _ in ready]
            _post(ready)

    def _sync(self) -> StoreError | None:
        try:
            try:
                if self._fd < 0 or os.fstat(self._fd).st_nlink == 0:  # the WAL was replaced
                    if self._fd >= 0:
                        os.close(self._fd)
                        self._fd = -1
                    self._fd = os.open(self._wal, os.O_RDONLY)
                _fdatasync(self._fd)
            except FileNotFoundError:  # no WAL: every commit is in the main file
                fd = os.open(self._main, os.O_RDONLY)
                try:
                    _fdatasync(fd)
                finally:
                    os.close(fd)
        except OSError as exc:
            return StoreError(f"state file {self._main}: fsync failed: {exc.strerror or exc}")
        return None


_fdatasync: Final = getattr(os, "fdatasync", os.fsync)


def _run_alone(job: _Job) -> _Result:
    """A call outside any group transaction (it opens its own if it needs one)."""
    try:
        return (job, True, job.work())
    except Exception as exc:
        return (job, False, exc)


class _Runner:
    """The store's one thread. Calls run in the order they came; the calls waiting
    together share one transaction (a savepoint each, so one call's failure undoes only
    that call), and a durable store's writes then wait for the flusher."""

    def __init__(self, path: str, *, durable: bool) -> None:
        self.path = path
        self.durable = durable
        self.core: _Core | None = None
        self.flusher: _Flusher | None = None
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._stopped = False
        # The connection, held by whichever thread runs calls on it: the store's own, or
        # the caller's for a small write while the store's thread has nothing to do.
        self._using = threading.Lock()
        # Calls handed to the store's thread that it has not started (a call it took from
        # the queue counts until it holds the connection to run it).
        self._queued = 0
        self._counting = threading.Lock()
        self._commits = 0  # since the last checkpoint (under `_using`)
        self._thread = threading.Thread(target=self._serve, name="store", daemon=True)
        self._thread.start()

    def submit(self, job: _Job) -> None:
        if self._stopped:
            raise StoreError(_CLOSED)
        self._put(job)

    def _put(self, job: _Job) -> None:
        with self._counting:
            self._queued += 1
        self._jobs.put(job)

    def _finished(self, count: int) -> None:
        with self._counting:
            self._queued -= count

    def open(self, instance: str) -> _Core:
        core = _Core(self.path, instance=instance)
        if core.wal:
            # This thread checkpoints, between its own calls (`_checkpoint`).
            core.db.execute("PRAGMA wal_autocheckpoint=0")
        if self.durable:
            if core.wal:
                self.flusher = _Flusher(self.path + "-wal", self.path)
            else:  # no WAL (a file system without shared memory): SQLite fsyncs itself
                core.db.execute("PRAGMA synchronous=FULL")
        self.core = core
        return core

    def close(self) -> None:
        """On the store's thread, after every call queued before it."""
        if self.flusher is not None:
            self.flusher.close()
            self.flusher = None
        core, self.core = self.core, None
        if core is not None:
            core.close()

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        loop = asyncio.get_running_loop()
        closed = loop.create_future()
        self._put(_Job(self.close, loop, closed, _Sync.LEASE, solo=True))
        self._jobs.put(None)
        try:
            await closed
        finally:
            await loop.run_in_executor(None, self._thread.join)

    def _serve(self) -> None:
        held: list[_Job | None] = []
        while True:
            job = held.pop() if held else self._jobs.get()
            if job is None:
                return
            if job.solo:
                with self._using:
                    self._finished(1)  # holding the connection: nothing can overtake it now
                    self._solo(job)
                    self._commits += 1
                continue
            group = [job]
            while len(group) < _GROUP:
                try:
                    following = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if following is None or following.solo:
                    held.append(following)
                    break
                group.append(following)
            with self._using:
                self._finished(len(group))  # holding the connection: nothing can overtake them
                if self._group(group):
                    self._commits += 1
                    if self._commits >= _CHECKPOINT_AFTER:
                        self._checkpoint()

    def _checkpoint(self) -> None:
        """Copy the WAL into the database file (PASSIVE: readers of other processes are
        not waited for). When all of it was copied the next write starts the WAL over,
        and SQLite fsyncs its new header then: that write is made here, at once, so that
        it is never one made on an event loop's thread (`run_here`)."""
        self._commits = 0
        core = self.core
        if core is None or not core.wal:
            return
        db = core.db
        try:
            _, frames, copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if frames > 0 and copied == frames:
                db.execute("BEGIN IMMEDIATE")
                try:
                    version = db.execute("PRAGMA user_version").fetchone()[0]
                    db.execute(f"PRAGMA user_version={int(version)}")  # a write of page 1
                finally:
                    db.execute("COMMIT")
        except sqlite3.Error:
            pass  # another process writes or reads: the next checkpoint tries again

    def _solo(self, job: _Job) -> None:
        result = _run_alone(job)
        if result[1] and job.sync is _Sync.DISK and self.flusher is not None:
            self.flusher.committed([result])
        else:
            _post([result])

    def _group(self, group: list[_Job]) -> bool:
        """Run the calls; True when they committed a transaction."""
        core = self.core
        if core is None:
            _post([(job, False, StoreError(_CLOSED)) for job in group])
            return False
        if all(job.sync is _Sync.READ for job in group):
            _post([_run_alone(job) for job in group])  # each read sees a committed state
            return False
        try:
            done = _transact(core, group)
        except Exception as exc:
            _post([(job, False, exc) for job in group])
            return False
        now: list[_Result] = []
        later: list[_Result] = []
        flush = soon = False
        for job, ok, value, wrote in done:
            if ok and wrote and self.flusher is not None and job.sync is not _Sync.LEASE:
                flush = True
                soon = soon or job.sync is _Sync.SOON
                if job.sync is _Sync.DISK:
                    later.append((job, ok, value))
                    continue
            now.append((job, ok, value))
        # The callers first: waking the fsync thread first costs them its start (the GIL,
        # a core) on the way back, a tenth of a millisecond on two cores.
        _post(now)
        if flush:
            assert self.flusher is not None
            self.flusher.committed(later, soon=soon)
        return True

    def run_here(self, job: _Job) -> _Result | None:
        """Run a `soon` write on the calling thread when the store's thread has nothing to
        do: an alert's commit without the two wake-ups of a hand-over between threads (a
        tenth of a millisecond of its latency). None: queue it after all. The event loop
        never waits for the disk or another process here: only in WAL mode (a commit does
        not fsync), never for another process's write lock, and never for a checkpoint
        (the store's thread runs those, and the write after one that starts the WAL over
        and fsyncs its header)."""
        if job.sync is not _Sync.SOON or self._stopped:
            return None
        if not self._using.acquire(blocking=False):
            return None
        try:
            core = self.core  # read under the lock: a close holds it
            if core is None or not core.wal or self._queued:
                return None  # a call before this one is not finished: calls keep their order
            if self._commits >= 2 * _CHECKPOINT_AFTER:
                return None  # the store's thread is owed a checkpoint: let it write
            db = core.db
            db.execute("PRAGMA busy_timeout=0")
            try:
                ((_, ok, value, wrote),) = _transact(core, [job])
            except Exception as exc:
                if isinstance(exc, sqlite3.OperationalError) and _is_busy(exc):
                    return None  # another process holds the lock: the store's thread waits
                return (job, False, exc)
            finally:
                db.execute(f"PRAGMA busy_timeout={_BUSY_MS}")
            if wrote:
                self._commits += 1
        finally:
            self._using.release()
        if ok and wrote and self.flusher is not None:
            self.flusher.committed([], soon=True)
        return (job, ok, value)


def _transact(core: _Core, group: list[_Job]) -> list[tuple[_Job, bool, Any, bool]]:
    """The calls in one transaction, a savepoint each: (call, whether it succeeded, its
    value or error, whether it wrote). Raises when the transaction itself failed."""
    db = core.db
    done: list[tuple[_Job, bool, Any, bool]] = []
    alone = len(group) == 1  # the transaction is the call's own: no savepoint needed
    try:
        db.execute("BEGIN IMMEDIATE")
        core.grouped = True
        for job in group:
            before = db.total_changes
            if not alone:
                db.execute("SAVEPOINT call")
            try:
                value = job.work()
            except Exception as exc:
                if alone or not db.in_transaction:  # nothing else to keep
                    raise
                db.execute("ROLLBACK TO call")
                db.execute("RELEASE call")
                done.append((job, False, exc, False))
                continue
            if not alone:
                db.execute("RELEASE call")
            done.append((job, True, value, db.total_changes != before))
        db.execute("COMMIT")
    except Exception:
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise
    finally:
        core.grouped = False
    return done


def _is_busy(error: sqlite3.OperationalError) -> bool:
    return "locked" in str(error) or "busy" in str(error)


class SqliteStore:
    """The store in one SQLite file; see the module docstring."""

    backend = "sqlite"

    def __init__(self, path: str, *, durable: bool = True, instance: str) -> None:
        self.path = path
        self.instance = instance
        self._runner = _Runner(path, durable=durable)
        self._core: _Core | None = None
        self._durable = durable
        self._watches: set[OutboxWatch] = set()

    def clock(self) -> float:
        return time.time()  # one process owns the file

    @classmethod
    async def open(
        cls, path: str, *, durable: bool = True, instance: str, migrate: bool = True
    ) -> SqliteStore:
        store = cls(path, durable=durable, instance=instance)
        folder = Path(path).parent
        if migrate and not folder.exists() and folder.parent.is_dir():
            # The one missing folder of a new store (as systemd's StateDirectory would be).
            with contextlib.suppress(OSError):  # then SQLite says what is wrong
                folder.mkdir()
        try:
            store._core = await store._run(
                functools.partial(store._runner.open, instance), _Sync.LEASE, solo=True
            )
            if migrate:
                await store.migrate()
        except BaseException:
            await store.close()
            raise
        return store

    async def _run(
        self, work: Callable[[], T], sync: _Sync, *, solo: bool = False, here: bool = False
    ) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        job = _Job(work, loop, future, sync, solo)
        try:
            if here and (result := self._runner.run_here(job)) is not None:
                if not result[1]:
                    raise result[2]
                value: T = result[2]
                return value
            self._runner.submit(job)
            return await future
        except StoreError:
            raise
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):  # another writer: try again
                raise StoreUnavailable(f"state file {self.path}: {exc}") from None
            raise StoreError(f"state file {self.path}: {exc}") from None
        except sqlite3.Error as exc:
            raise StoreError(f"state file {self.path}: {exc}") from None

    async def _call(self, method: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        sync = _SYNC.get(method.__name__, _Sync.DISK)
        return await self._run(functools.partial(method, *args, **kwargs), sync)

    @property
    def core(self) -> _Core:
        if self._core is None:
            raise StoreError(_CLOSED)
        return self._core

    async def close(self) -> None:
        for watch in list(self._watches):
            await watch.aclose()
        self._core = None
        await self._runner.stop()

    # ---- schema -------------------------------------------------------------------

    async def migrate(self) -> list[int]:
        return await self._run(self.core.migrate, _Sync.DISK, solo=True)

    async def status(self) -> SchemaStatus:
        return await self._call(self.core.status)

    # ---- outbox -------------------------------------------------------------------

    async def enqueue(
        self,
        alerts: Sequence[NewAlert],
        *,
        now: float,
        fence: int | None,
        state: Mapping[str, str] | None = None,
        lives: Sequence[LiveEntry] = (),
    ) -> list[str]:
        keys, _ = await self.enqueue_leased(
            alerts, now=now, lease=0.0, room={}, fence=fence, lives=lives, state=state
        )
        return keys

    async def enqueue_leased(
        self,
        alerts: Sequence[NewAlert],
        *,
        now: float,
        lease: float,
        room: Mapping[str, int],
        fence: int | None,
        lives: Sequence[LiveEntry] = (),
        state: Mapping[str, str] | None = None,
    ) -> tuple[list[str], list[Row]]:
        work = functools.partial(
            self.core.enqueue_leased,
            alerts,
            now=now,
            lease=lease,
            room=room,
            fence=fence,
            lives=lives,
            state=state,
        )
        # A few alerts (an event's, at a quiet moment) are written on the caller's thread.
        here = len(alerts) + len(lives) <= _HERE_AT_MOST
        keys, rows = await self._run(work, _SYNC["enqueue_leased"], here=here)
        if keys and self._watches:
            added = set(keys)
            leased = {row.key for row in rows}
            for alert in alerts:
                if alert.key in added and alert.key not in leased:
                    for watch in self._watches:
                        watch.push(alert.destination)
        return keys, rows

    async def release_leases(self) -> int:
        return await self._call(self.core.release_leases)

    async def release_leases_of(self, owner: str) -> int:
        return await self._call(self.core.release_leases_of, owner)

    async def claim(
        self, destination: str, *, now: float, lease: float, limit: int = 1
    ) -> list[Row]:
        return await self._call(self.core.claim, destination, now=now, lease=lease, limit=limit)

    async def mark_sent(self, key: str, *, message_id: str | None, now: float) -> bool:
        return await self._call(self.core.mark_sent, key, message_id=message_id, now=now)

    async def mark_sent_many(
        self, sent: Sequence[tuple[str, str | None]], *, now: float
    ) -> list[str]:
        return await self._call(self.core.mark_sent_many, sent, now=now)

    async def reschedule(
        self,
        key: str,
        *,
        at: float,
        error: str,
        payload: JsonObject | None = None,
        refund: bool = False,
    ) -> bool:
        return await self._call(
            self.core.reschedule, key, at=at, error=error, payload=payload, refund=refund
        )

    async def mark_dead(self, key: str, *, reason: str, now: float) -> bool:
        return await self._call(self.core.mark_dead, key, reason=reason, now=now)

    async def retry(self, key: str, *, now: float) -> bool:
        return await self._call(self.core.retry, key, now=now)

    async def drop(self, key: str) -> bool:
        return await self._call(self.core.drop, key)

    async def get(self, key: str) -> Row | None:
        return await self._call(self.core.get, key)

    async def rows(self, *, states: Sequence[str] | None = None, limit: int = 1000) -> list[Row]:
        return await self._call(self.core.rows, states=states, limit=limit)

    async def by_identity(self, identity: str) -> list[Row]:
        return await self._call(self.core.by_identity, identity)

    async def next_due(self, destination: str) -> float | None:
        return await self._call(self.core.next_due, destination)

    async def waiting_destinations(self) -> dict[str, int]:
        return await self._call(self.core.waiting_destinations)

    async def dead_letter(
        self, destination: str, *, reason: str, now: float, created_before: float
    ) -> int:
        return await self._call(
            self.core.dead_letter,
            destination,
            reason=reason,
            now=now,
            created_before=created_before,
        )

    async def counts(self) -> dict[str, int]:
        return await self._call(self.core.counts)

    async def depth(self) -> dict[str, int]:
        return await self._call(self.core.depth)

    async def oldest_pending_at(self) -> float | None:
        return await self._call(self.core.oldest_pending_at)

    async def prune_sent(self, before: float, *, limit: int = 10_000) -> int:
        return await self._call(self.core.prune_sent, before, limit=limit)

    async def try_lease_destination(self, destination: str, *, now: float, ttl: float) -> bool:
        return await self._call(self.core.try_lease_destination, destination, now=now, ttl=ttl)

    async def extend_lease(self, key: str, *, now: float, until: float) -> bool:
        return await self._call(self.core.extend_lease, key, now=now, until=until)

    async def renew_destination(self, destination: str, *, now: float, ttl: float) -> bool:
        return await self._call(self.core.renew_destination, destination, now=now, ttl=ttl)

    async def release_destination(self, destination: str) -> None:
        await self._call(self.core.release_destination, destination)

    async def watch_outbox(self) -> OutboxWatch:
        """Wake-ups from this process's own enqueues only (another process, such as the
        CLI, writing the same file is not heard): keep polling as the fallback."""
        watch: OutboxWatch

        async def forget() -> None:
            self._watches.discard(watch)

        watch = OutboxWatch(forget)
        self._watches.add(watch)
        return watch

    # ---- engine state and live set -----------------------------------------------

    async def get_state(self, name: str) -> str | None:
        return await self._call(self.core.get_state, name)

    async def set_state(self, name: str, value: str, *, fence: int | None) -> None:
        await self._call(self.core.set_state, name, value, fence=fence)

    async def live_set(self) -> dict[int, LiveRecord]:
        return await self._call(self.core.live_set)

    async def set_live(
        self,
        user_id: int,
        *,
        identity: str,
        started_at: float,
        viewers: int | None,
        data: JsonObject,
        fence: int | None,
    ) -> bool:
        live = LiveEntry(user_id, identity, started_at, viewers, data)
        return await self._call(self.core.set_live, live, fence=fence)

    async def update_peaks(self, viewers: Mapping[int, int], *, fence: int | None) -> None:
        await self._call(self.core.update_peaks, viewers, fence=fence)

    async def end_live(
        self, user_id: int, *, identity: str, ended_at: float, fence: int | None
    ) -> LiveRecord | None:
        return await self._call(
            self.core.end_live, user_id, identity=identity, ended_at=ended_at, fence=fence
        )

    async def ended_streams(self) -> list[EndedStream]:
        return await self._call(self.core.ended_streams)

    async def forget_ended(self, identities: Sequence[str], *, fence: int | None) -> None:
        await self._call(self.core.forget_ended, identities, fence=fence)

    async def stream_seqs(self) -> dict[int, int]:
        return await self._call(self.core.stream_seqs)

    # ---- roles -------------------------------------------------------------------

    async def take_role(self, role: str, *, holder: str, now: float) -> int:
        return await self._call(self.core.take_role, role, holder=holder, now=now)

    async def roles(self) -> dict[str, RoleHolder]:
        return await self._call(self.core.roles)

    # ---- chats and subscriptions ---------------------------------------------------

    async def upsert_chat(
        self,
        platform: str,
        chat_id: str,
        *,
        kind: str,
        now: float,
        title: str | None = None,
        guild_id: str | None = None,
    ) -> Chat:
        return await self._call(
            self.core.upsert_chat,
            platform,
            chat_id,
            kind=kind,
            now=now,
            title=title,
            guild_id=guild_id,
        )

    async def get_chat(self, platform: str, chat_id: str) -> Chat | None:
        return await self._call(self.core.get_chat, platform, chat_id)

    async def list_chats(self, *, platform: str | None = None, limit: int = 10_000) -> list[Chat]:
        return await self._call(self.core.list_chats, platform, limit)

    async def set_chat_fields(
        self,
        platform: str,
        chat_id: str,
        *,
        now: float,
        title: str | Unset | None = UNSET,
        paused_reason: str | Unset | None = UNSET,
        mute_until: float | Unset | None = UNSET,
        quiet: str | Unset | None = UNSET,
    ) -> bool:
        fields: dict[str, object] = {
            name: value
            for name, value in (
                ("title", title),
                ("paused_reason", paused_reason),
                ("mute_until", mute_until),
                ("quiet", quiet),
            )
            if value is not UNSET
        }
        return await self._call(
            self.core.set_chat_fields, platform, chat_id, now=now, fields=fields
        )

    async def migrate_chat(self, platform: str, old_id: str, new_id: str, *, now: float) -> int:
        return await self._call(self.core.migrate_chat, platform, old_id, new_id, now=now)

    async def update_subscription(
        self, subscription_id: int, *, params: JsonObject, now: float
    ) -> bool:
        return await self._call(
            self.core.update_subscription, subscription_id, params=params, now=now
        )

    async def add_subscription(
        self,
        platform: str,
        chat_id: str,
        *,
        kind: str,
        target: str,
        params: JsonObject,
        created_by: str | None,
        now: float,
    ) -> int | None:
        return await self._call(
            self.core.add_subscription,
            platform,
            chat_id,
            kind=kind,
            target=target,
            params=params,
            created_by=created_by,
            now=now,
        )

    async def remove_subscription(
        self,
        platform: str,
        chat_id: str,
        *,
        kind: str,
        target: str,
        params: JsonObject | None = None,
    ) -> int:
        return await self._call(
            self.core.remove_subscription,
            platform,
            chat_id,
            kind=kind,
            target=target,
            params=params,
        )

    async def remove_subscription_id(self, subscription_id: int) -> bool:
        return await self._call(self.core.remove_subscription_id, subscription_id)

    async def list_subscriptions(
        self,
        *,
        platform: str | None = None,
        chat_id: str | None = None,
        kind: str | None = None,
    ) -> list[Subscription]:
        return await self._call(
            self.core.list_subscriptions, platform=platform, chat_id=chat_id, kind=kind
        )

    async def count_subscriptions(
        self, platform: str, chat_id: str, *, kind: str | None = None
    ) -> int:
        return await self._call(self.core.count_subscriptions, platform, chat_id, kind=kind)

    async def subscriptions_version(self) -> int:
        return await self._call(self.core.subscriptions_version)

    async def subscriptions_changed_since(self, version: int) -> SubscriptionChanges:
        return await self._call(self.core.subscriptions_changed_since, version)

    async def record_decision(
        self, platform: str, chat_id: str, subject: str, text: str, *, at: float
    ) -> None:
        await self.record_decisions([DecisionEntry(platform, chat_id, subject, text, at)])

    async def record_decisions(self, entries: Sequence[DecisionEntry]) -> None:
        if entries:
            await self._call(self.core.record_decisions, entries)

    async def last_decision(self, platform: str, chat_id: str, subject: str) -> Decision | None:
        return await self._call(self.core.last_decision, platform, chat_id, subject)
