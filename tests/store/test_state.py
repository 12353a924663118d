"""Engine state, the live set and stream numbers; fencing of the ingest role's writes."""

from __future__ import annotations

import pytest

from notifier.store import INGEST, FencedOut, LiveEntry, Store
from tests.store.conftest import alert


async def test_engine_state_is_a_named_value(store: Store) -> None:
    assert await store.get_state("engine") is None
    await store.set_state("engine", '{"v": 1}', fence=None)
    await store.set_state("engine", '{"v": 2}', fence=None)
    assert await store.get_state("engine") == '{"v": 2}'


async def test_live_set_records_each_identity_once_and_keeps_the_peak(store: Store) -> None:
    assert await store.set_live(
        1, identity="e1", started_at=5.0, viewers=3, data={"n": "a"}, fence=None
    )
    assert not await store.set_live(
        1, identity="e1", started_at=6.0, viewers=9, data={}, fence=None
    )
    await store.update_peaks({1: 7, 2: 50}, fence=None)
    record = (await store.live_set())[1]
    assert (record.identity, record.started_at, record.peak_viewers) == ("e1", 5.0, 9)
    await store.update_peaks({1: 12}, fence=None)
    assert (await store.live_set())[1].peak_viewers == 12
    assert await store.set_live(1, identity="e2", started_at=8.0, viewers=1, data={}, fence=None)


async def test_end_live_returns_the_stream_and_counts_it_ended(store: Store) -> None:
    await store.set_live(1, identity="e1", started_at=5.0, viewers=3, data={"n": "a"}, fence=None)
    ended = await store.end_live(1, identity="e1", ended_at=7.0, fence=None)
    assert ended is not None and (ended.identity, ended.data) == ("e1", {"n": "a"})
    assert await store.live_set() == {}
    assert await store.end_live(1, identity="e1", ended_at=7.0, fence=None) is None, (
        "not live: nothing ended"
    )
    assert await store.stream_seqs() == {1: 1}
    await store.set_live(1, identity="e2", started_at=9.0, viewers=None, data={}, fence=None)
    await store.end_live(1, identity="e2", ended_at=10.0, fence=None)
    assert await store.stream_seqs() == {1: 2}
    owed = await store.ended_streams()
    assert [(e.live.identity, e.live.data, e.ended_at) for e in owed] == [
        ("e1", {"n": "a"}, 7.0),
        ("e2", {}, 10.0),
    ], "each ended stream is kept until its edits are written"
    await store.forget_ended(["e1"], fence=None)
    assert [e.live.identity for e in await store.ended_streams()] == ["e2"]


async def test_end_live_of_a_stream_replaced_meanwhile_ends_nothing(store: Store) -> None:
    """A poll that missed stream e1 does not end e2, the channel's next stream written
    since the poll read the live set."""
    await store.set_live(1, identity="e1", started_at=5.0, viewers=3, data={}, fence=None)
    await store.set_live(1, identity="e2", started_at=8.0, viewers=1, data={}, fence=None)
    assert await store.end_live(1, identity="e1", ended_at=9.0, fence=None) is None
    assert (await store.live_set())[1].identity == "e2"
    assert await store.stream_seqs() == {}


async def test_a_live_entry_replacing_another_stream_of_its_channel_ends_that_one(
    store: Store,
) -> None:
    """A channel that restarts between two polls: its first stream is ended (its alerts
    are edited), not overwritten and forgotten."""
    await store.set_live(1, identity="e1", started_at=5.0, viewers=3, data={}, fence=None)
    await store.update_peaks({1: 40}, fence=None)
    await store.enqueue([alert("a")], now=8.0, fence=None, lives=[LiveEntry(1, "e2", 8.0, 2, {})])
    assert (await store.live_set())[1].identity == "e2"
    owed = await store.ended_streams()
    assert [(e.live.identity, e.live.peak_viewers, e.ended_at) for e in owed] == [("e1", 40, 8.0)]
    await store.enqueue([alert("b")], now=9.0, fence=None, lives=[LiveEntry(1, "e2", 9.0, 5, {})])
    assert len(await store.ended_streams()) == 1, "the same stream again replaces nothing"


async def test_roles_record_generations_per_take_over(store: Store) -> None:
    assert await store.take_role(INGEST, holder="a", now=1.0) == 1
    assert await store.take_role(INGEST, holder="b", now=2.0) == 2
    holder = (await store.roles())[INGEST]
    assert (holder.generation, holder.holder, holder.since) == (2, "b", 2.0)


async def test_a_write_with_the_current_generation_is_accepted(store: Store) -> None:
    fence = await store.take_role(INGEST, holder="a", now=1.0)
    assert await store.enqueue([alert("a")], now=1.0, fence=fence) == ["a"]
    await store.set_state("engine", "x", fence=fence)
    assert await store.get_state("engine") == "x"


FENCED_WRITES = {
    "enqueue": lambda s, f: s.enqueue([alert("k")], now=1.0, fence=f, state={"engine": "stale"}),
    "enqueue_leased": lambda s, f: s.enqueue_leased(
        [alert("k")], now=1.0, lease=5.0, room={"me": 1}, fence=f
    ),
    "set_state": lambda s, f: s.set_state("engine", "stale", fence=f),
    "set_live": lambda s, f: s.set_live(
        2, identity="e2", started_at=1.0, viewers=1, data={}, fence=f
    ),
    "update_peaks": lambda s, f: s.update_peaks({1: 999}, fence=f),
    "end_live": lambda s, f: s.end_live(1, identity="e1", ended_at=2.0, fence=f),
    "forget_ended": lambda s, f: s.forget_ended(["e1"], fence=f),
}


@pytest.mark.parametrize("write", list(FENCED_WRITES))
async def test_a_stale_generations_write_is_refused_and_writes_nothing(
    store: Store, write: str
) -> None:
    stale = await store.take_role(INGEST, holder="a", now=1.0)
    await store.set_live(1, identity="e1", started_at=1.0, viewers=5, data={}, fence=stale)
    await store.set_state("engine", "fresh", fence=stale)
    await store.take_role(INGEST, holder="b", now=2.0)  # another instance took over
    with pytest.raises(FencedOut) as refused:
        await FENCED_WRITES[write](store, stale)
    assert (refused.value.fence, refused.value.current) == (stale, stale + 1)
    assert await store.get("k") is None
    assert await store.get_state("engine") == "fresh"
    live = await store.live_set()
    assert list(live) == [1] and live[1].peak_viewers == 5
    assert await store.stream_seqs() == {}
    assert await store.ended_streams() == []


async def test_a_fenced_write_before_any_take_over_is_refused(store: Store) -> None:
    with pytest.raises(FencedOut):
        await store.set_state("engine", "x", fence=1)


async def test_lives_written_with_alerts_are_fenced_too(store: Store) -> None:
    stale = await store.take_role(INGEST, holder="a", now=1.0)
    await store.take_role(INGEST, holder="b", now=2.0)
    with pytest.raises(FencedOut):
        await store.enqueue(
            [alert("a")], now=1.0, fence=stale, lives=[LiveEntry(3, "e3", 1.0, 1, {})]
        )
    assert await store.live_set() == {}
