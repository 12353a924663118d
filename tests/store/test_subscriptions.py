"""Chats, subscriptions with their change feed, chat migration, and /why decisions."""

from __future__ import annotations

from collections.abc import Sequence

from notifier.rules.engine import Reason, SubDecision
from notifier.stages.decisions import DecisionRecorder
from notifier.store import Store, StoreUnavailable
from notifier.store.types import Decision, DecisionEntry

LINE = {"line": 100.5, "direction": "up"}


async def add(
    store: Store, chat: str, target: str, params: dict[str, object] | None = None
) -> int | None:
    return await store.add_subscription(
        "telegram",
        chat,
        kind="price",
        target=target,
        params=LINE if params is None else params,
        created_by="u1",
        now=1.0,
    )


async def test_a_subscription_is_added_once_whatever_its_params_key_order(store: Store) -> None:
    first = await add(store, "c1", "BTC", {"line": 100.5, "direction": "up"})
    assert first is not None
    assert await add(store, "c1", "BTC", {"direction": "up", "line": 100.5}) is None
    assert await add(store, "c1", "BTC", {"line": 90, "direction": "down"}) is not None
    (sub, _) = await store.list_subscriptions(chat_id="c1")
    assert (sub.id, sub.kind, sub.target, sub.params, sub.created_by) == (
        first,
        "price",
        "BTC",
        {"line": 100.5, "direction": "up"},
        "u1",
    )


async def test_list_and_count_filter_by_chat_and_kind(store: Store) -> None:
    await add(store, "c1", "BTC")
    await add(store, "c1", "ETH")
    await add(store, "c2", "BTC")
    await store.add_subscription(
        "discord", "c1", kind="live", target="42", params={}, created_by=None, now=1.0
    )
    assert len(await store.list_subscriptions()) == 4
    assert [
        s.target for s in await store.list_subscriptions(platform="telegram", chat_id="c1")
    ] == [
        "BTC",
        "ETH",
    ]
    assert await store.count_subscriptions("telegram", "c1") == 2
    assert await store.count_subscriptions("telegram", "c1", kind="live") == 0
    assert [s.target for s in await store.list_subscriptions(kind="live")] == ["42"]


async def test_remove_takes_one_params_variant_or_all_of_a_target(store: Store) -> None:
    await add(store, "c1", "BTC", {"line": 1})
    await add(store, "c1", "BTC", {"line": 2})
    await add(store, "c1", "BTC", {"line": 3})
    assert (
        await store.remove_subscription(
            "telegram", "c1", kind="price", target="BTC", params={"line": 1}
        )
        == 1
    )
    assert await store.remove_subscription("telegram", "c1", kind="price", target="BTC") == 2
    assert await store.remove_subscription("telegram", "c1", kind="price", target="BTC") == 0
    sub_id = await add(store, "c1", "ETH")
    assert sub_id is not None
    assert await store.remove_subscription_id(sub_id)
    assert not await store.remove_subscription_id(sub_id)


async def test_change_feed_names_what_changed_since_a_version(store: Store) -> None:
    start = await store.subscriptions_version()
    btc = await add(store, "c1", "BTC")
    eth = await add(store, "c1", "ETH")
    assert await add(store, "c1", "ETH") is None, "a no-op changes nothing"
    middle = await store.subscriptions_version()
    assert middle > start
    await store.remove_subscription("telegram", "c1", kind="price", target="BTC")
    changes = await store.subscriptions_changed_since(start)
    assert changes.version == await store.subscriptions_version()
    assert [s.id for s in changes.changed] == [eth]
    assert changes.removed == (btc,)
    later = await store.subscriptions_changed_since(middle)
    assert (later.changed, later.removed) == ((), (btc,))
    assert await store.subscriptions_changed_since(changes.version) == (changes.version, (), ())


async def test_chats_are_upserted_and_their_fields_set_or_cleared(store: Store) -> None:
    chat = await store.upsert_chat("telegram", "c1", kind="group", title="Fans", now=1.0)
    assert (chat.kind, chat.title, chat.paused_reason, chat.created_at) == (
        "group",
        "Fans",
        None,
        1.0,
    )
    again = await store.upsert_chat("telegram", "c1", kind="group", now=2.0)
    assert (again.title, again.created_at, again.updated_at) == ("Fans", 1.0, 2.0)
    assert await store.set_chat_fields(
        "telegram", "c1", now=3.0, paused_reason="kicked", mute_until=9.0
    )
    assert await store.set_chat_fields("telegram", "c1", now=4.0, mute_until=None, quiet="22-07")
    got = await store.get_chat("telegram", "c1")
    assert got is not None
    assert (got.paused_reason, got.mute_until, got.quiet, got.updated_at) == (
        "kicked",
        None,
        "22-07",
        4.0,
    )
    assert not await store.set_chat_fields("telegram", "nope", now=5.0, quiet=None)
    assert await store.get_chat("discord", "c1") is None


async def test_a_migrated_group_keeps_its_watchlist_and_decisions(store: Store) -> None:
    await store.upsert_chat("telegram", "-1", kind="group", title="Fans", now=1.0)
    await store.set_chat_fields("telegram", "-1", now=1.0, quiet="22-07")
    moved_id = await add(store, "-1", "BTC")
    await add(store, "-1", "ETH")
    await add(store, "-100", "ETH")  # the supergroup already has this one
    await add(store, "other", "BTC")
    await store.record_decision("telegram", "-1", "BTC", "crossed 100", at=5.0)
    version = await store.subscriptions_version()

    assert await store.migrate_chat("telegram", "-1", "-100", now=9.0) == 1

    assert await store.get_chat("telegram", "-1") is None
    chat = await store.get_chat("telegram", "-100")
    assert chat is not None and (chat.title, chat.quiet) == ("Fans", "22-07")
    assert await store.list_subscriptions(platform="telegram", chat_id="-1") == []
    targets = [s.target for s in await store.list_subscriptions(chat_id="-100")]
    assert sorted(targets) == ["BTC", "ETH"]
    decision = await store.last_decision("telegram", "-100", "BTC")
    assert decision is not None and decision.text == "crossed 100"
    changes = await store.subscriptions_changed_since(version)
    assert [s.id for s in changes.changed] == [moved_id] and len(changes.removed) == 1


async def test_last_decision_keeps_one_row_per_chat_and_subject(store: Store) -> None:
    assert await store.last_decision("telegram", "c1", "BTC") is None
    await store.record_decision("telegram", "c1", "BTC", "below the line", at=1.0)
    await store.record_decision("telegram", "c1", "BTC", "crossed 100", at=2.0)
    await store.record_decision("telegram", "c1", "ETH", "cooldown", at=3.0)
    decision = await store.last_decision("telegram", "c1", "BTC")
    assert decision is not None and (decision.text, decision.at) == ("crossed 100", 2.0)


async def test_an_update_keeps_the_id_and_enters_the_change_feed(store: Store) -> None:
    sub_id = await add(store, "c1", "BTC", {"line": 1})
    other = await add(store, "c1", "BTC", {"line": 2})
    assert sub_id is not None and other is not None
    version = await store.subscriptions_version()
    assert await store.update_subscription(sub_id, params={"line": 3}, now=2.0)
    (changed,) = [s for s in await store.list_subscriptions() if s.id == sub_id]
    assert changed.params == {"line": 3}
    feed = await store.subscriptions_changed_since(version)
    assert [s.id for s in feed.changed] == [sub_id] and feed.removed == ()
    # The settings of another one of the chat's: refused, nothing changes.
    assert not await store.update_subscription(sub_id, params={"line": 2}, now=3.0)
    assert not await store.update_subscription(9999, params={"line": 4}, now=3.0)
    params = {s.id: s.params for s in await store.list_subscriptions()}
    assert params == {sub_id: {"line": 3}, other: {"line": 2}}


async def test_many_decisions_are_remembered_in_one_call_the_latest_per_chat_and_subject(
    store: Store,
) -> None:
    entries = [DecisionEntry("telegram", str(n), "463000", f"fired {n}", 1.0) for n in range(3000)]
    entries.append(DecisionEntry("telegram", "7", "463000", "x" * 5000, 2.0))  # replaces 7's
    await store.record_decisions(entries)
    await store.record_decisions([])
    first = await store.last_decision("telegram", "0", "463000")
    assert first == Decision("fired 0", 1.0)
    replaced = await store.last_decision("telegram", "7", "463000")
    assert replaced is not None and replaced.text == "x" * 2000 and replaced.at == 2.0
    assert await store.last_decision("discord", "0", "463000") is None


async def test_the_recorder_writes_a_go_live_s_decisions_in_a_few_calls(store: Store) -> None:
    calls: list[int] = []
    real = store.record_decisions

    async def counted(entries: Sequence[DecisionEntry]) -> None:
        calls.append(len(entries))
        await real(entries)

    store.record_decisions = counted  # type: ignore[method-assign]
    recorder = DecisionRecorder(store)
    recorder.add(
        SubDecision("sub:1", f"@tg:{n}", Reason.FIRED, "463000", "live:1", 1.0) for n in range(2500)
    )
    assert await recorder.flush() == 2500
    assert calls == [1000, 1000, 500]
    found = await store.last_decision("telegram", "2499", "463000")
    assert (
        found is not None
        and found.text == SubDecision("sub:1", "@tg:1", Reason.FIRED, "463000", "live:1", 1.0).text
    )


async def test_decisions_the_store_did_not_take_wait_for_the_next_round(store: Store) -> None:
    """A store outage leaves /why a little stale, never without the decisions it missed."""
    real = store.record_decisions
    refusals = 2

    async def refusing(entries: Sequence[DecisionEntry]) -> None:
        nonlocal refusals
        if refusals:
            refusals -= 1
            raise StoreUnavailable("database 127.0.0.1:5432 unavailable: connection refused")
        await real(entries)

    store.record_decisions = refusing  # type: ignore[method-assign]
    recorder = DecisionRecorder(store)
    recorder.add([SubDecision("sub:1", "@tg:7", Reason.FIRED, "463000", "live:1", 1.0)])
    assert await recorder.flush() == 0
    newer = SubDecision("sub:1", "@tg:8", Reason.COOLING_DOWN, "463000", "live:2", 2.0)
    recorder.add([newer])  # while the store is down
    assert await recorder.flush() == 0
    assert await recorder.flush() == 2  # both, once it answers
    for chat in ("7", "8"):
        assert await store.last_decision("telegram", chat, "463000") is not None
