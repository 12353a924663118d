"""Composition root: builds the stages from Settings and the rules file, owns the TaskGroup.

    Parti WS -> Ingest -> engine -> (match queue) -> Writer -> store -> delivery lanes -> chats
    Parti HTTP: categories and prices at start, LivePoller (catch-up, stream ended, late
    filters), CalendarPoller (scheduled reminders), profiles (enrichment).

Which stages run is decided by the roles this instance holds: with SQLite it holds them
all; with PostgreSQL the ingest stages run on the one instance holding the ingest lock,
and delivery runs everywhere. The logic lives in notifier/stages/; this module wires.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from notifier import systemd
from notifier.deliver.chats import Chats
from notifier.deliver.factory import Senders, build_senders
from notifier.deliver.lanes import Delivery, LeaseTrust
from notifier.deliver.limits import WindowBank
from notifier.enrich.profiles import Profiles
from notifier.log import (
    event,
    get_logger,
    register_secret,
    register_settings_secrets,
    short_error,
)
from notifier.metrics import Metrics, destination_label
from notifier.outbox import unrecorded
from notifier.parti.client import PartiClient, PartiError
from notifier.parti.decode import REJECT_REASONS
from notifier.parti.models import ChannelLive, PriceUpdate
from notifier.parti.stream import PartiStream
from notifier.rules.engine import category_map
from notifier.rules.stream import Compiled, compile_rules
from notifier.settings import Settings
from notifier.stages.bots import CommandBots
from notifier.stages.chat_senders import ChatSenders
from notifier.stages.context import Core, Health, Rules
from notifier.stages.decisions import DecisionRecorder
from notifier.stages.delivery import DeliveryHolder
from notifier.stages.ingest import Ingest
from notifier.stages.ops_http import OpsHttp, Watch
from notifier.stages.pollers import (
    CALENDAR_EVERY,
    FIRST_STARTED,
    PRICE_SILENCE,
    CalendarPoller,
    LivePoller,
    PricePoller,
)
from notifier.stages.reload import Reloader
from notifier.stages.state import ENGINE_STATE, Pruner, StateSaver
from notifier.stages.subscriptions import SubscriptionSync
from notifier.stages.supervisor import supervise
from notifier.stages.writer import Writer
from notifier.store import Store, open_store
from notifier.store.errors import FencedOut, StoreError
from notifier.store.outage import Outage, pause
from notifier.store.types import NewAlert

if TYPE_CHECKING:  # psycopg (about 10 MB) is imported only where PostgreSQL is used
    from notifier.store.roles import RoleLock

_log = get_logger("app")
INGEST_ROLE = "ingest"
# How long a stop tries once more to record the sends the store refused (else: a file).
UNRECORDED_LAST_TRY = 2.0
ROLE_RETRY = 2.0  # how often a standby instance tries to take the ingest role
# PostgreSQL: how long a start waits for its own instance lock (a killed predecessor of the
# same name leaves its session a moment after it dies) before it goes on without it.
INSTANCE_LOCK_WAIT = 5.0
# PostgreSQL: leases and due times count in the database server's clock; this host's
# distance from it is measured at open and again this often, and said when it is large.
CLOCK_EVERY = 600.0
CLOCK_SKEW_SAID = 1.0


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
    role_check_every: float = 2.0
    price_silence: float = PRICE_SILENCE  # then the prices route is asked (PricePoller)
    console_stream: TextIO | None = None
    on_alert_written: Callable[[list[NewAlert]], None] | None = None
    on_evaluated: Callable[[ChannelLive | PriceUpdate], None] | None = None


def compile_for(
    settings: Settings, path: str, *, env_file: str | None = None, **extra: Any
) -> Compiled:
    """The daemon's compile of the rules: the one compile path `check` and `replay` use,
    with the env file (`--env-file`, else ./.env) and the Discord API the settings name."""
    return compile_rules(path, env_file=env_file, discord_api_url=settings.discord_api_url, **extra)


class App:
    def __init__(
        self,
        settings: Settings,
        *,
        rules_path: str | None = None,
        options: Options | None = None,
        compiled: Compiled | None = None,
        env_file: str | None = None,
    ) -> None:
        self.settings = settings
        self.rules_path = rules_path or settings.rules
        self.options = options or Options()
        self.env_file = env_file
        # Stable across restarts, so a restarted instance takes its own leases back at once.
        self.instance = settings.instance or socket.gethostname()
        self.metrics = Metrics()
        self.health = Health()
        if compiled is None:
            compiled = compile_for(settings, self.rules_path, env_file=env_file)  # RulesError
        _register_webhook_secrets(compiled)
        self.core = Core(
            Rules(compiled.rules_file, compiled.engine, compiled.meta), self.metrics, self.health
        )
        self.client = PartiClient(settings.parti_api_url)
        self.profiles = Profiles(self.client, budget=self.options.enrich_budget)
        self.stream = PartiStream(
            settings.parti_ws_url,
            backoff_base=self.options.reconnect_base,
            backoff_cap=self.options.reconnect_cap,
            ping_interval=self.options.ping_interval,
            ping_timeout=self.options.ping_timeout,
            on_reject=lambda reason: self.metrics.rejected.labels(reason=reason).inc(),
        )
        self.window_bank = WindowBank()  # each bot's rate windows, kept across reloads
        # Whether our leases are surely ours (PostgreSQL: while our instance lock is held);
        # every delivery, a reload's too, checks each send's lease in the database when not.
        self.lease_trust = LeaseTrust()
        self.senders = self._build_senders(compiled, settings)  # MissingSecret: reported
        self.ready = asyncio.Event()
        self.connected_once = asyncio.Event()
        self.rules_changed = asyncio.Event()
        self._stop = asyncio.Event()
        self._reload_requested = False
        self.store: Store | None = None
        self.holder: DeliveryHolder | None = None
        self.ops: OpsHttp | None = None
        self.watch: Watch | None = None
        self.writer: Writer | None = None
        self.reloader: Reloader | None = None
        self.command_bots: CommandBots | None = None
        self._generation: int | None = None

    # ---- control ------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        if self.reloader is not None:
            self.reloader.requested.set()
        else:
            self._reload_requested = True

    @property
    def http_port(self) -> int | None:
        return None if self.ops is None else self.ops.port

    @property
    def delivery(self) -> Delivery:
        assert self.holder is not None
        return self.holder.current

    def healthy(self) -> tuple[bool, str]:
        assert self.watch is not None
        verdict = self.watch.verdict()
        return verdict.ok, verdict.reason

    @property
    def health_changed(self) -> asyncio.Condition:
        assert self.watch is not None
        return self.watch.changed

    # ---- wiring --------------------------------------------------------------------

    def _build_senders(self, compiled: Compiled, settings: Settings) -> Senders:
        return build_senders(
            compiled.rules_file,
            settings,
            limits_scale=self.options.limits_scale,
            console_stream=self.options.console_stream,
            bank=self.window_bank,
        )

    def _make_delivery(self, senders: Senders) -> Delivery:
        assert self.store is not None
        return Delivery(
            self.store,
            senders.by_name,
            clock=self.store.clock,
            trust=self.lease_trust,
            metrics=self.metrics,
            lease=self.options.lease,
            on_reachability=self._reachability,
            unreachable=tuple(self.health.destinations),
            chats=self._chats,
            on_lost_chat=self._chat_senders.lost,
            chat_sender=lambda name: self._chat_senders.sender(senders, name),
        )

    def _reachability(self, destination: str, problem: str | None) -> None:
        label = destination_label(destination)
        if problem is None:
            self.health.destinations.pop(destination, None)
            self.metrics.destination_up.labels(destination=label).set(1)
        else:
            self.health.destinations[destination] = problem
            self.metrics.destination_up.labels(destination=label).set(0)

    def _recompile(self, settings: Settings, state: dict[str, Any]) -> Compiled:
        compiled = compile_for(
            settings,
            self.rules_path,
            env_file=self.env_file,
            categories=self._categories,
            state=state,
        )
        _register_webhook_secrets(compiled)
        return compiled

    def _load_settings(self) -> Settings:
        env_files = (".env", self.env_file) if self.env_file else ".env"
        settings = Settings(_env_file=env_files)
        register_settings_secrets(settings)
        return settings

    def _fence(self) -> int | None:
        return self._generation

    # ---- run ------------------------------------------------------------------------

    async def run(self) -> int:
        url = self.settings.database_url
        target = url.get_secret_value() if url is not None else self.settings.state_path
        self.store = store = await open_store(
            target, durable=self.options.durable, instance=self.instance
        )
        try:
            return await self._run(store)
        finally:
            with contextlib.suppress(Exception):
                # After a reload the holder has the current senders; it closed the old ones.
                await (self.holder.senders if self.holder else self.senders).close()
            await self.client.aclose()
            if self.ops is not None:
                await self.ops.close()
            await store.close()

    async def _run(self, store: Store) -> int:
        options = self.options
        self._chats = Chats(store)
        self._chat_senders = ChatSenders(
            self.core,
            store,
            settings=lambda: self.settings,
            current_senders=lambda: self.holder.senders if self.holder is not None else None,
            limits_scale=options.limits_scale,
        )
        self.holder = holder = DeliveryHolder(
            store,
            self.senders,
            self._make_delivery,
            self.metrics,
            drain_deadline=options.drain_deadline,
        )
        self.watch = Watch(
            self.health,
            self.metrics,
            self.stream,
            holder,
            stream_down_budget=options.stream_down_budget,
            ready=self.ready,
            roles=lambda: {INGEST_ROLE: self._generation} if self._generation else {},
        )
        if self.settings.http_addr:
            self.ops = OpsHttp(self.settings.http_addr, self.watch, self.metrics, store)
            await self.ops.start()  # AddressInUse: reported by the caller as a setting problem
        self.reloader = Reloader(
            self.core,
            holder,
            load_settings=self._load_settings,
            compile_rules=self._recompile,
            build_senders=self._build_senders,
            rules_changed=self.rules_changed,
            adopt_settings=self._adopt_settings,
        )
        if self._reload_requested:
            self.reloader.requested.set()
        self._categories: dict[int, list[str]] = {}
        self.metrics.known(
            destinations=self.core.rules.file.destinations,
            stages=(
                "reader",
                "writer",
                "poller",
                "calendar",
                "prices",
                "state",
                "prune",
                "subscriptions",
                "decisions",
                "reloader",
                "delivery",
            ),
            reasons=REJECT_REASONS,
        )
        await self._record_unrecorded(store)  # before their rows' leases are released
        instance_lock = await self._instance_lock(store)
        try:
            await self._serve(store, holder, instance_lock)
        finally:
            if instance_lock is not None:  # the serving's stop released it, or it never ran
                await instance_lock.release()
        event(_log, "app.stopped")
        return 0

    async def _serve(
        self, store: Store, holder: DeliveryHolder, instance_lock: RoleLock | None
    ) -> None:
        """Every stage, from the release of our last run's leases until the stop."""
        assert self.watch is not None and self.reloader is not None
        if instance_lock is None or instance_lock.generation is not None:
            released = await store.release_leases()
            if released:
                event(_log, "outbox.recovered", in_flight_at_last_stop=released)
        else:
            self.lease_trust.lost()
        # Ready once the store and the HTTP address are ours: Parti or a chat API being down
        # is the daemon's work to ride out, not a failed start for systemd to retry.
        systemd.notify("READY=1\nSTATUS=started; connecting to Parti")
        self.ready.set()
        async with asyncio.TaskGroup() as group:
            delivery = group.create_task(holder.run())
            watch = group.create_task(self.watch.run())
            reloader = group.create_task(self._supervised("reloader", self.reloader.run))
            ingest = group.create_task(self._ingest_role(store))
            self.command_bots = CommandBots(
                self.core,
                store,
                self.client,
                holder,
                settings=lambda: self.settings,
                chat_sender=self._chat_senders.sender,
                instance=self.instance,
                role_retry=ROLE_RETRY,
            )
            bots = group.create_task(self.command_bots.run())
            alive = group.create_task(self._keep_instance_lock(instance_lock))
            clock = group.create_task(self._keep_clock(store))
            await self._stop.wait()
            systemd.notify("STOPPING=1\nSTATUS=draining")
            event(_log, "app.stopping")
            reloader.cancel()
            bots.cancel()
            ingest.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ingest
            await holder.stop()
            # Sends still being recorded when the drain gave up: cancelled, they are left
            # in `unrecorded` (so the list is read once the delivery has ended).
            delivery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await delivery
            await self._keep_unrecorded(store, holder.unrecorded())
            watch.cancel()
            clock.cancel()
            alive.cancel()  # the last: another instance may release our leases from now on

    async def _instance_lock(self, store: Store) -> RoleLock | None:
        """PostgreSQL: this instance's own lock, taken for the daemon's life (None on
        SQLite). Another instance taking the ingest role releases our leases only when it
        can take this lock: while we run, what we leased is ours to send. Not taken within
        INSTANCE_LOCK_WAIT: a running process has our name, and our leases stay its own
        (they run out if it is gone); `_keep_instance_lock` goes on trying."""
        if store.backend != "postgres":
            return None
        from notifier.store.roles import RoleLock, instance_role

        lock = RoleLock(
            store,
            instance_role(self.instance),
            instance=self.instance,
            check_every=self.options.role_check_every,
            fenced=False,
        )
        deadline = time.monotonic() + INSTANCE_LOCK_WAIT
        failed: StoreError | None = None
        while True:
            try:
                if await lock.try_acquire() is not None:
                    return lock
                failed = None
            except StoreError as exc:  # the database is waited out later
                failed = exc
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.25)
        if failed is not None:
            event(
                _log,
                "instance.lock_failed",
                logging.WARNING,
                instance=self.instance,
                error=short_error(failed),
                note="taken again once the database answers; our last run's leases are "
                "left to run out",
            )
        else:
            event(
                _log,
                "instance.name_in_use",
                logging.WARNING,
                instance=self.instance,
                note="another process running against this database holds this "
                "instance's lock; give each instance its own NOTIFIER_INSTANCE. Leases it "
                "holds are left to run out",
            )
        return lock

    async def _keep_clock(self, store: Store) -> None:
        """PostgreSQL: say when this host's clock is far from the database server's (the
        daemon counts in the server's; other tools on this host, and its logs, do not),
        and measure it again every CLOCK_EVERY seconds: a host without NTP drifts."""
        measure = getattr(store, "measure_clock", None)
        if measure is None:
            return
        said = 0.0
        offset = float(getattr(store, "clock_offset", 0.0))
        while True:
            if abs(offset - said) >= CLOCK_SKEW_SAID:
                said = offset
                event(
                    _log,
                    "store.clock_skew",
                    logging.WARNING if abs(offset) >= CLOCK_SKEW_SAID else logging.INFO,
                    seconds=round(offset, 3),
                    note="the database server's clock minus this host's; leases and due "
                    "times count in the server's (keep hosts on NTP)",
                )
            await asyncio.sleep(CLOCK_EVERY)
            with contextlib.suppress(StoreError):  # the next measure, then
                offset = await measure()

    async def _keep_instance_lock(self, lock: RoleLock | None) -> None:
        """Hold the instance lock until the daemon ends; taken again after a lost session."""
        if lock is None:
            return
        try:
            while True:
                if lock.generation is None:
                    try:
                        if await lock.try_acquire() is None:
                            await asyncio.sleep(ROLE_RETRY)
                            continue
                    except StoreError:
                        await asyncio.sleep(ROLE_RETRY)
                        continue
                    event(_log, "instance.lock_taken", instance=self.instance)
                self.lease_trust.held()
                reason = await lock.hold()
                self.lease_trust.lost()
                event(
                    _log,
                    "instance.lock_lost",
                    logging.WARNING,
                    instance=self.instance,
                    reason=reason.value,
                    note="another instance may release our leases meanwhile: each send "
                    "checks its lease in the database until it is taken again",
                )
        finally:
            await lock.release()

    def _unrecorded_path(self) -> Path:
        return unrecorded.unrecorded_path(self.settings.state_path, self.instance)

    async def _record_unrecorded(self, store: Store) -> None:
        """Sends the last stop could not record (the store was down): recorded now, while
        their rows are still leased to this instance, so none goes out again."""
        path = self._unrecorded_path()
        try:
            sent = unrecorded.load(path)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:  # moved aside for a person to look at
            aside = unrecorded.move_aside(path)
            event(
                _log,
                "outbox.unrecorded_unreadable",
                logging.WARNING,
                path=str(aside or path),
                error=short_error(exc),
                note="the alerts it names may be sent again",
            )
            return
        recorded = await store.mark_sent_many(sent, now=store.clock()) if sent else []
        path.unlink(missing_ok=True)
        missed = len(sent) - len(recorded)
        # Released meanwhile (another instance took them over): they may have gone out again.
        note = {"note": f"{missed} no longer leased to this instance"} if missed else {}
        level = logging.WARNING if missed else logging.INFO
        event(
            _log,
            "outbox.unrecorded_recorded",
            level,
            sends=len(sent),
            recorded=len(recorded),
            **note,
        )

    async def _keep_unrecorded(self, store: Store, sent: list[unrecorded.Sent]) -> None:
        """Sends the delivery could not record before it stopped: one more try, else
        kept in a file for the next start (`_record_unrecorded`)."""
        if not sent:
            return
        try:
            async with asyncio.timeout(UNRECORDED_LAST_TRY):
                await store.mark_sent_many(sent, now=store.clock())
            return
        except (StoreError, TimeoutError):
            pass
        path = self._unrecorded_path()
        try:
            await asyncio.to_thread(unrecorded.keep, path, sent)
        except OSError as exc:
            event(
                _log,
                "outbox.unrecorded_lost",
                logging.ERROR,
                sends=len(sent),
                error=short_error(exc),
                note="these alerts will be sent again at the next start",
            )
            return
        event(_log, "outbox.unrecorded_kept", logging.WARNING, sends=len(sent), path=str(path))

    def _supervised(
        self, name: str, stage: Callable[[], Awaitable[None]]
    ) -> Coroutine[Any, Any, None]:
        return supervise(name, stage, health=self.health, metrics=self.metrics)

    async def _ingest_role(self, store: Store) -> None:
        """Hold the ingest role while this instance can; run the ingest stages while held."""
        from notifier.store.roles import RoleLock

        lock = RoleLock(
            store, INGEST_ROLE, instance=self.instance, check_every=self.options.role_check_every
        )
        # A store that does not answer (a lost database) is waited out here: the role is
        # stood for again, and the stages set up again, once it answers.
        outage = Outage(
            INGEST_ROLE,
            self.health.store_errors,
            failed_event="role.store_failed",
            recovered_event="role.store_recovered",
        )
        try:
            while True:
                try:
                    before = (await store.roles()).get(INGEST_ROLE)
                    generation = await lock.try_acquire()
                except StoreError as exc:
                    await pause(outage.failed(exc))
                    continue
                outage.answered()
                if generation is None:
                    self.metrics.role_held.labels(role=INGEST_ROLE).set(0)
                    await asyncio.sleep(ROLE_RETRY)
                    continue
                previous = before.holder if before else None
                released = asyncio.create_task(self._release_dead(store, previous))
                try:
                    self._generation = generation
                    self.metrics.role_held.labels(role=INGEST_ROLE).set(1)
                    self.metrics.generation.set(generation)
                    event(_log, "role.acquired", role=INGEST_ROLE, generation=generation)
                    try:
                        await self._ingest_while(lock, store)
                    finally:
                        self._generation = None
                        self.metrics.role_held.labels(role=INGEST_ROLE).set(0)
                        released.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await released
                except StoreError as exc:  # setting the stages up: the store did not answer
                    if isinstance(exc, FencedOut):
                        raise
                    await pause(outage.failed(exc))
                    continue
                event(_log, "role.lost", logging.WARNING, role=INGEST_ROLE, generation=generation)
        finally:
            outage.close()
            await lock.release()

    def _adopt_settings(self, settings: Settings) -> None:
        """A reload's settings (a token fixed in the env file): chat lanes opened from now
        on use them, and the command bots start again when their block or token changed."""
        self.settings = settings
        if self.command_bots is not None:
            self.command_bots.settings_adopted()

    async def _release_dead(self, store: Store, holder: str | None) -> None:
        """The ingest lock was free: its last holder lost its session (it died, or only its
        lock's connection was cut, or it is stopping). Once it is gone (its instance lock
        is free), its leased rows and destinations are free at once, not when their leases
        run out; a send it had in flight is the one the delivery promise allows twice.
        While it runs it keeps sending what it leased: asked again every ROLE_RETRY
        seconds, for as long as a lease lasts."""
        if holder is None or holder == self.instance or store.backend != "postgres":
            return
        said_alive = False
        give_up = time.monotonic() + self.options.lease
        while True:
            with contextlib.suppress(StoreError):  # asked again at the next turn
                released = await store.release_leases_of(holder)
                if released is not None:
                    event(
                        _log, "role.released_dead", role=INGEST_ROLE, holder=holder, rows=released
                    )
                    return
                if not said_alive:
                    said_alive = True
                    event(
                        _log,
                        "role.previous_alive",
                        role=INGEST_ROLE,
                        holder=holder,
                        note="it still sends what it leased; released once it is gone",
                    )
            if time.monotonic() >= give_up:  # its leases have run out by now
                return
            await asyncio.sleep(ROLE_RETRY)

    async def _ingest_while(self, lock: RoleLock, store: Store) -> None:
        """The ingest stages, from the stored state, until the role is lost or we stop."""
        core, options, settings = self.core, self.options, self.settings
        # A store that has seen an ingest before: events may have been missed since.
        ran_before = (
            await store.get_state(FIRST_STARTED) is not None
            or await store.get_state(ENGINE_STATE) is not None
        )
        holder = self.holder
        assert holder is not None
        writer = self.writer = Writer(
            core,
            store,
            self.profiles,
            holder,
            lease=options.lease,
            fence=self._fence,
            on_written=options.on_alert_written,
            handing=holder.handing,
        )
        state = StateSaver(core, store, idle=lambda: writer.idle, fence=self._fence)
        await state.load()
        ingest = Ingest(
            core,
            self.stream,
            stream_seqs=await store.stream_seqs(),
            ran_before=ran_before,
            on_evaluated=options.on_evaluated,
        )
        ingest.connected_once = self.connected_once
        poller = LivePoller(
            core,
            ingest,
            self.client,
            store,
            holder,
            every=settings.live_poll,
            ran_before=ran_before,
            stream_up=lambda: self.stream.stats.connected,
            fence=self._fence,
            on_written=options.on_alert_written,
        )
        calendar = CalendarPoller(
            core,
            self.client,
            self.profiles,
            every=min(CALENDAR_EVERY, settings.live_poll),
            rules_changed=self.rules_changed,
        )
        await self._reference_data(core, ingest)
        decisions = DecisionRecorder(store)
        core.on_decisions = decisions.add
        subscriptions = SubscriptionSync(core, store)
        await subscriptions.sync()  # before the freeze: they live as long as the rules
        # Compiled rules live long: freeze them, so full collections never walk them. The
        # compile collected its own garbage; the young generations hold the rest (a full
        # collection here walks every object, 40 ms of the start-up, to find a few dozen).
        gc.collect(1)
        gc.freeze()
        stages: dict[str, Callable[[], Awaitable[None]]] = {
            "reader": ingest.run,
            "poller": poller.run,
            "calendar": calendar.run,
            "prices": PricePoller(
                core, ingest, self.client, every=settings.live_poll, silence=options.price_silence
            ).run,
            "state": state.run,
            "prune": Pruner(store, retention=settings.retention).run,
            "subscriptions": subscriptions.run,
            "decisions": decisions.run,
        }
        try:
            async with asyncio.TaskGroup() as group:
                writing = group.create_task(self._supervised("writer", writer.run))
                tasks = [group.create_task(self._supervised(n, f)) for n, f in stages.items()]
                lost = group.create_task(lock.hold())
                stopping = group.create_task(self._stop.wait())
                await asyncio.wait([lost, stopping], return_when=asyncio.FIRST_COMPLETED)
                for task in tasks:
                    task.cancel()  # stop reading; the writer flushes the queue first
                if not lost.done():  # a clean stop: the queue goes to the outbox
                    await writer.flush(options.drain_deadline)
                writing.cancel()
                lost.cancel()
                stopping.cancel()
        finally:
            with contextlib.suppress(Exception):
                await state.save()

    async def _reference_data(self, core: Core, ingest: Ingest) -> None:
        """Categories map ids to names for the rules; prices set the engine's baselines.
        Both are asked for at once: at start-up, one round trip to Parti instead of two."""
        asked = await asyncio.gather(
            self.client.categories(), self.client.prices(), return_exceptions=True
        )
        categories = _answered(asked[0], "parti.categories_unavailable")
        if categories is not None:
            self._categories = category_map(categories)
            core.rules.engine.set_categories(self._categories)
        prices = _answered(asked[1], "parti.prices_unavailable")
        if prices is None:
            return
        now = time.time()
        for asset in prices:
            await core.evaluate(asset.update(), now, caught_up=True)


T = TypeVar("T")


def _answered(answer: T | BaseException, unavailable: str) -> T | None:
    """One of the start's requests to Parti: its answer, or None after a warning (`unavailable`)
    when Parti did not give one. Any other error is a fault of ours: raised."""
    if not isinstance(answer, BaseException):
        return answer
    if not isinstance(answer, PartiError):
        raise answer
    event(_log, unavailable, logging.WARNING, error=short_error(answer))
    return None


def _register_webhook_secrets(compiled: Compiled) -> None:
    """Webhook URLs carry their token: the log redaction learns each one."""
    for destination in compiled.rules_file.destinations.values():
        if destination.discord is not None and destination.discord.webhook_url:
            register_secret(destination.discord.webhook_url.rstrip("/").rsplit("/", 1)[-1])
