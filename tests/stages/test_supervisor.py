"""A stage that meets a store outage waits it out: one line when it begins, one when it
ends, shown in /healthz meanwhile, never counted or logged as a crash. Any other fault is
a crash: logged, counted and restarted."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import pytest

from notifier.metrics import Metrics
from notifier.stages.context import Health
from notifier.stages.supervisor import supervise
from notifier.store import outage
from notifier.store.errors import StoreUnavailable

REFUSED = "database 127.0.0.1:5432 unavailable: connection refused"


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outage, "RETRY_BASE", 0.01)


def messages(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == name]


async def test_a_stage_waits_out_a_store_outage_without_crashing(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO)
    health, metrics = Health(), Metrics()
    answered = asyncio.Event()
    original = outage.Outage.answered

    def answering(self: outage.Outage, **fields: Any) -> None:
        original(self, **fields)
        answered.set()

    monkeypatch.setattr(outage.Outage, "answered", answering)
    runs = 0
    during: list[str | None] = []

    async def stage() -> None:
        nonlocal runs
        runs += 1
        during.append(health.store_error)
        if runs <= 3:
            raise StoreUnavailable(REFUSED)
        await asyncio.Event().wait()  # runs on: the store answers again

    task = asyncio.create_task(
        supervise("subscriptions", stage, health=health, metrics=metrics, answered_after=0.05)
    )
    async with asyncio.timeout(10):
        await answered.wait()
    assert health.store_error is None and health.stages["subscriptions"]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert runs == 4
    assert during[1:] == [f"StoreUnavailable: {REFUSED}"] * 3  # /healthz said so meanwhile
    (failed,) = messages(caplog, "stage.store_failed")  # once for the outage
    assert failed.levelno == logging.WARNING
    assert len(messages(caplog, "stage.store_recovered")) == 1
    assert not messages(caplog, "stage.crashed")
    restarts = metrics.stage_restarts.labels(stage="subscriptions")._value.get()
    assert restarts == 0


async def test_any_other_fault_is_a_crash(caplog: pytest.LogCaptureFixture) -> None:
    health, metrics = Health(), Metrics()
    runs = 0

    async def stage() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise RuntimeError("a bug")

    await asyncio.wait_for(
        supervise("poller", stage, health=health, metrics=metrics, restart_delay=0.0), 10
    )
    assert runs == 2
    assert len(messages(caplog, "stage.crashed")) == 1
    assert metrics.stage_restarts.labels(stage="poller")._value.get() == 1
    assert not messages(caplog, "stage.store_failed")


async def test_a_stage_stopped_during_an_outage_takes_its_error_out_of_healthz() -> None:
    """The ingest role lost mid-outage cancels every stage: the next round's stages start
    with no outage of their own, so nobody else would clear the old error."""
    health, metrics = Health(), Metrics()
    failed = asyncio.Event()

    async def stage() -> None:
        failed.set()
        raise StoreUnavailable(REFUSED)

    task = asyncio.create_task(supervise("poller", stage, health=health, metrics=metrics))
    async with asyncio.timeout(10):
        await failed.wait()
    assert health.store_error is not None
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert health.store_errors == {}


async def test_a_stage_cancelled_after_an_outage_has_finished_when_its_supervisor_has() -> None:
    """Its clean-up (through the store) must not run after whoever stopped it went on."""
    health, metrics = Health(), Metrics()
    runs = 0
    running = asyncio.Event()
    cleaned = False

    async def stage() -> None:
        nonlocal runs, cleaned
        runs += 1
        if runs == 1:
            raise StoreUnavailable(REFUSED)
        running.set()
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.05)  # a clean-up that takes a while
            cleaned = True

    task = asyncio.create_task(supervise("state", stage, health=health, metrics=metrics))
    async with asyncio.timeout(10):
        await running.wait()  # restarted after the fault, still within answered_after
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert cleaned
    assert len(asyncio.all_tasks()) == 1  # this test's own: nothing left running


async def test_a_stage_waiting_out_an_outage_starts_again_once_the_store_answers_another_part(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its wait between tries is a minute here; the store answering any other part (a
    lane, the writer, a /healthz probe) ends it at once (`outage.store_answered`)."""
    monkeypatch.setattr(outage, "full_jitter", lambda *_, cap, **__: cap)
    monkeypatch.setattr(outage, "RETRY_CAP", 60.0)
    health = Health()
    runs = 0
    met, second_run = asyncio.Event(), asyncio.Event()

    async def stage() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            met.set()  # the supervisor's wait has begun by the time the test runs again
            raise StoreUnavailable(REFUSED)
        second_run.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(supervise("poller", stage, health=health, metrics=Metrics()))
    try:
        other = outage.Outage("writer", health.store_errors, failed_event="f", recovered_event="r")
        async with asyncio.timeout(10):
            await met.wait()
            assert "poller" in health.store_errors
            other.failed(StoreUnavailable(REFUSED))
            other.answered()  # the writer's next try went through
            await second_run.wait()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert runs == 2
