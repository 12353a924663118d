"""The rule engine (pure: no I/O, the clock passed in): events in, matches and reasons out.

Live rules are compiled into indexes (user ids, user names, category ids and names,
catch-all), so matching an event costs about the same with 10 rules or 100,000.
Price lines are kept sorted per asset so that a price step only touches the lines it
crossed. Every decision has a named `Reason`, so `replay --explain` can say why
nothing fired; the mutable state (baselines, armed flags, windows, cooldowns) can
be exported and restored so a restarted daemon does not fire a crossing again.
"""

from __future__ import annotations

import bisect
import json
import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from typing import Any

from notifier.parti.models import CalendarEvent, ChannelLive, PriceUpdate
from notifier.rules.schema import LiveRule, PriceRule, RulesFile, ScheduledRule
from notifier.units import parse_percent


class Reason(Enum):
    FIRED = "fired"
    NO_RULE = "no rule for this subject"
    USER_NOT_IN_RULE = "user not in the rule"
    CATEGORY_NOT_IN_RULE = "category not in the rule"
    EXCLUDED_USER = "user is excluded"
    TITLE_MISMATCH = "title does not match"
    TOO_FEW_VIEWERS = "fewer viewers than min_viewers"
    COOLING_DOWN = "cooling down"
    BASELINE = "first price: baseline set"
    ALREADY_PAST = "already past the line at the first price"
    NOT_CROSSED = "line not crossed"
    NOT_ARMED = "not re-armed since the last crossing"
    REARMED = "re-armed"
    MOVE_TOO_SMALL = "change smaller than move"
    NOT_DUE = "reminder not due yet"
    ALREADY_STARTED = "event already started"
    ALREADY_REMINDED = "already reminded"


@dataclass(frozen=True)
class Match:
    """A rule fired for one destination; `key` is the outbox key of DESIGN.md."""

    rule: str
    destination: str
    kind: str
    subject: str
    identity: str
    at: float
    event: ChannelLive | PriceUpdate | CalendarEvent
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return json.dumps([self.rule, self.destination, self.identity], ensure_ascii=False)


@dataclass(frozen=True)
class Decision:
    """Why a rule did or did not fire for an event (and destination, where it matters)."""

    rule: str | None
    subject: str
    reason: Reason
    destination: str | None = None


@dataclass
class Evaluation:
    matches: list[Match] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)


def _fold(text: str) -> str:
    return text.casefold().strip()


def _key(*parts: Any) -> str:
    return json.dumps([str(p) for p in parts], ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class _Ref:
    """What the engine keeps of a rule once compiled (the pydantic model is let go: with
    100,000 rules it would weigh more than everything else together)."""

    name: str
    asset: str = ""
    min_viewers: int | None = None
    fire_on_start: bool = False
    before: float = 0.0


_EMPTY: tuple[Any, ...] = ()


def _small(values: set[Any]) -> tuple[Any, ...] | frozenset[Any]:
    """A compact container for membership tests: a tuple when small, else a frozenset."""
    if not values:
        return _EMPTY
    return tuple(values) if len(values) <= 8 else frozenset(values)


# ---- live ------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class _Audience:
    """Whom a live or scheduled rule is about: users and categories (empty: anyone)."""

    rule: _Ref
    destinations: tuple[str, ...]
    cooldown: float
    user_ids: tuple[int, ...] | frozenset[int]
    user_names: tuple[str, ...] | frozenset[str]
    category_ids: tuple[int, ...] | frozenset[int]
    category_names: tuple[str, ...] | frozenset[str]

    def audience_reason(
        self, user_id: int, names: Iterable[str | None], categories: _Categories
    ) -> Reason | None:
        if (self.user_ids or self.user_names) and user_id not in self.user_ids:
            for name in names:
                if name is not None and _fold(name) in self.user_names:
                    break
            else:
                return Reason.USER_NOT_IN_RULE
        if (self.category_ids or self.category_names) and not categories.match(
            self.category_ids, self.category_names
        ):
            return Reason.CATEGORY_NOT_IN_RULE
        return None


@dataclass(slots=True, kw_only=True)
class _Live(_Audience):
    excluded_ids: tuple[int, ...] | frozenset[int]
    excluded_names: tuple[str, ...] | frozenset[str]
    title: re.Pattern[str] | None

    def reason(self, event: ChannelLive, categories: _Categories) -> Reason | None:
        """None when the event passes every filter of the rule."""
        names = (event.user_name, event.social_username)
        found = self.audience_reason(event.user_id, names, categories)
        if found is not None:
            return found
        name = _fold(event.user_name)
        if event.user_id in self.excluded_ids or name in self.excluded_names:
            return Reason.EXCLUDED_USER
        if self.title is not None and not self.title.search(event.event_title or ""):
            return Reason.TITLE_MISMATCH
        if self.rule.min_viewers is not None and (event.viewers_count or 0) < self.rule.min_viewers:
            return Reason.TOO_FEW_VIEWERS
        return None


class _Categories:
    """An event's category as every id and name it goes by, worked out once per event
    through Parti's category list (ids to names and back), so rules may name either."""

    __slots__ = ("ids", "names")

    def __init__(
        self,
        category_id: int | None,
        category_name: str | None,
        names_of: Mapping[int, frozenset[str]],
        ids_of: Mapping[str, frozenset[int]],
    ) -> None:
        ids: set[int] = set() if category_id is None else {category_id}
        names: set[str] = set()
        if category_name:
            name = _fold(category_name)
            names.add(name)
            ids |= ids_of.get(name, frozenset())
        for cid in list(ids):
            names |= names_of.get(cid, frozenset())
        self.ids = ids
        self.names = names

    def match(self, ids: Iterable[int], names: Iterable[str]) -> bool:
        return any(i in self.ids for i in ids) or any(n in self.names for n in names)


def _split(values: Iterable[int | str]) -> tuple[set[int], set[str]]:
    ids: set[int] = set()
    names: set[str] = set()
    for value in values:
        if isinstance(value, int):
            ids.add(value)
        elif value.strip().isdigit():
            ids.add(int(value))
        else:
            names.add(_fold(value))
    return ids, names


# ---- price -----------------------------------------------------------------------


@dataclass(slots=True)
class _Line:
    """One `above` or `below` line of one rule on one asset."""

    rule: _Ref
    destinations: tuple[str, ...]
    cooldown: float
    direction: str  # "above" | "below"
    line: Decimal
    band: Decimal
    armed: bool = False
    seq: int = 0
    started: bool = False

    @property
    def rearm_level(self) -> Decimal:
        return self.line - self.band if self.direction == "above" else self.line + self.band

    def state_key(self) -> str:
        return _key(self.rule.name, self.rule.asset.upper(), self.direction, self.line)


@dataclass(slots=True)
class _Move:
    rule: _Ref
    destinations: tuple[str, ...]
    cooldown: float
    percent: Decimal
    within: float
    seq: int = 0
    highs: deque[tuple[float, Decimal]] = field(default_factory=deque)
    lows: deque[tuple[float, Decimal]] = field(default_factory=deque)

    def state_key(self) -> str:
        return _key(self.rule.name, self.rule.asset.upper(), "move")

    def observe(self, at: float, price: Decimal) -> tuple[str, Decimal, Decimal] | None:
        """Add an observation; (direction, change %, reference) when the move is reached."""
        horizon = at - self.within
        for window in (self.highs, self.lows):
            while window and window[0][0] < horizon:
                window.popleft()
        while self.highs and self.highs[-1][1] <= price:
            self.highs.pop()
        self.highs.append((at, price))
        while self.lows and self.lows[-1][1] >= price:
            self.lows.pop()
        self.lows.append((at, price))
        low, high = self.lows[0][1], self.highs[0][1]
        if low > 0 and (price - low) * 100 / low >= self.percent:
            return ("up", (price - low) * 100 / low, low)
        if high > 0 and (high - price) * 100 / high >= self.percent:
            return ("down", (price - high) * 100 / high, high)
        return None

    def restart(self, at: float, price: Decimal) -> None:
        self.highs = deque([(at, price)])
        self.lows = deque([(at, price)])


@dataclass
class _Book:
    """Every price rule of one asset name, with lines sorted for bisecting."""

    last: Decimal | None = None
    above: list[_Line] = field(default_factory=list)
    below: list[_Line] = field(default_factory=list)
    moves: list[_Move] = field(default_factory=list)
    above_lines: list[Decimal] = field(default_factory=list)
    above_rearm: list[tuple[Decimal, int]] = field(default_factory=list)
    below_lines: list[Decimal] = field(default_factory=list)
    below_rearm: list[tuple[Decimal, int]] = field(default_factory=list)

    def seal(self) -> None:
        self.above.sort(key=lambda e: e.line)
        self.below.sort(key=lambda e: e.line)
        self.above_lines = [e.line for e in self.above]
        self.below_lines = [e.line for e in self.below]
        self.above_rearm = sorted((e.rearm_level, i) for i, e in enumerate(self.above))
        self.below_rearm = sorted((e.rearm_level, i) for i, e in enumerate(self.below))

    def lines(self) -> Iterable[_Line]:
        yield from self.above
        yield from self.below


# ---- scheduled ----------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class _Scheduled(_Audience):
    pass


# ---- the engine ------------------------------------------------------------------------


class Engine:
    """Compiled rules plus their mutable state. Not thread-safe; one task drives it."""

    def __init__(
        self,
        rules_file: RulesFile,
        *,
        categories: Mapping[int, Iterable[str]] | None = None,
        state: Mapping[str, Any] | None = None,
    ) -> None:
        self.defaults = rules_file.defaults
        self.counts = {"live": 0, "price": 0, "scheduled": 0}
        self._names_of: dict[int, frozenset[str]] = {}
        self._ids_of: dict[str, frozenset[int]] = {}
        self._destinations: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._by_user_id: dict[int, list[_Live]] = {}
        self._by_user_name: dict[str, list[_Live]] = {}
        self._by_category_id: dict[int, list[_Live]] = {}
        self._by_category_name: dict[str, list[_Live]] = {}
        self._catch_all: list[_Live] = []
        self._books: dict[str, _Book] = {}
        self._scheduled: list[_Scheduled] = []
        # (rule, subject, destination) -> (until, identity of the alert that set it)
        self._cooldown_until: dict[tuple[str, str, str], tuple[float, str]] = {}
        self._reminded: dict[tuple[str, int], int] = {}
        self.set_categories(categories or {})
        for rule in rules_file.rules:
            self.add(rule)
        self.seal(state)

    def set_categories(self, categories: Mapping[int, Iterable[str]]) -> None:
        """Parti's category list (id -> names); rules may name a category either way."""
        names_of = {
            cid: frozenset(_fold(n) for n in names if n) for cid, names in categories.items()
        }
        ids_of: dict[str, set[int]] = {}
        for cid, names in names_of.items():
            for name in names:
                ids_of.setdefault(name, set()).add(cid)
        self._names_of = names_of
        self._ids_of = {name: frozenset(ids) for name, ids in ids_of.items()}

    def add(self, rule: LiveRule | PriceRule | ScheduledRule) -> None:
        """Compile one rule (the model itself is not kept)."""
        cooldown = self.defaults.cooldown if rule.cooldown is None else rule.cooldown
        destinations = self._destinations.setdefault(tuple(rule.notify), tuple(rule.notify))
        self.counts[rule.when] += 1
        if isinstance(rule, LiveRule):
            self._add_live(rule, destinations, cooldown)
        elif isinstance(rule, PriceRule):
            self._add_price(rule, destinations, cooldown)
        else:
            uids, unames = _split(rule.users)
            cids, cnames = _split(rule.categories)
            self._scheduled.append(
                _Scheduled(
                    rule=_Ref(rule.name, before=rule.before),
                    destinations=destinations,
                    cooldown=cooldown,
                    user_ids=_small(uids),
                    user_names=_small(unames),
                    category_ids=_small(cids),
                    category_names=_small(cnames),
                )
            )

    def seal(self, state: Mapping[str, Any] | None = None) -> None:
        """After the last `add`: sort the price lines, then take back saved state."""
        for book in self._books.values():
            book.seal()
        if state:
            self.restore_state(state)

    # ---- compile ---------------------------------------------------------------

    def _add_live(self, rule: LiveRule, destinations: tuple[str, ...], cooldown: float) -> None:
        uids, unames = _split(rule.users)
        cids, cnames = _split(rule.categories)
        xids, xnames = _split(rule.exclude_users)
        compiled = _Live(
            rule=_Ref(rule.name, min_viewers=rule.min_viewers),
            destinations=destinations,
            cooldown=cooldown,
            user_ids=_small(uids),
            user_names=_small(unames),
            category_ids=_small(cids),
            category_names=_small(cnames),
            excluded_ids=_small(xids),
            excluded_names=_small(xnames),
            title=re.compile(rule.title_matches) if rule.title_matches else None,
        )
        if uids or unames:  # users narrow most; categories are then a filter
            for uid in uids:
                self._by_user_id.setdefault(uid, []).append(compiled)
            for name in unames:
                self._by_user_name.setdefault(name, []).append(compiled)
        elif cids or cnames:
            for cid in cids:
                self._by_category_id.setdefault(cid, []).append(compiled)
            for name in cnames:
                self._by_category_name.setdefault(name, []).append(compiled)
        else:
            self._catch_all.append(compiled)

    def _add_price(self, rule: PriceRule, destinations: tuple[str, ...], cooldown: float) -> None:
        book = self._books.setdefault(_fold(rule.asset), _Book())
        for direction, line in (("above", rule.above), ("below", rule.below)):
            if line is not None:
                ref = _Ref(rule.name, rule.asset, fire_on_start=rule.fire_on_start)
                entry = _Line(ref, destinations, cooldown, direction, line, rule.rearm_band(line))
                (book.above if direction == "above" else book.below).append(entry)
        if rule.move is not None and rule.within is not None:
            book.moves.append(
                _Move(
                    _Ref(rule.name, rule.asset),
                    destinations,
                    cooldown,
                    parse_percent(rule.move),
                    rule.within,
                )
            )

    # ---- evaluation --------------------------------------------------------------

    def evaluate(
        self, event: ChannelLive | PriceUpdate, now: float, *, explain: bool = False
    ) -> Evaluation:
        if isinstance(event, ChannelLive):
            return self.on_live(event, now, explain=explain)
        return self.on_price(event, now, explain=explain)

    def follows(self, event: ChannelLive) -> bool:
        """Whether some live rule matches the event's filters (no cooldown, no state)."""
        categories = self._categories(event.category_id, event.category_name)
        return any(
            c.reason(event, categories) is None
            for c in self._live_candidates(event, categories).values()
        )

    def _categories(self, category_id: int | None, category_name: str | None) -> _Categories:
        return _Categories(category_id, category_name, self._names_of, self._ids_of)

    def _live_candidates(self, event: ChannelLive, categories: _Categories) -> dict[int, _Live]:
        candidates: dict[int, _Live] = {}
        lists = [
            self._by_user_id.get(event.user_id),
            self._by_user_name.get(_fold(event.user_name)),
            self._by_user_name.get(_fold(event.social_username)) if event.social_username else None,
            self._catch_all,
        ]
        if self._by_category_id or self._by_category_name:
            lists += [self._by_category_id.get(cid) for cid in categories.ids]
            lists += [self._by_category_name.get(name) for name in categories.names]
        for rules in lists:
            if rules:
                for compiled in rules:
                    candidates[id(compiled)] = compiled
        return candidates

    def on_live(self, event: ChannelLive, now: float, *, explain: bool = False) -> Evaluation:
        result = Evaluation()
        categories = self._categories(event.category_id, event.category_name)
        candidates = self._live_candidates(event, categories)
        subject = str(event.user_id)
        if not candidates:
            if explain:
                result.decisions.append(Decision(None, subject, Reason.NO_RULE))
            return result
        user_id, marker = event.identity
        identity = f"live:{user_id}:{marker}"
        for compiled in candidates.values():
            reason = compiled.reason(event, categories)
            if reason is not None:
                if explain:
                    result.decisions.append(Decision(compiled.rule.name, subject, reason))
                continue
            self._fire(
                result,
                compiled.rule.name,
                compiled.destinations,
                compiled.cooldown,
                "live",
                subject,
                identity,
                now,
                event,
                {},
                explain,
            )
        return result

    def on_price(self, event: PriceUpdate, now: float, *, explain: bool = False) -> Evaluation:
        result = Evaluation()
        names = {_fold(event.display_symbol)}
        if event.ticker:
            names.add(_fold(event.ticker))
        books = [self._books[n] for n in names if n in self._books]
        subject = event.display_symbol.upper()
        if not books:
            if explain:
                result.decisions.append(Decision(None, subject, Reason.NO_RULE))
            return result
        for book in books:
            self._price_book(book, event, subject, now, result, explain)
        return result

    def _price_book(
        self,
        book: _Book,
        event: PriceUpdate,
        subject: str,
        now: float,
        result: Evaluation,
        explain: bool,
    ) -> None:
        price, last = event.price, book.last
        book.last = price
        touched: set[int] = set()
        if last is None:
            for entry in book.lines():
                self._baseline(entry, price, subject, now, event, result, explain)
                touched.add(id(entry))
        elif price > last:
            lo = bisect.bisect_right(book.above_lines, last)
            hi = bisect.bisect_right(book.above_lines, price)
            for entry in book.above[lo:hi]:  # lines in (last, price]
                touched.add(id(entry))
                self._cross(entry, price, subject, now, event, result, explain)
            lo = bisect.bisect_left(book.below_rearm, (last, -1))
            hi = bisect.bisect_left(book.below_rearm, (price, -1))
            for _, index in book.below_rearm[lo:hi]:  # rearm levels in [last, price)
                entry = book.below[index]
                if not entry.armed and price > entry.rearm_level:
                    entry.armed = True
                    touched.add(id(entry))
                    if explain:
                        result.decisions.append(Decision(entry.rule.name, subject, Reason.REARMED))
        elif price < last:
            lo = bisect.bisect_left(book.below_lines, price)
            hi = bisect.bisect_left(book.below_lines, last)
            for entry in book.below[lo:hi]:  # lines in [price, last)
                touched.add(id(entry))
                self._cross(entry, price, subject, now, event, result, explain)
            lo = bisect.bisect_right(book.above_rearm, (price, float("inf")))
            hi = bisect.bisect_right(book.above_rearm, (last, float("inf")))
            for _, index in book.above_rearm[lo:hi]:  # rearm levels in (price, last]
                entry = book.above[index]
                if not entry.armed and price < entry.rearm_level:
                    entry.armed = True
                    touched.add(id(entry))
                    if explain:
                        result.decisions.append(Decision(entry.rule.name, subject, Reason.REARMED))
        if explain:
            for entry in book.lines():
                if id(entry) not in touched:
                    reason = Reason.NOT_CROSSED if entry.armed else Reason.NOT_ARMED
                    result.decisions.append(Decision(entry.rule.name, subject, reason))
        for move in book.moves:
            hit = move.observe(now, price)
            if hit is None:
                if explain:
                    result.decisions.append(
                        Decision(move.rule.name, subject, Reason.MOVE_TOO_SMALL)
                    )
                continue
            direction, change, reference = hit
            move.seq += 1
            move.restart(now, price)
            details = {
                "kind": "move",
                "direction": direction,
                "change": change,
                "reference": reference,
                "window": move.within,
                "price": price,
            }
            self._fire(
                result,
                move.rule.name,
                move.destinations,
                move.cooldown,
                "price",
                subject,
                f"price:{subject}:move:{move.seq}",
                now,
                event,
                details,
                explain,
            )

    def _baseline(
        self,
        entry: _Line,
        price: Decimal,
        subject: str,
        now: float,
        event: PriceUpdate,
        result: Evaluation,
        explain: bool,
    ) -> None:
        past = price >= entry.line if entry.direction == "above" else price <= entry.line
        entry.armed = not past
        if past and entry.rule.fire_on_start:
            self._cross_fired(entry, price, subject, now, event, result, explain)
        elif explain:
            reason = Reason.ALREADY_PAST if past else Reason.BASELINE
            result.decisions.append(Decision(entry.rule.name, subject, reason))

    def _cross(
        self,
        entry: _Line,
        price: Decimal,
        subject: str,
        now: float,
        event: PriceUpdate,
        result: Evaluation,
        explain: bool,
    ) -> None:
        if not entry.armed:
            if explain:
                result.decisions.append(Decision(entry.rule.name, subject, Reason.NOT_ARMED))
            return
        entry.armed = False
        self._cross_fired(entry, price, subject, now, event, result, explain)

    def _cross_fired(
        self,
        entry: _Line,
        price: Decimal,
        subject: str,
        now: float,
        event: PriceUpdate,
        result: Evaluation,
        explain: bool,
    ) -> None:
        entry.armed = False
        entry.seq += 1
        change = (price - entry.line) * 100 / entry.line if entry.line else Decimal(0)
        details = {
            "kind": entry.direction,
            "direction": "up" if entry.direction == "above" else "down",
            "line": entry.line,
            "price": price,
            "change": change,
        }
        identity = f"price:{subject}:{entry.direction}:{entry.line}:{entry.seq}"
        self._fire(
            result,
            entry.rule.name,
            entry.destinations,
            entry.cooldown,
            "price",
            subject,
            identity,
            now,
            event,
            details,
            explain,
        )

    def on_calendar(
        self, events: Iterable[CalendarEvent], now: float, *, explain: bool = False
    ) -> Evaluation:
        """Reminders for calendar events that start within a rule's `before`, once each."""
        result = Evaluation()
        for event in events:
            subject = str(event.event_id)
            categories = self._categories(event.category_id, event.category_name)
            for sched in self._scheduled:
                if sched.audience_reason(event.user_id, (event.user_name,), categories):
                    continue
                name = sched.rule.name
                if now >= event.event_start_ts:
                    reason: Reason | None = Reason.ALREADY_STARTED
                elif now < event.event_start_ts - sched.rule.before:
                    reason = Reason.NOT_DUE
                elif (name, event.event_id) in self._reminded:
                    reason = Reason.ALREADY_REMINDED
                else:
                    reason = None
                if reason is not None:
                    if explain:
                        result.decisions.append(Decision(name, subject, reason))
                    continue
                self._reminded[(name, event.event_id)] = event.event_start_ts
                details = {"starts_at": event.event_start_ts}
                self._fire(
                    result,
                    name,
                    sched.destinations,
                    0.0,
                    "scheduled",
                    subject,
                    f"scheduled:{event.event_id}",
                    now,
                    event,
                    details,
                    explain,
                )
        return result

    def _fire(
        self,
        result: Evaluation,
        rule: str,
        destinations: tuple[str, ...],
        cooldown: float,
        kind: str,
        subject: str,
        identity: str,
        now: float,
        event: ChannelLive | PriceUpdate | CalendarEvent,
        details: Mapping[str, Any],
        explain: bool,
    ) -> None:
        for destination in destinations:
            cool_key = (rule, subject, destination)
            cooling = self._cooldown_until.get(cool_key)
            # A cooldown holds back other events of the subject, never the same event
            # evaluated again (a catch-up after a crash): the outbox key dedups that one.
            if cooling is not None and now < cooling[0] and cooling[1] != identity:
                if explain:
                    result.decisions.append(
                        Decision(rule, subject, Reason.COOLING_DOWN, destination)
                    )
                continue
            if cooldown > 0:
                self._cooldown_until[cool_key] = (now + cooldown, identity)
            result.matches.append(
                Match(rule, destination, kind, subject, identity, now, event, details)
            )
            if explain:
                result.decisions.append(Decision(rule, subject, Reason.FIRED, destination))

    # ---- state ----------------------------------------------------------------------

    def export_state(self, now: float | None = None) -> dict[str, Any]:
        """JSON-serialisable state; expired cooldowns are left out when `now` is given."""
        lines: dict[str, Any] = {}
        moves: dict[str, Any] = {}
        prices: dict[str, str] = {}
        for asset, book in self._books.items():
            if book.last is not None:
                prices[asset] = str(book.last)
            for entry in book.lines():
                lines[entry.state_key()] = {"armed": entry.armed, "seq": entry.seq}
            for move in book.moves:
                moves[move.state_key()] = {
                    "seq": move.seq,
                    "highs": [[t, str(p)] for t, p in move.highs],
                    "lows": [[t, str(p)] for t, p in move.lows],
                }
        cooldowns = {
            _key(*k): [until, identity]
            for k, (until, identity) in self._cooldown_until.items()
            if now is None or until > now
        }
        reminded = {
            _key(rule, eid): start
            for (rule, eid), start in self._reminded.items()
            if now is None or start > now - 86400
        }
        return {
            "version": 1,
            "prices": prices,
            "lines": lines,
            "moves": moves,
            "cooldowns": cooldowns,
            "reminded": reminded,
        }

    def restore_state(self, state: Mapping[str, Any]) -> None:
        """Take back exported state; entries of rules that no longer exist are dropped."""
        if state.get("version") != 1:
            return
        lines = state.get("lines", {})
        moves = state.get("moves", {})
        for asset, book in self._books.items():
            text = state.get("prices", {}).get(asset)
            if text is not None:
                book.last = Decimal(text)
            for entry in book.lines():
                saved = lines.get(entry.state_key())
                if saved is not None:
                    entry.armed, entry.seq = bool(saved["armed"]), int(saved["seq"])
                elif book.last is not None:  # a new rule: baseline from the known price
                    past = (
                        book.last >= entry.line
                        if entry.direction == "above"
                        else book.last <= entry.line
                    )
                    entry.armed = not past
            for move in book.moves:
                saved = moves.get(move.state_key())
                if saved is not None:
                    move.seq = int(saved["seq"])
                    move.highs = deque((float(t), Decimal(p)) for t, p in saved["highs"])
                    move.lows = deque((float(t), Decimal(p)) for t, p in saved["lows"])
        for text, (until, identity) in state.get("cooldowns", {}).items():
            rule, subject, destination = json.loads(text)
            self._cooldown_until[(rule, subject, destination)] = (float(until), str(identity))
        for text, start in state.get("reminded", {}).items():
            rule, event_id = json.loads(text)
            self._reminded[(rule, int(event_id))] = int(start)

    # ---- introspection -------------------------------------------------------------------

    def summary(self) -> dict[str, int]:
        return dict(self.counts)


def category_map(categories: Iterable[Any]) -> dict[int, list[str]]:
    """`{id: [name, display_name]}` from the categories route's answer."""
    return {c.category_id: [n for n in (c.name, c.display_name) if n] for c in categories}
