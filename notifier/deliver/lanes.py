"""Delivery lanes: one per destination, draining the outbox, so a slow or failing chat
never delays the others and the WebSocket reader never waits on a chat API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any

from notifier.backoff import full_jitter
from notifier.deliver.base import GATE, TURNS, NotModified, Sender
from notifier.deliver.chats import Chats, Verdict, digest_payload
from notifier.log import event, get_logger, short_error
from notifier.metrics import Metrics, destination_label
from notifier.outbox.policy import Failure, Next, Outcome, RetryPolicy
from notifier.store import Store, StoreError
from notifier.store.outage import Outage
from notifier.store.outage import pause as outage_pause
from notifier.store.types import DEAD, DROPPED, SENT, Row

_log = get_logger("deliver")
HAND_LIMIT = 64  # rows a lane holds in memory; beyond, they are claimed from the outbox
# Rows a lane claims at once: one claim (a write) serves a backlog of up to this many.
CLAIM_BATCH = 16
# With several instances (PostgreSQL) one of them sends to a destination at a time, so its
# sends keep their order and its rate limits; the lease is renewed while the lane works.
DESTINATION_TTL = 30.0
# A send may take its whole timeout: the row's lease, and the destination's, must outlast
# it by this much when it starts (else they are extended first), or another instance could
# take the row over mid-send and send it too.
SEND_MARGIN = 5.0
STANDBY_POLL = 5.0  # how often a lane that does not hold its destination asks again
# Chat lanes open at once: a go-live to 20,000 followers opens them in turn, so memory
# stays flat; even at Telegram's paid 1,000 messages a second a few hundred keep up.
MAX_CHAT_LANES = 256
# A lane with nothing due still looks at the outbox this often: rows nobody told it about
# (`notifier outbox retry` from another process) go out within this time.
IDLE_LOOK = 30.0
# Alerts in one digest message: with their lines of about 100 characters, 30 fit in
# Telegram's 4,096 without an "and N more" (a longer wait makes several digests).
DIGEST_ROWS = 30
# Before the message id recorded for each alert of a digest: a stream's end must not edit
# or delete the digest, which shows the other alerts too.
DIGESTED = "digest:"
# Transient failures in a row (timeouts, refused connections, 5xx) after which a destination
# shows as down in /healthz and notifier_destination_up, until its next answer; its alerts
# keep their own backoff meanwhile.
DOWN_AFTER_FAILURES = 3
# Why the rows of a destination the rules do not name (any more) went to the dead letter.
REMOVED = "destination removed from the rules"


class LeaseTrust:
    """Whether this instance's leases are surely still its own (PostgreSQL). Another
    instance releases them once this one's instance lock is free: while the lock is not
    held, and for a lease's length after it is taken again (rows leased before may have
    been released meanwhile), every send checks its lease in the database first. One per
    daemon; its deliveries (a reload makes a new one) share it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._since: float | None = float("-inf")  # held since before any lease

    def lost(self) -> None:
        self._since = None

    def held(self) -> None:
        if self._since is None:
            self._since = self._clock()

    def doubt(self) -> None:
        """A lease turned out not to be ours: what is leased now may have been released."""
        if self._since is not None:
            self._since = self._clock()

    def sure(self, lease: float) -> bool:
        return self._since is not None and self._clock() - self._since >= lease


class Delivery:
    def __init__(
        self,
        outbox: Store,
        senders: Mapping[str, Sender],
        *,
        metrics: Metrics | None = None,
        policy: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        lease: float = 120.0,
        send_timeout: float = 30.0,
        edit_wait: float = 2.0,
        on_reachability: Callable[[str, str | None], None] | None = None,
        chat_sender: Callable[[str], Sender | None] | None = None,
        unreachable: Iterable[str] = (),
        chats: Chats | None = None,
        on_lost_chat: Callable[[str, Sender, str], Awaitable[bool]] | None = None,
        coalesce_after: float = 120.0,
        trust: LeaseTrust | None = None,
    ) -> None:
        self.outbox = outbox
        self.trust = trust or LeaseTrust()
        self.senders = dict(senders)
        self._configured = frozenset(senders)  # the rules' destinations (chats come and go)
        self.metrics = metrics or Metrics()
        self.policy = policy or RetryPolicy()
        self.clock = clock
        self.rand = rand
        self.lease = lease
        self.send_timeout = send_timeout
        self.edit_wait = edit_wait
        # Told (destination, reason) when a destination becomes unreachable, and
        # (destination, None) when it answers again.
        self.on_reachability = on_reachability
        # Chat subscriptions' destinations ("@tg:<chat>", ...) get a sender and a lane when
        # they have work, and give them up when idle: 20,000 chats, not 20,000 tasks.
        self.chat_sender = chat_sender
        self.chats = chats  # paused, muted and quiet chats (chat destinations only)
        # A chat refused us for good: a platform's own pause (a Discord server is told),
        # True when it handled it; else the chat is simply paused.
        self.on_lost_chat = on_lost_chat
        # A Telegram lane whose alerts wait longer than this (a group limited to 20 a
        # minute that got 40) sends what waits as one digest instead of minutes-late alerts.
        self.coalesce_after = coalesce_after
        self.exclusive = getattr(outbox, "backend", "sqlite") == "postgres"
        self._destination_until: dict[str, float] = {}
        self._group: asyncio.TaskGroup | None = None
        self._chat_lanes = 0
        self._waiting_chats: dict[str, None] = {}  # chat destinations waiting for a lane
        self._unreachable: dict[str, int] = {}  # destination -> failed probes in a row
        # Destinations that were down when this delivery was made (a reload makes a new one
        # with new senders): their first start is the probe that says they answer again.
        self._down_before = set(unreachable)
        self._unreachable |= dict.fromkeys(self._down_before, 0)
        self._transient: dict[str, int] = {}  # destination -> transient failures in a row
        # Destinations this delivery has seen answer; the first answer clears a mark that
        # an earlier delivery left in the health report.
        self._answered: set[str] = set()
        self.in_flight = 0
        self.sent_count = 0  # rows recorded as sent by this delivery (for waiting on progress)
        self._sent_last: dict[str, str] = {}  # destination -> the key it last sent
        # destination -> requests its lane made since it last found nothing to send: a
        # send's rank in `TURNS` (a burst's first requests of every lane go first)
        self._burst: dict[str, int] = {}
        # Chat destinations whose lane closed with a row due later: woken then.
        self._due_timers: dict[str, asyncio.TimerHandle] = {}
        self._wake: dict[str, asyncio.Event] = {name: asyncio.Event() for name in senders}
        # Rows handed over already leased (fresh alerts, or the rest of a claimed batch):
        # sent without a claim.
        self._handed: dict[str, deque[Row]] = {name: deque() for name in senders}
        # Destinations whose outbox may hold due rows their lane has not claimed (rows
        # written without a hand-off, by this instance or another): a lane whose last
        # claim came back short claims again only when it is in here or a wait ran out.
        self._unclaimed: set[str] = set()
        self._stopping = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._alive: dict[str, bool] = {}
        # Lanes whose last call to the store failed -> how many failed in a row (each
        # lane's wait grows with its own); the outage is logged once for all the lanes.
        self._store_failing: dict[str, int] = {}
        # Sent, but not recorded before this delivery stopped (the store was down): the
        # next delivery of a reload takes them over (`adopt`).
        self.unrecorded: list[tuple[str, str | None]] = []
        # Set by a reload's swap that went on before this delivery's sends ended: where the
        # sends it could not record go then (the next delivery's `adopt`).
        self.handover: Callable[[list[tuple[str, str | None]]], None] | None = None
        # Taken over from the delivery before (`adopt`): recorded before any lane runs, or
        # handed on to the next delivery if this one is swapped out first.
        self.adopted: list[tuple[str, str | None]] = []
        self._outage = Outage(
            "delivery",
            None,
            failed_event="lane.store_failed",
            recovered_event="lane.store_recovered",
            rand=rand,
        )
        # Notified after every recorded outcome, for whoever waits on delivery progress.
        self.settled = asyncio.Condition()

    def wake(self, destination: str) -> None:
        """`destination` has rows in the outbox (not handed over): its lane claims them."""
        self._unclaimed.add(destination)
        if destination in self._wake or self._open_lane(destination):
            self._wake[destination].set()
        elif self._chat_lanes >= MAX_CHAT_LANES and self._can_open(destination):
            self._waiting_chats[destination] = None  # a lane frees up: it opens then
        # Else no lane can send there now (a chat whose platform has no token, or the
        # delivery is stopping): its rows wait in the outbox for the next start or reload.

    def _can_open(self, name: str) -> bool:
        """A chat destination's lane could open, but for MAX_CHAT_LANES."""
        return (
            name.startswith("@")
            and self.chat_sender is not None
            and self._group is not None
            and not self._stopping.is_set()
        )

    def _open_lane(self, name: str, *, leased: bool = False) -> bool:
        """A lane for a chat destination (one whose name starts with "@"), if it can be.
        For rows already `leased` to it, even beyond MAX_CHAT_LANES: they could not be
        claimed before their lease ran out."""
        if not self._can_open(name) or (self._chat_lanes >= MAX_CHAT_LANES and not leased):
            return False
        assert self.chat_sender is not None and self._group is not None  # `_can_open`
        sender = self.chat_sender(name)
        if sender is None:
            return False
        self._chat_lanes += 1
        self.senders[name] = sender
        self._wake[name] = asyncio.Event()
        self._handed[name] = deque()
        self._alive[name] = True
        self._group.create_task(self._supervise(name))
        return True

    def _close_lane(self, name: str) -> None:
        if self.senders.pop(name, None) is not None:
            self._chat_lanes -= 1
        self._wake.pop(name, None)
        self._handed.pop(name, None)
        self._alive.pop(name, None)
        self._unclaimed.discard(name)
        self._answered.discard(name)  # 20,000 chats must not stay 20,000 entries
        self._sent_last.pop(name, None)
        self._burst.pop(name, None)
        # Each waiting chat is tried once: one that cannot open is not queued again.
        for _ in range(len(self._waiting_chats)):
            if self._chat_lanes >= MAX_CHAT_LANES:
                break
            waiting = next(iter(self._waiting_chats))
            del self._waiting_chats[waiting]
            self.wake(waiting)

    def room(self) -> dict[str, int]:
        """How many more rows each lane takes by hand; the rest wait in the outbox, so a
        flood costs disk, not memory."""
        return {name: max(0, HAND_LIMIT - len(q)) for name, q in self._handed.items()}

    def hand(self, rows: list[Row]) -> set[str]:
        """Take rows leased to this process (by `enqueue_leased`) straight to their lanes;
        returns the keys handed. A chat's lane that closed since `room` opens again."""
        handed: set[str] = set()
        if self._stopping.is_set():  # stopped (a reload's swap): the swap releases them
            return handed
        for row in rows:
            destination = row.destination
            if destination not in self._handed and not self._open_lane(destination, leased=True):
                continue
            self._handed[destination].append(row)
            self._wake[destination].set()
            handed.add(row.key)
        return handed

    def written(self, added: Iterable[tuple[str, str]], rows: list[Row]) -> None:
        """New outbox rows, as (key, destination), after a write: those leased to this
        process (`rows`) go to their lanes, which send them without a claim; the others
        wake their lane to claim them."""
        handed = self.hand(rows)
        for key, destination in added:
            if key not in handed:
                self.wake(destination)

    def wake_all(self) -> None:
        """Every lane looks at the outbox (rows another delivery left, or a stop)."""
        self._unclaimed.update(self._wake)
        for flag in self._wake.values():
            flag.set()

    @property
    def lanes_alive(self) -> bool:
        return all(self._alive.get(name, False) for name in self.senders)

    async def run(self) -> None:
        """Run every lane until `stop()`; a crashed lane is logged and restarted."""
        for name in self.senders:
            self._alive[name] = True  # alive from now: health must not flap at start
        await self._record_adopted()  # before any lane can claim their rows
        async with asyncio.TaskGroup() as group:
            self._group = group
            for name in list(self.senders):
                group.create_task(self._supervise(name))
            if self.exclusive:
                watching = group.create_task(self._watch_other_instances())
            group.create_task(self._look_at_waiting())
            if self.exclusive:
                await self._stopping.wait()
                watching.cancel()
        self._group = None

    async def _look_at_waiting(self) -> None:
        """Destinations with work left from before (pending or leased rows): a chat's lane
        opens; a destination the rules do not name is settled (`_removed`). A store that
        does not answer is asked again."""
        while not self._stopping.is_set():
            try:
                waiting = await self.outbox.waiting_destinations()
                for destination, count in waiting.items():
                    if destination.startswith("@"):
                        self.wake(destination)
                    elif destination not in self._configured:
                        await self._removed(destination, count)
            except StoreError as exc:
                await self._pause_for_store(self._store_failed("waiting", exc))
                continue
            self._store_answered("waiting")
            async with self.settled:
                self.settled.notify_all()
            return

    async def _removed(self, destination: str, count: int) -> None:
        """Rows for a destination the rules do not name (removed by a reload, or before a
        start) have no lane: they go to the dead letter (`notifier outbox retry` revives
        them). With PostgreSQL another instance may run rules that still name it (a
        rolling reload): they are left to it, and logged."""
        if self.exclusive:
            event(
                _log,
                "destination.removed",
                logging.WARNING,
                dest=destination,
                alerts=count,
                kept="pending: another instance's rules may name it",
            )
            return
        now = self.clock()
        dead = await self.outbox.dead_letter(
            destination, reason=REMOVED, now=now, created_before=now
        )
        if dead:
            self.metrics.dead.labels(destination=destination_label(destination)).inc(dead)
            event(
                _log,
                "destination.removed",
                logging.ERROR,
                dest=destination,
                dead=dead,
                reason=REMOVED,
            )

    async def _watch_other_instances(self) -> None:
        """Rows written by another instance (PostgreSQL NOTIFY) wake this one's lane; the
        lanes also poll (STANDBY_POLL), since a notification can be lost."""
        outage = Outage(
            "outbox watch",
            None,
            failed_event="outbox.watch_failed",
            recovered_event="outbox.watch_recovered",
            rand=self.rand,
        )
        while not self._stopping.is_set():
            try:
                async with await self.outbox.watch_outbox() as watch:
                    outage.answered()
                    async for destination in watch:
                        self.wake(destination)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # logged once an outage: the lanes poll meanwhile
                outage.failed(exc)
                await self._wait(None, STANDBY_POLL)

    def stop(self) -> None:
        """Stop claiming; sends in flight finish (see `drain`)."""
        self._stopping.set()
        for timer in self._due_timers.values():
            timer.cancel()
        self._due_timers.clear()
        self.wake_all()

    def _wake_at(self, name: str, due: float) -> None:
        """Wake a chat destination when its next row comes due (its lane closed)."""
        old = self._due_timers.pop(name, None)
        if old is not None:
            old.cancel()
        delay = max(0.0, due - self.clock())
        loop = asyncio.get_running_loop()
        self._due_timers[name] = loop.call_later(delay, self._due, name)

    def _due(self, name: str) -> None:
        self._due_timers.pop(name, None)
        if not self._stopping.is_set():
            self.wake(name)

    async def drain(self, deadline: float) -> bool:
        """Wait (up to `deadline` seconds) until no send is in flight; True when drained."""
        try:
            async with asyncio.timeout(deadline):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def _supervise(self, name: str) -> None:
        while not self._stopping.is_set():
            self._alive[name] = True
            try:
                await self._lane(name)
                if name.startswith("@"):
                    return  # a chat lane closed itself when idle
            except StoreError as exc:  # the store's outage: the lane waits it out
                await self._pause_for_store(self._store_failed(name, exc))
            except Exception as exc:  # a lane must never silently vanish
                self._alive[name] = False
                self.metrics.stage_restarts.labels(stage=f"lane:{name}").inc()
                event(
                    _log,
                    "lane.crashed",
                    logging.ERROR,
                    destination=name,
                    error=short_error(exc),
                )
                await asyncio.sleep(1.0)
        self._alive[name] = False

    @property
    def store_error(self) -> str | None:
        """The store's error while the lanes' calls to it fail."""
        return self._outage.error

    def _store_failed(self, name: str, error: BaseException) -> float:
        """A lane's call to the store failed: how long the lane waits before it tries
        again (the outage is logged when it begins)."""
        streak = self._store_failing.get(name, 0)
        self._store_failing[name] = streak + 1
        self._outage.failed(error)
        return self._outage.wait(streak)

    async def _pause_for_store(self, seconds: float) -> None:
        """Between tries at a store that failed: until the wait is over, the store answers
        another part, or delivery stops."""
        if not self._stopping.is_set():
            await outage_pause(seconds, self._stopping)

    def _store_answered(self, name: str) -> None:
        if self._store_failing.pop(name, None) is not None:
            self._outage.answered()

    async def _recorded(self, name: str, sent: list[tuple[str, str | None]], now: float) -> None:
        """Record the keys (with their message ids) as sent, however long the store is
        down: an alert sent and not recorded would go out again once its lease runs out.
        When delivery stops first (a reload, a shutdown) they are left in `unrecorded`:
        a reload's next delivery records them before it claims anything."""
        while True:
            try:
                if len(sent) == 1:
                    key, message_id = sent[0]
                    done = await self.outbox.mark_sent(key, message_id=message_id, now=now)
                    refused = [] if done else [key]
                else:
                    recorded = set(await self.outbox.mark_sent_many(sent, now=now))
                    refused = [key for key, _ in sent if key not in recorded]
            except asyncio.CancelledError:  # a stop's deadline passed while recording
                self._left_unrecorded(sent)
                raise
            except StoreError as exc:
                if self._stopping.is_set():
                    self._left_unrecorded(sent)
                    raise
                await self._pause_for_store(self._store_failed(name, exc))
                continue
            self._store_answered(name)
            if refused:
                # Its lease was no longer ours (released by another instance, or run out):
                # the rows we hold may not be ours either, until checked.
                self.trust.doubt()
                event(
                    _log,
                    "alert.record_refused",
                    logging.WARNING,
                    dest=name,
                    keys=refused,
                    note="sent, but leased elsewhere by then: another instance may send it too",
                )
            return

    def _left_unrecorded(self, sent: list[tuple[str, str | None]]) -> None:
        """Sends whose record was given up (delivery stopped, or its lanes cancelled): a
        reload's next delivery records them (`handover`), else the stop keeps them
        (`unrecorded`, written to a file for the next start)."""
        if self.handover is not None:  # a reload's swap went on without them
            self.handover(sent)
        else:
            self.unrecorded += sent

    def not_recorded(self) -> list[tuple[str, str | None]]:
        """Sends answered by the chat API that the store has not recorded: left when this
        delivery stopped (`unrecorded`), and handed to it by the one before (`adopted`)."""
        return self.unrecorded + self.adopted

    def adopt(self, unrecorded: list[tuple[str, str | None]]) -> None:
        """Sends the delivery before this one could not record (its rows are still leased
        to this instance): recorded first when this one runs, or now if it runs already
        (a send the old lanes finished after the swap stopped waiting for them)."""
        self.adopted += unrecorded
        if unrecorded and self._group is not None and not self._stopping.is_set():
            self._group.create_task(self._record_adopted())

    async def _record_adopted(self) -> None:
        while self.adopted and not self._stopping.is_set():
            marks = list(self.adopted)
            try:
                await self.outbox.mark_sent_many(marks, now=self.clock())
            except StoreError as exc:
                await self._pause_for_store(self._store_failed("recorded", exc))
                continue
            self._store_answered("recorded")
            self.adopted = [m for m in self.adopted if m not in marks]  # some came meanwhile

    async def _start(self, name: str, sender: Sender) -> bool:
        """Start the sender (a Telegram bot asks getMe); an API that is down or rejects us
        is this destination's problem: back off and try again, the others carry on.

        A start that failed, or the first of a destination that was down before, probes
        the API: once it succeeds the destination is reachable again. A restarted lane's
        start is not a probe (the sender is up already) and proves nothing."""
        probe = name in self._down_before
        while not self._stopping.is_set():
            try:
                async with asyncio.timeout(self.send_timeout):
                    await sender.start()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                probe = True
                failure = sender.classify(exc)
                wait = self._unreachable_for(name, failure.reason)
                await self._expire_unclaimed(name, failure.reason)
                await self._wait(None, wait)
                continue
            self._down_before.discard(name)
            if probe:
                self._reachable(name)
            return True
        return False

    async def _expire_unclaimed(self, name: str, error: str) -> None:
        """A lane that cannot start claims nothing: its rows past the max age go to the
        dead letter here, as they would once claimed."""
        now = self.clock()
        reason = self._expired(error)
        dead = await self.outbox.dead_letter(
            name, reason=reason, now=now, created_before=now - self.policy.max_age
        )
        if not dead:
            return
        self.metrics.dead.labels(destination=destination_label(name)).inc(dead)
        event(_log, "alert.dead", logging.ERROR, dest=name, alerts=dead, reason=reason)
        async with self.settled:
            self.settled.notify_all()

    def _unreachable_for(self, name: str, reason: str) -> float:
        """Mark the destination unreachable; how long its lane now waits."""
        streak = self._unreachable.get(name, 0)
        self._unreachable[name] = streak + 1
        wait = full_jitter(streak, base=self.policy.base, cap=self.policy.cap, rand=self.rand)
        # At least a second: an API that refuses at once must not be hammered.
        wait = max(1.0, wait)
        if streak == 0 or self.on_reachability is None:
            event(
                _log,
                "destination.unreachable",
                logging.ERROR,
                dest=name,
                reason=reason,
                retry_in=round(wait, 3),
            )
        if self.on_reachability is not None:
            self.on_reachability(name, reason)
        return wait

    def _failing(self, name: str, reason: str) -> None:
        """A transient failure; after DOWN_AFTER_FAILURES in a row the destination shows as
        down (its lane does not pause: each alert keeps its own backoff)."""
        streak = self._transient.get(name, 0) + 1
        self._transient[name] = streak
        if streak < DOWN_AFTER_FAILURES:
            return
        if name not in self._unreachable:
            self._unreachable[name] = 0
            event(_log, "destination.unreachable", logging.ERROR, dest=name, reason=reason)
        if self.on_reachability is not None:
            self.on_reachability(name, reason)

    def _reachable(self, name: str) -> None:
        """The destination answered (a probe at start, or a send)."""
        self._transient.pop(name, None)
        was_down = self._unreachable.pop(name, None) is not None
        if was_down:
            event(_log, "destination.reachable", dest=name)
        # Also on the first answer this delivery sees: after a reload, the mark an earlier
        # delivery left (in /healthz and notifier_destination_up) would otherwise stay.
        if (was_down or name not in self._answered) and self.on_reachability is not None:
            self.on_reachability(name, None)
        self._answered.add(name)

    async def _lane(self, name: str) -> None:
        sender = self.senders[name]
        wake = self._wake[name]
        if not await self._start(name, sender):
            return
        try:
            await self._run_lane(name, sender, wake)
        finally:
            await self._release_destination(name)

    async def _release_destination(self, name: str) -> None:
        """With several instances: another may send to `name` from now on."""
        if self._destination_until.pop(name, None) is not None:
            with contextlib.suppress(Exception):
                await self.outbox.release_destination(name)

    async def _holds_destination(self, name: str) -> bool:
        """With several instances: whether this one is the destination's sender now."""
        if not self.exclusive:
            return True
        now = self.clock()
        if self._destination_until.get(name, 0.0) - now > DESTINATION_TTL / 3:
            return True
        held = await self.outbox.try_lease_destination(name, now=now, ttl=DESTINATION_TTL)
        self._store_answered(name)  # also for a standby lane, which claims nothing
        if held:
            self._destination_until[name] = now + DESTINATION_TTL
            return True
        self._destination_until.pop(name, None)
        return False

    async def _run_lane(self, name: str, sender: Sender, wake: asyncio.Event) -> None:
        paused_until = 0.0
        # The last claim came back short: until a wait runs out or rows are written for
        # this destination without a hand-off, another claim would come back empty.
        drained = False
        # `due` is still the outbox's next due time for this destination: since it was
        # read, only handed rows were sent here (and recorded as sent), which leaves it
        # as it was. Anything else (a claim, a failure, a lease run out) reads it again.
        due_known = False
        due: float | None = None
        while not self._stopping.is_set():
            now = self.clock()
            if paused_until > now:
                await self._wait(None, paused_until - now)
                continue
            handed = self._handed[name]
            holds = await self._holds_destination(name)
            if self._stopping.is_set():
                return  # stopped meanwhile: handed rows are released by whoever stopped it
            if not holds:
                # Another instance sends here: rows handed to us go back for it to claim.
                while handed:
                    row = handed.popleft()
                    await self.outbox.reschedule(row.key, at=now, error="standby", refund=True)
                await self._wait(wake, STANDBY_POLL)
                continue
            while handed and (handed[0].lease_until or 0.0) <= now + 1.0:
                handed.popleft()  # its lease ran out while the lane waited: claim decides
                drained = due_known = False
            if handed:
                row = handed.popleft()
                paused_until = await self._process(sender, row)
                if paused_until or self._sent_last.get(name) != row.key:
                    due_known = False
                continue
            rows: list[Row] = []
            if not drained or name in self._unclaimed:
                due_known = False
                self._unclaimed.discard(name)
                wake.clear()  # this claim answers every wake-up so far
                with self._busy():  # a claim in progress counts as in flight for `drain`
                    rows = await self.outbox.claim(
                        name, now=now, lease=self.lease, limit=CLAIM_BATCH
                    )
                    self._store_answered(name)
                    if rows and self._stopping.is_set():  # claimed as we stopped: give back
                        for row in rows:
                            await self.outbox.reschedule(
                                row.key, at=now, error="stopping", refund=True
                            )
                        return
                drained = len(rows) < CLAIM_BATCH
            if not rows:
                self._burst.pop(name, None)  # the burst is over
                if not due_known or self.exclusive:
                    due = await self.outbox.next_due(name)
                    due_known = True
                later = due is None or due - self.clock() > IDLE_LOOK
                if later and name.startswith("@") and self._idle_lane(name):
                    # Idle, or nothing due for a while (quiet hours, a hold, a long
                    # backoff): the lane goes, and the next alert or a timer at `due`
                    # opens it again, so 256 chats held till morning cannot keep every
                    # other chat waiting. Another instance may take the chat only once
                    # the lane is gone (a reopened lane's lease must not be deleted by
                    # this one's release).
                    await self._release_destination(name)
                    if self._idle_lane(name):
                        if due is not None:
                            self._wake_at(name, due)
                        self._close_lane(name)
                        return
                    continue  # work came meanwhile
                look = IDLE_LOOK * (0.75 + 0.5 * self.rand())  # lanes do not look at once
                timeout = look if due is None else min(max(0.0, due - self.clock()), look)
                if self.exclusive:  # other instances write here too: look again soon
                    timeout = min(timeout, STANDBY_POLL)
                if not await self._wait(wake, timeout):
                    drained = False  # the wait ran out: a row came due
                continue
            handed.extendleft(reversed(rows[1:]))  # the rest of the batch, before fresh rows
            paused_until = await self._process(sender, rows[0])

    def _idle_lane(self, name: str) -> bool:
        """Nothing handed to the lane, and nothing written for it since its last claim."""
        return (
            not self._handed[name]
            and not self._wake[name].is_set()
            and (name not in self._unclaimed)
        )

    async def _wait(self, wake: asyncio.Event | None, timeout: float) -> bool:
        """Until woken (new work), stopped, or `timeout`; no `wake` for a pause. False
        when the time ran out. One event is waited for: `stop` sets every lane's `wake`
        (`wake_all`) after `_stopping`, which is looked at first."""
        if self._stopping.is_set():
            return True
        flag = wake if wake is not None else self._stopping
        woken = True
        try:
            async with asyncio.timeout(timeout):
                await flag.wait()
        except TimeoutError:
            woken = False
        if wake is not None:
            wake.clear()
        return woken

    @contextlib.contextmanager
    def _busy(self) -> Iterator[None]:
        self.in_flight += 1
        self._idle.clear()
        try:
            yield
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self._idle.set()

    async def _process(self, sender: Sender, row: Row) -> float:
        """Send one claimed row and record the outcome; returns a pause for the lane."""
        try:
            with self._busy():
                return await self._attempt(sender, row)
        finally:
            async with self.settled:
                self.settled.notify_all()

    async def _attempt(self, sender: Sender, row: Row) -> float:
        now = self.clock()
        if now - row.created_at > self.policy.max_age:
            await self._dead(row, self._expired(row.last_error), now)
            return 0.0
        if self.chats is not None and row.action == "send" and row.destination.startswith("@"):
            decision = await self.chats.decide(row.destination, now)
            if decision.verdict is Verdict.DROP:
                await self.outbox.drop(row.key)
                event(
                    _log, "alert.dropped", dest=row.destination, key=row.key, reason=decision.reason
                )
                return 0.0
            if decision.verdict is Verdict.HOLD:
                assert decision.until is not None
                held = {**row.payload, "held": True}
                await self.outbox.reschedule(
                    row.key, at=decision.until, error=decision.reason, payload=held, refund=True
                )
                return 0.0
            if row.payload.get("held"):
                return await self._digest(sender, row, now)
        late = now - row.event_at > self.coalesce_after
        if late and row.action == "send" and sender.channel == "telegram":
            return await self._digest(sender, row, now)
        return await self._deliver(sender, row)

    def _expired(self, last_error: str | None) -> str:
        reason = f"expired: not delivered within {self.policy.max_age / 3600:g} h"
        return f"{reason} (last error: {last_error})" if last_error else reason

    async def _deliver(self, sender: Sender, row: Row) -> float:
        """Send, edit or delete one row and record what the chat API said."""
        message_id: str | None = None
        if row.action in ("edit", "delete"):
            ref = await self.outbox.get(row.ref_key) if row.ref_key else None
            if ref is None or ref.state in (DEAD, DROPPED):
                await self.outbox.drop(row.key)
                return 0.0
            if ref.state != SENT or ref.message_id is None:
                await self.outbox.reschedule(
                    row.key,
                    at=self.clock() + self.edit_wait,
                    error="waiting for the original to be sent",
                    refund=True,
                )
                return 0.0
            if ref.message_id.startswith(DIGESTED):
                await self.outbox.drop(row.key)
                event(
                    _log,
                    "alert.edit_skipped",
                    dest=row.destination,
                    key=row.key,
                    action=row.action,
                    reason="the alert went out in a digest",
                )
                return 0.0
            message_id = ref.message_id
        else:
            sender.prepare(row.payload)  # rendered while the rate limits hold it, if they do
        windows = sender.windows()
        slots = await GATE.acquire(windows)
        try:
            try:
                await self._turn(row.destination)
                if not await self._lease_covers_send(row):
                    return 0.0
                async with asyncio.timeout(self.send_timeout):
                    if row.action == "edit":
                        assert message_id is not None
                        with contextlib.suppress(NotModified):
                            await sender.edit(message_id, row.payload)
                    elif row.action == "delete":
                        assert message_id is not None
                        await sender.delete(message_id)
                    else:
                        message_id = await sender.send(row.payload)
            finally:
                GATE.release(windows, slots)  # the answer is back: the slot's end is known
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return await self._failed(sender, row, sender.classify(exc))
        now = self.clock()
        sent_id = message_id if row.action == "send" else None
        await self._recorded(row.destination, [(row.key, sent_id)], now)
        self._reachable(row.destination)
        self.sent_count += 1
        self._sent_last[row.destination] = row.key
        self.metrics.sent.labels(destination=destination_label(row.destination)).inc()
        self.metrics.latency.observe(max(0.0, now - row.event_at))
        event(
            _log,
            "alert.sent",
            rule=row.rule,
            dest=row.destination,
            key=row.key,
            action=row.action,
            attempts=row.attempts,
        )
        return 0.0

    async def _lease_covers_send(self, row: Row) -> bool:
        """The row's lease (and with several instances the destination's) lasts until the
        send's timeout and SEND_MARGIN after it; extended when shorter (a row that waited
        long in its lane's batch or behind a rate limit), and checked in the database
        whenever this instance's leases may have been released (`LeaseTrust`). A row no
        longer this instance's is not sent: another instance may have it."""
        if not await self._destination_covers_send(row.destination):
            await self.outbox.reschedule(row.key, at=self.clock(), error="standby", refund=True)
            self._lease_lost(row, "another instance sends to this destination now: left to it")
            return False
        return await self._row_covers_send(row)

    @staticmethod
    def _lease_lost(row: Row, note: str) -> None:
        event(
            _log, "alert.lease_lost", logging.WARNING, dest=row.destination, key=row.key, note=note
        )

    async def _destination_covers_send(self, name: str) -> bool:
        if not self.exclusive:
            return True
        now = self.clock()
        need = self.send_timeout + SEND_MARGIN
        if self._destination_until.get(name, 0.0) - now >= need and self.trust.sure(self.lease):
            return True
        ttl = max(DESTINATION_TTL, 2 * need)  # not renewed again at the next send
        if not await self.outbox.renew_destination(name, now=now, ttl=ttl):
            self._destination_until.pop(name, None)
            return False
        self._destination_until[name] = now + ttl
        return True

    async def _row_covers_send(self, row: Row) -> bool:
        now = self.clock()
        short = (
            row.lease_until is not None and row.lease_until - now < self.send_timeout + SEND_MARGIN
        )
        if not short and (not self.exclusive or self.trust.sure(self.lease)):
            return True
        if await self.outbox.extend_lease(row.key, now=now, until=now + self.lease):
            return True
        self._lease_lost(row, "its lease ran out or was released before its send: not sent here")
        return False

    async def _turn(self, destination: str) -> None:
        """Wait for the request's turn (`TURNS`), ranked by the lane's burst so far."""
        rank = self._burst.get(destination, 0)
        self._burst[destination] = rank + 1
        await TURNS.take(rank)

    async def _digest(self, sender: Sender, row: Row, now: float) -> float:
        """A held row is due: everything else waiting for this chat goes with it, as one
        message, instead of a burst of old alerts."""
        # Rows this lane holds already (leased to it) go first, then the outbox's.
        handed = self._handed.get(row.destination, deque())
        held = [r for r in handed if r.action == "send"][: DIGEST_ROWS - 1]
        for taken in held:
            handed.remove(taken)
        claimed = (
            await self.outbox.claim(
                row.destination, now=now, lease=self.lease, limit=DIGEST_ROWS - 1 - len(held)
            )
            if len(held) < DIGEST_ROWS - 1
            else []
        )
        rows = [row] + held + [r for r in claimed if r.action == "send"]
        put_back = False  # rows back in the outbox, due now: the lane claims them next
        for other in claimed:
            if other.action != "send":  # edits wait for their turn
                await self.outbox.reschedule(other.key, at=now, error="after a digest", refund=True)
                put_back = True
        # Every alert of a digest is shown in full: the oldest that fit go now, the rest
        # in the next digest (never an "and N more" that hides what they were).
        rows.sort(key=lambda r: (r.event_at, r.created_at))
        payload, fits = digest_payload(rows)
        for later in rows[fits:]:
            await self.outbox.reschedule(later.key, at=now, error="next digest", refund=True)
            put_back = True
        if put_back:
            self._unclaimed.add(row.destination)
        rows = rows[:fits]
        if len(rows) == 1:
            return await self._deliver(sender, rows[0])
        row = rows[0]  # the one whose failure, if any, decides for all
        windows = sender.windows()
        slots = await GATE.acquire(windows)
        try:
            try:
                await self._turn(row.destination)
                if not await self._destination_covers_send(row.destination):
                    for other in rows:
                        await self.outbox.reschedule(
                            other.key, at=self.clock(), error="standby", refund=True
                        )
                    return 0.0
                kept = [r for r in rows if await self._row_covers_send(r)]
                if not kept:
                    return 0.0
                if len(kept) < len(rows):
                    rows = kept
                    payload, _ = digest_payload(rows)  # fewer rows: they fit
                    row = rows[0]
                async with asyncio.timeout(self.send_timeout):
                    message_id = await sender.send(payload)
            finally:
                GATE.release(windows, slots)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            for other in rows[1:]:
                await self.outbox.reschedule(other.key, at=now, error="digest failed", refund=True)
            return await self._failed(sender, row, sender.classify(exc))
        now = self.clock()
        recorded = None if message_id is None else DIGESTED + message_id
        await self._recorded(row.destination, [(r.key, recorded) for r in rows], now)
        self.sent_count += len(rows)
        label = destination_label(row.destination)
        self.metrics.sent.labels(destination=label).inc(len(rows))
        self.metrics.digests.labels(destination=label).inc()
        event(_log, "alert.digest", dest=row.destination, alerts=len(rows))
        return 0.0

    async def _failed(self, sender: Sender, row: Row, failure: Failure) -> float:
        now = self.clock()
        if self.chats is not None and row.destination.startswith("@"):
            if failure.outcome is Outcome.MIGRATED and failure.new_chat_id is not None:
                await self.chats.migrated(row.destination, failure.new_chat_id, now)
            elif failure.outcome is Outcome.PERMANENT and _refused_for_good(failure.reason):
                handled = self.on_lost_chat is not None and await self.on_lost_chat(
                    row.destination, sender, failure.reason
                )
                if handled:
                    self.chats.forget(row.destination)
                else:
                    await self.chats.pause(row.destination, failure.reason, now)
                event(
                    _log,
                    "chat.paused",
                    logging.WARNING,
                    dest=row.destination,
                    reason=failure.reason,
                )
        if failure.outcome is Outcome.UNREACHABLE:
            # Not this alert's fault: it keeps its attempts; the whole lane waits.
            pause = now + self._unreachable_for(row.destination, failure.reason)
            await self.outbox.reschedule(row.key, at=pause, error=failure.reason, refund=True)
            self.metrics.retried.labels(
                destination=destination_label(row.destination), outcome=failure.outcome.value
            ).inc()
            return pause
        if failure.outcome is Outcome.BACKOFF:
            self._failing(row.destination, failure.reason)
        else:  # the chat API answered (a refusal, a rate limit): it is up
            self._reachable(row.destination)
        payload: dict[str, Any] | None = None
        if failure.outcome is Outcome.PLAIN_TEXT:
            if row.payload.get("plain"):
                failure = Failure(Outcome.PERMANENT, f"{failure.reason} (also as plain text)")
            else:
                payload = {**row.payload, "plain": True}
        decision = self.policy.decide(
            failure, attempts=row.attempts, created_at=row.created_at, now=now, rand=self.rand
        )
        if decision.next is Next.DEAD:
            await self._dead(row, decision.reason, now)
            return 0.0
        refund = failure.outcome in (Outcome.PLAIN_TEXT, Outcome.MIGRATED)
        await self.outbox.reschedule(
            row.key, at=decision.at, error=failure.reason, payload=payload, refund=refund
        )
        self.metrics.retried.labels(
            destination=destination_label(row.destination), outcome=failure.outcome.value
        ).inc()
        event(
            _log,
            "alert.retry",
            logging.WARNING,
            rule=row.rule,
            dest=row.destination,
            key=row.key,
            outcome=failure.outcome.value,
            reason=failure.reason,
            retry_in=round(decision.at - now, 3),
        )
        # The chat API asked the whole lane to wait.
        return decision.at if failure.outcome is Outcome.RETRY_AFTER else 0.0

    async def _dead(self, row: Row, reason: str, now: float) -> None:
        await self.outbox.mark_dead(row.key, reason=reason, now=now)
        self.metrics.dead.labels(destination=destination_label(row.destination)).inc()
        event(
            _log,
            "alert.dead",
            logging.ERROR,
            rule=row.rule,
            dest=row.destination,
            key=row.key,
            reason=reason,
        )


def _refused_for_good(reason: str) -> bool:
    """The chat itself will not take alerts (blocked, removed, deleted, no permission)."""
    text = reason.lower()
    return any(
        s in text
        for s in (
            "forbidden",
            "chat not found",
            "unknown channel",
            "missing access",
            "missing permissions",
            "cannot send messages to this user",
        )
    )
