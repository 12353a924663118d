"""`Turns`: sends that start together go out one a turn of the event loop, each
destination's first of a burst before any destination's next."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from notifier.deliver import lanes
from notifier.deliver.base import Turns
from notifier.deliver.discord import DiscordSender
from tests.deliver.harness import harness, new_alert
from tests.fakes.discord import FakeDiscord
from tests.fakes.telegram import FakeTelegram


def burn(seconds: float) -> None:
    """Keep the CPU busy, as building a request does."""
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


class LoopTurns:
    """Counts the turns of the running loop (a callback that schedules itself runs once
    a turn)."""

    def __init__(self) -> None:
        self.count = 0
        self._loop = asyncio.get_running_loop()
        self._handle = self._loop.call_soon(self._tick)

    def _tick(self) -> None:
        self.count += 1
        self._handle = self._loop.call_soon(self._tick)

    def stop(self) -> None:
        self._handle.cancel()


async def test_a_lone_send_goes_at_once_without_a_turn_of_delay() -> None:
    turns = Turns()
    ran: list[str] = []
    asyncio.get_running_loop().call_soon(ran.append, "the next turn")
    await turns.take(0)
    assert ran == []  # no turn of the loop passed


async def test_sends_that_start_together_go_one_a_turn_firsts_of_a_burst_first() -> None:
    turns = Turns(pace=None)  # one a turn however long a turn takes
    clock = LoopTurns()
    went: list[tuple[str, int]] = []

    async def send(name: str, rank: int) -> None:
        await turns.take(rank)
        went.append((name, clock.count))

    # Started in one turn: the first goes at once (the turn was not used), the rest wait.
    ranks = {"lead": 5, "a2": 2, "b1": 1, "c0": 0, "d0": 0, "e1": 1, "f0": 0, "g3": 3}
    try:
        async with asyncio.TaskGroup() as group:
            for name, rank in ranks.items():
                group.create_task(send(name, rank))
    finally:
        clock.stop()
    assert [name for name, _ in went] == ["lead", "c0", "d0", "f0", "b1", "e1", "a2", "g3"]
    seen = [turn for _, turn in went]
    assert seen == sorted(set(seen)), "two sends went in one turn of the loop"


async def sends_a_turn(
    turns: Turns, count: int, *, cost: float = 0.0, turn_work: float = 0.0
) -> list[int]:
    """Start `count` sends in one turn of the loop; how many went in each turn, in order.
    Each send keeps the CPU busy `cost` seconds once it may go; each turn of the loop does
    `turn_work` seconds of other work."""
    loop = asyncio.get_running_loop()
    clock = LoopTurns()
    went: list[int] = []
    handles: list[asyncio.Handle] = []

    def busy_turn() -> None:
        burn(turn_work)
        handles.append(loop.call_soon(busy_turn))

    async def send() -> None:
        await turns.take(0)
        went.append(clock.count)
        burn(cost)

    if turn_work:
        handles.append(loop.call_soon(busy_turn))
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(count):
                group.create_task(send())
    finally:
        clock.stop()
        if handles:
            handles[-1].cancel()
    return [went.count(turn) for turn in sorted(set(went))]


async def test_more_a_turn_when_asked() -> None:
    assert await sends_a_turn(Turns(per_turn=3, pace=None), 9) == [3, 3, 3]


async def test_long_turns_let_more_go_a_turn_so_sends_keep_their_pace() -> None:
    """Turns of 3 ms at a pace of 0.5 ms let 6 go, capped at 4: a busy loop does not hold
    a paid broadcast's 1,000 sends a second back, nor lets them all go at once."""
    per_turn = await sends_a_turn(Turns(pace=0.0005, most=4), 42, turn_work=0.003)
    # The first goes at once and the first tick knows no turn before it: one each; every
    # tick after those follows a turn of 3 ms or more (the last takes what is left).
    assert per_turn[:2] == [1, 1] and sum(per_turn) == 42
    assert set(per_turn[2:-1]) == {4}, per_turn


async def test_the_sends_own_cost_does_not_make_each_turn_let_more_go() -> None:
    """A turn's time includes the sends it let go: sends that each cost more than the pace
    would let each turn release more than the last (1, 2, 4, 8...) but for the cap."""
    per_turn = await sends_a_turn(Turns(pace=0.0005, most=4), 60, cost=0.001)
    assert sum(per_turn) == 60 and max(per_turn) <= 4, per_turn


def test_a_loop_that_stopped_with_a_turn_to_come_leaves_nothing_for_the_next() -> None:
    turns = Turns()

    async def start_one() -> None:
        asyncio.get_running_loop().create_task(turns.take(0))  # its tick is never run

    first = asyncio.new_event_loop()
    try:
        first.run_until_complete(start_one())
    finally:
        first.close()

    async def send() -> None:
        async with asyncio.timeout(5):
            await turns.take(0)
            await asyncio.gather(turns.take(0), turns.take(1))

    asyncio.run(send())  # before: every send of any later loop waited for good


def test_a_loop_that_stops_with_sends_waiting_lets_them_go_when_it_runs_again() -> None:
    turns = Turns()
    first = asyncio.new_event_loop()

    async def crowd() -> list[asyncio.Future[None]]:
        waiting = [asyncio.ensure_future(turns.take(0)) for _ in range(3)]
        await asyncio.sleep(0)  # the first went at once; two wait for their turns
        return waiting

    async def elsewhere() -> None:
        async with asyncio.timeout(5):
            await asyncio.gather(*(turns.take(0) for _ in range(3)))

    try:
        waiting = first.run_until_complete(crowd())
        asyncio.run(elsewhere())  # another loop's sends meanwhile
        first.run_until_complete(asyncio.wait_for(asyncio.gather(*waiting), 5))
    finally:
        first.close()


def test_loops_in_two_threads_each_take_their_own_turns() -> None:
    turns = Turns()
    failures: list[BaseException] = []

    async def burst() -> None:
        async with asyncio.timeout(10):
            await asyncio.gather(*(turns.take(n % 3) for n in range(200)))

    def run() -> None:
        try:
            asyncio.run(burst())
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


async def test_a_send_cancelled_while_it_waits_gives_its_turn_to_the_next() -> None:
    turns = Turns()
    lead = asyncio.create_task(turns.take(0))  # goes at once, the turn used
    first = asyncio.create_task(turns.take(0))
    second = asyncio.create_task(turns.take(0))
    await asyncio.sleep(0)  # they all ran: the lead went, the others wait
    assert lead.done() and not first.done() and not second.done()
    first.cancel()
    await second  # not stuck behind the cancelled one
    assert first.cancelled()
    await turns.take(0)  # and the turns go on


async def test_a_lanes_requests_are_ranked_by_how_many_it_made_in_its_burst(
    tmp_path: Path, fake_telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken: list[int] = []
    real = lanes.TURNS

    class Recording:
        async def take(self, rank: int) -> None:
            taken.append(rank)
            await real.take(rank)

    monkeypatch.setattr(lanes, "TURNS", Recording())
    destinations = {"t": {"telegram": {"chat_id": 5}}}
    # The chat's limit (one a second) scaled up: the three go at once.
    async with harness(tmp_path, destinations, telegram=fake_telegram, limits_scale=10) as h:
        alerts = [new_alert("t") for _ in range(3)]
        await h.hand(*alerts)
        await h.wait_sent(*alerts)
    assert taken == [0, 1, 2]


async def test_a_fan_outs_first_requests_reach_the_server_while_later_ones_are_built(
    tmp_path: Path, fake_discord: FakeDiscord, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without turns every lane of a fan-out builds its request in one turn of the loop,
    before any reaches the network: the server then gets the first only after the last
    was built."""
    started: list[float] = []
    send = DiscordSender.send

    async def timed(self: DiscordSender, payload: dict[str, Any]) -> str | None:
        started.append(time.monotonic())
        return await send(self, payload)

    monkeypatch.setattr(DiscordSender, "send", timed)
    hooks = 100
    destinations = {
        f"d{n}": {"discord": {"webhook_url": fake_discord.add_webhook(7000 + n)}}
        for n in range(hooks)
    }
    async with harness(tmp_path, destinations, discord=fake_discord) as h:
        alerts = [new_alert(name) for name in destinations]
        await h.hand(*alerts)
        await h.wait_sent(*alerts)
    arrived = [entry["at"] for entry in fake_discord.sent() if entry.get("ok")]
    assert len(arrived) == len(started) == hooks
    assert min(arrived) < max(started)
