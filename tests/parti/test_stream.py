"""The WebSocket stream against the simulator: subscribe, reconnect, dead peers, bad frames."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from notifier.parti.decode import LIVE, PRICE
from notifier.parti.models import ChannelLive, PriceUpdate
from notifier.parti.simulator import Simulator
from notifier.parti.stream import Connected, PartiStream, Received, StreamItem


class Reader:
    """Runs a stream in a task and hands its items to the test through a queue."""

    def __init__(self, stream: PartiStream) -> None:
        self.stream = stream
        self.items: asyncio.Queue[StreamItem] = asyncio.Queue()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for item in self.stream:
            await self.items.put(item)

    async def next(self, timeout: float = 10.0) -> StreamItem:
        async with asyncio.timeout(timeout):
            return await self.items.get()

    async def next_of(self, kind: type, timeout: float = 10.0) -> StreamItem:
        while True:
            item = await self.next(timeout)
            if isinstance(item, kind):
                return item

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@pytest.fixture
async def reader(sim: Simulator) -> AsyncIterator[Reader]:
    stream = PartiStream(
        sim.ws_url, backoff_base=0.01, backoff_cap=0.05, ping_interval=5, ping_timeout=5
    )
    r = Reader(stream)
    yield r
    await r.close()


async def test_stream_subscribes_and_yields_typed_live_and_price_events(
    sim: Simulator, reader: Reader
) -> None:
    first = await reader.next()
    assert isinstance(first, Connected) and first.gap is None
    await sim.wait_subscribed(LIVE)
    await sim.wait_subscribed(PRICE)
    await sim.go_live(463000, event_title="Morning stream")
    await sim.set_price("BTC", "104000")
    live = await reader.next()
    price = await reader.next()
    assert isinstance(live, Received) and isinstance(live.event, ChannelLive)
    assert live.event.user_name == "SNEAKO" and live.event.event_title == "Morning stream"
    assert isinstance(price, Received) and isinstance(price.event, PriceUpdate)
    assert str(price.event.price) == "104000"


async def test_simulator_sends_only_the_subscribed_event_types(sim: Simulator) -> None:
    stream = PartiStream(sim.ws_url, subscriptions=[PRICE])
    r = Reader(stream)
    try:
        await r.next_of(Connected)
        await sim.wait_subscribed(PRICE)
        await sim.go_live(463000)
        await sim.set_price("ETH", "4000")
        item = await r.next()
        assert isinstance(item, Received) and isinstance(item.event, PriceUpdate)
        assert sim.subscribers(LIVE) == 0
    finally:
        await r.close()


async def test_stream_resubscribes_after_a_drop_and_reports_the_gap(
    sim: Simulator, reader: Reader
) -> None:
    await reader.next_of(Connected)
    await sim.wait_subscribed(LIVE)
    assert await sim.drop_connections() == 1
    again = await reader.next_of(Connected)
    assert isinstance(again, Connected) and again.gap is not None
    assert again.gap.started_at <= again.gap.ended_at
    assert "1001" in again.gap.reason
    await sim.wait_subscribed(LIVE)
    await sim.wait_subscribed(PRICE)
    await sim.go_live(348242)
    event = await reader.next_of(Received)
    assert isinstance(event, Received) and isinstance(event.event, ChannelLive)
    assert event.event.user_id == 348242, "an event sent after the reconnect is not lost"
    assert reader.stream.stats.reconnects == 1
    assert sim.connections_total == 2


async def test_stream_keeps_reconnecting_while_the_server_is_down(sim: Simulator) -> None:
    stream = PartiStream(sim.ws_url, backoff_base=0.01, backoff_cap=0.02)
    r = Reader(stream)
    try:
        await r.next_of(Connected)
        port = sim.port
        await sim.stop()
        replacement = Simulator(port=port)
        await replacement.start()
        try:
            again = await r.next_of(Connected)
            assert isinstance(again, Connected) and again.gap is not None
            await replacement.wait_subscribed(LIVE)
            await replacement.go_live(567503)
            item = await r.next_of(Received)
            assert isinstance(item, Received) and item.event.kind == "live"
        finally:
            await replacement.stop()
    finally:
        await r.close()


async def test_stream_detects_a_peer_that_stops_answering_pings(sim: Simulator) -> None:
    stream = PartiStream(
        sim.ws_url, ping_interval=0.1, ping_timeout=0.2, backoff_base=0.01, backoff_cap=0.02
    )
    r = Reader(stream)
    try:
        await r.next_of(Connected)
        sim.answer_pings = False
        again = await r.next_of(Connected)
        assert isinstance(again, Connected) and again.gap is not None
        assert "1011" in again.gap.reason or "keepalive" in again.gap.reason
    finally:
        await r.close()


async def test_a_quiet_connection_that_answers_pings_is_kept(sim: Simulator) -> None:
    stream = PartiStream(sim.ws_url, ping_interval=0.05, ping_timeout=1)
    r = Reader(stream)
    try:
        await r.next_of(Connected)
        sim.silent = True
        await sim.wait_for(lambda: sim.pings_seen >= 6)
        assert stream.stats.reconnects == 0
        assert sim.connections_total == 1
    finally:
        await r.close()


async def test_bad_frames_are_counted_and_skipped_without_dropping_the_connection(
    sim: Simulator, reader: Reader
) -> None:
    await reader.next_of(Connected)
    await sim.wait_subscribed(LIVE)
    await sim.send_raw("not json at all")
    await sim.send_raw("42")
    await sim.send_raw('{"user_id": "x"}')
    await sim.send_raw('{"user_name": "' + "y" * 1_000_000 + '", "user_id": 1}')
    await sim.go_live(463000)
    item = await reader.next_of(Received)
    assert isinstance(item, Received) and item.event.kind == "live"
    stats = reader.stream.stats
    assert dict(stats.rejected) == {
        "not_json": 1,
        "not_an_event": 1,
        "invalid_fields": 1,
        "too_large": 1,
    }
    assert stats.reconnects == 0 and sim.connections_total == 1


async def test_cancelling_the_stream_closes_the_connection(sim: Simulator) -> None:
    r = Reader(PartiStream(sim.ws_url))
    await r.next_of(Connected)
    await sim.wait_subscribed(LIVE)
    await r.close()
    await sim.wait_for(lambda: not sim.state()["connections"])
