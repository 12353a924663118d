"""A live poll that the store fails is made again as it was: the first start's poll still
records what was live (not a flood of old streams as news), and a reconnect's catch-up is
still owed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from notifier.deliver.lanes import Delivery
from notifier.parti.client import PartiClient, PartiError
from notifier.parti.simulator import Simulator
from notifier.stages.context import Core
from notifier.stages.ingest import Ingest
from notifier.stages.pollers import LivePoller
from notifier.store import Store, StoreUnavailable, open_store
from tests.stages.test_writer import every_go_live


class FailingOnce:
    """A real store whose first `method` call fails as a lost database would."""

    def __init__(self, store: Store, method: str) -> None:
        self._store = store
        self._method = method
        self.failed = False

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._store, name)
        if name != self._method or self.failed:
            return found

        async def failing(*args: Any, **kwargs: Any) -> Any:
            self.failed = True
            raise StoreUnavailable("database 127.0.0.1:5432 unavailable: connection refused")

        return failing


def poller_for(
    core: Core, store: Store, client: PartiClient, *, ran_before: bool, every: float
) -> LivePoller:
    ingest = Ingest(core, None, stream_seqs={}, ran_before=ran_before)  # type: ignore[arg-type]
    delivery = Delivery(store, {})
    return LivePoller(
        core,
        ingest,
        client,
        store,
        lambda: delivery,
        every=every,
        ran_before=ran_before,
        stream_up=lambda: True,
    )


async def test_a_first_poll_the_store_failed_still_records_what_was_live(
    tmp_path: Path, sim: Simulator
) -> None:
    core = every_go_live(tmp_path)
    assert core.rules.file.defaults.first_start == "skip"
    real = await open_store(str(tmp_path / "s.db"), instance="t", durable=False)
    store = FailingOnce(real, "enqueue")
    await sim.go_live(463000, user_name="SNEAKO")  # live before this first start
    async with PartiClient(sim.api_url) as client:
        poller = poller_for(core, store, client, ran_before=False, every=60.0)  # type: ignore[arg-type]
        with pytest.raises(StoreUnavailable):
            await poller.poll(after_connect=True)
        await poller.poll(after_connect=True)  # the stage, started again
    live = await real.live_set()
    await real.close()
    assert core.queue.empty()  # recorded as live at the start, not alerted as news
    assert 463000 in live


async def test_a_catch_up_whose_poll_failed_is_made_by_the_next_poll(
    tmp_path: Path, sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = every_go_live(tmp_path)
    store = await open_store(str(tmp_path / "s.db"), instance="t", durable=False)
    async with PartiClient(sim.api_url) as client:
        poller = poller_for(core, store, client, ran_before=True, every=0.01)
        ingest = poller.ingest
        asked: list[bool] = []
        done = asyncio.Event()

        async def poll(*, after_connect: bool) -> None:
            asked.append(after_connect)
            if len(asked) == 1:
                raise PartiError("/live", 502, "Bad Gateway")
            done.set()

        monkeypatch.setattr(poller, "poll", poll)
        ingest.catch_up.set()  # a reconnect
        running = asyncio.create_task(poller.run())
        async with asyncio.timeout(10):
            await done.wait()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    await store.close()
    assert asked[:2] == [True, True]  # the failed catch-up is made by the next poll


async def test_a_poller_started_again_after_the_store_failed_a_poll_polls_at_once(
    tmp_path: Path, sim: Simulator
) -> None:
    """The supervisor waited the outage out: the next poll comes now, not a period later,
    so /healthz sees the store answer within seconds."""
    core = every_go_live(tmp_path)
    real = await open_store(str(tmp_path / "s.db"), instance="t", durable=False)
    store = FailingOnce(real, "live_set")
    async with PartiClient(sim.api_url) as client:
        poller = poller_for(core, store, client, ran_before=True, every=3600.0)  # type: ignore[arg-type]
        poller.ingest.catch_up.set()  # the first poll: at the connect
        with pytest.raises(StoreUnavailable):
            await poller.run()
        polled = asyncio.Event()
        poll = poller.poll

        async def polling(*, after_connect: bool) -> None:
            await poll(after_connect=after_connect)
            polled.set()

        poller.poll = polling  # type: ignore[method-assign]
        running = asyncio.create_task(poller.run())  # as the supervisor does
        async with asyncio.timeout(10):  # not the hour of `every`
            await polled.wait()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    await real.close()


async def test_a_poll_that_fails_for_another_reason_is_not_repeated_at_once(
    tmp_path: Path, sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a store fault (waited out by the supervisor first) makes the restarted poller
    poll at once: a bug must not make it list Parti's live channels every second."""
    core = every_go_live(tmp_path)
    store = await open_store(str(tmp_path / "s.db"), instance="t", durable=False)
    async with PartiClient(sim.api_url) as client:
        poller = poller_for(core, store, client, ran_before=True, every=3600.0)

        async def broken(*, after_connect: bool) -> None:
            raise RuntimeError("a bug")

        monkeypatch.setattr(poller, "poll", broken)
        poller.ingest.catch_up.set()
        with pytest.raises(RuntimeError):
            await poller.run()
    await store.close()
    assert not poller._poll_failed
