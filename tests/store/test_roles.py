"""Role locks: one holder at a time, a killed holder steps down, the next gets generation+1."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from notifier.store import INGEST, FencedOut, Store, open_store
from notifier.store.roles import (
    RoleLock,
    StepDown,
    chat_updates_role,
    instance_role,
    role_key,
)
from tests.store.conftest import alert as alert_for

WAIT = 10.0  # seconds any condition below may take before the test fails


async def eventually(attempt: Callable[[], Awaitable[int | None]]) -> int:
    """Retry until `attempt` gives a value: a freed advisory lock is seen by another
    session only once the old backend has finished exiting."""
    async with asyncio.timeout(WAIT):
        # the condition lives in the server: nothing to await but another look
        while (value := await attempt()) is None:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    return value


def test_role_keys_are_stable_signed_64_bit_and_distinct() -> None:
    assert role_key(INGEST) == role_key("ingest")
    assert -(2**63) <= role_key(INGEST) < 2**63
    assert role_key(INGEST) != role_key(chat_updates_role("123:abc"))


def test_a_chat_updates_role_never_contains_the_token() -> None:
    role = chat_updates_role("123456:SECRET-token")
    assert role.startswith("chat-updates:") and "SECRET" not in role
    assert role == chat_updates_role("123456:SECRET-token")


async def test_sqlite_roles_are_always_this_process_with_a_new_generation_each_start(
    tmp_path: Path,
) -> None:
    store = await open_store(str(tmp_path / "s.db"), instance="a")
    try:
        first = RoleLock(store, INGEST, instance="a")
        assert await first.try_acquire() == 1
        assert await first.try_acquire() == 1, "bumped once per start"
        holding = asyncio.create_task(first.hold())
        await first.release()
        assert await asyncio.wait_for(holding, WAIT) is StepDown.RELEASED
        assert await RoleLock(store, INGEST, instance="a").try_acquire() == 2
    finally:
        await store.close()


def test_an_sqlite_daemon_never_loads_psycopg(tmp_path: Path) -> None:
    """psycopg takes a seventh of the start-up: the daemon's modules and an SQLite role's
    whole life leave it unloaded."""
    script = f"""
import asyncio, sys
import notifier.app, notifier.cli, notifier.stages.bots
from notifier.store import open_store
from notifier.store.roles import RoleLock

async def main():
    store = await open_store({str(tmp_path / "s.db")!r}, instance="a")
    lock = RoleLock(store, "ingest", instance="a")
    assert await lock.try_acquire() == 1
    holding = asyncio.create_task(lock.hold())
    while not lock.holding:  # a turn of the loop: hold() starts waiting
        await asyncio.sleep(0)
    await lock.release()
    await holding
    await store.close()

asyncio.run(main())
print(sorted(name for name in sys.modules if name.startswith("psycopg")))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


async def test_a_store_wrapped_around_postgres_takes_roles_through_its_own_methods(
    pg_url: str,
) -> None:
    """Only a PostgresStore itself is locked through a session of its own; anything else
    (a wrapper that passes its attributes on, as the outage tests use) is asked through
    the store's methods, whatever its `backend` says."""

    class Wrapper:
        def __init__(self, store: Store) -> None:
            self._store = store

        def __getattr__(self, name: str) -> Any:
            return getattr(self._store, name)

    store = await open_store(pg_url, instance="a")
    try:
        wrapped = Wrapper(store)
        assert wrapped.backend == "postgres"
        lock = RoleLock(wrapped, "wrapped-role", instance="a")
        assert await lock.try_acquire() == 1
        assert lock.backend_pid is None  # no session of its own
    finally:
        await store.close()


async def test_only_one_instance_holds_a_role(pg_url: str) -> None:
    store = await open_store(pg_url, instance="a")
    first = RoleLock(pg_url, INGEST, instance="a")
    second = RoleLock(store, INGEST, instance="b")
    other_role = RoleLock(pg_url, chat_updates_role("t"), instance="b")
    try:
        generation = await first.try_acquire()
        assert generation == 1
        assert await second.try_acquire() is None
        assert await other_role.try_acquire() == 1, "roles are independent"
        holder = (await store.roles())[INGEST]
        assert (holder.holder, holder.generation) == ("a", 1)
        await first.release()
        assert await eventually(second.try_acquire) == 2
    finally:
        for lock in (first, second, other_role):
            await lock.release()
        await store.close()


async def test_a_killed_holder_steps_down_and_another_takes_over_with_the_next_generation(
    pg_url: str,
) -> None:
    store = await open_store(pg_url, instance="a")
    holder = RoleLock(pg_url, INGEST, instance="a", check_every=0.2)
    standby = RoleLock(pg_url, INGEST, instance="b")
    try:
        generation = await holder.try_acquire()
        assert generation is not None
        await store.set_state("engine", "from a", fence=generation)
        holding = asyncio.create_task(holder.hold())
        assert await standby.try_acquire() is None
        async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as admin:
            await admin.execute(
                "SELECT pg_terminate_backend(%s, 5000)", (holder.backend_pid,)
            )  # waits until that backend has exited
        assert await asyncio.wait_for(holding, WAIT) is StepDown.CONNECTION_LOST
        assert holder.generation is None
        assert await eventually(standby.try_acquire) == generation + 1
        with pytest.raises(FencedOut):  # the old holder's late write
            await store.set_state("engine", "late from a", fence=generation)
        assert await store.get_state("engine") == "from a"
    finally:
        await holder.release()
        await standby.release()
        await store.close()


async def test_hold_returns_released_when_the_holder_gives_the_role_back(pg_url: str) -> None:
    store = await open_store(pg_url, instance="a")
    lock = RoleLock(store, INGEST, instance="a", check_every=30.0)
    next_holder = RoleLock(pg_url, INGEST, instance="b")
    try:
        assert await lock.try_acquire() == 1
        holding = asyncio.create_task(lock.hold())
        async with asyncio.timeout(WAIT):  # hold is waiting on the connection
            while not lock.holding:  # noqa: ASYNC110 (a flag of the task just created)
                await asyncio.sleep(0)
        await lock.release()
        assert await asyncio.wait_for(holding, WAIT) is StepDown.RELEASED
        assert await next_holder.try_acquire() == 2
    finally:
        await next_holder.release()
        await store.close()


async def test_a_sqlite_path_is_not_a_role_lock_target(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="open store"):
        RoleLock(str(tmp_path / "s.db"), INGEST, instance="a")


async def test_an_instance_holding_its_own_lock_keeps_its_leases(pg_url: str) -> None:
    """`release_leases_of` frees a gone instance's rows, never a running one's: while a
    session holds the instance's lock, it releases nothing and says so (None)."""
    a = await open_store(pg_url, instance="a")
    b = await open_store(pg_url, instance="b")
    alive = RoleLock(pg_url, instance_role("a"), instance="a", fenced=False)
    try:
        await a.enqueue_leased(
            [alert_for("k1"), alert_for("k2")], now=1.0, lease=300.0, room={"me": 2}, fence=None
        )
        assert await alive.try_acquire() == 0
        assert (await a.roles()).get(instance_role("a")) is None, "no generation row"
        assert await b.release_leases_of("a") is None
        row = await b.get("k1")
        assert row is not None and row.lease_owner == "a", "still a's to send"
        await alive.release()  # a has gone
        assert await eventually(lambda: b.release_leases_of("a")) == 2
        row = await b.get("k1")
        assert row is not None and row.lease_owner is None
    finally:
        await alive.release()
        await a.close()
        await b.close()


async def test_leases_count_in_the_database_clock_whatever_a_host_clock_says(
    pg_url: str,
) -> None:
    """A host whose clock runs 150 s ahead (no NTP) must not claim what another host
    leased for 120 s a moment ago: both count in the database server's clock."""
    from notifier.store.postgres import PostgresStore

    a = await PostgresStore.open(pg_url, instance="a")
    b = await PostgresStore.open(pg_url, instance="b", local_clock=lambda: time.time() + 150)
    try:
        assert abs(b.clock_offset + 150) < 1 and abs(b.clock() - a.clock()) < 1
        _, leased = await a.enqueue_leased(
            [alert_for("k1")], now=a.clock(), lease=120.0, room={"me": 1}, fence=None
        )
        assert [row.key for row in leased] == ["k1"]
        assert await b.claim("me", now=b.clock(), lease=120.0) == []
        assert await b.measure_clock() == pytest.approx(b.clock_offset)
    finally:
        await a.close()
        await b.close()
