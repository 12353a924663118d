"""A live list with a malformed entry: the poll still sees which streams ended, and a
channel whose entry carries odd fields is still live (its stream is not ended)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from notifier.deliver.lanes import Delivery
from notifier.enrich.profiles import Profiles
from notifier.parti.client import PartiClient
from notifier.parti.models import ChannelLive
from notifier.parti.simulator import Simulator
from notifier.stages.ingest import Ingest
from notifier.stages.pollers import LivePoller
from notifier.stages.writer import Writer
from notifier.store import open_store
from tests.stages.test_writer import every_go_live

SNEAKO, JACK = 463000, 348242


async def test_a_malformed_live_entry_neither_hides_an_end_nor_ends_a_live_stream(
    tmp_path: Path, sim: Simulator
) -> None:
    core = every_go_live(tmp_path)
    store = await open_store(str(tmp_path / "s.db"), instance="t", durable=False)
    delivery = Delivery(store, {})
    async with PartiClient(sim.api_url) as client:
        for user_id, name in ((SNEAKO, "SNEAKO"), (JACK, "Jack Doherty")):
            frame = await sim.go_live(user_id, user_name=name)
            assert await core.evaluate(ChannelLive.model_validate(frame), 1.0, caught_up=False)
        writer = Writer(core, store, Profiles(client), lambda: delivery, lease=60.0)
        task = asyncio.create_task(writer.run())
        await writer.flush(20.0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert {SNEAKO, JACK} <= set(await store.live_set())

        await sim.go_offline(SNEAKO)
        sim.live_channels[JACK] |= {"viewers_count": 1.5, "event_title": 123}  # still live
        sim.live_channels[999] = {"user_id": 999, "user_name": None, "viewers_count": 1}
        sim.live_channels[998] = {"user_id": "not an id", "user_name": "x", "viewers_count": 1}
        ingest = Ingest(core, None, stream_seqs={}, ran_before=True)  # type: ignore[arg-type]
        poller = LivePoller(
            core,
            ingest,
            client,
            store,
            lambda: delivery,
            every=60.0,
            ran_before=True,
            stream_up=lambda: True,
        )
        poller._polls = 1  # a routine poll
        await poller.poll(after_connect=False)
        assert client.skipped == {"/get_livestream_channel_info/live": 1}
    live = await store.live_set()
    await store.close()
    assert SNEAKO not in live, "its stream ended: seen as ended"
    assert JACK in live, "its entry's odd fields do not end its stream"
