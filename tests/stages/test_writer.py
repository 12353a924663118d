"""The writer: a batch is written whole or retried until it is, never dropped."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from notifier.deliver.console import ConsoleSender
from notifier.deliver.factory import Senders
from notifier.deliver.lanes import Delivery
from notifier.enrich.profiles import Profiles
from notifier.metrics import Metrics
from notifier.parti.client import PartiClient
from notifier.parti.models import ChannelLive
from notifier.parti.simulator import Simulator
from notifier.rules.compile import compile_rules
from notifier.stages import writer as writer_module
from notifier.stages.context import Core, Health, Rules
from notifier.stages.delivery import DeliveryHolder
from notifier.stages.writer import Writer
from notifier.store import Store, StoreUnavailable, open_store
from notifier.store.types import LiveEntry, NewAlert, Row
from tests.test_enrich import FailingClient


class FlakyStore:
    """A real store whose first `failures` outbox writes fail as a lost database would."""

    def __init__(self, store: Store, failures: int) -> None:
        self._store = store
        self.failures = failures
        self.attempts = 0

    async def enqueue_leased(
        self,
        alerts: Sequence[NewAlert],
        *,
        now: float,
        lease: float,
        room: Mapping[str, int],
        fence: int | None,
        lives: Sequence[LiveEntry] = (),
        state: Mapping[str, str] | None = None,
    ) -> tuple[list[str], list[Row]]:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise StoreUnavailable("database 127.0.0.1:5432: connection refused")
        return await self._store.enqueue_leased(
            alerts, now=now, lease=lease, room=room, fence=fence, lives=lives, state=state
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def writing_a_go_live(
    core: Core, store: Store, client: PartiClient, delivery: Delivery
) -> tuple[Writer, asyncio.Task[None]]:
    """A running writer, and one go-live of SNEAKO evaluated for it."""
    writer = Writer(core, store, Profiles(client), lambda: delivery, lease=60.0)
    task = asyncio.create_task(writer.run())
    live = ChannelLive(user_id=463000, user_name="SNEAKO", event_id=9, livestream_id=1)
    assert await core.evaluate(live, 1.0, caught_up=False) == 1
    return writer, task


def every_go_live(tmp_path: Path) -> Core:
    """A core whose one rule matches every go-live, to the console, without a cooldown."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "destinations: {t: {console: {}}}\n"
        "rules: [{name: a, when: live, notify: [t], cooldown: 0s}]\n"
    )
    compiled = compile_rules(rules)
    return Core(Rules(compiled.rules_file, compiled.engine, compiled.meta), Metrics(), Health())


async def test_a_batch_the_database_refuses_is_retried_until_written(
    tmp_path: Path, sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "destinations: {t: {console: {}}}\n"
        "rules: [{name: a, when: live, users: [SNEAKO], notify: [t]}]\n"
    )
    compiled = compile_rules(rules)
    health = Health()
    core = Core(Rules(compiled.rules_file, compiled.engine, compiled.meta), Metrics(), health)
    real = await open_store(str(tmp_path / "s.db"), instance="t", durable=False)
    store = FlakyStore(real, failures=3)
    async with PartiClient(sim.api_url) as client:
        writer, task = await writing_a_go_live(core, store, client, Delivery(real, {}))  # type: ignore[arg-type]
        assert not writer.idle
        await writer.flush(30.0)
        task.cancel()
    rows = await real.rows()
    await real.close()
    assert store.attempts == 4  # three refusals, then written
    assert [r.rule for r in rows] == ["a"]
    assert writer.idle and health.store_error is None
    logged = [r.getMessage() for r in caplog.records]
    assert logged.count("outbox.write_failed") == 1  # once for the outage, not per attempt
    assert logged.count("outbox.write_recovered") == 1


async def test_the_writer_asks_for_a_profile_once_and_counts_each_look_up_once(
    tmp_path: Path, sim: Simulator
) -> None:
    core = every_go_live(tmp_path)
    store = await open_store(str(tmp_path / "s.db"), instance="t", durable=False)
    async with PartiClient(sim.api_url) as client:
        profiles = Profiles(client)
        delivery = Delivery(store, {})
        writer = Writer(core, store, profiles, lambda: delivery, lease=60.0)
        task = asyncio.create_task(writer.run())
        for event_id in (1, 2):  # the second alert finds the profile cached
            live = ChannelLive(
                user_id=463000, user_name="SNEAKO", event_id=event_id, livestream_id=event_id
            )
            assert await core.evaluate(live, float(event_id), caught_up=False) == 1
            await writer.flush(30.0)
        task.cancel()
    rows = await store.rows()
    await store.close()
    assert len(rows) == 2
    assert sim.requests["/parti_v2/profile/user_profile/463000"] == 1
    assert (profiles.stats.misses, profiles.stats.hits, profiles.stats.fetches) == (1, 1, 1)


async def test_alerts_the_writer_hands_to_a_lane_are_sent_without_a_claim(
    tmp_path: Path, sim: Simulator
) -> None:
    core = every_go_live(tmp_path)
    store = await open_store(str(tmp_path / "s.db"), instance="t", durable=False)
    claims: list[int] = []
    claim = store.claim

    async def counting(*args: Any, **kwargs: Any) -> list[Row]:
        rows = await claim(*args, **kwargs)
        claims.append(len(rows))
        return rows

    async with PartiClient(sim.api_url) as client:
        delivery = Delivery(store, {"t": ConsoleSender("t", io.StringIO())})
        writer = Writer(core, store, Profiles(client), lambda: delivery, lease=60.0)
        tasks = [asyncio.create_task(writer.run()), asyncio.create_task(delivery.run())]
        for event_id in range(1, 5):
            live = ChannelLive(
                user_id=463000, user_name="SNEAKO", event_id=event_id, livestream_id=event_id
            )
            assert await core.evaluate(live, float(event_id), caught_up=False) == 1
            async with asyncio.timeout(30), delivery.settled:
                await delivery.settled.wait_for(lambda n=event_id: delivery.sent_count == n)
            if event_id == 1:  # the lane is up and has looked at the outbox once
                store.claim = counting  # type: ignore[method-assign]
        delivery.stop()
        await tasks[1]
        tasks[0].cancel()
    await store.close()
    assert claims == []  # each alert went to the lane with its write, none was claimed


class WatchedLock(asyncio.Lock):
    """A lock that tells when someone had to wait for it."""

    def __init__(self) -> None:
        super().__init__()
        self.waited = asyncio.Event()

    async def acquire(self) -> bool:
        if self.locked():
            self.waited.set()
        return await super().acquire()


class HeldStore:
    """A real store whose outbox writes wait, once `entered` is set, until `go` is."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.entered = asyncio.Event()
        self.go = asyncio.Event()

    async def enqueue_leased(self, *args: Any, **kwargs: Any) -> tuple[list[str], list[Row]]:
        self.entered.set()
        await self.go.wait()
        return await self._store.enqueue_leased(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def test_alerts_written_while_a_reload_swaps_the_delivery_are_sent_at_once(
    tmp_path: Path, sim: Simulator
) -> None:
    """A reload's swap released the old lanes' leases while a write was under way: the
    write then leased its rows to the old, stopped delivery, and they waited out their
    lease (two minutes) before the new one could claim them."""
    core = every_go_live(tmp_path)
    real = await open_store(str(tmp_path / "s.db"), instance="t", durable=False)
    store = HeldStore(real)
    holder = DeliveryHolder(
        real,
        Senders({"t": ConsoleSender("t", io.StringIO())}),
        lambda senders: Delivery(real, senders.by_name, lease=120.0),
        Metrics(),
        drain_deadline=5.0,
    )
    holder.handing = handing = WatchedLock()
    shown = io.StringIO()
    async with PartiClient(sim.api_url) as client:
        writer = Writer(core, store, Profiles(client), holder, lease=120.0, handing=handing)  # type: ignore[arg-type]
        tasks = [asyncio.create_task(writer.run()), asyncio.create_task(holder.run())]
        live = ChannelLive(user_id=463000, user_name="SNEAKO", event_id=1, livestream_id=1)
        assert await core.evaluate(live, 1.0, caught_up=False) == 1
        async with asyncio.timeout(20):
            await store.entered.wait()  # the write is under way
            swap = asyncio.create_task(holder.swap(Senders({"t": ConsoleSender("t", shown)})))
            # The swap goes as far as it can: done, or waiting for the write's hand-off.
            waiting = asyncio.create_task(handing.waited.wait())
            await asyncio.wait([swap, waiting], return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            store.go.set()
            await swap
            delivery = holder.current
            async with delivery.settled:
                await delivery.settled.wait_for(lambda: delivery.sent_count == 1)
        await holder.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    (row,) = await real.rows()
    await real.close()
    assert row.state == "sent"
    assert "SNEAKO" in shown.getvalue()  # by the new delivery, not after the lease


async def written_by_another(core: Any, real: Any, client: Any, delivery: Delivery) -> None:
    """A second writer (the supervisor's restart) writes what the first left."""
    second = Writer(core, real, Profiles(client), lambda: delivery, lease=60.0)
    task = asyncio.create_task(second.run())
    await second.flush(20.0)
    assert second.idle
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_batch_whose_writer_was_stopped_mid_write_is_written_by_the_next(
    tmp_path: Path, sim: Simulator
) -> None:
    """The ingest role lost with the database stops the writer while it waits for the
    store: the matches it had taken from the queue are not lost (a price crossing would
    not come again); the writer of the role's next holding writes them first."""
    core = every_go_live(tmp_path)
    real = await open_store(str(tmp_path / "s.db"), instance="t", durable=False)
    held = HeldStore(real)
    async with PartiClient(sim.api_url) as client:
        delivery = Delivery(real, {})
        first, task = await writing_a_go_live(core, held, client, delivery)  # type: ignore[arg-type]
        async with asyncio.timeout(20):
            await held.entered.wait()  # taken from the queue, waiting for the store
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert core.queue.empty() and not first.idle
        await written_by_another(core, real, client, delivery)
    rows = await real.rows()
    await real.close()
    assert [r.subject for r in rows] == ["463000"]


async def test_a_batch_that_cannot_be_prepared_is_kept_for_the_next_writer(
    tmp_path: Path, sim: Simulator
) -> None:
    """A writer that fails before its write (restarted by the supervisor) leaves its batch
    to the next, like one stopped mid-write: up to a whole batch of matches is not lost."""
    core = every_go_live(tmp_path)
    real = await open_store(str(tmp_path / "s.db"), instance="t", durable=False)
    async with PartiClient(sim.api_url) as client:
        delivery = Delivery(real, {})
        first = Writer(core, real, Profiles(client), lambda: delivery, lease=60.0)

        async def broken(batch: Any) -> Any:
            raise RuntimeError("a bug")

        first._prepare = broken  # type: ignore[method-assign]
        live = ChannelLive(user_id=463000, user_name="SNEAKO", event_id=1, livestream_id=1)
        assert await core.evaluate(live, 1.0, caught_up=False) == 1
        with pytest.raises(RuntimeError):
            await first.run()
        assert core.queue.empty() and len(core.unwritten) == 1
        await written_by_another(core, real, client, delivery)
    rows = await real.rows()
    await real.close()
    assert [r.subject for r in rows] == ["463000"]


async def test_an_alert_that_cannot_be_prepared_does_not_hold_its_batch_back(
    tmp_path: Path,
    sim: Simulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bug with one alert (its view) costs that alert, one line in the log: the rest of
    its batch is written, and no batch is retried for ever."""
    caplog.set_level(logging.INFO)
    real_view_of = writer_module.view_of

    def view_of(match: Any, *args: Any, **kwargs: Any) -> Any:
        if match.event.user_id == 1:
            raise RuntimeError("a bug")
        return real_view_of(match, *args, **kwargs)

    monkeypatch.setattr(writer_module, "view_of", view_of)
    core = every_go_live(tmp_path)
    real = await open_store(str(tmp_path / "s.db"), instance="t", durable=False)
    async with PartiClient(sim.api_url) as client:
        writer = Writer(core, real, Profiles(client), lambda: Delivery(real, {}), lease=60.0)
        for user_id, name in ((1, "odd"), (463000, "SNEAKO")):  # one batch
            live = ChannelLive(user_id=user_id, user_name=name, event_id=user_id, livestream_id=1)
            assert await core.evaluate(live, 1.0, caught_up=False) == 1
        task = asyncio.create_task(writer.run())
        await writer.flush(20.0)
        assert writer.idle and not task.done()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    rows = await real.rows()
    await real.close()
    assert [r.subject for r in rows] == ["463000"]
    failed = [r for r in caplog.records if r.getMessage() == "alert.unprepared"]
    assert len(failed) == 1 and failed[0].exc_info is None


async def test_a_profile_look_up_that_fails_unexpectedly_costs_the_alert_only_its_profile(
    tmp_path: Path, sim: Simulator
) -> None:
    core = every_go_live(tmp_path)
    store = await open_store(str(tmp_path / "s.db"), instance="t", durable=False)
    async with FailingClient(sim.api_url) as client:
        client.release.set()
        writer, task = await writing_a_go_live(core, store, client, Delivery(store, {}))
        await writer.flush(20.0)
        assert writer.idle and not task.done(), "the writer is still running"
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    rows = await store.rows()
    await store.close()
    assert [r.subject for r in rows] == ["463000"] and client.asked == 1
