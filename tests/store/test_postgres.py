"""PostgreSQL only: concurrent claimants, wake-ups across instances, unreachable servers."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator

import psycopg
import pytest

from notifier.store import StoreUnavailable, open_store
from notifier.store.roles import RoleLock
from tests.store.conftest import alert

WAIT = 10.0


async def test_concurrent_claimants_never_get_the_same_row(pg_url: str) -> None:
    stores = [await open_store(pg_url, instance=name) for name in ("a", "b", "c")]
    try:
        keys = [f"k{n:03}" for n in range(90)]
        await stores[0].enqueue([alert(k) for k in keys], now=1.0, fence=None)

        async def drain(index: int) -> list[str]:
            store, got = stores[index], []
            while rows := await store.claim("me", now=2.0, lease=60.0, limit=4):
                got += [r.key for r in rows]
            return got

        claimed = await asyncio.gather(*(drain(i) for i in range(len(stores))))
        everything = [key for got in claimed for key in got]
        assert sorted(everything) == keys, "each row claimed exactly once"
    finally:
        for store in stores:
            await store.close()


async def test_a_new_row_wakes_the_other_instances(pg_url: str) -> None:
    writer = await open_store(pg_url, instance="a")
    sender = await open_store(pg_url, instance="b")
    try:
        async with await sender.watch_outbox() as watch:
            await writer.enqueue([alert("a", "tg")], now=1.0, fence=None)
            assert await asyncio.wait_for(anext(watch), WAIT) == "tg"
            await writer.enqueue([alert("b", "tg")], now=1.0, fence=None)
            await writer.claim("tg", now=2.0, lease=5.0, limit=2)
            await writer.mark_dead("a", reason="x", now=2.0)
            assert await asyncio.wait_for(anext(watch), WAIT) == "tg"
            assert await writer.retry("a", now=3.0)
            assert await asyncio.wait_for(anext(watch), WAIT) == "tg", "a retry wakes too"
    finally:
        await writer.close()
        await sender.close()


async def test_the_wake_up_feed_reports_a_lost_connection(pg_url: str) -> None:
    store = await open_store(pg_url, instance="a")
    try:
        async with await store.watch_outbox() as watch:
            async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as admin:
                await admin.execute(
                    "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                    " WHERE query LIKE 'LISTEN%%' AND pid != pg_backend_pid()"
                    " AND datname = current_database()"  # not another worker's, on one server
                )
            with pytest.raises(StoreUnavailable):
                await asyncio.wait_for(anext(watch), WAIT)
    finally:
        await store.close()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections (bound, never listening)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


async def test_an_unreachable_server_is_one_line_without_the_password(
    closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"postgresql://notifier:SENTINELPW@127.0.0.1:{closed_port}/notifier"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StoreUnavailable) as caught:
        await open_store(url, instance="a")
    with pytest.raises(StoreUnavailable) as from_lock:
        await RoleLock(url, "ingest", instance="a").try_acquire()
    for error in (caught.value, from_lock.value):
        text = f"{error} {error!r}"
        assert "SENTINELPW" not in text
        assert "\n" not in str(error)
        assert f"127.0.0.1:{closed_port}" in str(error)
        assert error.__cause__ is None and error.__suppress_context__
    assert "SENTINELPW" not in caplog.text
