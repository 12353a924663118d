"""Composition root: builds the stages from Settings and the rules file, owns the TaskGroup.

    Parti WS -> stream -> rules -> (match queue) -> enrich -> render -> outbox -> lanes -> chats
    Parti HTTP: categories and prices at start, live-list polls (catch-up, stream ended),
    calendar polls (scheduled reminders), profiles (enrichment).

The reader never waits on a chat API: matches go through a bounded queue (back-pressure,
nothing that matched is dropped) to the writer, which enriches within a time budget and
writes them to the outbox in one transaction; the delivery lanes take it from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from notifier import systemd
from notifier.deliver.factory import Senders, build_senders
from notifier.deliver.lanes import Delivery
from notifier.enrich.profiles import Profiles
from notifier.log import event, get_logger
from notifier.metrics import Metrics
from notifier.outbox.aio import AsyncOutbox
from notifier.outbox.store import LiveEntry, NewAlert, Outbox
from notifier.parti.client import PartiClient, PartiError
from notifier.parti.models import ChannelLive, LiveChannel, PriceUpdate
from notifier.parti.stream import Connected, PartiStream, Received
from notifier.render.fields import AlertView, ended_fields, view_of
from notifier.rules.engine import Match, category_map
from notifier.rules.loader import RulesError
from notifier.rules.schema import RulesFile
from notifier.rules.stream import DEFAULT_META, RuleMeta, compile_rules
from notifier.settings import Settings

_log = get_logger("app")

ENGINE_STATE = "engine_state"
MATCH_QUEUE = 1_000  # matches waiting for the writer; a full queue holds the reader back
WRITE_BATCH = 100  # alerts written in one transaction
STATE_EVERY = 5.0
CALENDAR_EVERY = 60.0


@dataclass
class Options:
    """Knobs the tests, the demo and the benchmarks turn; the defaults are the product's."""

    reconnect_base: float = 1.0
    reconnect_cap: float = 60.0
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    enrich_budget: float = 1.5
    drain_deadline: float = 10.0
    stream_down_budget: float = 120.0  # /healthz: how long a reconnect may take
    limits_scale: float = 1.0
    lease: float = 120.0
    durable: bool = True
    console_stream: Any = None
    on_alert_written: Callable[[list[NewAlert]], None] | None = None
    on_evaluated: Callable[[ChannelLive | PriceUpdate], None] | None = None


@dataclass
class _Pending:
    match: Match
    caught_up: bool = False


@dataclass
class Health:
    stream_connected: bool = False
    stream_down_since: float | None = None
    stages: dict[str, bool] = field(default_factory=dict)


class App:
    def __init__(
        self, settings: Settings, *, rules_path: str | None = None, options: Options | None = None
    ) -> None:
        self.settings = settings
        self.rules_path = rules_path or settings.rules
        self.options = options or Options()
        self.metrics = Metrics()
        self.health = Health()
        compiled = compile_rules(self.rules_path)  # RulesError: the caller reports it
        self.rules_file: RulesFile = compiled.rules_file  # destinations and defaults
        self.engine = compiled.engine
        self.rule_meta = compiled.meta
        self.outbox = AsyncOutbox(Outbox(settings.state_path, durable=self.options.durable))
        self.client = PartiClient(settings.parti_api_url)
        self.profiles = Profiles(self.client, budget=self.options.enrich_budget)
        self.categories: dict[int, list[str]] = {}
        self.stream = PartiStream(
            settings.parti_ws_url,
            backoff_base=self.options.reconnect_base,
            backoff_cap=self.options.reconnect_cap,
            ping_interval=self.options.ping_interval,
            ping_timeout=self.options.ping_timeout,
            on_reject=lambda reason: self.metrics.rejected.labels(reason=reason).inc(),
        )
        self.senders: Senders = build_senders(
            self.rules_file, settings, limits_scale=self.options.limits_scale
        )
        self.delivery = self._delivery(self.senders)
        self.ready = asyncio.Event()
        self.connected_once = asyncio.Event()
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(MATCH_QUEUE)
        self._stop = asyncio.Event()
        self._reload = asyncio.Event()
        self._catch_up = asyncio.Event()
        self._delivery_changed = asyncio.Event()
        self._ran_before = False  # the state file had alerts: the first connect ends a gap
        self._gap_possible = False
        self.health_changed = asyncio.Condition()  # notified when healthy() flips
        self._state_dirty = False
        self._writing = 0
        self._http: web.AppRunner | None = None
        self.http_port: int | None = None

    def _build_senders(self, rules_file: RulesFile) -> Senders:
        return build_senders(
            rules_file,
            self.settings,
            limits_scale=self.options.limits_scale,
            console_stream=self.options.console_stream,
        )

    def _delivery(self, senders: Senders) -> Delivery:
        return Delivery(
            self.outbox, senders.by_name, metrics=self.metrics, lease=self.options.lease
        )

    # ---- control ------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        self._reload.set()

    # ---- run ------------------------------------------------------------------------

    async def run(self) -> int:
        await self.senders.start()
        await self._start_http()
        await self._load_state()
        await self._fetch_reference_data()
        gc.collect()
        gc.freeze()  # compiled rules live forever: keep full collections from walking them
        try:
            async with asyncio.TaskGroup() as group:
                stages: dict[str, Callable[[], Awaitable[None]]] = {
                    "reader": self._reader,
                    "writer": self._writer,
                    "poller": self._poller,
                    "calendar": self._calendar,
                    "state": self._state_saver,
                    "reloader": self._reloader,
                    "watchdog": self._watchdog,
                }
                tasks = {n: group.create_task(self._supervise(n, f)) for n, f in stages.items()}
                delivery = group.create_task(self._run_delivery())
                self.ready.set()
                await self._stop.wait()
                systemd.notify("STOPPING=1\nSTATUS=draining")
                event(_log, "app.stopping")
                for name, task in tasks.items():
                    if name != "writer":  # stop reading; the writer flushes the queue first
                        task.cancel()
                await self._flush_queue()
                tasks["writer"].cancel()
                self.delivery.stop()
                drained = await self.delivery.drain(self.options.drain_deadline)
                event(_log, "app.drained", complete=drained, in_flight=self.delivery.in_flight)
                delivery.cancel()
        finally:
            await self._save_state()
            await self._close()
        event(_log, "app.stopped")
        return 0

    async def _supervise(self, name: str, stage: Callable[[], Awaitable[None]]) -> None:
        """Run a stage forever; a crash is logged, counted and restarted, never silent."""
        self.health.stages[name] = True
        while True:
            try:
                await stage()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.health.stages[name] = False
                self.metrics.stage_restarts.labels(stage=name).inc()
                event(
                    _log,
                    "stage.crashed",
                    logging.ERROR,
                    stage=name,
                    error=f"{type(exc).__name__}: {str(exc)[:300]}",
                )
                await asyncio.sleep(1.0)
                self.health.stages[name] = True

    async def _run_delivery(self) -> None:
        """Run the current delivery; after a reload swaps it, run the new one."""
        while True:
            current = self.delivery
            try:
                await current.run()
            except Exception as exc:  # lanes restart themselves; this is the last resort
                self.metrics.stage_restarts.labels(stage="delivery").inc()
                error = repr(exc)[:300]
                event(_log, "stage.crashed", logging.ERROR, stage="delivery", error=error)
                await asyncio.sleep(1.0)
                continue
            if self._stop.is_set():
                return
            while self.delivery is current:
                await self._delivery_changed.wait()
                self._delivery_changed.clear()

    async def _close(self) -> None:
        if self._http is not None:
            await self._http.cleanup()
        await self.senders.close()
        await self.client.aclose()
        self.outbox.close()

    # ---- start-up ----------------------------------------------------------------------

    async def _load_state(self) -> None:
        self._ran_before = bool(await self.outbox.counts())
        released = await self.outbox.release_leases()
        if released:
            event(_log, "outbox.recovered", in_flight_at_last_stop=released)
        text = await self.outbox.get_state(ENGINE_STATE)
        if text:
            self.engine.restore_state(json.loads(text))

    async def _fetch_reference_data(self) -> None:
        """Categories map ids to names for the rules; prices set the engine's baselines."""
        try:
            self.categories = category_map(await self.client.categories())
            self.engine.set_categories(self.categories)
        except PartiError as exc:
            event(_log, "parti.categories_unavailable", logging.WARNING, error=str(exc))
        try:
            prices = await self.client.prices()
        except PartiError as exc:
            event(_log, "parti.prices_unavailable", logging.WARNING, error=str(exc))
            return
        now = time.time()
        for asset in prices:
            update = PriceUpdate(
                display_symbol=asset.display_symbol,
                ticker=asset.ticker,
                asset_type=asset.asset_type,
                price=asset.price,
            )
            await self._evaluate(update, now, caught_up=True)

    # ---- the reader ----------------------------------------------------------------------

    async def _reader(self) -> None:
        async with contextlib.aclosing(self.stream.__aiter__()) as items:
            async for item in items:
                if isinstance(item, Connected):
                    self._on_connected(item)
                    continue
                assert isinstance(item, Received)
                self.metrics.events.labels(type=item.event.kind).inc()
                await self._evaluate(item.event, item.at)
                if self.options.on_evaluated is not None:
                    self.options.on_evaluated(item.event)

    def _on_connected(self, item: Connected) -> None:
        self.health.stream_connected = True
        self.health.stream_down_since = None
        self.metrics.connected.set(1)
        if item.gap is not None:
            self.metrics.reconnects.inc()
        self._gap_possible = item.gap is not None or self._ran_before
        self._catch_up.set()  # on start and after every reconnect
        if not self.connected_once.is_set():
            self.connected_once.set()
            systemd.notify("READY=1\nSTATUS=connected to Parti")
        else:
            gap = f"{item.gap.seconds:.1f}" if item.gap else "?"
            systemd.notify(f"STATUS=reconnected after {gap}s")

    async def _evaluate(
        self, ev: ChannelLive | PriceUpdate, at: float, *, caught_up: bool = False
    ) -> None:
        result = self.engine.evaluate(ev, at)
        if result.matches:
            self._state_dirty = True
        for match in result.matches:
            await self._queue.put(_Pending(match, caught_up))  # back-pressure, never a drop

    # ---- the writer: enrich, render, outbox ------------------------------------------------

    async def _writer(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            while not self._queue.empty() and len(batch) < WRITE_BATCH:
                batch.append(self._queue.get_nowait())
            self._writing += 1
            try:
                await self._write(batch)
            finally:
                self._writing -= 1
                for _ in batch:
                    self._queue.task_done()

    async def _flush_queue(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.options.drain_deadline):
                await self._queue.join()

    async def _write(self, batch: list[_Pending]) -> None:
        users = {p.match.event.user_id for p in batch if isinstance(p.match.event, ChannelLive)}
        found = await asyncio.gather(*(self.profiles.get(uid) for uid in users))
        profiles = dict(zip(users, found, strict=True))
        alerts: list[NewAlert] = []
        lives: list[LiveEntry] = []
        for pending in batch:
            match = pending.match
            event_ = match.event
            profile = profiles.get(event_.user_id) if isinstance(event_, ChannelLive) else None
            view = view_of(match, profile, caught_up=pending.caught_up)
            template = self._meta(match.rule).template
            alerts.append(
                NewAlert(
                    key=match.key,
                    destination=match.destination,
                    rule=match.rule,
                    kind=match.kind,
                    subject=match.subject,
                    identity=match.identity,
                    payload={"view": view.to_json(), "template": template},
                    event_at=match.at,
                )
            )
            if isinstance(event_, ChannelLive):
                lives.append(
                    LiveEntry(
                        event_.user_id,
                        match.identity,
                        match.at,
                        event_.viewers_count,
                        {"rule": match.rule},
                    )
                )
        keys, rows = await self.outbox.enqueue_leased(
            alerts,
            now=time.time(),
            lease=self.options.lease,
            room=self.delivery.room(),
            lives=lives,
        )
        added = set(keys)  # a key already in the outbox is a no-op, not a new alert
        for alert in alerts:
            if alert.key in added:
                self.metrics.matches.labels(rule=alert.rule).inc()
                self.delivery.wake(alert.destination)
        self.delivery.hand(rows)
        if self.options.on_alert_written is not None:
            self.options.on_alert_written([a for a in alerts if a.key in added])

    def _meta(self, name: str) -> RuleMeta:
        return self.rule_meta.get(name) or DEFAULT_META["live"]

    # ---- polls: catch-up after gaps, streams that ended, calendar reminders ----------------

    async def _poller(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.live_poll):
                    await self._catch_up.wait()
            after_connect = self._catch_up.is_set()
            self._catch_up.clear()
            try:
                await self._poll_live(after_connect=after_connect)
            except PartiError as exc:
                event(_log, "poll.failed", logging.WARNING, error=str(exc))

    async def _poll_live(self, *, after_connect: bool) -> None:
        # Alerts found right after a reconnect (or a restart) were missed in the gap and
        # say so; on a first start or a routine poll they are plain alerts.
        caught_up = after_connect and self._gap_possible
        channels: dict[int, LiveChannel] = {}
        async for channel in self.client.iter_live():
            channels[channel.user_id] = channel
        live_set = await self.outbox.live_set()
        found = 0
        for user_id, channel in channels.items():
            if user_id in live_set:
                continue  # already alerted for this stream
            live = await self._as_live_event(channel)
            if live is None or not self.engine.follows(live):
                continue
            before = self._queue.qsize()
            # After a gap it was missed; on a routine poll it may only now pass a filter
            # such as min_viewers (a stream starts with 0 viewers).
            await self._evaluate(live, time.time(), caught_up=caught_up)
            found += self._queue.qsize() - before
        if found:
            self.metrics.catch_ups.inc(found)
        if after_connect or found:
            event(_log, "catch_up.done", live=len(channels), alerts=found, gap=caught_up)
        await self.outbox.update_peaks(
            {u: c.viewers_count or 0 for u, c in channels.items() if u in live_set}
        )
        for user_id in set(live_set) - set(channels):
            await self._stream_ended(user_id)

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
            return ChannelLive.model_validate(data)
        except ValueError:
            return None

    async def _stream_ended(self, user_id: int) -> None:
        ended = await self.outbox.end_live(user_id)
        if ended is None:
            return
        now = time.time()
        edits: list[NewAlert] = []
        for row in await self.outbox.by_identity(ended["identity"]):
            on_end = self._meta(row.rule).on_end or self.rules_file.defaults.on_end
            if on_end == "ignore" or row.destination not in self.delivery.senders:
                continue
            view = AlertView.from_json(row.payload["view"])
            fields = ended_fields(view.fields, ended_at=now, peak_viewers=ended["peak_viewers"])
            edits.append(
                NewAlert(
                    key=f"{row.key}:end",
                    destination=row.destination,
                    rule=row.rule,
                    kind=row.kind,
                    subject=row.subject,
                    identity=f"{row.identity}:end",
                    payload={
                        "view": AlertView(view.kind, view.rule, fields).to_json(),
                        "template": None,
                    },
                    event_at=now,
                    action="delete" if on_end == "delete" else "edit",
                    ref_key=row.key,
                )
            )
        if edits:
            added = await self.outbox.enqueue(edits, now=now)
            for edit in edits:
                self.delivery.wake(edit.destination)
            if self.options.on_alert_written is not None:
                self.options.on_alert_written([e for e in edits if e.key in added])
            event(_log, "stream.ended", user_id=user_id, edits=len(edits))

    async def _calendar(self) -> None:
        if not self.engine.counts["scheduled"]:
            await self._stop.wait()
            return
        while True:
            try:
                events = [e async for e in self.client.iter_calendar()]
                result = self.engine.on_calendar(events, time.time())
                for match in result.matches:
                    await self._queue.put(_Pending(match))
                if result.matches:
                    self._state_dirty = True
            except PartiError as exc:
                event(_log, "calendar.failed", logging.WARNING, error=str(exc))
            await asyncio.sleep(min(CALENDAR_EVERY, self.settings.live_poll))

    # ---- engine state ------------------------------------------------------------------

    async def _state_saver(self) -> None:
        while True:
            await asyncio.sleep(STATE_EVERY)
            await self._save_state()

    async def _save_state(self) -> None:
        # Saved only when every evaluated match is in the outbox, so the saved state never
        # runs ahead of the alerts (an older state is safe: outbox keys dedup a re-fire).
        if not self._state_dirty or not self._queue.empty() or self._writing:
            return
        self._state_dirty = False
        state = json.dumps(self.engine.export_state(now=time.time()))
        await self.outbox.set_state(ENGINE_STATE, state)

    # ---- reload ---------------------------------------------------------------------------

    async def _reloader(self) -> None:
        while True:
            await self._reload.wait()
            self._reload.clear()
            await self.reload()

    async def reload(self) -> bool:
        try:
            compiled = compile_rules(
                self.rules_path, categories=self.categories, state=self.engine.export_state()
            )
            rules_file = compiled.rules_file
            senders = self._build_senders(rules_file)
            await senders.start()
        except RulesError as exc:
            for problem in exc.problems:
                event(_log, "rules.error", logging.ERROR, problem=str(problem))
            self.metrics.reloads.labels(result="error").inc()
            event(
                _log,
                "rules.reload_failed",
                logging.ERROR,
                errors=len(exc.problems),
                kept="previous rules",
            )
            return False
        except Exception as exc:
            self.metrics.reloads.labels(result="error").inc()
            event(
                _log,
                "rules.reload_failed",
                logging.ERROR,
                error=str(exc)[:300],
                kept="previous rules",
            )
            return False
        # Matches evaluated between the export above and this swap keep their alerts; the
        # engine state they changed is re-derived (outbox keys dedup any re-fire).
        self.engine, self.rule_meta = compiled.engine, compiled.meta
        self.rules_file = rules_file
        old_delivery, old_senders = self.delivery, self.senders
        old_delivery.stop()
        if await old_delivery.drain(self.options.drain_deadline):
            # Nothing is in flight now: rows the old lanes held by hand are due again.
            await self.outbox.release_leases()
        self.senders, self.delivery = senders, self._delivery(senders)
        self._delivery_changed.set()
        self.delivery.wake_all()  # rows left by the old lanes
        await old_senders.close()
        self.metrics.reloads.labels(result="ok").inc()
        kinds = self.engine.summary()
        event(_log, "rules.reloaded", **kinds, destinations=len(rules_file.destinations))
        systemd.notify("STATUS=rules reloaded")
        return True

    # ---- health, metrics, watchdog ------------------------------------------------------

    def healthy(self) -> tuple[bool, str]:
        if not self.health.stream_connected:
            since = self.health.stream_down_since
            if since is not None and time.time() - since > self.options.stream_down_budget:
                return False, f"stream down for {time.time() - since:.0f}s"
        dead = [name for name, ok in self.health.stages.items() if not ok]
        if dead:
            return False, f"stage restarting: {', '.join(sorted(dead))}"
        if self.ready.is_set() and not self.delivery.lanes_alive:
            return False, "delivery lanes not running"
        return True, "ok"

    async def _watchdog(self) -> None:
        interval = systemd.watchdog_interval()
        was_ok = True
        while True:
            stats = self.stream.stats
            if not stats.connected and self.health.stream_connected:
                self.health.stream_connected = False
                self.health.stream_down_since = time.time()
                self.metrics.connected.set(0)
            ok, reason = self.healthy()
            if ok != was_ok:
                was_ok = ok
                event(
                    _log,
                    "health.changed",
                    logging.INFO if ok else logging.WARNING,
                    healthy=ok,
                    reason=reason,
                )
                async with self.health_changed:
                    self.health_changed.notify_all()
            if interval is not None and ok:
                systemd.notify("WATCHDOG=1")
            await asyncio.sleep(min(interval or 0.25, 0.25))

    async def _start_http(self) -> None:
        if not self.settings.http_addr:
            return
        host, _, port = self.settings.http_addr.rpartition(":")
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        self._http = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._http.setup()
        site = web.TCPSite(self._http, host or "127.0.0.1", int(port))
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.http_port = sockets[0].getsockname()[1] if sockets else int(port)
        event(_log, "http.listening", addr=f"{host}:{self.http_port}")

    async def _healthz(self, request: web.Request) -> web.Response:
        ok, reason = self.healthy()
        body = {
            "status": "ok" if ok else "unhealthy",
            "reason": reason,
            "stream_connected": self.health.stream_connected,
            "outbox": await self.outbox.counts(),
        }
        return web.json_response(body, status=200 if ok else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        counts = await self.outbox.counts()
        self.metrics.outbox_depth.set(counts.get("pending", 0) + counts.get("sending", 0))
        oldest = await self.outbox.oldest_pending_at()
        self.metrics.outbox_oldest.set(0 if oldest is None else max(0.0, time.time() - oldest))
        return web.Response(
            body=self.metrics.render(),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )
