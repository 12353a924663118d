"""The outbox on both backends: once per key, leases and their owners, retention, depth."""

from __future__ import annotations

import asyncio

from notifier.store import DEAD, DROPPED, PENDING, SENDING, SENT, LiveEntry, Store
from tests.store.conftest import OpenStore, alert


async def test_enqueueing_a_key_twice_is_a_no_op(store: Store) -> None:
    assert await store.enqueue([alert("a"), alert("b")], now=10.0, fence=None) == ["a", "b"]
    assert await store.enqueue([alert("a"), alert("c")], now=11.0, fence=None) == ["c"]
    assert await store.enqueue([alert("d"), alert("d")], now=11.0, fence=None) == ["d"]
    assert await store.counts() == {PENDING: 4}


async def test_payload_keeps_its_key_order(store: Store) -> None:
    await store.enqueue([alert("a")], now=1.0, fence=None)
    row = await store.get("a")
    assert row is not None and list(row.payload["view"]) == ["x", "b", "a"]


async def test_enqueue_writes_state_and_live_channels_in_the_same_transaction(
    store: Store,
) -> None:
    live = LiveEntry(7, "e7", 5.0, 3, {"rule": "r"})
    await store.enqueue([alert("a")], now=1.0, fence=None, state={"engine": "{}"}, lives=[live])
    assert await store.get_state("engine") == "{}"
    assert (await store.live_set())[7].identity == "e7"


async def test_claim_leases_due_rows_of_one_destination_to_this_instance(store: Store) -> None:
    await store.enqueue([alert("a"), alert("b", "other")], now=1.0, fence=None)
    (row,) = await store.claim("me", now=2.0, lease=30.0)
    assert (row.key, row.state, row.attempts, row.lease_until) == ("a", SENDING, 1, 32.0)
    assert row.lease_owner == "a"
    assert await store.claim("me", now=3.0, lease=30.0) == [], "leased rows are not claimed twice"


async def test_claim_takes_up_to_limit_rows_oldest_first(store: Store) -> None:
    for n, key in enumerate(["c", "a", "b"]):
        await store.enqueue([alert(key)], now=float(n), fence=None)
    rows = await store.claim("me", now=5.0, lease=30.0, limit=2)
    assert [r.key for r in rows] == ["c", "a"]


async def test_a_row_whose_lease_ran_out_is_claimed_again(open_instance: OpenStore) -> None:
    first = await open_instance("a")
    await first.enqueue([alert("a")], now=1.0, fence=None)
    await first.claim("me", now=2.0, lease=30.0)
    second = await open_instance("b")
    assert await second.claim("me", now=31.9, lease=30.0) == []
    (row,) = await second.claim("me", now=32.0, lease=30.0)
    assert (row.key, row.attempts, row.lease_owner) == ("a", 2, "b")


async def test_mark_sent_is_refused_for_a_row_leased_elsewhere(open_instance: OpenStore) -> None:
    first = await open_instance("a")
    second = await open_instance("b")
    await first.enqueue([alert("a")], now=1.0, fence=None)
    await first.claim("me", now=1.0, lease=5.0)
    await second.claim("me", now=10.0, lease=5.0)  # first's lease ran out
    assert not await first.mark_sent("a", message_id="late", now=11.0)
    assert not await first.reschedule("a", at=20.0, error="5xx")
    assert not await first.mark_dead("a", reason="blocked", now=11.0)
    row = await first.get("a")
    assert row is not None and (row.state, row.lease_owner) == (SENDING, "b")
    assert await second.mark_sent("a", message_id="t:1", now=12.0)


async def test_a_lease_is_extended_only_while_it_is_still_held_here(
    open_instance: OpenStore,
) -> None:
    first = await open_instance("a")
    await first.enqueue([alert("a")], now=1.0, fence=None)
    await first.claim("me", now=1.0, lease=5.0)
    assert await first.extend_lease("a", now=4.0, until=40.0)
    second = await open_instance("b")
    assert await second.claim("me", now=39.0, lease=5.0) == [], "held till 40 now"
    assert not await second.extend_lease("a", now=39.0, until=99.0), "not b's lease"
    assert not await first.extend_lease("a", now=40.0, until=99.0), "ran out at 40"
    (row,) = await second.claim("me", now=41.0, lease=5.0)
    assert row.lease_owner == "b"
    assert not await first.extend_lease("a", now=41.0, until=99.0), "b's now"


async def test_sent_rows_record_the_message_id_and_are_never_claimed(store: Store) -> None:
    await store.enqueue([alert("a")], now=1.0, fence=None)
    await store.claim("me", now=1.0, lease=5.0)
    assert await store.mark_sent("a", message_id="t:42", now=2.0)
    row = await store.get("a")
    assert row is not None and (row.state, row.message_id, row.sent_at) == (SENT, "t:42", 2.0)
    assert row.lease_owner is None
    assert await store.claim("me", now=100.0, lease=5.0) == []
    assert not await store.mark_sent("a", message_id="t:43", now=3.0), "sent once"


async def test_mark_sent_many_records_the_rows_still_leased_here(store: Store) -> None:
    await store.enqueue([alert("a"), alert("b"), alert("c")], now=1.0, fence=None)
    await store.claim("me", now=1.0, lease=5.0, limit=2)
    done = await store.mark_sent_many([("a", "1"), ("b", None), ("c", "3")], now=2.0)
    assert done == ["a", "b"]
    sent = {r.key: r.message_id for r in await store.rows(states=[SENT])}
    assert sent == {"a": "1", "b": None}


async def test_reschedule_dead_letter_retry_and_drop(store: Store) -> None:
    await store.enqueue([alert("a"), alert("b")], now=1.0, fence=None)
    await store.claim("me", now=1.0, lease=500.0, limit=2)
    assert await store.reschedule("a", at=50.0, error="5xx", payload={"plain": True})
    assert await store.claim("me", now=49.0, lease=5.0) == []
    (again,) = await store.claim("me", now=50.0, lease=5.0)
    assert again.payload == {"plain": True} and again.last_error == "5xx"
    assert await store.mark_sent("a", message_id="1", now=50.0)
    assert await store.mark_dead("b", reason="bot was blocked", now=2.0)
    dead = await store.get("b")
    assert dead is not None and (dead.state, dead.last_error) == (DEAD, "bot was blocked")
    assert await store.retry("b", now=60.0)
    assert (await store.claim("me", now=60.0, lease=5.0))[0].key == "b"
    assert await store.drop("b") and not await store.drop("missing")
    assert not await store.drop("a"), "a sent row stays sent"


async def test_a_refunded_reschedule_gives_the_attempt_back(store: Store) -> None:
    await store.enqueue([alert("a")], now=1.0, fence=None)
    await store.claim("me", now=1.0, lease=5.0)
    await store.reschedule("a", at=1.0, error="stopping", refund=True)
    row = await store.get("a")
    assert row is not None and (row.state, row.attempts) == (PENDING, 0)


async def test_enqueue_leased_hands_the_lanes_share_already_leased(store: Store) -> None:
    keys, rows = await store.enqueue_leased(
        [alert("a"), alert("b"), alert("c")], now=1.0, lease=300.0, room={"me": 2}, fence=None
    )
    assert keys == ["a", "b", "c"]
    assert [(r.key, r.state, r.lease_owner) for r in rows] == [
        ("a", SENDING, "a"),
        ("b", SENDING, "a"),
    ]
    stored = await store.get("a")
    assert stored == rows[0], "the handed row is the stored row"
    waiting = await store.get("c")
    assert waiting is not None and waiting.state == PENDING, "no room in the lane: waits"
    again = await store.enqueue_leased(
        [alert("a")], now=2.0, lease=300.0, room={"me": 9}, fence=None
    )
    assert again == ([], []), "once per key"


async def test_rows_handed_by_enqueue_leased_are_not_claimed_while_leased(store: Store) -> None:
    await store.enqueue_leased(
        [alert("a"), alert("b")], now=1.0, lease=300.0, room={"me": 1}, fence=None
    )
    claimed = await store.claim("me", now=2.0, lease=5.0, limit=5)
    assert [r.key for r in claimed] == ["b"], "a is in the lane's hands already"


async def test_release_leases_frees_only_what_this_backend_knows_is_orphaned(
    open_instance: OpenStore,
) -> None:
    mine = await open_instance("a")
    other = await open_instance("b")
    await mine.enqueue([alert("a"), alert("b")], now=1.0, fence=None)
    await mine.claim("me", now=1.0, lease=300.0)
    await other.claim("me", now=1.0, lease=300.0)
    released = await mine.release_leases()
    # SQLite: one process owns the file, every lease is orphaned at start. PostgreSQL:
    # only this instance's; another instance's lease runs out on its own.
    if mine.backend == "sqlite":
        assert released == 2
    else:
        assert released == 1
        row = await mine.get("b")
        assert row is not None and (row.state, row.lease_owner) == (SENDING, "b")
    claimed = await mine.claim("me", now=2.0, lease=5.0, limit=5)
    assert claimed[0].key == "a"


async def test_next_due_is_the_earliest_pending_time_or_lease_end(store: Store) -> None:
    assert await store.next_due("me") is None
    await store.enqueue([alert("a"), alert("b")], now=10.0, fence=None)
    await store.claim("me", now=10.0, lease=5.0)
    assert await store.next_due("me") == 10.0
    await store.claim("me", now=10.0, lease=5.0)
    assert await store.next_due("me") == 15.0


async def test_by_identity_finds_the_sends_of_an_event(store: Store) -> None:
    edit = alert("a:end", identity="id-a:end")
    await store.enqueue(
        [alert("a"), alert("a2", "other", identity="id-a"), edit], now=1.0, fence=None
    )
    assert sorted(r.key for r in await store.by_identity("id-a")) == ["a", "a2"]


async def test_prune_sent_deletes_old_sent_and_dropped_rows_only(store: Store) -> None:
    await store.enqueue([alert(k) for k in "abcde"], now=1.0, fence=None)
    await store.claim("me", now=1.0, lease=5.0, limit=3)
    await store.mark_sent("a", message_id="1", now=2.0)
    await store.mark_sent("b", message_id="2", now=50.0)
    await store.mark_dead("c", reason="blocked", now=2.0)
    await store.drop("d")
    assert await store.prune_sent(10.0, limit=1) == 1
    assert await store.prune_sent(10.0) == 1
    assert sorted(r.key for r in await store.rows()) == ["b", "c", "e"]


async def test_depth_counts_open_states_and_oldest_pending(store: Store) -> None:
    assert await store.depth() == {PENDING: 0, SENDING: 0, DEAD: 0}
    assert await store.oldest_pending_at() is None
    for n, key in enumerate("abcd"):
        await store.enqueue([alert(key)], now=10.0 + n, fence=None)
    await store.claim("me", now=20.0, lease=5.0, limit=3)
    await store.mark_sent("a", message_id="1", now=20.0)
    await store.mark_dead("b", reason="x", now=20.0)
    assert await store.depth() == {PENDING: 1, SENDING: 1, DEAD: 1}
    assert await store.oldest_pending_at() == 12.0
    assert (await store.counts())[SENT] == 1
    assert DROPPED not in await store.counts()


async def test_rows_filters_by_state_in_creation_order(store: Store) -> None:
    await store.enqueue([alert("b")], now=2.0, fence=None)
    await store.enqueue([alert("a")], now=1.0, fence=None)
    await store.claim("me", now=3.0, lease=5.0)
    assert [r.key for r in await store.rows()] == ["a", "b"]
    assert [r.key for r in await store.rows(states=[PENDING])] == ["b"]


async def test_one_instance_leases_a_destination_at_a_time(open_instance: OpenStore) -> None:
    first = await open_instance("a")
    second = await open_instance("b")
    assert await first.try_lease_destination("me", now=1.0, ttl=10.0)
    assert await first.try_lease_destination("me", now=2.0, ttl=10.0), "the holder renews"
    assert not await second.try_lease_destination("me", now=3.0, ttl=10.0)
    assert await second.try_lease_destination("other", now=3.0, ttl=10.0)
    assert await first.renew_destination("me", now=5.0, ttl=10.0)
    assert not await second.try_lease_destination("me", now=14.9, ttl=10.0)
    assert await second.try_lease_destination("me", now=15.0, ttl=10.0), "expired: taken"
    assert not await first.renew_destination("me", now=16.0, ttl=10.0)
    await second.release_destination("me")
    assert await first.try_lease_destination("me", now=17.0, ttl=10.0)


async def test_watch_outbox_names_destinations_with_new_rows(store: Store) -> None:
    async with await store.watch_outbox() as watch:
        await store.enqueue([alert("a", "tg"), alert("b", "tg")], now=1.0, fence=None)
        assert await asyncio.wait_for(anext(watch), 10) == "tg"
        await store.enqueue([alert("c", "dc")], now=1.0, fence=None)
        assert await asyncio.wait_for(anext(watch), 10) == "dc"


async def test_waiting_destinations_counts_pending_and_leased_rows_of_each(store: Store) -> None:
    await store.enqueue(
        [alert("a"), alert("b"), alert("c", "other"), alert("d", "done")], now=1.0, fence=None
    )
    await store.claim("me", now=2.0, lease=30.0)
    (row,) = await store.claim("done", now=2.0, lease=30.0)
    await store.mark_sent(row.key, message_id="1", now=3.0)
    assert await store.waiting_destinations() == {"me": 2, "other": 1}


async def test_dead_letter_takes_rows_created_before_and_none_in_flight(
    open_instance: OpenStore,
) -> None:
    first = await open_instance("a")
    await first.enqueue([alert("old"), alert("leased")], now=1.0, fence=None)
    await first.enqueue([alert("new"), alert("elsewhere", "other")], now=50.0, fence=None)
    (leased,) = await first.claim("me", now=2.0, lease=100.0)  # the oldest: "old"
    second = await open_instance("b")
    dead = await second.dead_letter("me", reason="gone", now=60.0, created_before=10.0)
    assert dead == 1  # "leased"; "old" is in flight (leased), "new" too recent
    row = await first.get("leased")
    assert row is not None and (row.state, row.last_error) == (DEAD, "gone")
    assert (await first.get(leased.key)).state == SENDING  # type: ignore[union-attr]
    assert await first.retry("leased", now=70.0)  # `notifier outbox retry` revives it
    assert await second.dead_letter("me", reason="gone", now=200.0, created_before=60.0) == 2
