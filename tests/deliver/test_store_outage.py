"""A store that stops answering (a lost database, a full disk) holds the lanes back without
crashing them, and an alert sent meanwhile is recorded once it answers: never sent twice."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from notifier.deliver import lanes
from notifier.deliver.console import ConsoleSender
from notifier.deliver.lanes import Delivery
from notifier.metrics import Metrics
from notifier.stages.context import Health
from notifier.stages.delivery import DeliveryHolder
from notifier.stages.ops_http import Watch
from notifier.store import StoreUnavailable, open_store, outage
from notifier.store.types import SENT, NewAlert
from tests.deliver.harness import Harness, harness, new_alert
from tests.fakes.telegram import FakeTelegram

GROUP = {"group": {"telegram": {"chat_id": -100555}}}


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outage, "RETRY_BASE", 0.01)
    monkeypatch.setattr(outage, "RETRY_CAP", 0.05)


class Outage:
    """Makes the named store calls fail as a lost database does while `down`; `failed`
    is set once `until` calls have failed."""

    def __init__(self, h: Harness, *names: str, until: int = 3) -> None:
        self.down = True
        self.failures = 0
        self.failed = asyncio.Event()
        for name in names:
            setattr(h.outbox, name, self._failing(getattr(h.outbox, name), until))

    def _failing(
        self, call: Callable[..., Awaitable[Any]], until: int
    ) -> Callable[..., Awaitable[Any]]:
        async def failing(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                self.failures += 1
                if self.failures >= until:
                    self.failed.set()
                raise StoreUnavailable("database 127.0.0.1:5432: connection refused")
            return await call(*args, **kwargs)

        return failing


async def sent_not_recorded(h: Harness, alert: NewAlert) -> Outage:
    """The store stops recording (and releasing leases); `alert` is sent, and its record
    has failed."""
    outage = Outage(h, "mark_sent", "mark_sent_many", "release_leases")
    await h.hand(alert)
    async with asyncio.timeout(20):
        await outage.failed.wait()
    return outage


def holder_of(h: Harness, *, drain_deadline: float) -> DeliveryHolder:
    """The harness's delivery as a reload sees it (`DeliveryHolder.swap`)."""
    holder = DeliveryHolder(
        h.outbox,
        h.senders,
        lambda senders: Delivery(h.outbox, senders.by_name),
        Metrics(),
        drain_deadline=drain_deadline,
    )
    holder.current = h.delivery
    return holder


def health_of(h: Harness) -> Watch:
    """What /healthz would answer about this delivery."""
    ready = asyncio.Event()
    ready.set()
    return Watch(
        Health(),
        Metrics(),
        None,
        lambda: h.delivery,
        stream_down_budget=60.0,
        ready=ready,
        roles=dict,
    )


def logged(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == name]


async def test_an_alert_sent_while_the_store_is_down_is_recorded_when_it_answers(
    tmp_path: Path, fake_telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    alert = new_alert("group")
    with caplog.at_level(logging.INFO):
        async with harness(tmp_path, GROUP, telegram=fake_telegram, limits_scale=1000) as h:
            outage = Outage(h, "mark_sent")
            await h.hand(alert)
            async with asyncio.timeout(20):  # the send went out; recording it failed 3 times
                await outage.failed.wait()
            outage.down = False
            row = await h.wait_state(alert.key, SENT)
    assert row.message_id is not None
    assert len(fake_telegram.sent("sendMessage")) == 1  # recorded, so never sent again
    (failed,) = logged(caplog, "lane.store_failed")  # once for the outage, not per attempt
    assert failed.levelno == logging.WARNING
    assert len(logged(caplog, "lane.store_recovered")) == 1
    assert not logged(caplog, "lane.crashed")


async def test_a_lane_waits_out_a_store_outage_and_then_sends_what_was_written(
    tmp_path: Path, fake_telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        async with harness(tmp_path, GROUP, telegram=fake_telegram, limits_scale=1000) as h:
            outage = Outage(h, "claim", "next_due", until=4)
            h.delivery.wake("group")
            async with asyncio.timeout(20):  # the lane looked 4 times, and is still there
                await outage.failed.wait()
            assert h.delivery.lanes_alive  # waiting, not crashed
            watch = health_of(h)
            assert watch.verdict().reason == (
                "store failing: StoreUnavailable: database 127.0.0.1:5432: connection refused"
            )
            outage.down = False
            alert = new_alert("group")
            await h.enqueue(alert)
            await h.wait_state(alert.key, SENT)
            assert watch.verdict().ok
    assert len(fake_telegram.sent("sendMessage")) == 1
    assert len(logged(caplog, "lane.store_failed")) == 1
    assert len(logged(caplog, "lane.store_recovered")) == 1
    assert not logged(caplog, "lane.crashed")


@pytest.mark.parametrize("reloads", [1, 2])
async def test_a_reload_during_an_outage_never_sends_an_alert_twice(
    tmp_path: Path, fake_telegram: FakeTelegram, reloads: int
) -> None:
    """The old lanes stop before they could record a send: the swap records it, or leaves
    it (and its lease) to the new delivery, which records it before it claims anything;
    a second reload before that hands it on again."""
    alert = new_alert("group")
    async with harness(tmp_path, GROUP, telegram=fake_telegram, limits_scale=1000) as h:
        outage = await sent_not_recorded(h, alert)
        holder = holder_of(h, drain_deadline=5.0)
        for _ in range(reloads):
            await holder.swap(h.senders)  # a reload while the store is down
        outage.down = False  # the store answers
        new = holder.current
        looked = asyncio.Event()
        claim = h.outbox.claim

        async def claiming(*args: Any, **kwargs: Any) -> Any:
            looked.set()
            return await claim(*args, **kwargs)

        h.outbox.claim = claiming  # type: ignore[method-assign]
        running = asyncio.create_task(new.run())
        async with asyncio.timeout(20):
            await looked.wait()  # the new lane looked at the outbox: after the record
        new.stop()
        await running
        row = await h.outbox.get(alert.key)
    assert row is not None and row.state == SENT
    assert len(fake_telegram.sent("sendMessage")) == 1


async def test_a_standby_lane_sees_the_store_answer_again(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With PostgreSQL a lane whose destination another instance sends to never claims:
    the store answering its destination lease ends its outage (else /healthz stays 503)."""
    monkeypatch.setattr(lanes, "STANDBY_POLL", 0.01)
    mine = await open_store(pg_url, instance="standby")
    other = await open_store(pg_url, instance="active")
    try:
        assert await other.try_lease_destination("group", now=time.time(), ttl=300.0)
        down = True
        failures = 0
        failed, answered = asyncio.Event(), asyncio.Event()
        lease = mine.try_lease_destination

        async def leasing(*args: Any, **kwargs: Any) -> bool:
            nonlocal failures
            if down:
                failures += 1
                if failures == 3:
                    failed.set()
                raise StoreUnavailable("database 127.0.0.1:5432: connection refused")
            held = await lease(*args, **kwargs)
            answered.set()
            return held

        mine.try_lease_destination = leasing  # type: ignore[method-assign]
        delivery = Delivery(mine, {"group": ConsoleSender("group", io.StringIO())})
        running = asyncio.create_task(delivery.run())
        async with asyncio.timeout(20):
            await failed.wait()
        assert delivery.store_error is not None
        down = False
        async with asyncio.timeout(20):
            await answered.wait()  # the other instance still holds it: False
        assert delivery.store_error is None
        delivery.stop()
        await running
    finally:
        await mine.close()
        await other.close()


async def test_a_send_recorded_too_late_for_the_reload_is_recorded_by_the_next_delivery(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    """The swap stops waiting for the old lanes after its drain deadline; a send whose
    record then fails is recorded by the delivery current by then, not sent again."""
    alert = new_alert("group")
    async with harness(tmp_path, GROUP, telegram=fake_telegram, limits_scale=1000) as h:
        entered, go = asyncio.Event(), asyncio.Event()
        mark_sent = h.outbox.mark_sent
        refuse = True

        async def slow_then_refused(*args: Any, **kwargs: Any) -> Any:
            if refuse:
                entered.set()
                await go.wait()  # the database does not answer for a while
                raise StoreUnavailable("database 127.0.0.1:5432: connection refused")
            return await mark_sent(*args, **kwargs)

        h.outbox.mark_sent = slow_then_refused  # type: ignore[method-assign]
        await h.hand(alert)
        async with asyncio.timeout(20):
            await entered.wait()  # sent; its record is under way
        holder = holder_of(h, drain_deadline=0.01)
        await holder.swap(h.senders)  # its drain gives up on the send in flight
        new = holder.current
        running = asyncio.create_task(new.run())
        recorded = asyncio.Event()
        many = h.outbox.mark_sent_many

        async def recording(*args: Any, **kwargs: Any) -> Any:
            done = await many(*args, **kwargs)
            recorded.set()
            return done

        h.outbox.mark_sent_many = recording  # type: ignore[method-assign]
        refuse = False  # the store answers again, for the next calls
        go.set()  # the old lane's record fails now
        async with asyncio.timeout(20):
            await recorded.wait()
        new.stop()
        await running
        row = await h.outbox.get(alert.key)
    assert row is not None and row.state == SENT
    assert len(fake_telegram.sent("sendMessage")) == 1


async def test_a_stop_after_a_reload_during_an_outage_names_the_send_handed_on(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    """A send a reload handed on (adopted: the new delivery records it before it claims)
    is among what a stop keeps for the next start (`App._keep_unrecorded`)."""
    alert = new_alert("group")
    async with harness(tmp_path, GROUP, telegram=fake_telegram, limits_scale=1000) as h:
        await sent_not_recorded(h, alert)
        holder = holder_of(h, drain_deadline=5.0)
        await holder.swap(h.senders)  # a reload: the send is handed on
        running = asyncio.create_task(holder.run())
        await holder.stop()
        await running
        kept = holder.unrecorded()
    assert [key for key, _ in kept] == [alert.key]
    assert kept[0][1] is not None  # its message id, for the record
    assert len(fake_telegram.sent("sendMessage")) == 1
