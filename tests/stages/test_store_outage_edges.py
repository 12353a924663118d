"""The daemon's edges during a store outage: /healthz and /metrics answer (503 with the
reason, no traceback), a reload still swaps the delivery in, and the delivery's start does
not fall over when the store does not answer."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from notifier.deliver.console import ConsoleSender
from notifier.deliver.factory import Senders
from notifier.deliver.lanes import Delivery
from notifier.metrics import Metrics
from notifier.stages import ops_http
from notifier.stages.context import Health
from notifier.stages.delivery import DeliveryHolder
from notifier.stages.ops_http import OpsHttp, Watch
from notifier.store import Store, StoreUnavailable, open_store
from notifier.store.types import SENT
from tests.deliver.harness import new_alert

REFUSED = "database 127.0.0.1:5432 unavailable: connection refused"


def refuse(*_: Any, **__: Any) -> Any:
    raise StoreUnavailable(REFUSED)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(str(tmp_path / "s.db"), instance="t", durable=False)
    yield opened
    await opened.close()


@pytest.fixture
async def ops(store: Store) -> AsyncIterator[tuple[OpsHttp, httpx.AsyncClient]]:
    ready = asyncio.Event()
    ready.set()
    delivery = Delivery(store, {})
    watch = Watch(
        Health(),
        Metrics(),
        None,
        lambda: delivery,
        stream_down_budget=60.0,
        ready=ready,
        roles=dict,
    )
    server = OpsHttp("127.0.0.1:0", watch, watch.metrics, store)
    await server.start()
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{server.port}", trust_env=False
    ) as http:
        yield server, http
    await server.close()


async def test_healthz_and_metrics_answer_while_the_store_is_down(
    ops: tuple[OpsHttp, httpx.AsyncClient],
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, http = ops
    assert (await http.get("/healthz")).status_code == 200
    monkeypatch.setattr(store, "depth", refuse)
    answer = await http.get("/healthz")
    assert answer.status_code == 503
    assert answer.json()["reason"] == f"store failing: StoreUnavailable: {REFUSED}"
    assert answer.json()["outbox"] is None
    metrics = await http.get("/metrics")
    assert metrics.status_code == 200 and "notifier_outbox_depth" in metrics.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no traceback


async def test_a_probe_does_not_wait_for_a_store_that_hangs(
    ops: tuple[OpsHttp, httpx.AsyncClient], store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, http = ops
    monkeypatch.setattr(ops_http, "STORE_WAIT", 0.05)

    async def hanging() -> dict[str, int]:
        await asyncio.Event().wait()
        return {}

    monkeypatch.setattr(store, "depth", hanging)
    answer = await http.get("/healthz", timeout=10)
    assert answer.status_code == 503
    assert answer.json()["reason"] == "store failing: no answer within 0.05s"


async def test_a_reload_during_an_outage_still_swaps_the_delivery_in(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown = io.StringIO()
    holder = DeliveryHolder(
        store,
        Senders({"t": ConsoleSender("t", io.StringIO())}),
        lambda senders: Delivery(store, senders.by_name),
        Metrics(),
        drain_deadline=5.0,
    )
    running = asyncio.create_task(holder.run())
    monkeypatch.setattr(store, "release_leases", refuse)
    await holder.swap(Senders({"t": ConsoleSender("t", shown)}))  # does not raise
    monkeypatch.undo()  # the store answers again
    alert = new_alert("t")
    await store.enqueue([alert], now=alert.event_at, fence=None)
    delivery = holder.current
    delivery.wake("t")
    async with asyncio.timeout(20), delivery.settled:
        await delivery.settled.wait_for(lambda: delivery.sent_count == 1)
    await holder.stop()
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    row = await store.get(alert.key)
    assert row is not None and row.state == SENT
    assert "SNEAKO" in shown.getvalue()  # by the new delivery


async def test_the_delivery_starts_while_the_store_does_not_answer(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("notifier.store.outage.RETRY_BASE", 0.01)
    calls = 0
    answered = asyncio.Event()
    waiting = store.waiting_destinations

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise StoreUnavailable(REFUSED)
        answered.set()
        return await waiting(*args, **kwargs)

    monkeypatch.setattr(store, "waiting_destinations", flaky)
    delivery = Delivery(store, {}, chat_sender=lambda name: None)
    running = asyncio.create_task(delivery.run())
    async with asyncio.timeout(20):
        await answered.wait()
    assert not running.done()  # the lanes still run
    delivery.stop()
    await asyncio.wait_for(running, 10)
    assert calls == 3
