"""What every sender offers the delivery lanes."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
import weakref
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from notifier.deliver.limits import SlidingWindow, Slot
from notifier.outbox.policy import Failure


class NotModified(Exception):
    """An edit that changes nothing: the chat already shows it (counts as done)."""


T = TypeVar("T")


class Ready(Generic[T]):
    """What a sender made ahead (`Sender.prepare`) for the payload it sends next: taken by
    that send, made again by any other."""

    __slots__ = ("_payload", "_value")

    def __init__(self) -> None:
        self._payload: dict[str, Any] | None = None
        self._value: T | None = None

    def keep(self, payload: dict[str, Any], make: Callable[[dict[str, Any]], T]) -> None:
        """`make(payload)` now; a failure is left for the send to meet (and classify)."""
        try:
            self._value = make(payload)
        except Exception:
            self._payload = self._value = None
            return
        self._payload = payload

    @property
    def kept(self) -> dict[str, Any] | None:
        """The payload made ahead, if any."""
        return self._payload

    def take(self, payload: dict[str, Any], make: Callable[[dict[str, Any]], T]) -> T:
        value = self._value
        if self._payload is not payload or value is None:
            return make(payload)
        self._payload = self._value = None
        return value


class Sender(Protocol):
    name: str
    channel: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def prepare(self, payload: dict[str, Any]) -> None:
        """Make what a send of `payload` can make before the chat's rate limits allow it
        (its rendering): the lane calls it just before it waits for them, so a fan-out's
        sends at a limit's reset are the requests alone. Never raises."""

    async def send(self, payload: dict[str, Any]) -> str | None:
        """Send; returns the chat's message id (None where there is none)."""

    async def edit(self, message_id: str, payload: dict[str, Any]) -> None: ...

    async def delete(self, message_id: str) -> None: ...

    def classify(self, error: BaseException) -> Failure: ...

    def windows(self) -> list[SlidingWindow]: ...


class Gate:
    """Waits for every rate limit of a send to allow it, then holds one slot in each."""

    def __init__(self) -> None:
        # Keyed by the window itself, weakly: a window's lock and event live as long as it.
        self._locks: weakref.WeakKeyDictionary[SlidingWindow, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        self._settled: weakref.WeakKeyDictionary[SlidingWindow, asyncio.Event] = (
            weakref.WeakKeyDictionary()
        )

    async def acquire(self, windows: list[SlidingWindow]) -> list[Slot]:
        # A window of one chat is waited for outside any lock; a window many lanes share
        # (a bot's) is waited for under its lock, so waiting lanes queue in order.
        own = [w for w in windows if not w.shared]
        shared = sorted((w for w in windows if w.shared), key=id)
        for window in windows:  # before the first wait: a sweep keeps these (KeyedWindows)
            window.acquiring += 1
        try:
            while True:
                for window in own:
                    await self._free(window)
                async with contextlib.AsyncExitStack() as stack:
                    for window in shared:
                        lock = self._locks.setdefault(window, asyncio.Lock())
                        await stack.enter_async_context(lock)
                        await self._free(window)
                    now = time.monotonic()
                    # Another lane of the same chat (a topic, a channel both in the rules
                    # and followed) may have taken its window's last slot meanwhile.
                    if all(w.wait_time(now) == 0.0 for w in own):
                        return [w.take(now) for w in windows]
        finally:
            for window in windows:
                window.acquiring -= 1

    def release(self, windows: list[SlidingWindow], slots: list[Slot]) -> None:
        now = time.monotonic()
        for window, slot in zip(windows, slots, strict=True):
            slot.settle(now)
            flag = self._settled.get(window)
            if flag is not None:
                flag.set()

    async def _free(self, window: SlidingWindow) -> None:
        while (wait := window.wait_time(time.monotonic())) != 0.0:
            flag = self._settled.setdefault(window, asyncio.Event())
            flag.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):  # None: until an answer settles a slot
                    await flag.wait()


GATE = Gate()


class _TurnsOfALoop:
    """What `Turns` keeps for one event loop."""

    def __init__(self) -> None:
        self.waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self.order = itertools.count()
        self.passed = 0  # sends let through in this turn of the loop
        self.ticking = False
        self.ticked_at: float | None = None  # the last tick, while they follow each other


class Turns:
    """Sends that start at once go out a few a turn of the event loop; among those waiting
    together, each destination's first send of a burst before any destination's next.

    A fan-out wakes hundreds of lanes in one turn of the loop. Let through together, every
    lane builds its request before any of them reaches the network (the loop polls its
    sockets only between turns): the server waits for the last one to be built, and each
    lane's second request, built as soon as its first is answered, goes out before
    another destination's first. Taken in turns, the first requests leave while the next
    ones are built, on a few connections that are free again, and a destination's next
    alert waits for the other destinations' firsts waiting with it. A send that finds
    nobody waiting and the turn not used up goes at once (no turn of delay for a lone
    alert).

    `per_turn` go each turn, and one more for every `pace` seconds the last turn took, up
    to `most`: a busy loop's long turns do not hold the sends back (a paid broadcast sends
    1,000 a second). The last turn's time includes the sends let through then, so `pace`
    is above what one costs (or each turn would let more go than the one before), and
    `most` caps it all the same.

    Each event loop has its own turns (a test's, a tool's, one per thread): nothing of one
    loop ever waits for another's."""

    def __init__(self, per_turn: int = 1, *, pace: float | None = 0.0005, most: int = 4) -> None:
        self.per_turn = per_turn
        self.pace = pace
        self.most = max(per_turn, most)
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _TurnsOfALoop] = (
            weakref.WeakKeyDictionary()
        )

    async def take(self, rank: int) -> None:
        """Wait for this send's turn; `rank` is how many sends its destination made in
        this burst before it (0: its first)."""
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is None:
            state = self._loops[loop] = _TurnsOfALoop()
        if not state.waiting and state.passed < self.per_turn:
            state.passed += 1
            self._tick_next_turn(loop, state)
            return
        waiter: asyncio.Future[None] = loop.create_future()
        heapq.heappush(state.waiting, (rank, next(state.order), waiter))
        self._tick_next_turn(loop, state)
        await waiter  # cancelled: `_tick` passes it over

    def _tick_next_turn(self, loop: asyncio.AbstractEventLoop, state: _TurnsOfALoop) -> None:
        if not state.ticking:
            state.ticking = True
            loop.call_soon(self._tick, loop, state)

    def _tick(self, loop: asyncio.AbstractEventLoop, state: _TurnsOfALoop) -> None:
        """A new turn of the loop: the next waiters go."""
        state.ticking = False
        now = time.monotonic()
        allowed = self.per_turn
        if self.pace and state.ticked_at is not None:  # the turn since the last tick
            allowed = min(self.most, max(allowed, int((now - state.ticked_at) / self.pace)))
        state.passed = 0
        while state.waiting and state.passed < allowed:
            _, _, waiter = heapq.heappop(state.waiting)
            if not waiter.done():
                waiter.set_result(None)
                state.passed += 1
        if state.waiting or state.passed:
            state.ticked_at = now
            self._tick_next_turn(loop, state)
        else:
            state.ticked_at = None


TURNS = Turns()
