"""What the stages share: the current rules, the match queue's items, and health."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from notifier.metrics import Metrics
from notifier.parti.models import ChannelLive, PriceUpdate
from notifier.rules.engine import Engine, Match, SubDecision, live_identity
from notifier.rules.schema import RulesFile
from notifier.rules.stream import DEFAULT_META, RuleMeta
from notifier.rules.subscriptions import Subscription, subscription_id


@dataclass
class Rules:
    """The compiled rules, swapped as one piece by a reload."""

    file: RulesFile  # destinations and defaults
    engine: Engine
    meta: dict[str, RuleMeta]

    def meta_of(self, name: str) -> RuleMeta:
        return self.meta.get(name) or DEFAULT_META["live"]


@dataclass(slots=True)
class Pending:
    """A match on its way to the outbox; `caught_up`: found after a gap, not live."""

    match: Match
    caught_up: bool = False


@dataclass
class Health:
    stream_connected: bool = False
    stream_down_since: float | None = None
    stages: dict[str, bool] = field(default_factory=dict)
    # destination -> the reason it cannot be reached now (absent: reachable or untried)
    destinations: dict[str, str] = field(default_factory=dict)
    # part of the daemon -> the store's error it meets now (see `stages.outage.Outage`)
    store_errors: dict[str, str] = field(default_factory=dict)

    @property
    def store_error(self) -> str | None:
        return next(iter(self.store_errors.values()), None)

    def stream_down(self, now: float | None = None) -> None:
        if self.stream_connected or self.stream_down_since is None:
            self.stream_down_since = time.time() if now is None else now
        self.stream_connected = False

    def stream_up(self) -> None:
        self.stream_connected = True
        self.stream_down_since = None


MATCH_QUEUE = 1_000  # matches waiting for the writer; a full queue holds the reader back


class Core:
    """The pieces every ingest-side stage reads: current rules, the match queue, health."""

    def __init__(self, rules: Rules, metrics: Metrics, health: Health) -> None:
        self.rules = rules
        self.metrics = metrics
        self.health = health
        self.queue: asyncio.Queue[Pending] = asyncio.Queue(MATCH_QUEUE)
        # A batch a writer took from the queue and was stopped before it wrote (the ingest
        # role lost with the database): the next writer writes it first.
        self.unwritten: list[Pending] = []
        # The engine changed since its state was last saved.
        self.state_dirty = False
        # Chat subscriptions by id (kept by the sync stage): their template, role, on_end.
        self.subscriptions: dict[int, Subscription] = {}
        # Told each live event's decisions for chat subscriptions (for /why).
        self.on_decisions: Callable[[list[SubDecision]], None] | None = None
        # user id -> the live stream a cooldown held back (it passed a rule's filters and
        # nothing fired): the live poller does not alert it later, when the cooldown is
        # over, as if it had just gone live. The poller drops the streams that ended.
        self.held_back: dict[int, str] = {}

    async def evaluate(self, ev: ChannelLive | PriceUpdate, at: float, *, caught_up: bool) -> int:
        """Run one event through the engine; its matches join the queue (back-pressure, never
        a drop). Returns how many matched."""
        result = self.rules.engine.evaluate(ev, at)
        if result.sub_decisions and self.on_decisions is not None:
            self.on_decisions(result.sub_decisions)
        # A price moves baselines and windows even when nothing fires: saved on the next
        # round, so a successor starts from a recent price.
        if result.matches or isinstance(ev, PriceUpdate):
            self.state_dirty = True
        if isinstance(ev, ChannelLive) and not result.matches and result.held_back:
            self.held_back[ev.user_id] = live_identity(ev)
        for match in result.matches:
            await self.queue.put(Pending(match, caught_up))
        return len(result.matches)

    def template_of(self, rule: str) -> str | None:
        sub = self.subscription_of(rule)
        if sub is not None:
            template = sub.params.get("template")
            return template if isinstance(template, str) else None
        return self.rules.meta_of(rule).template

    def on_end_of(self, rule: str) -> str:
        sub = self.subscription_of(rule)
        found = sub.params.get("on_end") if sub is not None else self.rules.meta_of(rule).on_end
        return str(found or self.rules.file.defaults.on_end)

    def mention_role_of(self, rule: str) -> int | None:
        sub = self.subscription_of(rule)
        role = sub.params.get("role_id") if sub is not None else None
        try:
            return int(role) if role is not None else None
        except (TypeError, ValueError):
            return None

    def subscription_of(self, rule: str) -> Subscription | None:
        found = subscription_id(rule)
        return None if found is None else self.subscriptions.get(found)

    async def put(self, matches: list[Match], *, caught_up: bool = False) -> None:
        if matches:
            self.state_dirty = True
        for match in matches:
            await self.queue.put(Pending(match, caught_up))
