"""The live poller against the simulator's live list: streams that ended (each edited
once, never a live one), streams missed during a gap, and go-lives a cooldown held back."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from notifier.deliver.console import ConsoleSender
from notifier.deliver.lanes import Delivery
from notifier.enrich.profiles import Profiles
from notifier.metrics import Metrics
from notifier.parti.client import PartiClient
from notifier.parti.models import ChannelLive, LiveChannel
from notifier.parti.simulator import Simulator
from notifier.rules.compile import compile_rules
from notifier.stages import pollers
from notifier.stages.context import Core, Health, Rules
from notifier.stages.ingest import Ingest
from notifier.stages.pollers import LivePoller
from notifier.stages.writer import Writer
from notifier.store import Store, StoreUnavailable, open_store
from tests.stages.test_poller_outage import FailingOnce

SNEAKO = 463000


def sneako_core(tmp_path: Path, *, cooldown: str = "0s") -> Core:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "destinations: {t: {console: {}}}\n"
        f"rules: [{{name: a, when: live, users: [SNEAKO], notify: [t], cooldown: {cooldown}}}]\n"
    )
    compiled = compile_rules(rules)
    return Core(Rules(compiled.rules_file, compiled.engine, compiled.meta), Metrics(), Health())


class World:
    def __init__(self, core: Core, store: Store, client: PartiClient) -> None:
        self.core = core
        self.store = store
        self.client = client
        self.delivery = Delivery(store, {"t": ConsoleSender("t", io.StringIO())})
        ingest = Ingest(core, None, stream_seqs={}, ran_before=True)  # type: ignore[arg-type]
        self.poller = LivePoller(
            core,
            ingest,
            client,
            store,
            lambda: self.delivery,
            every=60.0,
            ran_before=True,
            stream_up=lambda: True,
        )
        self.poller._polls = 1  # routine polls, not a first start's

    async def websocket(self, frame: dict[str, Any] | ChannelLive, at: float) -> int:
        """A go-live from the WebSocket, through the engine."""
        ev = frame if isinstance(frame, ChannelLive) else ChannelLive.model_validate(frame)
        return await self.core.evaluate(self.poller.ingest.with_seq(ev), at, caught_up=False)

    async def write(self) -> None:
        writer = Writer(
            self.core, self.store, Profiles(self.client), lambda: self.delivery, lease=60.0
        )
        task = asyncio.create_task(writer.run())
        await writer.flush(10.0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def keys(self) -> list[tuple[str, str]]:
        return [(r.key, r.action) for r in await self.store.rows() if str(SNEAKO) in r.key]


@pytest.fixture
async def world(tmp_path: Path, sim: Simulator) -> AsyncIterator[World]:
    store = await open_store(str(tmp_path / "s.db"), instance="t", durable=False)
    async with PartiClient(sim.api_url) as client:
        yield World(sneako_core(tmp_path), store, client)
    await store.close()


async def test_a_go_live_written_while_the_list_is_fetched_is_not_ended(
    world: World, sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The list is fetched (the stream not on it yet), the WebSocket go-live is written:
    the stream is neither edited as ended nor, with no event id, alerted again by the
    next poll under a new identity. Received long before (the writer held back by a
    store outage, say): only the order of the reads keeps it."""
    listing = world.client.iter_live

    async def iter_live(**kw: Any) -> AsyncIterator[LiveChannel]:
        async for channel in listing(**kw):
            yield channel
        ws = ChannelLive(user_id=SNEAKO, user_name="SNEAKO", livestream_id=77)
        await world.websocket(ws, 1.0)
        await world.write()
        await sim.go_live(SNEAKO, user_name="SNEAKO", event_id=None, livestream_id=77)

    monkeypatch.setattr(world.client, "iter_live", iter_live)
    await world.poller.poll(after_connect=False)
    monkeypatch.setattr(world.client, "iter_live", listing)
    await world.poller.poll(after_connect=False)
    await world.write()
    assert await world.keys() == [('["a", "t", "live:463000:livestream:77"]', "send")]


async def test_a_go_live_the_list_does_not_show_yet_is_ended_only_by_a_later_poll(
    world: World, sim: Simulator
) -> None:
    """Parti's list behind its WebSocket: a stream written since the previous poll fetched
    its list is not ended by one list that lacks it; by the next one, it is."""
    await world.poller.poll(after_connect=False)
    live = await sim.go_live(SNEAKO, user_name="SNEAKO")
    await world.websocket(live, time.time())
    await world.write()
    sim.live_channels.pop(SNEAKO)  # the list does not show it (yet)
    await world.poller.poll(after_connect=False)
    assert [action for _, action in await world.keys()] == ["send"]
    await world.poller.poll(after_connect=False)  # still missing: it has ended
    assert [action for _, action in await world.keys()] == ["send", "edit"]


async def test_a_store_fault_after_a_stream_ended_loses_no_edit(
    world: World, sim: Simulator
) -> None:
    live = await sim.go_live(SNEAKO, user_name="SNEAKO")
    await world.websocket(live, 1.0)
    await world.write()
    await sim.go_offline(SNEAKO)
    real = world.store
    for method in ("by_identity", "enqueue", "forget_ended"):
        world.poller.store = FailingOnce(real, method)  # type: ignore[assignment]
        with pytest.raises(StoreUnavailable):
            await world.poller.poll(after_connect=False)
    world.poller.store = real
    await world.poller.poll(after_connect=False)  # the supervisor starts the stage again
    key = f'["a", "t", "live:463000:event:{live["event_id"]}"]'
    assert await world.keys() == [(key, "send"), (f"{key}:end", "edit")]
    assert await real.ended_streams() == [] and await real.live_set() == {}
    assert world.poller.ingest.stream_seqs == {SNEAKO: 1} == await real.stream_seqs()


async def test_a_channel_that_restarts_between_two_polls_has_its_first_stream_edited(
    world: World, sim: Simulator
) -> None:
    first = await sim.go_live(SNEAKO, user_name="SNEAKO")
    await world.websocket(first, 1.0)
    await world.write()
    await sim.go_offline(SNEAKO)
    second = await sim.go_live(SNEAKO, user_name="SNEAKO")  # before the next poll
    await world.websocket(second, 2.0)
    await world.write()
    await world.poller.poll(after_connect=False)
    key = '["a", "t", "live:463000:event:{}"]'.format
    assert await world.keys() == [
        (key(first["event_id"]), "send"),
        (key(second["event_id"]), "send"),
        (key(first["event_id"]) + ":end", "edit"),
    ]
    await sim.go_offline(SNEAKO)
    await world.poller.poll(after_connect=False)
    assert (await world.keys())[-1] == (key(second["event_id"]) + ":end", "edit")


@pytest.mark.parametrize("listed_with_id", [True, False], ids=["listed", "channel route"])
async def test_a_stream_that_ends_and_restarts_during_a_gap_is_alerted(
    world: World, sim: Simulator, monkeypatch: pytest.MonkeyPatch, listed_with_id: bool
) -> None:
    first = await sim.go_live(SNEAKO, user_name="SNEAKO")
    await world.websocket(first, 1.0)
    await world.write()
    # disconnected: the stream ends and a new one (a new event id) starts meanwhile
    await sim.go_offline(SNEAKO)
    second = await sim.go_live(SNEAKO, user_name="SNEAKO")
    if not listed_with_id:  # the live list without ids: the channel route has them
        listing = world.client.iter_live

        async def iter_live(**kw: Any) -> AsyncIterator[LiveChannel]:
            async for channel in listing(**kw):
                yield channel.model_copy(update={"event_id": None, "livestream_id": None})

        monkeypatch.setattr(world.client, "iter_live", iter_live)
    world.poller.ingest.gap_possible = True
    await world.poller.poll(after_connect=True)  # the reconnect's catch-up
    await world.write()
    key = '["a", "t", "live:463000:event:{}"]'.format
    assert sorted(await world.keys()) == sorted(
        [
            (key(first["event_id"]), "send"),
            (key(first["event_id"]) + ":end", "edit"),
            (key(second["event_id"]), "send"),
        ]
    )
    assert world.poller.ingest.stream_seqs == {SNEAKO: 1}


async def test_a_go_live_a_cooldown_held_back_is_not_alerted_by_later_polls(
    tmp_path: Path, sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stream B starts within the cooldown of stream A's alert: not alerted then, nor by
    a poll once the cooldown is over (late, as if it had just gone live)."""
    clock = [time.time()]
    monkeypatch.setattr(pollers.time, "time", lambda: clock[0])
    store = await open_store(str(tmp_path / "s.db"), instance="t", durable=False)
    async with PartiClient(sim.api_url) as client:
        world = World(sneako_core(tmp_path, cooldown="10m"), store, client)
        t0 = clock[0]
        first = await sim.go_live(SNEAKO, user_name="SNEAKO")
        await world.websocket(first, t0)
        await world.write()
        await sim.go_offline(SNEAKO)
        clock[0] = t0 + 120
        await world.poller.poll(after_connect=False)  # A ended
        clock[0] = t0 + 180
        second = await sim.go_live(SNEAKO, user_name="SNEAKO")
        assert await world.websocket(second, clock[0]) == 0  # the cooldown holds it back
        for minute in range(4, 12):
            clock[0] = t0 + minute * 60
            await world.poller.poll(after_connect=False)
            await world.write()
        sends = [k for k, action in await world.keys() if action == "send"]
        assert sends == [f'["a", "t", "live:463000:event:{first["event_id"]}"]']
        # B ends: forgotten; the channel's next stream after the cooldown is alerted
        await sim.go_offline(SNEAKO)
        await world.poller.poll(after_connect=False)
        assert world.core.held_back == {}
        third = await sim.go_live(SNEAKO, user_name="SNEAKO")
        assert await world.websocket(third, clock[0]) == 1
    await store.close()


async def test_a_go_live_below_min_viewers_is_alerted_by_the_poll_that_sees_enough(
    tmp_path: Path, sim: Simulator
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "destinations: {t: {console: {}}}\n"
        "rules: [{name: a, when: live, users: [SNEAKO], notify: [t], min_viewers: 20}]\n"
    )
    compiled = compile_rules(rules)
    core = Core(Rules(compiled.rules_file, compiled.engine, compiled.meta), Metrics(), Health())
    store = await open_store(str(tmp_path / "s.db"), instance="t", durable=False)
    async with PartiClient(sim.api_url) as client:
        world = World(core, store, client)
        live = await sim.go_live(SNEAKO, user_name="SNEAKO", viewers_count=3)
        assert await world.websocket(live, time.time()) == 0
        assert core.held_back == {}, "a filter, not a cooldown"
        sim.live_channels[SNEAKO]["viewers_count"] = 25
        await world.poller.poll(after_connect=False)
        await world.write()
        assert [action for _, action in await world.keys()] == ["send"]
    await store.close()
