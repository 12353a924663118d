"""One rate window per chat, kept while it counts and let go when it is quiet: a fan-out
to 20,000 chats does not leave 20,000 windows behind, and no chat ever has two. A chat's
lane leaves nothing behind when it closes, and opens again for rows leased to it."""

from __future__ import annotations

import asyncio
import gc
import io
import time
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from notifier.deliver import lanes
from notifier.deliver.base import GATE
from notifier.deliver.console import ConsoleSender
from notifier.deliver.discord import DiscordHub, DiscordSender
from notifier.deliver.discord_chat import DiscordChannelSender, DiscordDmSender
from notifier.deliver.lanes import Delivery
from notifier.deliver.limits import KeyedWindows, SlidingWindow
from notifier.deliver.telegram import TelegramBot, TelegramSender
from notifier.rules.schema import DiscordTarget, TelegramTarget
from notifier.store import SENT, Store, open_store
from tests.deliver.harness import new_alert


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def windows_at(clock: Clock) -> KeyedWindows:
    return KeyedWindows(lambda key: SlidingWindow(1, 1.0), clock=clock)


def send_once(window: SlidingWindow, at: float) -> None:
    window.take(at).settle(at)


def test_quiet_windows_are_let_go_so_a_fan_out_leaves_few_behind() -> None:
    clock = Clock()
    windows = windows_at(clock)
    for n in range(20_000):  # 1,000 chats a second, one message each
        clock.now = 1_000.0 + n / 1_000
        send_once(windows.get(str(n)), clock.now)
    # Only the windows of the last second or two can still count: the table is swept
    # each time it doubles, so at most about twice those (and never fewer than 1,024).
    assert len(windows) <= 4 * 1_024


def test_a_window_that_still_counts_is_the_same_window_after_a_sweep() -> None:
    clock = Clock()
    windows = windows_at(clock)
    recent, in_flight, asking = windows.get("recent"), windows.get("flight"), windows.get("ask")
    send_once(recent, clock.now - 0.5)  # ended half a second ago: one more would be too many
    in_flight.take(clock.now - 50)  # an answer still awaited, however long ago it started
    asking.acquiring += 1  # a send between asking for the window and taking its slot
    quiet = windows.get("quiet")
    send_once(quiet, clock.now - 5)
    for n in range(3_000):  # enough new chats for sweeps
        windows.get(f"new{n}")
    assert windows.get("recent") is recent
    assert windows.get("flight") is in_flight
    assert windows.get("ask") is asking
    assert windows.get("quiet") is not quiet  # let go: a new window is the same thing


async def test_a_send_waiting_in_the_gate_keeps_its_window_through_a_sweep() -> None:
    # The bot-wide window is full with an answer in flight: the chat's send waits in the
    # gate with the chat's window in hand, which is quiet (nothing sent there yet).
    clock = Clock()
    clock.now = time.monotonic() + 100  # every slot ended long "ago" for the sweep
    windows = windows_at(clock)
    bot = SlidingWindow(1, 1.0, shared=True)
    busy = await GATE.acquire([bot])
    chat = windows.get("42")
    waiting = asyncio.create_task(GATE.acquire([bot, chat]))
    await asyncio.sleep(0)  # it enters the gate and waits for the bot's answer
    assert not waiting.done()
    for n in range(3_000):
        windows.get(f"other{n}")
    GATE.release([bot], busy)
    slots = await waiting
    # The slot it took is in the chat's one window: the next send there waits for it.
    assert windows.get("42") is chat
    assert chat.wait_time(time.monotonic()) != 0.0
    GATE.release([bot, chat], slots)


def test_telegram_chat_limits_follow_the_kind_of_chat() -> None:
    bot = TelegramBot("123:TEST", "http://127.0.0.1:9")
    assert bot.chat_window(42).limit == 1  # a user: 1 a second
    assert bot.chat_window("42").limit == 1
    assert bot.chat_window(-100123).limit == 20  # a group: 20 a minute
    assert bot.chat_window("@channel").limit == 20


def test_a_chat_lane_opened_again_sends_in_the_window_of_the_one_before() -> None:
    bot = TelegramBot("123:TEST", "http://127.0.0.1:9")
    first = TelegramSender("@tg:42", TelegramTarget(chat_id=42), bot)
    _, window = first.windows()
    send_once(window, time.monotonic())
    del first  # the lane closed; a new alert opens another for the same chat
    again = TelegramSender("@tg:42", TelegramTarget(chat_id=42), bot)
    assert again.windows()[1] is window
    assert window.wait_time(time.monotonic()) != 0.0
    # A topic of the same chat counts against the same chat.
    topic = TelegramSender("@tg:42:7", TelegramTarget(chat_id=42, thread_id=7), bot)
    assert topic.windows()[1] is window


def test_discord_channel_and_dm_lanes_opened_again_share_their_window() -> None:
    hub = DiscordHub("http://127.0.0.1:9", "bot-token")
    bot, channel = DiscordChannelSender("@dc:5", 5, hub).windows()
    send_once(channel, time.monotonic())
    assert DiscordChannelSender("@dc:5", 5, hub).windows() == [bot, channel]
    dm = DiscordDmSender("@dcdm:5", 5, hub).windows()[1]
    assert dm is not channel  # a user's DMs are not the channel with the same id
    assert DiscordDmSender("@dcdm:5", 5, hub).windows() == [bot, dm]
    # A channel of the rules file and a chat subscription to the same channel: one bot,
    # one channel, the same two windows.
    configured = DiscordSender("room", DiscordTarget(channel_id=5), hub)
    assert configured.windows() == [bot, channel]


def test_a_discord_hub_and_its_windows_go_when_nobody_uses_them() -> None:
    hub = DiscordHub("http://127.0.0.1:9", "bot-token")
    DiscordChannelSender("@dc:5", 5, hub).windows()
    gone = weakref.ref(hub)
    del hub
    gc.collect()
    assert gone() is None  # a reload's old hub (and its windows) is not kept


ChatSenderFor = Callable[[str], ConsoleSender | None]


def console(name: str) -> ConsoleSender:
    return ConsoleSender(name, io.StringIO())


@asynccontextmanager
async def chat_delivery(
    tmp_path: Path, chat_sender: ChatSenderFor = console, **options: Any
) -> AsyncIterator[tuple[Store, Delivery]]:
    """A running delivery with one lane of the rules file (as always) and chat lanes made
    by `chat_sender`, over a fresh store."""
    store = await open_store(str(tmp_path / "s.db"), instance="t", durable=False)
    delivery = Delivery(store, {"t": console("t")}, chat_sender=chat_sender, **options)
    running = asyncio.create_task(delivery.run())
    try:
        await asyncio.sleep(0)  # the delivery's task group exists
        yield store, delivery
    finally:
        delivery.stop()
        await running
        await store.close()


def on_close(delivery: Delivery, when: Callable[[], bool]) -> asyncio.Event:
    """Set once a chat lane closed and `when()` holds."""
    done = asyncio.Event()
    close_lane = delivery._close_lane

    def closing(name: str) -> None:
        close_lane(name)
        if when():
            done.set()

    delivery._close_lane = closing  # type: ignore[method-assign]
    return done


async def sent(delivery: Delivery, count: int) -> None:
    async with asyncio.timeout(10), delivery.settled:
        await delivery.settled.wait_for(lambda: delivery.sent_count == count)


async def test_chat_lanes_that_closed_leave_no_entry_behind_and_open_for_rows_leased_to_them(
    tmp_path: Path,
) -> None:
    marks: list[tuple[str, str | None]] = []
    reachability = {"on_reachability": lambda name, problem: marks.append((name, problem))}
    async with chat_delivery(tmp_path, **reachability) as (store, delivery):
        # Only the rules file's own lane is left.
        all_closed = on_close(delivery, lambda: len(delivery.senders) == 1)
        chats = [f"@tg:{7_000 + n}" for n in range(300)]
        await store.enqueue([new_alert(chat) for chat in chats], now=time.time(), fence=None)
        for chat in chats:
            delivery.wake(chat)
        await sent(delivery, len(chats))
        # Each lane closes once its outbox is empty (it looks once more after its send).
        async with asyncio.timeout(30):
            await all_closed.wait()
        assert not delivery._answered
        # A chat that answers again after its lane closed still clears its mark.
        await store.enqueue([new_alert(chats[0])], now=time.time(), fence=None)
        delivery.wake(chats[0])
        await sent(delivery, len(chats) + 1)
        assert marks.count((chats[0], None)) == 2
        # A write that counted on a lane that closed before its rows came back (`room`
        # was taken while it was open): the rows leased to it open it again, rather
        # than wait out their lease.
        late = new_alert(chats[1])
        _, rows = await store.enqueue_leased(
            [late], now=time.time(), lease=120.0, room={chats[1]: 10}, fence=None
        )
        assert chats[1] not in delivery.senders and [r.key for r in rows] == [late.key]
        delivery.written([(late.key, late.destination)], rows)
        await sent(delivery, len(chats) + 2)


async def test_a_row_leased_to_a_lane_that_closed_is_sent_when_every_lane_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lanes, "MAX_CHAT_LANES", 1)
    busy = asyncio.Event()
    go_on = asyncio.Event()

    class Held(ConsoleSender):
        async def send(self, payload: dict[str, Any]) -> str | None:
            busy.set()
            await go_on.wait()
            return await super().send(payload)

    def senders(name: str) -> ConsoleSender:
        return Held(name, io.StringIO()) if name == "@tg:2" else console(name)

    async with chat_delivery(tmp_path, senders) as (store, delivery):
        await store.enqueue([new_alert("@tg:2")], now=time.time(), fence=None)
        delivery.wake("@tg:2")  # takes the only chat lane, and holds it mid-send
        async with asyncio.timeout(10):
            await busy.wait()
        # The write counted on @tg:1's lane (`room` was taken while it was open); it
        # closed before the rows came back, and no lane is free now.
        late = new_alert("@tg:1")
        _, rows = await store.enqueue_leased(
            [late], now=time.time(), lease=120.0, room={"@tg:1": 10}, fence=None
        )
        delivery.written([(late.key, late.destination)], rows)
        go_on.set()
        await sent(delivery, 2)
        assert (await store.counts()).get(SENT) == 2


async def test_a_chat_no_lane_can_send_to_is_not_queued_for_a_lane(tmp_path: Path) -> None:
    # "@dc:9": its platform has no token (the chat senders give no sender for it).
    def senders(name: str) -> ConsoleSender | None:
        return None if name.startswith("@dc:") else console(name)

    async with chat_delivery(tmp_path, senders) as (store, delivery):
        wakes = 0
        wake = delivery.wake

        def counting(destination: str) -> None:
            nonlocal wakes
            wakes += 1
            if wakes > 1_000:  # the closing lane below would wake it for ever, stuck
                delivery._waiting_chats.clear()
            wake(destination)

        delivery.wake = counting  # type: ignore[method-assign]
        closed = on_close(delivery, lambda: True)
        await store.enqueue([new_alert("@dc:9")], now=time.time(), fence=None)
        delivery.wake("@dc:9")
        assert "@dc:9" not in delivery._waiting_chats  # its rows wait in the outbox
        await store.enqueue([new_alert("@tg:1")], now=time.time(), fence=None)
        delivery.wake("@tg:1")
        async with asyncio.timeout(10):
            await closed.wait()  # a lane closing serves the waiting chats
        assert wakes < 10


async def test_a_chat_with_nothing_due_for_a_while_gives_its_lane_up_until_then(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lanes, "MAX_CHAT_LANES", 1)
    monkeypatch.setattr(lanes, "IDLE_LOOK", 0.5)  # "a while": here, more than half a second
    async with chat_delivery(tmp_path) as (store, delivery):
        # "@tg:1" has a row due later (quiet hours, a hold, a long backoff): in 3 s.
        held = new_alert("@tg:1")
        now = time.time()
        await store.enqueue([held], now=now, fence=None)
        (row,) = await store.claim("@tg:1", now=now, lease=60.0, limit=1)
        await store.reschedule(row.key, at=now + 3.0, error="quiet hours", refund=True)
        delivery.wake("@tg:1")
        other = new_alert("@tg:2")
        await store.enqueue([other], now=time.time(), fence=None)
        delivery.wake("@tg:2")  # the only lane is @tg:1's: it must not keep it meanwhile
        await sent(delivery, 1)
        found = await store.get(other.key)
        assert found is not None and found.state == SENT  # the first sent, not the held
        assert "@tg:1" in delivery._due_timers
        # When the held row comes due, a timer opens @tg:1's lane again.
        await sent(delivery, 2)
        found = await store.get(held.key)
        assert found is not None and found.state == SENT


async def test_two_lanes_of_one_chat_never_both_take_its_last_slot() -> None:
    # A chat's one slot per 0.2 s, used by two lanes (a Telegram chat and one of its
    # topics, or a channel both in the rules file and followed), each with a bot window.
    chat = SlidingWindow(1, 0.2)
    bot_a, bot_b = SlidingWindow(1, 0.05, shared=True), SlidingWindow(1, 0.05, shared=True)
    held = await GATE.acquire([bot_a])
    first = asyncio.create_task(GATE.acquire([bot_a, chat]))
    await asyncio.sleep(0)  # it finds the chat's slot free, then waits for its bot
    assert not first.done()
    second = await GATE.acquire([bot_b, chat])  # the other lane takes the chat's slot
    GATE.release([bot_a], held)
    GATE.release([bot_b, chat], second)
    async with asyncio.timeout(10):
        slots = await first
    GATE.release([bot_a, chat], slots)
    # The first lane's message went a whole window after the second's answer, not at once.
    ended = second[1].ended
    assert ended is not None and slots[1].started >= ended + 0.2


async def test_every_chat_with_rows_left_from_before_gets_its_lane_at_start(
    tmp_path: Path,
) -> None:
    # More rows waiting than any one read takes (a go-live fanned out while Telegram was
    # down): those of the chat written last are found too, not only the first 10,000.
    def senders(name: str) -> ConsoleSender | None:
        return None if name.startswith("@dc:") else console(name)  # "@dc:": no token

    store = await open_store(str(tmp_path / "s.db"), instance="t", durable=False)
    now = time.time()
    backlog = [new_alert("@dc:9", key=f"b{n}") for n in range(10_000)]
    await store.enqueue(backlog, now=now, fence=None)
    last = new_alert("@tg:1")
    await store.enqueue([last], now=now + 1, fence=None)
    delivery = Delivery(store, {"t": console("t")}, chat_sender=senders)
    running = asyncio.create_task(delivery.run())
    try:
        await sent(delivery, 1)
        found = await store.get(last.key)
        assert found is not None and found.state == SENT
    finally:
        delivery.stop()
        await running
        await store.close()
