"""The `store` fixture: every backend test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from notifier.store import NewAlert, Store, open_store

OpenStore = Callable[[str], Awaitable[Store]]


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "state.db")
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
async def open_instance(store_url: str) -> AsyncIterator[OpenStore]:
    """Opens more stores on the same database, as other instances (closed after)."""
    opened: list[Store] = []

    async def open_(instance: str) -> Store:
        store = await open_store(store_url, instance=instance, durable=False)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        await store.close()


@pytest.fixture
async def store(open_instance: OpenStore) -> Store:
    return await open_instance("a")


def alert(key: str, destination: str = "me", *, identity: str | None = None) -> NewAlert:
    return NewAlert(
        key=key,
        destination=destination,
        rule="r",
        kind="live",
        subject="1",
        identity=identity or f"id-{key}",
        payload={"view": {"x": key, "b": 1, "a": 2}},
        event_at=1.0,
    )
