"""Pollers of Parti's HTTP routes: the live list (catch-up after gaps, streams that ended,
filters passed late) and the calendar (scheduled reminders)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping

from notifier.deliver.lanes import Delivery
from notifier.enrich.profiles import Profiles
from notifier.log import event, get_logger, short_error
from notifier.parti.client import PartiClient, PartiError
from notifier.parti.models import CalendarEvent, ChannelLive, LiveChannel
from notifier.rules.engine import live_identity
from notifier.stages.catchup import Found, ended_edits, found_mode, plan_live_poll
from notifier.stages.context import Core
from notifier.stages.ingest import Ingest
from notifier.store.base import Store
from notifier.store.errors import StoreError
from notifier.store.types import LiveEntry, LiveRecord, NewAlert

_log = get_logger("poll")
# Written with the first poll's record of what was live (one transaction): a store that
# has it has seen a start, and its next start catches up instead of skipping.
FIRST_STARTED = "first_started"
CALENDAR_EVERY = 60.0
# Seconds without a price frame after which the prices route is asked instead: Parti may
# drop a subscription without a word while the connection and its other frames go on.
PRICE_SILENCE = 300.0


class LivePoller:
    def __init__(
        self,
        core: Core,
        ingest: Ingest,
        client: PartiClient,
        store: Store,
        delivery: Callable[[], Delivery],
        *,
        every: float,
        ran_before: bool,
        stream_up: Callable[[], bool],
        fence: Callable[[], int | None] = lambda: None,
        on_written: Callable[[list[NewAlert]], None] | None = None,
    ) -> None:
        self.core = core
        self.ingest = ingest
        self.client = client
        self.store = store
        self.delivery = delivery
        self.every = every
        self.ran_before = ran_before
        self.stream_up = stream_up
        self.fence = fence
        self.on_written = on_written
        self._polls = 0  # polls whose findings are written
        # When the last list was fetched (at first: now): a stream stored as started
        # since may be missing from a list that does not show it yet, and is not ended.
        self._listed_at = time.time()
        self._catch_up_owed = False
        self._poll_failed = False  # the store failed the last poll

    async def run(self) -> None:
        catch_up = self.ingest.catch_up
        # Started again after a poll the store failed: poll at once (the supervisor waited
        # out the outage), so the store's answer is seen within seconds, not a period.
        again = self._poll_failed
        while True:
            if not again:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.every):
                        await catch_up.wait()
            again = False
            # A catch-up whose poll failed (Parti, or the store: then this stage starts
            # again) is still owed: the next poll makes it.
            after_connect = catch_up.is_set() or self._catch_up_owed
            catch_up.clear()
            self._catch_up_owed = after_connect
            try:
                await self.poll(after_connect=after_connect)
            except PartiError as exc:
                event(_log, "poll.failed", logging.WARNING, error=short_error(exc))
                continue
            except StoreError:  # the supervisor waits the outage out, then the poll comes
                self._poll_failed = True
                raise
            self._poll_failed = self._catch_up_owed = False

    async def poll(self, *, after_connect: bool) -> None:
        # Read before the poll: a stream that drops during it leaves the flag for the next.
        gap = after_connect and self.ingest.gap_possible
        stream_up = self.stream_up()
        # What was live and what a cooldown held back, read before the list: a go-live
        # written while the list is fetched is not taken for a stream that ended.
        live_set = await self.store.live_set()
        held_back = dict(self.core.held_back)
        settled_before, listing = self._listed_at, time.time()
        channels: dict[int, LiveChannel] = {}
        async for channel in self.client.iter_live():
            channels[channel.user_id] = channel
        self._listed_at = listing
        for user_id, identity in held_back.items():
            if user_id not in channels and self.core.held_back.get(user_id) == identity:
                del self.core.held_back[user_id]  # that stream has ended
        if gap:
            await self._add_event_ids(channels, live_set)
        plan = plan_live_poll(channels, live_set, settled_before=settled_before)
        first_poll = self._polls == 0
        mode = found_mode(
            first_poll=first_poll,
            ran_before=self.ran_before,
            first_start=self.core.rules.file.defaults.first_start,
            gap=gap,
            stream_up=stream_up,
        )
        found = recorded = 0
        skipped: list[LiveEntry] = []
        for channel in plan.new:
            live = await self._as_live_event(channel)
            if live is None or not self.core.rules.engine.follows(live):
                continue
            if self.core.held_back.get(live.user_id) == live_identity(live):
                continue  # not alerted later, when the cooldown is over, as news
            if mode is Found.RECORD_ONLY:
                skipped.append(
                    LiveEntry(
                        live.user_id, live_identity(live), time.time(), live.viewers_count, {}
                    )
                )
                continue
            found += await self.core.evaluate(
                live, time.time(), caught_up=mode is Found.ALERT_CAUGHT_UP
            )
        first_start = first_poll and not self.ran_before
        if skipped or first_start:
            started = {FIRST_STARTED: str(time.time())} if first_start else None
            await self.store.enqueue(
                [], now=self.store.clock(), lives=skipped, state=started, fence=self.fence()
            )
            recorded = len(skipped)
        # Only now: a first poll whose write failed is made again as the first (its live
        # streams are recorded, not alerted as news), and a gap stays until caught up.
        self._polls += 1
        if after_connect and not self.ingest.catch_up.is_set():  # no reconnect since
            self.ingest.gap_possible = False
        if found and mode is Found.ALERT_CAUGHT_UP:
            self.core.metrics.catch_ups.inc(found)
        if after_connect or found or recorded:
            event(
                _log,
                "catch_up.done",
                live=len(channels),
                alerts=found,
                gap=mode is Found.ALERT_CAUGHT_UP,
                skipped_on_first_start=recorded,
            )
        if plan.peaks:
            await self.store.update_peaks(plan.peaks, fence=self.fence())
        for record in plan.ended:
            ended = await self.store.end_live(
                record.user_id, identity=record.identity, ended_at=time.time(), fence=self.fence()
            )
            if ended is not None:
                self.ingest.stream_ended(record.user_id)
        await self._edit_ended()

    async def _add_event_ids(
        self, channels: dict[int, LiveChannel], live_set: Mapping[int, LiveRecord]
    ) -> None:
        """After a gap: the event id of a listed stream without one whose channel's stored
        stream has one, so a stream that ended and started again meanwhile is told apart."""
        for user_id, channel in channels.items():
            record = live_set.get(user_id)
            if channel.event_id is not None or record is None:
                continue
            if not record.identity.startswith(f"live:{user_id}:event:"):
                continue
            try:
                info = (await self.client.channel(user_id)).channel_info.channel
            except PartiError:
                continue
            if info.current_event_id is not None:
                channels[user_id] = channel.model_copy(
                    update={"event_id": info.current_event_id, "livestream_id": info.livestream_id}
                )

    async def _as_live_event(self, channel: LiveChannel) -> ChannelLive | None:
        data = channel.model_dump()
        if channel.event_id is None and channel.livestream_id is None:
            # The live list may omit the ids; the channel route has them (same identity
            # as the WebSocket event, so the outbox key dedups).
            try:
                info = await self.client.channel(channel.user_id)
            except PartiError:
                return None
            data["event_id"] = info.channel_info.channel.current_event_id
            data["livestream_id"] = info.channel_info.channel.livestream_id
        try:
            live = ChannelLive.model_validate(data)
        except ValueError:
            return None
        return self.ingest.with_seq(live)

    async def _edit_ended(self) -> None:
        """The "ended" edits of every stream that ended (by this poll, by one the store
        failed after it, or replaced by the channel's next stream): queued, then the
        ended stream forgotten, so a fault between the two loses no edit (the keys dedup
        the ones queued twice)."""
        delivery = self.delivery()

        def known(name: str) -> bool:
            # A chat destination's lane opens on demand; a file destination must exist.
            return name.startswith("@") or name in delivery.senders

        for ended in await self.store.ended_streams():
            live = ended.live
            edits = ended_edits(
                await self.store.by_identity(live.identity),
                on_end_of=self.core.on_end_of,
                known=known,
                ended_at=ended.ended_at,
                peak_viewers=live.peak_viewers,
            )
            added: list[str] = []
            if edits:
                added = await self.store.enqueue(edits, now=self.store.clock(), fence=None)
            await self.store.forget_ended([live.identity], fence=self.fence())
            event(_log, "stream.ended", user_id=live.user_id, edits=len(edits))
            if not edits:
                continue
            for edit in edits:
                self.delivery().wake(edit.destination)  # a reload meanwhile: the new lanes
            if self.on_written is not None:
                self.on_written([e for e in edits if e.key in added])


class CalendarPoller:
    """Reminders before scheduled streams; idle while no rule is `scheduled` (a reload that
    adds the first one wakes it)."""

    def __init__(
        self,
        core: Core,
        client: PartiClient,
        profiles: Profiles,
        *,
        every: float,
        rules_changed: asyncio.Event,
    ) -> None:
        self.core = core
        self.client = client
        self.profiles = profiles
        self.every = every
        self.rules_changed = rules_changed

    async def run(self) -> None:
        while True:
            if not self.core.rules.engine.counts["scheduled"]:
                await self.rules_changed.wait()
                self.rules_changed.clear()
                continue
            try:
                await self.poll()
            except PartiError as exc:
                event(_log, "calendar.failed", logging.WARNING, error=short_error(exc))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.every):
                    await self.rules_changed.wait()
            self.rules_changed.clear()

    async def poll(self) -> None:
        entries = [e async for e in self.client.iter_calendar()]
        events = await asyncio.gather(*(self._named(e) for e in entries))
        result = self.core.rules.engine.on_calendar(events, time.time())
        await self.core.put(result.matches)

    async def _named(self, entry: CalendarEvent) -> CalendarEvent:
        """Calendar entries carry no user name; rules may name users: look it up."""
        if entry.user_name:
            return entry
        profile = await self.profiles.get(entry.user_id)
        if profile is None:
            return entry
        return entry.model_copy(update={"user_name": profile.user_name})


class PricePoller:
    """Price frames silent for `silence` seconds (a subscription Parti dropped without a
    word, while the connection and its other frames go on): the prices route is asked
    every `every` seconds and its prices go through the engine as frames would, until a
    frame comes again. Never while frames come: a polled price older than a frame's must
    not re-arm a line the frame crossed."""

    def __init__(
        self,
        core: Core,
        ingest: Ingest,
        client: PartiClient,
        *,
        every: float,
        silence: float = PRICE_SILENCE,
    ) -> None:
        self.core = core
        self.ingest = ingest
        self.client = client
        self.every = every
        self.silence = silence
        self.polling = False  # the last look found the frames silent

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            silent_for = time.monotonic() - self.ingest.last_price_at
            if silent_for < self.silence:
                if self.polling:
                    self.polling = False
                    event(_log, "prices.frames_back")
                continue
            try:
                prices = await self.client.prices()
            except PartiError as exc:
                event(_log, "prices.poll_failed", logging.WARNING, error=short_error(exc))
                continue
            if not self.polling:
                self.polling = True
                event(
                    _log,
                    "prices.polled",
                    logging.WARNING,
                    silent_for=round(silent_for),
                    note="no price frame came: prices are asked every "
                    f"{self.every:g} s until one does",
                )
            now = time.time()
            for asset in prices:
                await self.core.evaluate(asset.update(), now, caught_up=False)
