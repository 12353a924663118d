"""The writer: enriches queued matches and writes them to the outbox in batches.

A batch is written whole or retried until it is: a database that fails for a while
holds the queue (and so the reader) back, it never drops a match (but one whose alert
cannot be prepared, a bug: logged, its batch written without it), and the engine state
is not saved while a batch is unwritten.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from notifier.backoff import full_jitter
from notifier.deliver.lanes import Delivery
from notifier.enrich.profiles import Profiles
from notifier.log import event, get_logger, short_error
from notifier.metrics import destination_label
from notifier.parti.models import ChannelLive, UserProfile
from notifier.render.fields import view_of
from notifier.stages.context import Core, Pending
from notifier.stages.state import ENGINE_STATE, state_text
from notifier.store.base import Store
from notifier.store.outage import Outage, pause
from notifier.store.types import LiveEntry, NewAlert

_log = get_logger("writer")
WRITE_BATCH = 100  # alerts written in one transaction


class Writer:
    def __init__(
        self,
        core: Core,
        store: Store,
        profiles: Profiles,
        delivery: Callable[[], Delivery],
        *,
        lease: float,
        fence: Callable[[], int | None] = lambda: None,
        on_written: Callable[[list[NewAlert]], None] | None = None,
        retry_cap: float = 5.0,
        handing: asyncio.Lock | None = None,
    ) -> None:
        self.core = core
        self.store = store
        self.profiles = profiles
        self.delivery = delivery  # the current delivery (a reload swaps it)
        self.lease = lease
        self.fence = fence
        self.on_written = on_written
        self.retry_cap = retry_cap
        # Held from the lease to the hand-off, so that a reload's swap of the delivery
        # never releases leases before a write's rows are leased (`DeliveryHolder.handing`).
        self.handing = handing or asyncio.Lock()
        # Logged once an outage, shown in /healthz meanwhile (its waits are the writer's
        # own: a batch is tried again sooner than the other parts try).
        self._outage = Outage(
            "writer",
            core.health.store_errors,
            failed_event="outbox.write_failed",
            recovered_event="outbox.write_recovered",
            level=logging.ERROR,
        )
        self.writing = 0
        self._wrote = asyncio.Event()  # set after each batch

    @property
    def idle(self) -> bool:
        """Every evaluated match is in the outbox."""
        return self.core.queue.empty() and not self.writing and not self.core.unwritten

    async def run(self) -> None:
        try:
            await self._run()
        finally:  # stopped (the role lost) mid-outage: its error goes from /healthz with it
            self._outage.close()

    async def _run(self) -> None:
        core, queue = self.core, self.core.queue
        while True:
            taken = 0  # from the queue (the rest: a batch an earlier writer did not finish)
            if core.unwritten:
                batch, core.unwritten = core.unwritten[:WRITE_BATCH], core.unwritten[WRITE_BATCH:]
            else:
                batch = [await queue.get()]
                while not queue.empty() and len(batch) < WRITE_BATCH:
                    batch.append(queue.get_nowait())
                taken = len(batch)
            self.writing += 1
            try:
                await self._write_until_done(batch)
            except BaseException:
                # Stopped mid-write (the role lost) or failed before it (restarted by the
                # supervisor): the batch is the next writer's first, never dropped.
                core.unwritten[:0] = batch
                raise
            finally:
                self.writing -= 1
                self._wrote.set()
                for _ in range(taken):
                    queue.task_done()

    async def flush(self, deadline: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(deadline):
                await self.core.queue.join()
                while not self.idle:  # a batch an earlier writer left (`Core.unwritten`)
                    self._wrote.clear()
                    await self._wrote.wait()

    async def _write_until_done(self, batch: list[Pending]) -> None:
        alerts, lives = await self._prepare(batch)
        if not alerts:  # none could be prepared (each logged)
            return
        attempt = 0
        while True:
            try:
                await self._write(alerts, lives)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                attempt += 1
                self._outage.failed(exc, alerts=len(alerts))
                await pause(full_jitter(attempt, base=0.1, cap=self.retry_cap, rand=random.random))
                continue
            self._outage.answered(alerts=len(alerts))
            return

    async def _prepare(self, batch: list[Pending]) -> tuple[list[NewAlert], list[LiveEntry]]:
        users = {p.match.event.user_id for p in batch if isinstance(p.match.event, ChannelLive)}
        profiles: dict[int, UserProfile | None] = {}
        missing = []
        for uid in users:  # a cached profile costs no task (a turn of the loop per alert)
            hit, profile = self.profiles.cached(uid)
            if hit:
                profiles[uid] = profile
            else:
                missing.append(uid)
        if missing:
            found = await asyncio.gather(
                *(self.profiles.get(uid) for uid in missing), return_exceptions=True
            )
            for uid, got in zip(missing, found, strict=True):  # a failure is no profile
                profiles[uid] = None if isinstance(got, BaseException) else got
        alerts: list[NewAlert] = []
        lives: list[LiveEntry] = []
        for pending in batch:
            match = pending.match
            ev = match.event
            profile = profiles.get(ev.user_id) if isinstance(ev, ChannelLive) else None
            try:
                view = view_of(match, profile, caught_up=pending.caught_up)
                payload = self._payload(match.rule, view.to_json())
            except Exception as exc:  # a bug with this one alert: it must not hold the rest
                event(
                    _log,
                    "alert.unprepared",
                    logging.ERROR,
                    rule=match.rule,
                    destination=match.destination,
                    key=match.key,
                    error=short_error(exc),
                )
                continue
            alerts.append(
                NewAlert(
                    key=match.key,
                    destination=match.destination,
                    rule=match.rule,
                    kind=match.kind,
                    subject=match.subject,
                    identity=match.identity,
                    payload=payload,
                    event_at=match.at,
                )
            )
            if isinstance(ev, ChannelLive):
                lives.append(LiveEntry(ev.user_id, match.identity, match.at, ev.viewers_count, {}))
        return alerts, lives

    def _payload(self, rule: str, view: dict[str, Any]) -> dict[str, Any]:
        payload: dict[str, Any] = {"view": view, "template": self.core.template_of(rule)}
        role = self.core.mention_role_of(rule)
        if role is not None:
            payload["mention_role"] = role  # a Discord server's role for this streamer
        return payload

    def _state_with(self, alerts: list[NewAlert]) -> dict[str, str] | None:
        """The engine state to commit with a batch of price crossings, so a successor never
        restores a line as armed for a crossing already alerted (a line's first crossing
        has no saved stamp: seen again, it would alert again). Only when every evaluated
        match is in this batch (the queue is empty): the state must not run ahead of the
        outbox."""
        if (
            not any(a.kind == "price" for a in alerts)
            or not self.core.queue.empty()
            or self.core.unwritten
        ):
            return None
        state = self.core.rules.engine.export_state(now=time.time(), saving=True)
        self.core.state_dirty = False  # an event evaluated from here on sets it again
        return {ENGINE_STATE: state_text(state)}

    async def _write(self, alerts: list[NewAlert], lives: list[LiveEntry]) -> None:
        async with self.handing:
            await self._write_and_hand(alerts, lives)

    async def _write_and_hand(self, alerts: list[NewAlert], lives: list[LiveEntry]) -> None:
        delivery = self.delivery()
        state = self._state_with(alerts)
        try:
            keys, rows = await self.store.enqueue_leased(
                alerts,
                now=self.store.clock(),
                lease=self.lease,
                room=delivery.room(),
                lives=lives,
                fence=self.fence(),
                state=state,
            )
        except BaseException:
            if state is not None:
                self.core.state_dirty = True  # not saved after all
            raise
        added = set(keys)  # a key already in the outbox is a no-op, not a new alert
        new = [(a.key, a.destination) for a in alerts if a.key in added]
        for _, destination in new:
            self.core.metrics.matches.labels(destination=destination_label(destination)).inc()
        delivery.written(new, rows)
        if self.on_written is not None:
            self.on_written([a for a in alerts if a.key in added])
