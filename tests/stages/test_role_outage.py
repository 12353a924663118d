"""Standing for a role (ingest, a command bot's updates) waits out a store that does not
answer: one line when the outage begins, one when it ends, and the role is taken then.
Before, the first refusal ended the daemon."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from notifier.app import App, Options
from notifier.settings import Settings
from notifier.stages.bots import CommandBots
from notifier.stages.context import Core
from notifier.store import Store, StoreUnavailable, open_store, outage
from tests.stages.test_writer import every_go_live

REFUSED = "database 127.0.0.1:5432 unavailable: connection refused"


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outage, "RETRY_BASE", 0.01)


class Refusing:
    """A real store whose role calls (`roles`, `take_role`) fail `failures` times."""

    def __init__(self, store: Store, failures: int) -> None:
        self._store = store
        self.failures = failures

    def _refuse(self) -> None:
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable(REFUSED)

    async def roles(self) -> Any:
        self._refuse()
        return await self._store.roles()

    async def take_role(self, *args: Any, **kwargs: Any) -> int:
        self._refuse()
        return await self._store.take_role(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def run_until(reached: asyncio.Event, work: Coroutine[Any, Any, None], store: Store) -> None:
    """Run `work` until `reached` is set (or fail after 20 s); then stop it."""
    task = asyncio.create_task(work)
    try:
        async with asyncio.timeout(20):
            await reached.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()


def lines(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == name]


async def test_the_ingest_role_is_taken_once_the_store_answers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    rules = tmp_path / "rules.yaml"
    rules.write_text("destinations: {t: {console: {}}}\n")
    settings = Settings(_env_file=None, state_path=str(tmp_path / "s.db"), http_addr="")  # type: ignore[call-arg]
    app = App(settings, rules_path=str(rules), options=Options(console_stream=io.StringIO()))
    store = await open_store(str(tmp_path / "s.db"), instance="t", durable=False)
    ingesting = asyncio.Event()

    async def ingest_while(lock: Any, store: Any) -> None:
        ingesting.set()
        await asyncio.Event().wait()

    app._ingest_while = ingest_while  # type: ignore[method-assign]
    await run_until(ingesting, app._ingest_role(Refusing(store, failures=3)), store)  # type: ignore[arg-type]
    (failed,) = lines(caplog, "role.store_failed")
    assert failed.levelno == logging.WARNING
    assert len(lines(caplog, "role.store_recovered")) == 1
    assert len(lines(caplog, "role.acquired")) == 1
    assert app.health.store_error is None


async def test_a_command_bot_takes_its_role_once_the_store_answers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    core: Core = every_go_live(tmp_path)
    store = await open_store(str(tmp_path / "s.db"), instance="t", durable=False)
    bots = CommandBots(
        core,
        Refusing(store, failures=3),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        settings=Settings,
        chat_sender=lambda senders, name: None,
        instance="t",
        role_retry=0.01,
    )
    serving = asyncio.Event()

    class Bot:
        async def run(self) -> None:
            serving.set()
            await asyncio.Event().wait()

    await run_until(serving, bots._command_bot("telegram", "1:T", Bot, RuntimeError), store)
    assert len(lines(caplog, "role.store_failed")) == 1
    assert len(lines(caplog, "role.store_recovered")) == 1
    assert core.health.store_error is None
