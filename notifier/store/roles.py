"""Roles held by one instance at a time (ingest; one chat-updates poller per bot token).

PostgreSQL: a session advisory lock on a connection of its own (never from the pool), with
TCP keepalives; taking the role bumps its fencing generation in `roles`, and every fenced
write checks it, so a holder that lost its session without noticing cannot write.
SQLite: one process owns the file, so the role is always this process's.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from notifier.store import is_postgres_url
from notifier.store.base import Store
from notifier.store.errors import StoreError, StoreUnavailable, describe

if TYPE_CHECKING:
    import psycopg

    from notifier.store.postgres import PostgresStore

# psycopg is imported where a PostgreSQL lock needs it: an SQLite daemon never loads it
# (a seventh of its start-up).

CHECK_EVERY: Final = 2.0
QUERY_TIMEOUT: Final = 5.0  # seconds a lock query may take before the holder steps down


def _postgres_store_class() -> type[PostgresStore] | tuple[()]:
    """PostgresStore, or nothing to match when it was never imported (no store is one)."""
    postgres = sys.modules.get("notifier.store.postgres")
    return () if postgres is None else postgres.PostgresStore


class StepDown(enum.Enum):
    """Why `hold` returned: the caller stops the role's stages at once."""

    LOCK_GONE = "the advisory lock is no longer held by this session"
    CONNECTION_LOST = "the lock's database connection failed"
    RELEASED = "released"


def role_key(role: str) -> int:
    """A stable signed 64-bit advisory lock key for a role name."""
    digest = hashlib.sha256(f"notifier:{role}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def instance_role(instance: str) -> str:
    """The lock a running instance holds for its whole life (PostgreSQL): another instance
    releases its leases only once it can take this lock (`Store.release_leases_of`)."""
    return "instance:" + instance


def chat_updates_role(token: str) -> str:
    """The role polling one bot token's updates, named without the token."""
    return "chat-updates:" + hashlib.sha256(token.encode()).hexdigest()[:16]


class RoleLock:
    """Take a role (`try_acquire`), keep it (`hold` returns when it is lost) and give it
    back (`release`). Call `try_acquire` again after a step-down to stand for it anew."""

    def __init__(
        self,
        store: Store | str,
        role: str,
        *,
        key: int | None = None,
        instance: str,
        check_every: float = CHECK_EVERY,
        clock: Callable[[], float] = time.time,
        fenced: bool = True,
    ) -> None:
        """`fenced=False`: the lock alone, without a generation in `roles` (an instance's
        own lock); `try_acquire` then returns 0 when it is taken."""
        self.role = role
        self.fenced = fenced
        self.key = role_key(role) if key is None else key
        self.instance = instance
        self.check_every = check_every
        self._clock = clock
        self._store: Store | None = None
        self._url: str | None = None
        if isinstance(store, str):
            if not is_postgres_url(store):
                raise ValueError("a role lock on SQLite needs the open store, not its path")
            self._url = store
        elif isinstance(store, _postgres_store_class()):
            self._url = store.url
        else:
            self._store = store
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._released = asyncio.Event()
        self._hold_exited = asyncio.Event()
        self._hold_exited.set()
        self.generation: int | None = None

    @property
    def backend_pid(self) -> int | None:
        """The server process holding the lock (PostgreSQL), for diagnostics."""
        return None if self._conn is None or self._conn.closed else self._conn.info.backend_pid

    @property
    def holding(self) -> bool:
        """True while `hold` is watching the role."""
        return not self._hold_exited.is_set()

    async def try_acquire(self) -> int | None:
        """The role's new fencing generation, or None while another instance holds it.
        Raises StoreUnavailable when the database cannot be reached."""
        if self.generation is not None:
            return self.generation
        self._released.clear()
        if self._url is None:
            assert self._store is not None
            if not self.fenced:
                self.generation = 0
                return self.generation
            self.generation = await self._store.take_role(
                self.role, holder=self.instance, now=self._clock()
            )
            return self.generation
        import psycopg

        from notifier.store.postgres import TAKE_ROLE, connect, translate

        if self._conn is None or self._conn.closed:
            self._conn = await connect(self._url, instance=self.instance, autocommit=True)
        conn = self._conn
        try:
            async with asyncio.timeout(QUERY_TIMEOUT):
                found = await (
                    await conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,))
                ).fetchone()
                if not (found and found[0]):
                    return None
                if not self.fenced:
                    self.generation = 0
                    return self.generation
                async with conn.transaction():
                    taken = await (
                        await conn.execute(TAKE_ROLE, (self.role, self.instance, self._clock()))
                    ).fetchone()
        except (psycopg.Error, OSError, TimeoutError) as exc:
            await self._drop_connection()  # ends the session, and any lock it got
            if isinstance(exc, TimeoutError):
                raise StoreUnavailable(
                    f"database {describe(self._url)}: no answer in {QUERY_TIMEOUT:g} s"
                ) from None
            raise translate(exc, self._url) from None
        assert taken is not None
        self.generation = int(taken[0])
        return self.generation

    async def hold(self) -> StepDown:
        """Return as soon as the role may be lost: the lock is not found for this session
        (checked every `check_every` seconds), or the connection fails (at once: the wait
        is on its socket). The caller then stops the role's work; its fenced writes would
        be refused anyway. Returns RELEASED after `release`."""
        if self._released.is_set():
            return StepDown.RELEASED
        if self.generation is None:
            raise StoreError(f"role {self.role!r} is not held")
        self._hold_exited.clear()
        try:
            if self._url is None:
                await self._released.wait()  # SQLite: nobody else can take it
                return StepDown.RELEASED
            reason = await self._watch()
        finally:
            self._hold_exited.set()
        if reason is not StepDown.RELEASED:
            self.generation = None
            await self._drop_connection()
        return reason

    async def _watch(self) -> StepDown:
        import psycopg

        conn = self._conn
        assert conn is not None
        classid, objid = (self.key >> 32) & 0xFFFFFFFF, self.key & 0xFFFFFFFF
        while True:
            idle = asyncio.ensure_future(self._idle(conn))
            released = asyncio.ensure_future(self._released.wait())
            done, _ = await asyncio.wait({idle, released}, return_when=asyncio.FIRST_COMPLETED)
            for task in (idle, released):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, psycopg.Error, OSError):
                await idle
            if released in done:
                return StepDown.RELEASED
            try:
                idle.result()
                async with asyncio.timeout(QUERY_TIMEOUT):  # no answer is doubt enough
                    found = await (
                        await conn.execute(
                            "SELECT 1 FROM pg_locks WHERE locktype = 'advisory'"
                            " AND pid = pg_backend_pid() AND classid = %s::bigint::oid"
                            " AND objid = %s::bigint::oid AND objsubid = 1 AND granted",
                            (classid, objid),
                        )
                    ).fetchone()
            except (psycopg.Error, OSError, TimeoutError):
                return StepDown.CONNECTION_LOST
            except asyncio.CancelledError:
                if self._released.is_set():
                    return StepDown.RELEASED
                raise
            if found is None:
                return StepDown.LOCK_GONE

    async def _idle(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Wait `check_every` seconds on the connection's socket: nothing is LISTENed to,
        so only the server closing the session (killed backend, shutdown) ends it early,
        with an error."""
        async for _ in conn.notifies(timeout=self.check_every):
            pass

    async def release(self) -> None:
        """Give the role back: the session is closed, which ends its lock (an unlock query
        would first wait for the watch's idle wait on the connection, up to `check_every`);
        a running `hold` returns RELEASED first."""
        self._released.set()
        await self._hold_exited.wait()
        self.generation = None
        await self._drop_connection()

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            import psycopg

            with contextlib.suppress(psycopg.Error, OSError):  # the session is gone either way
                await conn.close()
