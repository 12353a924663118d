"""SQLite only: group commit (calls queued together share a transaction and an fsync)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from notifier.store import INGEST, PENDING, SENT, FencedOut, StoreError, open_store
from tests.store.conftest import alert

ROOT = Path(__file__).resolve().parents[2]


async def test_concurrent_writers_on_a_durable_store_each_get_their_own_keys(
    tmp_path: Path,
) -> None:
    store = await open_store(str(tmp_path / "s.db"), instance="a", durable=True)
    try:
        answers = await asyncio.gather(
            *(
                store.enqueue([alert(f"k{n}"), alert(f"k{n}b")], now=1.0, fence=None)
                for n in range(50)
            )
        )
        assert answers == [[f"k{n}", f"k{n}b"] for n in range(50)]
        assert await store.counts() == {PENDING: 100}
    finally:
        await store.close()


async def test_a_refused_call_among_concurrent_ones_undoes_only_itself(tmp_path: Path) -> None:
    store = await open_store(str(tmp_path / "s.db"), instance="a", durable=True)
    try:
        stale = await store.take_role(INGEST, holder="a", now=1.0)
        fence = await store.take_role(INGEST, holder="b", now=2.0)
        answers = await asyncio.gather(
            store.enqueue([alert("before")], now=3.0, fence=fence),
            store.enqueue([alert("stale")], now=3.0, fence=stale, state={"engine": "old"}),
            store.enqueue([alert("after")], now=3.0, fence=fence),
            return_exceptions=True,
        )
        assert answers[0] == ["before"] and answers[2] == ["after"]
        assert isinstance(answers[1], FencedOut)
        assert await store.get("stale") is None
        assert await store.get_state("engine") is None
    finally:
        await store.close()


async def test_outcomes_recorded_together_are_all_kept(tmp_path: Path) -> None:
    store = await open_store(str(tmp_path / "s.db"), instance="a", durable=True)
    try:
        await store.enqueue([alert(f"k{n}") for n in range(20)], now=1.0, fence=None)
        rows = await store.claim("me", now=2.0, lease=30.0, limit=20)
        done = await asyncio.gather(
            *(store.mark_sent(row.key, message_id=f"t:{n}", now=3.0) for n, row in enumerate(rows))
        )
        assert all(done)
        assert await store.counts() == {SENT: 20}
    finally:
        await store.close()
    reopened = await open_store(str(tmp_path / "s.db"), instance="a", durable=True)
    try:
        assert await reopened.counts() == {SENT: 20}
    finally:
        await reopened.close()


async def test_an_enqueue_that_returned_survives_a_sigkill_of_the_process(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    child = textwrap.dedent(
        f"""
        import asyncio, sys
        sys.path.insert(0, {str(ROOT)!r})
        from notifier.store import open_store
        from tests.store.conftest import alert

        async def main():
            store = await open_store({str(path)!r}, instance="a", durable=True)
            keys = await store.enqueue([alert("kept")], now=1.0, fence=None)
            print(",".join(keys), flush=True)
            await asyncio.sleep(3600)

        asyncio.run(main())
        """
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", child, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(30):
            line = await proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert line.strip() == b"kept"
    store = await open_store(str(path), instance="a", durable=True)
    try:
        row = await store.get("kept")
        assert row is not None and row.state == PENDING
    finally:
        await store.close()


async def test_a_closed_store_refuses_calls_and_closes_twice_quietly(tmp_path: Path) -> None:
    store = await open_store(str(tmp_path / "s.db"), instance="a", durable=True)
    await store.close()
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.get("a")


class HeldFsync:
    """Stands in for `_fdatasync`: notes that an fsync started, then holds it until released."""

    def __init__(self, real: Callable[[int], None]) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self._real = real

    def __call__(self, fd: int) -> None:
        self.started.set()
        self.release.wait(10)
        self._real(fd)


async def test_alerts_and_claims_do_not_wait_for_the_disk_but_their_fsync_starts_soon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from notifier.store import sqlite

    held = HeldFsync(sqlite._fdatasync)
    started, release = held.started, held.release
    # Only the alert's own short window can start the fsync within the test's wait.
    monkeypatch.setattr(sqlite, "_FLUSH_AFTER", 3600.0)
    store = await open_store(str(tmp_path / "s.db"), instance="a", durable=True)
    try:
        monkeypatch.setattr(sqlite, "_fdatasync", held)
        # The alert is committed and its caller hears back while the fsync is held ...
        assert await asyncio.wait_for(store.enqueue([alert("k1")], now=1.0, fence=None), 5) == [
            "k1"
        ]
        rows = await asyncio.wait_for(store.claim("me", now=2.0, lease=30.0, limit=5), 5)
        assert [row.key for row in rows] == ["k1"]
        # ... and that fsync started within `_SOON_AFTER`, not `_FLUSH_AFTER` later.
        assert await asyncio.to_thread(started.wait, 5)
        # State that must be on the disk still waits for its fsync.
        saving = asyncio.ensure_future(store.set_state("engine", "x", fence=None))
        done, _ = await asyncio.wait([saving], timeout=0.3)
        assert not done
        release.set()
        await asyncio.wait_for(saving, 5)
    finally:
        release.set()
        await store.close()


async def test_an_alerts_fsync_waits_its_short_window_but_not_a_caller_who_needs_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The send an alert's commit lets go leaves before the fsync starts (on two cores an
    fsync started at once competes with it); state that must be on the disk does not wait
    for that window."""
    from notifier.store import sqlite

    held = HeldFsync(sqlite._fdatasync)
    monkeypatch.setattr(sqlite, "_FLUSH_AFTER", 3600.0)
    monkeypatch.setattr(sqlite, "_SOON_AFTER", 3600.0)
    store = await open_store(str(tmp_path / "s.db"), instance="a", durable=True)
    try:
        monkeypatch.setattr(sqlite, "_fdatasync", held)
        assert await asyncio.wait_for(store.enqueue([alert("k1")], now=1.0, fence=None), 5) == [
            "k1"
        ]
        assert not await asyncio.to_thread(held.started.wait, 0.3)  # deferred
        saving = asyncio.ensure_future(store.set_state("engine", "x", fence=None))
        assert await asyncio.to_thread(held.started.wait, 5)  # at once for a waiting caller
        assert not saving.done()
        held.release.set()
        await asyncio.wait_for(saving, 5)
    finally:
        held.release.set()
        await store.close()


async def idle(store: Any) -> None:
    """Until the store's thread lets go of the connection (after its caller heard back
    it may still be checkpointing, or waking the fsync thread)."""
    runner = store._runner

    def wait() -> None:
        with runner._using:
            assert not runner._queued

    await asyncio.wait_for(asyncio.to_thread(wait), 10)


def threads_of_enqueues(store: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the threads the store's enqueues run on, as they run."""
    seen: list[str] = []
    real = store.core.enqueue_leased

    def noted(*args: Any, **kwargs: Any) -> Any:
        seen.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(store.core, "enqueue_leased", noted)
    return seen


@contextlib.asynccontextmanager
async def durable(path: str) -> AsyncIterator[Any]:
    """A durable store on `path`, closed afterwards."""
    store = await open_store(path, instance="a", durable=True)
    try:
        yield store
    finally:
        await store.close()


async def test_an_events_few_alerts_are_written_on_the_callers_thread_a_big_batch_on_the_stores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from notifier.store import sqlite

    async with durable(str(tmp_path / "s.db")) as store:
        seen = threads_of_enqueues(store, monkeypatch)
        await idle(store)
        few = [alert(f"a{n}") for n in range(sqlite._HERE_AT_MOST)]
        many = [alert(f"b{n}") for n in range(sqlite._HERE_AT_MOST + 1)]
        assert await store.enqueue(few, now=1.0, fence=None) == [a.key for a in few]
        assert await store.enqueue(many, now=1.0, fence=None) == [a.key for a in many]
        assert seen == [threading.current_thread().name, "store"]
        # The caller's write leaves the connection as the store's thread needs it: its
        # calls still wait for another process's lock.
        db = store.core.db
        assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000
        assert not db.in_transaction
    reopened = await open_store(str(tmp_path / "s.db"), instance="a", durable=True)
    try:
        assert await reopened.counts() == {PENDING: len(few) + len(many)}
    finally:
        await reopened.close()


async def test_a_write_lock_held_by_another_process_never_stops_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`notifier subs import` in another process holds the file's write lock: the alert
    waits for it on the store's thread, and the event loop goes on meanwhile."""
    path = tmp_path / "s.db"
    store = await open_store(str(path), instance="a", durable=True)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        seen = threads_of_enqueues(store, monkeypatch)
        other.execute("BEGIN IMMEDIATE")
        writing = asyncio.ensure_future(store.enqueue([alert("k1")], now=1.0, fence=None))
        # The loop turns while the write waits. Were the write waiting on the loop's own
        # thread, these turns would take the lock's whole timeout (30 s), not a moment.
        started = time.monotonic()
        for _ in range(20):
            await asyncio.sleep(0)
        assert time.monotonic() - started < 10.0
        assert not writing.done()
        other.execute("COMMIT")
        assert await asyncio.wait_for(writing, 30) == ["k1"]
        assert seen == ["store"]
    finally:
        other.close()
        await store.close()


async def test_a_refused_write_on_the_callers_thread_is_the_same_error_and_undone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with durable(str(tmp_path / "s.db")) as store:
        seen = threads_of_enqueues(store, monkeypatch)
        stale = await store.take_role(INGEST, holder="a", now=1.0)
        fence = await store.take_role(INGEST, holder="b", now=2.0)
        await idle(store)
        with pytest.raises(FencedOut):
            await store.enqueue([alert("stale")], now=3.0, fence=stale, state={"engine": "x"})
        assert await store.enqueue([alert("k1")], now=3.0, fence=fence) == ["k1"]
        assert seen == [threading.current_thread().name] * 2
        assert await store.get("stale") is None
        assert await store.get_state("engine") is None
        assert not store.core.db.in_transaction


class GatedLock:
    """The runner's connection lock, but the store's thread stops on its way to it until
    `gate` is set: the moment after it took a call from its queue and before it runs it."""

    def __init__(self, real: Any, gate: threading.Event, reached: threading.Event) -> None:
        self._real = real
        self.gate = gate
        self.reached = reached

    def acquire(self, blocking: bool = True) -> bool:
        return bool(self._real.acquire(blocking))

    def release(self) -> None:
        self._real.release()

    def __enter__(self) -> None:
        if threading.current_thread().name == "store":
            self.reached.set()
            self.gate.wait(10)
        self._real.acquire()

    def __exit__(self, *exc: object) -> None:
        self._real.release()


async def test_a_call_the_stores_thread_took_is_not_overtaken_by_a_later_write_on_the_callers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine state saved before a price alert's batch must not land after the state
    that batch carries (a restart would restore a crossing count older than its alerts)."""
    store = await open_store(str(tmp_path / "s.db"), instance="a", durable=True)
    gate, reached = threading.Event(), threading.Event()
    try:
        runner = store._runner
        monkeypatch.setattr(runner, "_using", GatedLock(runner._using, gate, reached))
        seen = threads_of_enqueues(store, monkeypatch)
        older = asyncio.ensure_future(store.set_state("engine", "older", fence=None))
        assert await asyncio.to_thread(reached.wait, 10)  # taken from the queue, not run
        newer = asyncio.ensure_future(
            store.enqueue([alert("k1")], now=1.0, fence=None, state={"engine": "newer"})
        )
        await asyncio.sleep(0)  # the enqueue has been asked for before the gate opens
        gate.set()
        await asyncio.wait_for(asyncio.gather(older, newer), 10)
        assert seen == ["store"]  # queued behind the older call, not written at once
        assert await store.get_state("engine") == "newer"
    finally:
        gate.set()
        await store.close()


async def test_the_wal_stays_small_under_writes_made_on_the_callers_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's automatic checkpoint is off; the store's thread checkpoints, and when only
    callers write, it is given a write to do before the WAL grows past its bound."""
    from notifier.store import sqlite

    monkeypatch.setattr(sqlite, "_CHECKPOINT_AFTER", 10)
    path = tmp_path / "s.db"
    async with durable(str(path)) as store:
        seen = threads_of_enqueues(store, monkeypatch)
        for n in range(400):
            await store.enqueue([alert(f"k{n}")], now=1.0, fence=None)
        wal = await asyncio.to_thread(os.path.getsize, f"{path}-wal")
        page = store.core.db.execute("PRAGMA page_size").fetchone()[0]
        assert seen.count("store") >= 400 // 25  # a write for the store's thread in each 21
        assert wal < 30 * 10 * page  # a few checkpoints' worth, not 400 commits' (>1,000 pages)
        assert await store.counts() == {PENDING: 400}


async def test_without_a_wal_every_write_is_left_to_the_stores_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without WAL (a file system without shared memory) a commit fsyncs: never on the loop."""
    async with durable(str(tmp_path / "s.db")) as store:
        seen = threads_of_enqueues(store, monkeypatch)
        monkeypatch.setattr(store.core, "wal", False)
        assert await store.enqueue([alert("k1")], now=1.0, fence=None) == ["k1"]
        assert seen == ["store"]


async def test_the_write_that_starts_the_wal_over_after_a_checkpoint_is_the_stores_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite fsyncs the WAL's new header on the first write after a whole checkpoint:
    that write is the store's thread's, never an alert's on the event loop."""
    from notifier.store import sqlite

    monkeypatch.setattr(sqlite, "_CHECKPOINT_AFTER", 5)
    path = tmp_path / "s.db"
    store = await open_store(str(path), instance="a", durable=True)

    def header() -> bytes:
        with open(f"{path}-wal", "rb") as wal:
            return wal.read(32)  # its checkpoint sequence and salts change on a restart

    try:
        seen = threads_of_enqueues(store, monkeypatch)
        for n in range(6):
            await store.enqueue([alert(f"k{n}")], now=1.0, fence=None)
        await store.set_state("engine", "x", fence=None)  # the store's thread: a checkpoint
        await idle(store)
        before = await asyncio.to_thread(header)
        await store.enqueue([alert("after")], now=1.0, fence=None)
        assert seen[-1] == threading.current_thread().name
        assert await asyncio.to_thread(header) == before
    finally:
        await store.close()
