"""The WebSocket stream against the simulator: subscribe, reconnect, dead peers, bad frames."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.server import ServerConnection, serve

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
    await sim.send_raw('{"user_id": "x", "livestream_id": 1}')
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


async def test_a_frame_with_bad_elements_still_yields_its_good_events(sim: Simulator) -> None:
    rejected: list[str] = []
    r = Reader(PartiStream(sim.ws_url, on_reject=rejected.append))
    try:
        await r.next_of(Connected)
        await sim.wait_subscribed(PRICE)
        good = {"display_symbol": "BTC", "price": "104000"}
        frame = [good, {**good, "price": "NaN"}, "junk", {**good, "display_symbol": "ETH"}]
        await sim.send_raw(json.dumps({"AssetPriceRefreshNotify": frame}))
        first, second = await r.next_of(Received), await r.next_of(Received)
        assert isinstance(first, Received) and isinstance(second, Received)
        assert isinstance(first.event, PriceUpdate) and isinstance(second.event, PriceUpdate)
        assert [first.event.display_symbol, second.event.display_symbol] == ["BTC", "ETH"]
        assert rejected == ["invalid_fields", "not_an_event"]
        assert dict(r.stream.stats.rejected) == {"invalid_fields": 1, "not_an_event": 1}
        assert r.stream.stats.frames == 1 and sim.connections_total == 1
    finally:
        await r.close()


async def test_hostile_texts_arrive_cleaned_over_the_socket(sim: Simulator) -> None:
    r = Reader(PartiStream(sim.ws_url))
    try:
        await r.next_of(Connected)
        await sim.wait_subscribed(LIVE)
        live = {"user_id": 1, "livestream_id": 2, "user_name": "\u202eevil\ud800\u0000"}
        await sim.send_raw(json.dumps(live))  # the surrogate travels escaped, as JSON allows
        item = await r.next_of(Received)
        assert isinstance(item, Received) and isinstance(item.event, ChannelLive)
        assert item.event.user_name == "evil\ufffd"
    finally:
        await r.close()


# ---- reconnecting after a close: at once when the server closed on purpose -------------

HUGE_BACKOFF = 10_000.0  # seconds: a test that waited for it would time out


class Sleeps:
    """An injected sleep that records each backoff delay and then never returns."""

    def __init__(self) -> None:
        self.delays: asyncio.Queue[float] = asyncio.Queue()

    async def __call__(self, delay: float) -> None:
        await self.delays.put(delay)
        await asyncio.Event().wait()


def _stream(url: str, sleeps: Sleeps, *, healthy_after: float = 0.0) -> PartiStream:
    return PartiStream(
        url,
        subscriptions=[LIVE],
        backoff_base=HUGE_BACKOFF,
        backoff_cap=HUGE_BACKOFF,
        rand=lambda: 1.0,
        healthy_after=healthy_after,
        sleep=sleeps,
    )


class ClosingServer:
    """A real WebSocket server that ends its first connection as told; later ones stay open."""

    def __init__(self, how: int | str) -> None:
        self.how = how
        self.connections = 0

    async def handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        await ws.recv()  # the subscription: the client counts as connected
        if self.connections == 1 and self.how == "abort":
            ws.transport.abort()  # no close frame at all (1006)
        elif self.connections == 1:
            assert isinstance(self.how, int)
            await ws.close(self.how, "bye")
        else:
            await ws.wait_closed()


@pytest.fixture
async def closing() -> AsyncIterator[tuple[ClosingServer, str]]:
    server = ClosingServer(1000)
    async with serve(server.handler, "127.0.0.1", 0) as ws_server:
        port = next(iter(ws_server.sockets)).getsockname()[1]
        yield server, f"ws://127.0.0.1:{port}/"


@pytest.mark.parametrize("code", [1000, 1001], ids=["normal closure", "going away"])
async def test_a_clean_close_after_a_healthy_connection_reconnects_at_once(
    closing: tuple[ClosingServer, str], code: int
) -> None:
    server, url = closing
    server.how = code
    sleeps = Sleeps()
    r = Reader(_stream(url, sleeps))
    try:
        await r.next_of(Connected)
        again = await r.next_of(Connected)
        assert isinstance(again, Connected) and again.gap is not None
        assert str(code) in again.gap.reason
        assert sleeps.delays.empty() and server.connections == 2
        assert r.stream.stats.reconnects == 1
    finally:
        await r.close()


@pytest.mark.parametrize(
    "how", [1011, 4000, "abort"], ids=["internal error", "application code", "no close frame"]
)
async def test_an_abnormal_close_backs_off(
    closing: tuple[ClosingServer, str], how: int | str
) -> None:
    server, url = closing
    server.how = how
    sleeps = Sleeps()
    r = Reader(_stream(url, sleeps))
    try:
        await r.next_of(Connected)
        async with asyncio.timeout(10):
            delay = await sleeps.delays.get()
        assert delay == HUGE_BACKOFF
        assert r.stream.stats.retry_in == HUGE_BACKOFF and server.connections == 1
    finally:
        await r.close()


async def test_a_clean_close_of_a_connection_not_yet_healthy_backs_off(
    closing: tuple[ClosingServer, str],
) -> None:
    server, url = closing
    server.how = 1001
    sleeps = Sleeps()
    r = Reader(_stream(url, sleeps, healthy_after=HUGE_BACKOFF))
    try:
        await r.next_of(Connected)
        async with asyncio.timeout(10):
            delay = await sleeps.delays.get()
        assert delay == HUGE_BACKOFF, "a server that closes at once is not hammered"
        assert server.connections == 1
    finally:
        await r.close()


async def test_the_simulator_going_away_is_followed_by_an_immediate_reconnect(
    sim: Simulator,
) -> None:
    r = Reader(_stream(sim.ws_url, Sleeps()))
    try:
        await r.next_of(Connected)
        await sim.wait_subscribed(LIVE)
        await sim.drop_connections()
        again = await r.next_of(Connected)
        assert isinstance(again, Connected) and again.gap is not None
        await sim.wait_subscribed(LIVE)
        await sim.go_live(348242)
        item = await r.next_of(Received)
        assert isinstance(item, Received) and isinstance(item.event, ChannelLive)
        assert sim.connections_total == 2
    finally:
        await r.close()


async def test_a_text_frame_with_invalid_utf8_loses_characters_not_the_connection() -> None:
    """realtime-notes.md: a frame's bad bytes cost the characters they spoil. Decoded
    strictly, the text frame would close the connection (1007) and open a gap."""
    connections = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal connections
        connections += 1
        await ws.recv()  # the subscription
        await ws.send(b'{"user_id": 1, "livestream_id": 2, "user_name": "a\xffb"}', text=True)
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        sleeps = Sleeps()
        r = Reader(_stream(f"ws://127.0.0.1:{port}/", sleeps))
        try:
            await r.next_of(Connected)
            got, dropped = (asyncio.create_task(r.next()), asyncio.create_task(sleeps.delays.get()))
            await asyncio.wait([got, dropped], timeout=10, return_when=asyncio.FIRST_COMPLETED)
            dropped.cancel()
            assert got.done() and not dropped.done(), "the connection was dropped"
            item = got.result()
            assert isinstance(item, Received) and isinstance(item.event, ChannelLive)
            assert item.event.user_name == "a\ufffdb"
            assert connections == 1 and r.stream.stats.reconnects == 0
        finally:
            await r.close()
