"""The PostgreSQL store, shared by several instances: a psycopg 3 async pool, one short
transaction a call, `FOR UPDATE SKIP LOCKED` claims, LISTEN/NOTIFY wake-ups.

Connections keep TCP keepalives so a dead server or network is noticed within seconds.
Needs a session-mode connection (direct or session pooling): advisory locks, LISTEN and
prepared statements are per session.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Final

import psycopg
from psycopg.types.json import Json, Jsonb
from psycopg_pool import AsyncConnectionPool, PoolClosed

from notifier.store.base import INGEST, NOTIFY_CHANNEL, OutboxWatch
from notifier.store.errors import (
    FencedOut,
    SchemaTooNew,
    StoreError,
    StoreUnavailable,
    describe,
    redact,
)
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

# pg_advisory_xact_lock key that serialises migrations between instances starting at once
MIGRATION_LOCK: Final = 0x6E6F746966696572  # "notifier"

# libpq keepalives: an idle connection to a silent peer is declared dead after about
# 5 + 2 * 2 seconds; tcp_user_timeout does the same for one waiting on unacknowledged data
# (a query sent into a network partition), which keepalives do not cover.
KEEPALIVES: Final[dict[str, Any]] = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 2,
    "tcp_user_timeout": 10_000,
}
CONNECT_TIMEOUT: Final = 10

_COLUMNS = ", ".join(ROW_FIELDS)
_A_COLUMNS = ", ".join(f"a.{name}" for name in ROW_FIELDS)
_CHAT_COLUMNS = ", ".join(CHAT_FIELDS)
_SUB_COLUMNS = ", ".join(SUBSCRIPTION_FIELDS)

Cursor = psycopg.AsyncCursor[tuple[Any, ...]]


def _obj(value: object) -> JsonObject:
    return value if isinstance(value, dict) else {}


def _row(values: Sequence[Any]) -> Row:
    data = dict(zip(ROW_FIELDS, values, strict=True))
    data["payload"] = _obj(data["payload"])
    return Row(**data)


def _chat(values: Sequence[Any]) -> Chat:
    return Chat(**dict(zip(CHAT_FIELDS, values, strict=True)))


def _subscription(values: Sequence[Any]) -> Subscription:
    data = dict(zip(SUBSCRIPTION_FIELDS, values, strict=True))
    data["id"] = int(data["id"])
    data["params"] = _obj(data["params"])
    return Subscription(**data)


def _live(values: Sequence[Any]) -> LiveRecord:
    user_id, identity, started_at, peak, data = values
    return LiveRecord(int(user_id), identity, float(started_at), peak, _obj(data))


async def _keep_ended(cur: Cursor, user_id: int, *, ended_at: float) -> None:
    await cur.execute(
        "INSERT INTO live_ended (identity, user_id, started_at, peak_viewers, data, ended_at)"
        " SELECT identity, user_id, started_at, peak_viewers, data, %s FROM live"
        " WHERE user_id = %s ON CONFLICT (identity) DO NOTHING",
        (ended_at, user_id),
    )


def translate(exc: BaseException, url: str) -> StoreError:
    """A driver error as one line without the password: unreachable (retry) or not."""
    where = describe(url)
    if isinstance(exc, PoolClosed):
        return StoreError(f"database {where}: the store is closed")
    text = redact(str(exc), url) or type(exc).__name__
    if isinstance(exc, psycopg.OperationalError | OSError):
        return StoreUnavailable(f"database {where} unavailable: {text}")
    return StoreError(f"database {where}: {text}")


async def connect(url: str, *, instance: str, autocommit: bool) -> psycopg.AsyncConnection[Any]:
    """A connection of its own (not from the pool), with keepalives."""
    try:
        return await psycopg.AsyncConnection.connect(
            url,
            autocommit=autocommit,
            connect_timeout=CONNECT_TIMEOUT,
            application_name=f"notifier {instance}"[:63],
            **KEEPALIVES,
        )
    except (psycopg.Error, OSError) as exc:
        raise translate(exc, url) from None


async def check_fence(cur: Cursor, fence: int | None) -> None:
    """Refuse a stale holder's write. FOR SHARE makes a take-over (which updates the row)
    wait for this transaction, so no write of the old generation commits after it."""
    if fence is None:
        return
    await cur.execute("SELECT generation FROM roles WHERE role = %s FOR SHARE", (INGEST,))
    found = await cur.fetchone()
    current = None if found is None else int(found[0])
    if current != fence:
        raise FencedOut(INGEST, fence, current)


TAKE_ROLE: Final = (
    "INSERT INTO roles (role, generation, holder, since) VALUES (%s, 1, %s, %s)"
    " ON CONFLICT (role) DO UPDATE SET generation = roles.generation + 1,"
    " holder = excluded.holder, since = excluded.since RETURNING generation"
)


class PostgresStore:
    """The store in a PostgreSQL database; see the module docstring."""

    backend = "postgres"

    def __init__(
        self,
        url: str,
        *,
        instance: str,
        max_size: int = 8,
        local_clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.instance = instance
        self._local_clock = local_clock
        self.clock_offset = 0.0  # the database server's clock minus this host's
        self._pool = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            open=False,
            kwargs={
                "connect_timeout": CONNECT_TIMEOUT,
                "application_name": f"notifier {instance}"[:63],
                **KEEPALIVES,
            },
            # A connection that died with the server (a restart) is replaced, not handed out.
            check=AsyncConnectionPool.check_connection,
            name="notifier",
            timeout=15.0,
        )
        self._watches: set[OutboxWatch] = set()

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        instance: str,
        migrate: bool = True,
        timeout: float = 15.0,
        max_size: int = 8,
        local_clock: Callable[[], float] = time.time,
    ) -> PostgresStore:
        store = cls(url, instance=instance, max_size=max_size, local_clock=local_clock)
        # One direct connection first: an unreachable server fails at once, clearly,
        # instead of after the pool's retries.
        conn = await connect(url, instance=instance, autocommit=False)
        try:
            if migrate:
                await store._migrate_on(conn)
            await store._measure_clock(conn)
        finally:
            await conn.close()
        try:
            await store._pool.open(wait=True, timeout=timeout)
        except (psycopg.Error, OSError) as exc:
            await store._pool.close()
            raise translate(exc, url) from None
        return store

    def clock(self) -> float:
        return self._local_clock() + self.clock_offset

    async def measure_clock(self) -> float:
        """Measure again how far the database server's clock is from this host's (it
        drifts on a host without NTP); returns the offset in seconds."""
        try:
            async with self._pool.connection() as conn:
                await self._measure_clock(conn)
        except (psycopg.Error, OSError) as exc:
            raise translate(exc, self.url) from None
        return self.clock_offset

    async def _measure_clock(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """The server's clock against ours, from the quickest of three round trips (its
        reading taken as halfway through). Leases, due times and ages are written by one
        instance and compared by another: all count in the server's time."""
        best: tuple[float, float] | None = None
        for _ in range(3):
            before = self._local_clock()
            found = await (
                await conn.execute("SELECT extract(epoch from clock_timestamp())::float8")
            ).fetchone()
            after = self._local_clock()
            assert found is not None
            if best is None or after - before < best[0]:
                best = (after - before, float(found[0]) - (before + after) / 2)
        assert best is not None
        self.clock_offset = best[1]

    async def close(self) -> None:
        for watch in list(self._watches):
            await watch.aclose()
        await self._pool.close()

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[Cursor]:
        """One transaction on a pooled connection: committed at the end of the block,
        rolled back if it raises."""
        try:
            async with self._pool.connection() as conn, conn.cursor() as cur:
                yield cur
        except (psycopg.Error, OSError) as exc:
            raise translate(exc, self.url) from None

    async def _value(self, query: str, params: Sequence[Any] = ()) -> Any:
        async with self._tx() as cur:
            await cur.execute(query, params)
            found = await cur.fetchone()
        return None if found is None else found[0]

    # ---- schema -------------------------------------------------------------------

    async def _migrate_on(self, conn: psycopg.AsyncConnection[Any]) -> list[int]:
        applied: list[int] = []
        try:
            async with conn.transaction(), conn.cursor() as cur:
                await cur.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                await cur.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                    " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
                )
                version = await self._version_on(cur)
                if version > LATEST:
                    raise SchemaTooNew(
                        f"database {describe(self.url)} schema (version {version}) is newer"
                        f" than this notifier's ({LATEST}): upgrade the notifier"
                    )
                for migration in MIGRATIONS[version:]:
                    for statement in migration.statements("postgres"):
                        await cur.execute(statement)
                    await cur.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
                    applied.append(migration.version)
        except (psycopg.Error, OSError) as exc:
            raise translate(exc, self.url) from None
        return applied

    @staticmethod
    async def _version_on(cur: Cursor) -> int:
        await cur.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
        found = await cur.fetchone()
        if not (found and found[0]):
            return 0
        await cur.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        found = await cur.fetchone()
        return int(found[0]) if found else 0

    async def migrate(self) -> list[int]:
        conn = await connect(self.url, instance=self.instance, autocommit=False)
        try:
            return await self._migrate_on(conn)
        finally:
            await conn.close()

    async def status(self) -> SchemaStatus:
        async with self._tx() as cur:
            version = await self._version_on(cur)
        pending = tuple(f"{m.version} {m.name}" for m in MIGRATIONS if m.version > version)
        return SchemaStatus("postgres", version, LATEST, pending)

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
        async with self._tx() as cur:
            await check_fence(cur, fence)
            for live in lives:
                await self._set_live(cur, live)
            new: set[str] = set()
            if alerts:
                # All rows in one statement, pending; the lane's share is leased after.
                await cur.execute(
                    "INSERT INTO alerts (key, destination, rule, kind, action, ref_key, subject,"
                    " identity, payload, state, attempts, created_at, event_at, next_attempt_at)"
                    " SELECT k, d, r, kd, ac, rk, s, i, p::json, %s, 0, %s, e, %s"
                    " FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[],"
                    " %s::text[], %s::text[], %s::text[], %s::text[], %s::float8[])"
                    " AS t(k, d, r, kd, ac, rk, s, i, p, e)"
                    " ON CONFLICT (key) DO NOTHING RETURNING key",
                    (
                        PENDING,
                        now,
                        now,
                        [a.key for a in alerts],
                        [a.destination for a in alerts],
                        [a.rule for a in alerts],
                        [a.kind for a in alerts],
                        [a.action for a in alerts],
                        [a.ref_key for a in alerts],
                        [a.subject for a in alerts],
                        [a.identity for a in alerts],
                        [to_json(a.payload) for a in alerts],
                        [a.event_at for a in alerts],
                    ),
                )
                new = {str(r[0]) for r in await cur.fetchall()}
            added: list[str] = []
            leased: list[NewAlert] = []
            woken: set[str] = set()  # destinations with new rows left pending
            left = dict(room)
            for alert in alerts:
                if alert.key not in new:
                    continue
                new.discard(alert.key)  # a key twice in one batch counts once
                added.append(alert.key)
                if left.get(alert.destination, 0) > 0:
                    left[alert.destination] -= 1
                    leased.append(alert)
                else:
                    woken.add(alert.destination)
            if leased:
                await cur.execute(
                    "UPDATE alerts SET state = %s, attempts = 1, lease_until = %s,"
                    " lease_owner = %s WHERE key = ANY(%s)",
                    (SENDING, now + lease, self.instance, [a.key for a in leased]),
                )
            if woken:
                await cur.execute(
                    "SELECT pg_notify(%s, d) FROM unnest(%s::text[]) AS d",
                    (NOTIFY_CHANNEL, sorted(woken)),
                )
            for name, value in (state or {}).items():
                await self._set(cur, name, value)
        rows = [
            Row(
                key=a.key,
                destination=a.destination,
                rule=a.rule,
                kind=a.kind,
                action=a.action,
                ref_key=a.ref_key,
                subject=a.subject,
                identity=a.identity,
                payload=a.payload,
                state=SENDING,
                attempts=1,
                created_at=now,
                event_at=a.event_at,
                next_attempt_at=now,
                lease_until=now + lease,
                message_id=None,
                sent_at=None,
                last_error=None,
                lease_owner=self.instance,
            )
            for a in leased
        ]
        return added, rows

    async def release_leases_of(self, owner: str) -> int | None:
        from notifier.store.roles import instance_role, role_key

        async with self._tx() as cur:
            # Held until the commit: `owner` cannot start again halfway through.
            await cur.execute(
                "SELECT pg_try_advisory_xact_lock(%s)", (role_key(instance_role(owner)),)
            )
            free = await cur.fetchone()
            if not (free and free[0]):
                return None  # its session holds its instance lock: it is running
            await cur.execute(
                "UPDATE alerts SET state = %s, lease_until = NULL, lease_owner = NULL"
                " WHERE state = %s AND lease_owner = %s",
                (PENDING, SENDING, owner),
            )
            released = cur.rowcount
            await cur.execute("DELETE FROM destination_leases WHERE owner = %s", (owner,))
        return released

    async def release_leases(self) -> int:
        async with self._tx() as cur:
            await cur.execute(
                "UPDATE alerts SET state = %s, lease_until = NULL, lease_owner = NULL"
                " WHERE state = %s AND lease_owner = %s",
                (PENDING, SENDING, self.instance),
            )
            released = cur.rowcount
            await cur.execute("DELETE FROM destination_leases WHERE owner = %s", (self.instance,))
        return released

    async def claim(
        self, destination: str, *, now: float, lease: float, limit: int = 1
    ) -> list[Row]:
        async with self._tx() as cur:
            await cur.execute(
                "WITH due AS ("
                " SELECT key FROM alerts WHERE destination = %s AND ("
                "  (state = %s AND next_attempt_at <= %s) OR (state = %s AND lease_until <= %s))"
                " ORDER BY next_attempt_at, created_at LIMIT %s FOR UPDATE SKIP LOCKED)"
                " UPDATE alerts a SET state = %s, lease_until = %s, lease_owner = %s,"
                " attempts = a.attempts + 1 FROM due WHERE a.key = due.key"
                f" RETURNING {_A_COLUMNS}",
                (
                    destination,
                    PENDING,
                    now,
                    SENDING,
                    now,
                    limit,
                    SENDING,
                    now + lease,
                    self.instance,
                ),
            )
            found = await cur.fetchall()
        return sorted((_row(r) for r in found), key=lambda r: (r.next_attempt_at, r.created_at))

    async def mark_sent(self, key: str, *, message_id: str | None, now: float) -> bool:
        return bool(await self.mark_sent_many([(key, message_id)], now=now))

    async def mark_sent_many(
        self, sent: Sequence[tuple[str, str | None]], *, now: float
    ) -> list[str]:
        if not sent:
            return []
        async with self._tx() as cur:
            await cur.execute(
                "UPDATE alerts a SET state = %s, message_id = COALESCE(v.mid, a.message_id),"
                " sent_at = %s, lease_until = NULL, lease_owner = NULL, last_error = NULL"
                " FROM unnest(%s::text[], %s::text[]) AS v(key, mid)"
                " WHERE a.key = v.key AND a.state = %s AND a.lease_owner = %s RETURNING a.key",
                (
                    SENT,
                    now,
                    [key for key, _ in sent],
                    [mid for _, mid in sent],
                    SENDING,
                    self.instance,
                ),
            )
            done = {str(r[0]) for r in await cur.fetchall()}
        return [key for key, _ in sent if key in done]

    async def reschedule(
        self,
        key: str,
        *,
        at: float,
        error: str,
        payload: JsonObject | None = None,
        refund: bool = False,
    ) -> bool:
        async with self._tx() as cur:
            await cur.execute(
                "UPDATE alerts SET state = %s, next_attempt_at = %s, lease_until = NULL,"
                " lease_owner = NULL, last_error = %s, payload = COALESCE(%s, payload),"
                " attempts = attempts - %s WHERE key = %s AND state = %s AND lease_owner = %s",
                (
                    PENDING,
                    at,
                    error[:500],
                    None if payload is None else Json(payload),
                    1 if refund else 0,
                    key,
                    SENDING,
                    self.instance,
                ),
            )
            return cur.rowcount == 1

    async def mark_dead(self, key: str, *, reason: str, now: float) -> bool:
        async with self._tx() as cur:
            await cur.execute(
                "UPDATE alerts SET state = %s, lease_until = NULL, lease_owner = NULL,"
                " last_error = %s, next_attempt_at = %s"
                " WHERE key = %s AND state = %s AND lease_owner = %s",
                (DEAD, reason[:500], now, key, SENDING, self.instance),
            )
            return cur.rowcount == 1

    async def retry(self, key: str, *, now: float) -> bool:
        async with self._tx() as cur:
            await cur.execute(
                "UPDATE alerts SET state = %s, next_attempt_at = %s, attempts = 0,"
                " created_at = %s WHERE key = %s AND state IN (%s, %s) RETURNING destination",
                (PENDING, now, now, key, DEAD, DROPPED),
            )
            found = await cur.fetchone()
            if found is not None:  # wake whichever instance sends to it
                await cur.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, found[0]))
        return found is not None

    async def drop(self, key: str) -> bool:
        async with self._tx() as cur:
            await cur.execute(
                "UPDATE alerts SET state = %s, lease_until = NULL, lease_owner = NULL"
                " WHERE key = %s AND state != %s",
                (DROPPED, key, SENT),
            )
            return cur.rowcount == 1

    async def get(self, key: str) -> Row | None:
        async with self._tx() as cur:
            await cur.execute(f"SELECT {_COLUMNS} FROM alerts WHERE key = %s", (key,))
            found = await cur.fetchone()
        return None if found is None else _row(found)

    async def rows(self, *, states: Sequence[str] | None = None, limit: int = 1000) -> list[Row]:
        query = f"SELECT {_COLUMNS} FROM alerts"
        params: list[Any] = []
        if states:
            query += " WHERE state = ANY(%s)"
            params.append(list(states))
        query += " ORDER BY created_at LIMIT %s"
        async with self._tx() as cur:
            await cur.execute(query, (*params, limit))
            return [_row(r) for r in await cur.fetchall()]

    async def by_identity(self, identity: str) -> list[Row]:
        async with self._tx() as cur:
            await cur.execute(
                f"SELECT {_COLUMNS} FROM alerts WHERE identity = %s AND action = 'send'",
                (identity,),
            )
            return [_row(r) for r in await cur.fetchall()]

    async def next_due(self, destination: str) -> float | None:
        at = await self._value(
            "SELECT MIN(CASE WHEN state = %s THEN next_attempt_at ELSE lease_until END)"
            " FROM alerts WHERE destination = %s AND state IN (%s, %s)",
            (PENDING, destination, PENDING, SENDING),
        )
        return None if at is None else float(at)

    async def waiting_destinations(self) -> dict[str, int]:
        async with self._tx() as cur:
            await cur.execute(
                "SELECT destination, COUNT(*) FROM alerts WHERE state = ANY(%s)"
                " GROUP BY destination",
                ([PENDING, SENDING],),
            )
            return {str(destination): int(n) for destination, n in await cur.fetchall()}

    async def dead_letter(
        self, destination: str, *, reason: str, now: float, created_before: float
    ) -> int:
        async with self._tx() as cur:
            await cur.execute(
                "UPDATE alerts SET state = %s, lease_until = NULL, lease_owner = NULL,"
                " last_error = %s, next_attempt_at = %s WHERE destination = %s"
                " AND created_at < %s AND (state = %s OR (state = %s AND lease_until <= %s))",
                (DEAD, reason[:500], now, destination, created_before, PENDING, SENDING, now),
            )
            return cur.rowcount

    async def counts(self) -> dict[str, int]:
        async with self._tx() as cur:
            await cur.execute("SELECT state, COUNT(*) FROM alerts GROUP BY state")
            return {str(state): int(n) for state, n in await cur.fetchall()}

    async def depth(self) -> dict[str, int]:
        counts = dict.fromkeys(OPEN_STATES, 0)
        async with self._tx() as cur:
            await cur.execute(
                "SELECT state, COUNT(*) FROM alerts WHERE state = ANY(%s) GROUP BY state",
                (list(OPEN_STATES),),
            )
            for state, n in await cur.fetchall():
                counts[str(state)] = int(n)
        return counts

    async def oldest_pending_at(self) -> float | None:
        # MIN per state reads the first entry of the (state, created_at) index.
        at = await self._value(
            "SELECT LEAST((SELECT MIN(created_at) FROM alerts WHERE state = %s),"
            " (SELECT MIN(created_at) FROM alerts WHERE state = %s))",
            (PENDING, SENDING),
        )
        return None if at is None else float(at)

    async def prune_sent(self, before: float, *, limit: int = 10_000) -> int:
        async with self._tx() as cur:
            await cur.execute(
                "DELETE FROM alerts WHERE key IN (SELECT key FROM alerts"
                " WHERE state IN (%s, %s) AND created_at < %s"
                " AND COALESCE(sent_at, created_at) < %s LIMIT %s)",
                (SENT, DROPPED, before, before, limit),
            )
            return cur.rowcount

    # ---- destination leases ------------------------------------------------------

    async def try_lease_destination(self, destination: str, *, now: float, ttl: float) -> bool:
        found = await self._value(
            "INSERT INTO destination_leases (destination, owner, lease_until)"
            " VALUES (%s, %s, %s) ON CONFLICT (destination) DO UPDATE"
            " SET owner = excluded.owner, lease_until = excluded.lease_until"
            " WHERE destination_leases.owner = excluded.owner"
            " OR destination_leases.lease_until <= %s RETURNING owner",
            (destination, self.instance, now + ttl, now),
        )
        return found is not None

    async def extend_lease(self, key: str, *, now: float, until: float) -> bool:
        async with self._tx() as cur:
            await cur.execute(
                "UPDATE alerts SET lease_until = %s WHERE key = %s AND state = %s"
                " AND lease_owner = %s AND lease_until > %s",
                (until, key, SENDING, self.instance, now),
            )
            return cur.rowcount == 1

    async def renew_destination(self, destination: str, *, now: float, ttl: float) -> bool:
        async with self._tx() as cur:
            await cur.execute(
                "UPDATE destination_leases SET lease_until = %s"
                " WHERE destination = %s AND owner = %s",
                (now + ttl, destination, self.instance),
            )
            return cur.rowcount == 1

    async def release_destination(self, destination: str) -> None:
        async with self._tx() as cur:
            await cur.execute(
                "DELETE FROM destination_leases WHERE destination = %s AND owner = %s",
                (destination, self.instance),
            )

    async def watch_outbox(self) -> OutboxWatch:
        """NOTIFY on `notifier_outbox` (payload: the destination), heard on a connection
        of its own. A server restart ends the feed (iteration raises StoreUnavailable)
        and notifications sent meanwhile are lost: keep polling as the fallback."""
        conn = await connect(self.url, instance=self.instance, autocommit=True)
        try:
            await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        except (psycopg.Error, OSError) as exc:
            await conn.close()
            raise translate(exc, self.url) from None
        except BaseException:  # cancelled meanwhile (a stop as delivery starts)
            await conn.close()
            raise
        task: asyncio.Task[None]

        async def close() -> None:
            self._watches.discard(watch)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await conn.close()

        watch = OutboxWatch(close)

        async def listen() -> None:
            try:
                async for notify in conn.notifies():
                    watch.push(notify.payload)
            except (psycopg.Error, OSError) as exc:
                watch.fail(translate(exc, self.url))
            else:
                watch.fail(StoreUnavailable(f"database {describe(self.url)}: feed ended"))

        task = asyncio.create_task(listen(), name="store-watch")
        self._watches.add(watch)
        return watch

    # ---- engine state and live set -----------------------------------------------

    @staticmethod
    async def _set(cur: Cursor, name: str, value: str) -> None:
        await cur.execute(
            "INSERT INTO kv (name, value) VALUES (%s, %s)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, value),
        )

    async def get_state(self, name: str) -> str | None:
        value = await self._value("SELECT value FROM kv WHERE name = %s", (name,))
        return None if value is None else str(value)

    async def set_state(self, name: str, value: str, *, fence: int | None) -> None:
        async with self._tx() as cur:
            await check_fence(cur, fence)
            await self._set(cur, name, value)

    async def live_set(self) -> dict[int, LiveRecord]:
        async with self._tx() as cur:
            await cur.execute("SELECT user_id, identity, started_at, peak_viewers, data FROM live")
            found = await cur.fetchall()
        return {record.user_id: record for record in map(_live, found)}

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
        async with self._tx() as cur:
            await check_fence(cur, fence)
            return await self._set_live(
                cur, LiveEntry(user_id, identity, started_at, viewers, data)
            )

    @staticmethod
    async def _set_live(cur: Cursor, live: LiveEntry) -> bool:
        await cur.execute(
            "SELECT identity, peak_viewers FROM live WHERE user_id = %s FOR UPDATE",
            (live.user_id,),
        )
        found = await cur.fetchone()
        if found is not None and found[0] == live.identity:
            peak = max(found[1] or 0, live.viewers or 0)
            await cur.execute(
                "UPDATE live SET peak_viewers = %s WHERE user_id = %s", (peak, live.user_id)
            )
            return False
        if found is not None:  # the channel's next stream: the one it replaces has ended
            await _keep_ended(cur, live.user_id, ended_at=live.started_at)
        await cur.execute(
            "INSERT INTO live (user_id, identity, started_at, peak_viewers, data)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (user_id) DO UPDATE"
            " SET identity = excluded.identity, started_at = excluded.started_at,"
            " peak_viewers = excluded.peak_viewers, data = excluded.data",
            (live.user_id, live.identity, live.started_at, live.viewers, Json(live.data)),
        )
        return True

    async def update_peaks(self, viewers: Mapping[int, int], *, fence: int | None) -> None:
        async with self._tx() as cur:
            await check_fence(cur, fence)
            if viewers:
                await cur.execute(
                    "UPDATE live SET peak_viewers = GREATEST(COALESCE(peak_viewers, 0), v.n)"
                    " FROM unnest(%s::bigint[], %s::int[]) AS v(uid, n)"
                    " WHERE live.user_id = v.uid",
                    (list(viewers), list(viewers.values())),
                )

    async def end_live(
        self, user_id: int, *, identity: str, ended_at: float, fence: int | None
    ) -> LiveRecord | None:
        async with self._tx() as cur:
            await check_fence(cur, fence)
            await cur.execute(
                "DELETE FROM live WHERE user_id = %s AND identity = %s"
                " RETURNING user_id, identity, started_at, peak_viewers, data",
                (user_id, identity),
            )
            found = await cur.fetchone()
            if found is None:
                return None
            await cur.execute(
                "INSERT INTO live_ended"
                " (identity, user_id, started_at, peak_viewers, data, ended_at)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (identity) DO NOTHING",
                (found[1], found[0], found[2], found[3], Json(_obj(found[4])), ended_at),
            )
            await cur.execute(
                "INSERT INTO stream_seqs (user_id, seq) VALUES (%s, 1)"
                " ON CONFLICT (user_id) DO UPDATE SET seq = stream_seqs.seq + 1",
                (user_id,),
            )
        return _live(found)

    async def ended_streams(self) -> list[EndedStream]:
        async with self._tx() as cur:
            await cur.execute(
                "SELECT user_id, identity, started_at, peak_viewers, data, ended_at"
                " FROM live_ended ORDER BY ended_at, identity"
            )
            found = await cur.fetchall()
        return [EndedStream(_live(row[:5]), float(row[5])) for row in found]

    async def forget_ended(self, identities: Sequence[str], *, fence: int | None) -> None:
        async with self._tx() as cur:
            await check_fence(cur, fence)
            await cur.execute(
                "DELETE FROM live_ended WHERE identity = ANY(%s)", (list(identities),)
            )

    async def stream_seqs(self) -> dict[int, int]:
        async with self._tx() as cur:
            await cur.execute("SELECT user_id, seq FROM stream_seqs")
            return {int(user_id): int(seq) for user_id, seq in await cur.fetchall()}

    # ---- roles -------------------------------------------------------------------

    async def take_role(self, role: str, *, holder: str, now: float) -> int:
        return int(await self._value(TAKE_ROLE, (role, holder, now)))

    async def roles(self) -> dict[str, RoleHolder]:
        async with self._tx() as cur:
            await cur.execute("SELECT role, generation, holder, since FROM roles")
            found = await cur.fetchall()
        return {
            role: RoleHolder(role, int(gen), holder, since) for role, gen, holder, since in found
        }

    # ---- chats -------------------------------------------------------------------

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
        async with self._tx() as cur:
            await cur.execute(
                "INSERT INTO chats (platform, chat_id, kind, guild_id, title, created_at,"
                " updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (platform, chat_id) DO UPDATE SET kind = excluded.kind,"
                " guild_id = COALESCE(excluded.guild_id, chats.guild_id),"
                " title = COALESCE(excluded.title, chats.title), updated_at = excluded.updated_at"
                f" RETURNING {_CHAT_COLUMNS}",
                (platform, chat_id, kind, guild_id, title, now, now),
            )
            found = await cur.fetchone()
        assert found is not None  # an upsert always returns its row
        return _chat(found)

    async def get_chat(self, platform: str, chat_id: str) -> Chat | None:
        async with self._tx() as cur:
            await cur.execute(
                f"SELECT {_CHAT_COLUMNS} FROM chats WHERE platform = %s AND chat_id = %s",
                (platform, chat_id),
            )
            found = await cur.fetchone()
        return None if found is None else _chat(found)

    async def list_chats(self, *, platform: str | None = None, limit: int = 10_000) -> list[Chat]:
        where = "" if platform is None else " WHERE platform = %s"
        params: tuple[object, ...] = () if platform is None else (platform,)
        async with self._tx() as cur:
            await cur.execute(
                f"SELECT {_CHAT_COLUMNS} FROM chats{where} ORDER BY updated_at DESC LIMIT %s",
                (*params, limit),
            )
            found = await cur.fetchall()
        return [_chat(row) for row in found]

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
        fields = {
            name: value
            for name, value in (
                ("title", title),
                ("paused_reason", paused_reason),
                ("mute_until", mute_until),
                ("quiet", quiet),
            )
            if value is not UNSET
        }
        assignments = "".join(f", {name} = %s" for name in fields)
        async with self._tx() as cur:
            await cur.execute(
                f"UPDATE chats SET updated_at = %s{assignments}"
                " WHERE platform = %s AND chat_id = %s",
                (now, *fields.values(), platform, chat_id),
            )
            return cur.rowcount == 1

    async def migrate_chat(self, platform: str, old_id: str, new_id: str, *, now: float) -> int:
        async with self._tx() as cur:
            await cur.execute(
                "SELECT 1 FROM chats WHERE platform = %s AND chat_id = %s FOR UPDATE",
                (platform, new_id),
            )
            if await cur.fetchone() is None:
                await cur.execute(
                    "UPDATE chats SET chat_id = %s, updated_at = %s"
                    " WHERE platform = %s AND chat_id = %s",
                    (new_id, now, platform, old_id),
                )
            else:
                await cur.execute(
                    "DELETE FROM chats WHERE platform = %s AND chat_id = %s", (platform, old_id)
                )
            # The new chat's copy wins where both have the same subscription.
            await cur.execute(
                "DELETE FROM subscriptions o WHERE o.platform = %s AND o.chat_id = %s"
                " AND EXISTS (SELECT 1 FROM subscriptions n WHERE n.platform = o.platform"
                " AND n.chat_id = %s AND n.kind = o.kind AND n.target = o.target"
                " AND n.params_hash = o.params_hash) RETURNING o.id",
                (platform, old_id, new_id),
            )
            removed = [int(r[0]) for r in await cur.fetchall()]
            await cur.execute(
                "UPDATE subscriptions SET chat_id = %s, updated_at = %s"
                " WHERE platform = %s AND chat_id = %s RETURNING id",
                (new_id, now, platform, old_id),
            )
            changed = [int(r[0]) for r in await cur.fetchall()]
            await self._record_changes(cur, changed, removed=False)
            await self._record_changes(cur, removed, removed=True)
            await cur.execute(
                "UPDATE decisions o SET chat_id = %s WHERE o.platform = %s AND o.chat_id = %s"
                " AND NOT EXISTS (SELECT 1 FROM decisions n WHERE n.platform = o.platform"
                " AND n.chat_id = %s AND n.subject = o.subject)",
                (new_id, platform, old_id, new_id),
            )
            await cur.execute(
                "DELETE FROM decisions WHERE platform = %s AND chat_id = %s", (platform, old_id)
            )
        return len(changed)

    # ---- subscriptions -----------------------------------------------------------

    @staticmethod
    async def _record_changes(cur: Cursor, ids: Sequence[int], *, removed: bool) -> None:
        """Bump the change counter and stamp the ids with it. The counter's row lock,
        held to commit, orders writers, so versions become visible in order and a
        reader never skips one."""
        if not ids:
            return
        await cur.execute(
            "UPDATE counters SET value = value + 1 WHERE name = 'subscriptions' RETURNING value"
        )
        found = await cur.fetchone()
        assert found is not None  # created by the migration
        await cur.execute(
            "INSERT INTO subscription_changes (sub_id, version, removed)"
            " SELECT id, %s, %s FROM unnest(%s::bigint[]) AS id"
            " ON CONFLICT (sub_id) DO UPDATE SET version = excluded.version,"
            " removed = excluded.removed",
            (found[0], removed, list(ids)),
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
        async with self._tx() as cur:
            await cur.execute(
                "INSERT INTO subscriptions (platform, chat_id, kind, target, params, params_hash,"
                " created_by, created_at, updated_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT DO NOTHING RETURNING id",
                (
                    platform,
                    chat_id,
                    kind,
                    target,
                    Jsonb(params),
                    params_hash(params),
                    created_by,
                    now,
                    now,
                ),
            )
            found = await cur.fetchone()
            if found is None:
                return None
            await self._record_changes(cur, [int(found[0])], removed=False)
        return int(found[0])

    async def update_subscription(
        self, subscription_id: int, *, params: JsonObject, now: float
    ) -> bool:
        async with self._tx() as cur:
            await cur.execute(
                "UPDATE subscriptions SET params = %s, params_hash = %s, updated_at = %s"
                " WHERE id = %s AND NOT EXISTS (SELECT 1 FROM subscriptions other"
                "   WHERE other.id <> %s AND (other.platform, other.chat_id, other.kind,"
                "   other.target, other.params_hash) = (SELECT platform, chat_id, kind, target,"
                "   %s FROM subscriptions WHERE id = %s))",
                (
                    Jsonb(params),
                    params_hash(params),
                    now,
                    subscription_id,
                    subscription_id,
                    params_hash(params),
                    subscription_id,
                ),
            )
            if cur.rowcount != 1:
                return False
            await self._record_changes(cur, [subscription_id], removed=False)
        return True

    async def remove_subscription(
        self,
        platform: str,
        chat_id: str,
        *,
        kind: str,
        target: str,
        params: JsonObject | None = None,
    ) -> int:
        query = (
            "DELETE FROM subscriptions WHERE platform = %s AND chat_id = %s AND kind = %s"
            " AND target = %s"
        )
        args: list[Any] = [platform, chat_id, kind, target]
        if params is not None:
            query += " AND params_hash = %s"
            args.append(params_hash(params))
        async with self._tx() as cur:
            await cur.execute(query + " RETURNING id", args)
            ids = [int(r[0]) for r in await cur.fetchall()]
            await self._record_changes(cur, ids, removed=True)
        return len(ids)

    async def remove_subscription_id(self, subscription_id: int) -> bool:
        async with self._tx() as cur:
            await cur.execute(
                "DELETE FROM subscriptions WHERE id = %s RETURNING id", (subscription_id,)
            )
            gone = await cur.fetchone() is not None
            if gone:
                await self._record_changes(cur, [subscription_id], removed=True)
        return gone

    async def list_subscriptions(
        self,
        *,
        platform: str | None = None,
        chat_id: str | None = None,
        kind: str | None = None,
    ) -> list[Subscription]:
        where = [
            (column, value)
            for column, value in (("platform", platform), ("chat_id", chat_id), ("kind", kind))
            if value is not None
        ]
        query = f"SELECT {_SUB_COLUMNS} FROM subscriptions"
        if where:
            query += " WHERE " + " AND ".join(f"{column} = %s" for column, _ in where)
        query += " ORDER BY id"
        async with self._tx() as cur:
            await cur.execute(query, [value for _, value in where])
            return [_subscription(r) for r in await cur.fetchall()]

    async def count_subscriptions(
        self, platform: str, chat_id: str, *, kind: str | None = None
    ) -> int:
        query = "SELECT COUNT(*) FROM subscriptions WHERE platform = %s AND chat_id = %s"
        args: list[Any] = [platform, chat_id]
        if kind is not None:
            query += " AND kind = %s"
            args.append(kind)
        return int(await self._value(query, args))

    async def subscriptions_version(self) -> int:
        return int(await self._value("SELECT value FROM counters WHERE name = 'subscriptions'"))

    async def subscriptions_changed_since(self, version: int) -> SubscriptionChanges:
        async with self._tx() as cur:
            # The counter first: every change up to it is committed (see _record_changes);
            # later ones are left for the next call.
            await cur.execute("SELECT value FROM counters WHERE name = 'subscriptions'")
            found = await cur.fetchone()
            current = int(found[0]) if found else 0
            await cur.execute(
                f"SELECT c.sub_id, {', '.join('s.' + f for f in SUBSCRIPTION_FIELDS)}"
                " FROM subscription_changes c LEFT JOIN subscriptions s ON s.id = c.sub_id"
                " WHERE c.version > %s AND c.version <= %s ORDER BY c.version, c.sub_id",
                (version, current),
            )
            rows = await cur.fetchall()
        changed = tuple(_subscription(r[1:]) for r in rows if r[1] is not None)
        removed = tuple(int(r[0]) for r in rows if r[1] is None)
        return SubscriptionChanges(current, changed, removed)

    # ---- decisions ---------------------------------------------------------------

    async def record_decision(
        self, platform: str, chat_id: str, subject: str, text: str, *, at: float
    ) -> None:
        await self.record_decisions([DecisionEntry(platform, chat_id, subject, text, at)])

    async def record_decisions(self, entries: Sequence[DecisionEntry]) -> None:
        if not entries:
            return
        # In key order: two instances writing overlapping batches take their row locks in
        # the same order (no deadlock around a hand-over).
        entries = sorted(entries, key=lambda e: (e.platform, e.chat_id, e.subject))  # stable
        async with self._tx() as cur:
            await cur.executemany(
                "INSERT INTO decisions (platform, chat_id, subject, text, at)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (platform, chat_id, subject)"
                " DO UPDATE SET text = excluded.text, at = excluded.at",
                [(e.platform, e.chat_id, e.subject, e.text[:2000], e.at) for e in entries],
            )

    async def last_decision(self, platform: str, chat_id: str, subject: str) -> Decision | None:
        async with self._tx() as cur:
            await cur.execute(
                "SELECT text, at FROM decisions"
                " WHERE platform = %s AND chat_id = %s AND subject = %s",
                (platform, chat_id, subject),
            )
            found = await cur.fetchone()
        return None if found is None else Decision(str(found[0]), float(found[1]))
