"""Shared fixtures: real servers on 127.0.0.1, started per test on port 0."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator

import pytest

from notifier.parti.simulator import Simulator
from tests.fakes.discord import FakeDiscord
from tests.fakes.telegram import FakeTelegram
from tests.pg import PgServer, PgUnavailable

DISCORD_API = "https://discord.com/api/v10"  # discord.py's own Route.BASE


@pytest.fixture(autouse=True)
def discord_route_base() -> Iterator[None]:
    """discord.py builds every URL from one global, `Route.BASE` (a Discord hub's start
    points it at its API): each test leaves it as it found it, so no test's outcome
    depends on which test ran before it in the same process."""
    module = sys.modules.get("discord.http")
    saved = module.Route.BASE if module is not None else DISCORD_API
    yield
    module = sys.modules.get("discord.http")
    if module is not None:
        module.Route.BASE = saved


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(host="127.0.0.1", port=0) as simulator:
        yield simulator


@pytest.fixture
async def fake_telegram() -> AsyncIterator[FakeTelegram]:
    fake = await FakeTelegram().start()
    yield fake
    await fake.stop()


@pytest.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    fake = await FakeDiscord().start()
    yield fake
    await fake.stop()


# ---- PostgreSQL (tests/pg.py): one server a session, a fresh database a test ----------


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """NOTIFIER_TEST_DATABASE_URL's server, or one started here; skips saying why when
    none can be had, except in CI (CI=true), where that fails."""
    try:
        server = PgServer.start()
    except PgUnavailable as exc:
        message = f"PostgreSQL tests skipped: {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message.replace("skipped", "cannot run in CI"), pytrace=False)
        pytest.skip(message)
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """The URL of an empty database (emptied again for the next test)."""
    return pg_server.fresh_database()
