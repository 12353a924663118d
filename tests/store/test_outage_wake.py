"""Parts waiting out a store outage (`outage.pause`) try again as soon as the store answers
another part, at most every WAKE_EVERY seconds, and only for an answer a call proved."""

from __future__ import annotations

import asyncio

import pytest

from notifier.store import outage
from notifier.store.errors import StoreUnavailable


@pytest.fixture(autouse=True)
def no_spread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outage, "WAKE_SPREAD", 0.0)


async def paused() -> asyncio.Task[None]:
    """A part in a minute's wait, its wait begun."""
    task = asyncio.create_task(outage.pause(60.0))
    await asyncio.sleep(0)  # pause() has registered its wait
    return task


async def turns(count: int = 5) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


def recovered_part() -> outage.Outage:
    part = outage.Outage("writer", {}, failed_event="f", recovered_event="r")
    part.failed(StoreUnavailable("refused"))
    return part


async def test_an_answer_wakes_every_part_waiting() -> None:
    waiting = [await paused(), await paused()]
    recovered_part().answered()
    async with asyncio.timeout(5):
        await asyncio.gather(*waiting)


async def test_answers_wake_the_parts_at_most_every_few_seconds() -> None:
    first = await paused()
    outage.store_answered()
    async with asyncio.timeout(5):
        await first
    second = await paused()
    outage.store_answered()  # within WAKE_EVERY of the last wake: the wait goes on
    await turns()
    assert not second.done()
    loop = asyncio.get_running_loop()
    outage._WOKEN[loop] = loop.time() - outage.WAKE_EVERY  # as if its time had passed
    outage.store_answered()
    async with asyncio.timeout(5):
        await second


async def test_a_stage_taken_as_recovered_without_a_call_wakes_nobody() -> None:
    waiting = await paused()
    recovered_part().answered(wake=False)  # the supervisor's "ran 5 s without a fault"
    await turns()
    assert not waiting.done()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_a_stop_ends_the_wait_too() -> None:
    stop = asyncio.Event()
    waiting = asyncio.create_task(outage.pause(60.0, stop))
    await asyncio.sleep(0)
    stop.set()
    async with asyncio.timeout(5):
        await waiting
