"""The rule engine (pure: no I/O, the clock passed in): events in, matches and reasons out.

Live rules are compiled into indexes (user ids, user names, category ids and names,
catch-all) that lead to rule numbers, so matching an event costs about the same with 10
rules or 100,000. A live rule is no object of its own: its name is packed with the others
into one string, and its filter is shared by every rule with the same settings (100,000
rules that differ only in their users weigh about 15 MB).
Price lines are kept sorted per asset so that a price step only touches the lines it
crossed. Every decision has a named `Reason`, so `replay --explain` can say why
nothing fired; the mutable state (baselines, armed flags, windows, cooldowns) can
be exported and restored so a restarted daemon does not fire a crossing again.

Chat subscriptions (subscriptions.py) are rules added, changed and removed at run time:
they go into the same structures incrementally (a user-id bucket, a line bisected into
its book) and leave no trace when removed.
"""

from __future__ import annotations

import bisect
import json
import math
import sys
import time
import unicodedata
from array import array
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from types import MappingProxyType
from typing import Any, NamedTuple

import orjson

from notifier.parti.models import CalendarEvent, ChannelLive, PriceUpdate
from notifier.rules.regex import TitlePattern, compile_title_pattern
from notifier.rules.schema import LiveRule, PriceRule, RulesFile, ScheduledRule
from notifier.rules.subscriptions import SUB_PREFIX, Subscription, subscription_id, to_rule
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


# A live match's details: none. One shared, never changed, for 20,000 matches of a go-live.
NO_DETAILS: Mapping[str, Any] = MappingProxyType({})


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


def live_identity(event: ChannelLive) -> str:
    """A go-live's event identity as alert keys and the live set hold it."""
    user_id, marker = event.identity
    return f"live:{user_id}:{marker}"


def describe(reason: Reason, *, detail: str = "") -> str:
    """A decision in words, as `replay --explain` prints it (plus a detail, if any)."""
    return f"{reason.value} ({detail})" if detail else reason.value


class SubDecision(NamedTuple):
    """What one live event meant for one subscription whose streamer it was (for /why).

    A named tuple, not a frozen dataclass: one is made for every subscription of the
    streamer on every live event, and a tuple is made in a third of the time."""

    rule: str
    destination: str
    reason: Reason
    subject: str
    identity: str
    at: float
    detail: str = ""  # numbers only (never text from strangers): "5 of 20", "540s left"

    @property
    def subscription_id(self) -> int:
        found = subscription_id(self.rule)
        assert found is not None
        return found

    @property
    def text(self) -> str:
        return describe(self.reason, detail=self.detail)


@dataclass(frozen=True, slots=True)
class AddResult:
    """The outcome of adding a subscription: for a price line, whether the latest known
    price is already past it (the next crossing fires, not this one)."""

    already_past: bool = False
    last_price: Decimal | None = None


@dataclass
class Evaluation:
    matches: list[Match] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    # Always filled for live events (not only with explain): one per subscription of the
    # event's user, so it costs O(subscriptions of that user).
    sub_decisions: list[SubDecision] = field(default_factory=list)
    # A match a cooldown held back (its filters passed, the subject fired lately).
    held_back: bool = False


def _fold(text: str) -> str:
    """A name as rules and events are compared: any case, canonically and compatibly equal
    text alike (é composed or not, full-width letters), runs of spaces as one."""
    if not text.isascii():  # ASCII is its own NFKC form: most names skip the tables
        text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    else:
        text = text.casefold()
    return " ".join(text.split())


def _key(*parts: Any) -> str:
    return json.dumps([str(p) for p in parts], ensure_ascii=False)


def _table_key(parts: tuple[str | int, ...]) -> str:
    """The key of a saved cooldown or reminder: read back with json.loads, never compared
    as text (unlike a line's `state_key`), so in orjson's compact form, five times quicker
    to make for the tens of thousands a busy fan-out leaves (20,000 chats, a few popular
    go-lives). Text orjson refuses (a lone surrogate) takes json's form."""
    try:
        return orjson.dumps(parts).decode()
    except TypeError:
        return json.dumps(list(parts), ensure_ascii=False)


_EMPTY: tuple[Any, ...] = ()


def _small(values: set[Any]) -> tuple[Any, ...] | frozenset[Any]:
    """A compact container for membership tests: a tuple when small, else a frozenset."""
    if not values:
        return _EMPTY
    return tuple(values) if len(values) <= 8 else frozenset(values)


# ---- live ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class _Filter:
    """What a live rule checks once its users matched (the user indexes did that part),
    and where it goes. One object serves every rule with the same settings: 100,000 rules
    that differ only in their users share one."""

    destinations: tuple[str, ...]
    cooldown: float
    category_ids: tuple[int, ...] | frozenset[int] = _EMPTY
    category_names: tuple[str, ...] | frozenset[str] = _EMPTY
    excluded_ids: tuple[int, ...] | frozenset[int] = _EMPTY
    excluded_names: tuple[str, ...] | frozenset[str] = _EMPTY
    title: TitlePattern | None = None
    min_viewers: int | None = None

    def reason(self, event: ChannelLive, categories: _Categories) -> Reason | None:
        """None when the event passes every filter of the rule."""
        if (self.category_ids or self.category_names) and not categories.match(
            self.category_ids, self.category_names
        ):
            return Reason.CATEGORY_NOT_IN_RULE
        if event.user_id in self.excluded_ids or (
            # folding the name costs more than the rest: only for rules that exclude names;
            # either name the user goes by, as `users` matches them
            self.excluded_names
            and (
                _fold(event.user_name) in self.excluded_names
                or (
                    event.social_username is not None
                    and _fold(event.social_username) in self.excluded_names
                )
            )
        ):
            return Reason.EXCLUDED_USER
        if self.title is not None and not self.title.search(event.event_title or ""):
            return Reason.TITLE_MISMATCH
        if self.min_viewers is not None and (event.viewers_count or 0) < self.min_viewers:
            return Reason.TOO_FEW_VIEWERS
        return None


class _Categories:
    """An event's category as every id and name it goes by, through Parti's category list
    (ids to names and back), so rules may name either; worked out once per event, and
    only when a rule asks (most events meet no rule that names a category)."""

    __slots__ = ("_id", "_ids", "_ids_of", "_name", "_names", "_names_of")

    def __init__(
        self,
        category_id: int | None,
        category_name: str | None,
        names_of: Mapping[int, frozenset[str]],
        ids_of: Mapping[str, frozenset[int]],
    ) -> None:
        self._id, self._name = category_id, category_name
        self._names_of, self._ids_of = names_of, ids_of
        self._ids: set[int] | None = None
        self._names: set[str] = set()

    @property
    def ids(self) -> set[int]:
        if self._ids is None:
            self._work_out()
        assert self._ids is not None
        return self._ids

    @property
    def names(self) -> set[str]:
        if self._ids is None:
            self._work_out()
        return self._names

    def _work_out(self) -> None:
        ids: set[int] = set() if self._id is None else {self._id}
        names = self._names
        if self._name:
            name = _fold(self._name)
            names.add(name)
            ids |= self._ids_of.get(name, frozenset())
        for cid in list(ids):
            names |= self._names_of.get(cid, frozenset())
        self._ids = ids

    def match(self, ids: Iterable[int], names: Iterable[str]) -> bool:
        mine, my_names = self.ids, self._names
        return any(i in mine for i in ids) or any(n in my_names for n in names)


def _split(values: Iterable[int | str]) -> tuple[set[int], set[str]]:
    ids: set[int] = set()
    names: set[str] = set()
    for value in values:
        if isinstance(value, int):
            ids.add(value)
        elif value.strip().isdecimal():
            ids.add(int(value))
        else:
            names.add(_fold(value))
    return ids, names


class _Names:
    """The live rules' names by index, packed into one string: a string object per name
    would weigh about 55 bytes, a name here its length plus four."""

    __slots__ = ("_blob", "_ends", "_pending", "_size")

    def __init__(self) -> None:
        self._blob = ""
        self._pending: list[str] = []
        self._ends = array("I")  # where each name ends in the blob
        self._size = 0

    def append(self, name: str) -> None:
        self._pending.append(name)
        self._size += len(name)
        self._ends.append(self._size)
        if len(self._pending) >= 4096:
            self._pack()

    def _pack(self) -> None:
        self._blob += "".join(self._pending)
        self._pending.clear()

    def __getitem__(self, index: int) -> str:
        if self._pending:
            self._pack()
        ends = self._ends
        return self._blob[ends[index - 1] if index else 0 : ends[index]]

    def __len__(self) -> int:
        return len(self._ends)


class _Filters:
    """The live rules' filters by index: each distinct filter once, and a number per rule."""

    __slots__ = ("_by_key", "_ids", "_table")

    def __init__(self) -> None:
        self._table: list[_Filter] = []
        self._by_key: dict[tuple[Any, ...], int] = {}
        self._ids = array("I")

    def known(self, key: tuple[Any, ...]) -> _Filter | None:
        found = self._by_key.get(key)
        return None if found is None else self._table[found]

    def append(self, key: tuple[Any, ...], found: _Filter) -> None:
        number = self._by_key.get(key)
        if number is None:
            number = self._by_key[key] = len(self._table)
            self._table.append(found)
        self._ids.append(number)

    def __getitem__(self, index: int) -> _Filter:
        return self._table[self._ids[index]]


# A rule index, or the rule indexes, that an index key leads to: most keys lead to one
# rule, and a bare int is the smallest thing that can say so.
_Slot = int | list[int] | tuple[int, ...]


def _put(table: dict[Any, _Slot], key: Any, index: int) -> None:
    slot = table.get(key)
    if slot is None:
        table[key] = index
    elif isinstance(slot, int):
        table[key] = [slot, index]
    elif isinstance(slot, list):
        slot.append(index)
    else:
        table[key] = [*slot, index]


def _tighten(table: dict[Any, _Slot]) -> None:
    """Lists that grew while the file was read become tuples (no spare capacity)."""
    for key, slot in table.items():
        if isinstance(slot, list):
            table[key] = tuple(slot)


# ---- price -----------------------------------------------------------------------
#
# A crossing's identity ends in a stamp: when the line was armed for it (a move: when its
# window started), in microseconds of the clock the events were evaluated with. A crossing
# evaluated again from the state saved before it (a successor after a crash, a catch-up)
# meets the same stamp, so the outbox key dedups it; any later crossing of the line was
# armed later, so its key is new, whatever state was lost or restored in between (a rule
# removed and put back, a line edited away and back, a reload, an unreadable state). A
# count restored from saved state could go back and reuse a key the outbox already holds.


def _stamp(now: float) -> int:
    return round(now * 1_000_000)


def _after(stamp: int | None, now: float) -> int:
    """The stamp of `now`, but past `stamp`: a line's stamps only go forward."""
    at = _stamp(now)
    return at if stamp is None or at > stamp else stamp + 1


@dataclass(slots=True, eq=False)
class _Line:
    """One `above` or `below` line of one rule on one asset."""

    name: str
    asset: str
    destinations: tuple[str, ...]
    cooldown: float
    direction: str  # "above" | "below"
    line: Decimal
    rearm_level: Decimal  # the line less (above) or plus (below) the rearm band
    fire_on_start: bool = False
    armed: bool = False
    # Armed: when it was armed (None: not known; its crossing takes the crossing's time).
    # Not armed: the stamp its last crossing was identified by (None: none yet).
    stamp: int | None = None

    def state_key(self) -> str:
        return _key(self.name, self.asset.upper(), self.direction, self.line)


@dataclass(slots=True, eq=False)
class _Move:
    name: str
    asset: str
    destinations: tuple[str, ...]
    cooldown: float
    percent: Decimal
    within: float
    stamp: int | None = None  # when the window started: its move's identity
    highs: deque[tuple[float, Decimal]] = field(default_factory=deque)
    lows: deque[tuple[float, Decimal]] = field(default_factory=deque)

    def state_key(self) -> str:
        return _key(self.name, self.asset.upper(), "move")

    def observe(self, at: float, price: Decimal) -> tuple[str, Decimal, Decimal] | None:
        """Add an observation; (direction, change %, reference) when the move is reached."""
        if self.stamp is None:
            self.stamp = _stamp(at)
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
        self.stamp = _after(self.stamp, at)


@dataclass
class _Book:
    """Every price rule of one asset name, with lines sorted for bisecting."""

    last: Decimal | None = None
    above: list[_Line] = field(default_factory=list)
    below: list[_Line] = field(default_factory=list)
    moves: list[_Move] = field(default_factory=list)
    above_lines: list[Decimal] = field(default_factory=list)
    # The lines again, by rearm level, and those levels (parallel lists: no tuple per line)
    above_rearm: list[_Line] = field(default_factory=list)
    above_rearm_levels: list[Decimal] = field(default_factory=list)
    below_lines: list[Decimal] = field(default_factory=list)
    below_rearm: list[_Line] = field(default_factory=list)
    below_rearm_levels: list[Decimal] = field(default_factory=list)
    # A file's rules are appended and sorted once (`seal`); later lines are bisected in.
    is_sorted: bool = True
    # Lines took saved state: the price may have gone back past their re-arm level since
    # (the state is older than the last crossings), checked at the next price (`_rearmed`).
    restored: bool = False

    def append(self, entry: _Line) -> None:
        (self.above if entry.direction == "above" else self.below).append(entry)
        self.is_sorted = False

    def seal(self) -> None:
        if self.is_sorted:
            return
        self.above.sort(key=lambda e: e.line)
        self.below.sort(key=lambda e: e.line)
        self.above_lines = [e.line for e in self.above]
        self.below_lines = [e.line for e in self.below]
        self.above_rearm = sorted(self.above, key=lambda e: e.rearm_level)
        self.below_rearm = sorted(self.below, key=lambda e: e.rearm_level)
        self.above_rearm_levels = [e.rearm_level for e in self.above_rearm]
        self.below_rearm_levels = [e.rearm_level for e in self.below_rearm]
        self.is_sorted = True

    def insert(self, entry: _Line) -> None:
        """Bisect one line in (after lines of the same level, as a stable sort would)."""
        self.seal()
        entries, levels, rearm, rearm_levels = self._side(entry)
        at = bisect.bisect_right(levels, entry.line)
        entries.insert(at, entry)
        levels.insert(at, entry.line)
        at = bisect.bisect_right(rearm_levels, entry.rearm_level)
        rearm.insert(at, entry)
        rearm_levels.insert(at, entry.rearm_level)

    def remove(self, entry: _Line) -> None:
        self.seal()
        entries, levels, rearm, rearm_levels = self._side(entry)
        for items, keys, level in (
            (entries, levels, entry.line),
            (rearm, rearm_levels, entry.rearm_level),
        ):
            at = bisect.bisect_left(keys, level)
            while items[at] is not entry:  # among lines of the same level
                at += 1
            del items[at]
            del keys[at]

    def remove_move(self, move: _Move) -> None:
        # By identity: two moves with equal settings compare equal.
        for at, other in enumerate(self.moves):
            if other is move:
                del self.moves[at]
                return

    def _side(self, entry: _Line) -> tuple[list[_Line], list[Decimal], list[_Line], list[Decimal]]:
        if entry.direction == "above":
            return self.above, self.above_lines, self.above_rearm, self.above_rearm_levels
        return self.below, self.below_lines, self.below_rearm, self.below_rearm_levels

    def empty(self) -> bool:
        return not (self.above or self.below or self.moves)

    def lines(self) -> Iterable[_Line]:
        yield from self.above
        yield from self.below


def _past(entry: _Line, price: Decimal) -> bool:
    return price >= entry.line if entry.direction == "above" else price <= entry.line


def _rearmed(book: _Book, price: Decimal, now: float) -> None:
    """The first price after lines took saved state: a line armed before the save whose
    level the price is back past was armed again since (the state may be older than a
    crossing it saw), so it takes a new stamp; its next crossing is a new one. A price
    past the line keeps the saved stamp: that crossing may be the one alerted before."""
    book.restored = False
    for entry in book.above:
        if entry.armed and entry.stamp is not None and price < entry.rearm_level:
            entry.stamp = _after(entry.stamp, now)
    for entry in book.below:
        if entry.armed and entry.stamp is not None and price > entry.rearm_level:
            entry.stamp = _after(entry.stamp, now)


# What a damaged saved entry raises when it is read (`_line_state`, `_move_state`, ...).
_DAMAGE = (TypeError, ValueError, ArithmeticError, LookupError, AttributeError)


def _finite(value: Any) -> Decimal:
    """A saved price (text, or a whole number); raises for anything else, NaN included."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TypeError(f"not a price: {type(value).__name__}")
    found = Decimal(value)
    if not found.is_finite():
        raise ValueError("not a finite price")
    return found


def _saved_stamp(value: Any) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"not a stamp: {type(value).__name__}")
    return value


def _line_state(saved: Any) -> dict[str, Any]:
    """A line's saved state, checked (raises when damaged): `armed` and `stamp`, or nothing.
    (The crossing count an older release saved, `seq`, is no stamp: left out.)"""
    if not isinstance(saved, Mapping):
        raise TypeError("not an object")
    if "armed" not in saved:
        return {}
    return {"armed": bool(saved["armed"]), "stamp": _saved_stamp(saved.get("stamp"))}


def _move_state(saved: Any) -> dict[str, Any]:
    """A move's saved state, checked (raises when damaged), in the form it is saved in."""
    if not isinstance(saved, Mapping):
        raise TypeError("not an object")
    checked: dict[str, Any] = {"stamp": _saved_stamp(saved.get("stamp"))}
    if "highs" in saved:
        for side in ("highs", "lows"):
            window = []
            for at, value in saved.get(side, ()):
                if not math.isfinite(at := float(at)):
                    raise ValueError("not a finite time")
                window.append([at, str(_finite(value))])
            checked[side] = window
    return checked


def _apply_line(entry: _Line, saved: Mapping[str, Any] | None, last: Decimal | None) -> None:
    """Saved state (checked by `_line_state`) onto a line; without a saved `armed`, the
    baseline from `last`."""
    if saved is not None and "armed" in saved:
        entry.armed, entry.stamp = saved["armed"], saved["stamp"]
    elif last is not None:
        entry.armed = not _past(entry, last)


def _apply_move(move: _Move, saved: Mapping[str, Any] | None) -> None:
    """Saved state (checked by `_move_state`) onto a move."""
    if saved is None:
        return
    move.stamp = saved["stamp"]
    if "highs" in saved:
        move.highs = deque((t, Decimal(p)) for t, p in saved["highs"])
        move.lows = deque((t, Decimal(p)) for t, p in saved["lows"])


def _saved(pending: tuple[str, Mapping[str, Any]] | None) -> Mapping[str, Any] | None:
    return None if pending is None else pending[1]


def _band(rearm: str | Decimal | None, line: Decimal) -> Decimal:
    """The hysteresis band of a line, as an absolute price (PriceRule.rearm_band)."""
    if rearm is None:
        return Decimal(0)
    if isinstance(rearm, str):
        return line * parse_percent(rearm) / 100
    return rearm


def _lines(
    name: str,
    asset: str,
    destinations: tuple[str, ...],
    cooldown: float,
    above: Decimal | None,
    below: Decimal | None,
    rearm: str | Decimal | None,
    fire_on_start: bool,
) -> list[_Line]:
    lines = []
    asset = sys.intern(asset)  # a few assets, named by thousands of rules
    for direction, line in (("above", above), ("below", below)):
        if line is not None:
            band = _band(rearm, line)
            level = line - band if direction == "above" else line + band
            lines.append(
                _Line(name, asset, destinations, cooldown, direction, line, level, fire_on_start)
            )
    return lines


# ---- scheduled ----------------------------------------------------------------------


@dataclass(slots=True, kw_only=True, eq=False)
class _Scheduled:
    """A reminder rule: whom it is about (users and categories; empty: anyone)."""

    name: str
    before: float
    destinations: tuple[str, ...]
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


# ---- subscriptions ------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class _SubRecord:
    """What the engine keeps of one subscription: where its compiled parts sit."""

    id: int
    name: str
    destination: str
    user_id: int | None = None  # a live subscription: its bucket in `_subs_by_user`
    live: _Filter | None = None
    book: str = ""  # a price subscription: its book's key
    lines: tuple[_Line, ...] = ()
    move: _Move | None = None
    last: SubDecision | None = None


# Restored state of subscriptions not (yet) in the engine, kept by rule name: enough for
# every subscription of a big installation, and a few state keys per rule at most.
PENDING_LIMIT = 100_000

# Cooldowns that ended this long ago are dropped (kept a while: an event evaluated late,
# with an older clock, still finds the cooldown it would have met).
COOLDOWN_GRACE = 3600.0
_COOLDOWN_SWEEP = 4096
# Reminders of events that started this long ago are dropped (their rules no longer fire
# for an event that started: `ALREADY_STARTED`).
REMINDED_KEEP = 86400.0
# Prices of assets nothing watches are forgotten once there are more names than this.
_PRICES_SWEEP = 4096
_PENDING_PER_RULE = 8


# ---- the engine ------------------------------------------------------------------------


class Engine:
    """Compiled rules plus their mutable state. Not thread-safe; one task drives it."""

    def __init__(
        self,
        rules_file: RulesFile,
        *,
        categories: Mapping[int, Iterable[str]] | None = None,
        state: Mapping[str, Any] | None = None,
        pending_limit: int = PENDING_LIMIT,
    ) -> None:
        self.defaults = rules_file.defaults
        self.counts = {"live": 0, "price": 0, "scheduled": 0}
        self._names_of: dict[int, frozenset[str]] = {}
        self._ids_of: dict[str, frozenset[int]] = {}
        self._destinations: dict[tuple[str, ...], tuple[str, ...]] = {}
        # The live rules of the file, by index: a name, and a filter shared by every rule
        # with the same settings (`_filters` finds it by those settings).
        self._live_names = _Names()
        self._live_filters = _Filters()
        # user id, folded user name, category id or name -> the live rules naming it
        self._by_user_id: dict[int, _Slot] = {}
        self._by_user_name: dict[str, _Slot] = {}
        self._by_category_id: dict[int, _Slot] = {}
        self._by_category_name: dict[str, _Slot] = {}
        self._catch_all: list[int] = []
        self._books: dict[str, _Book] = {}
        self._scheduled: list[_Scheduled] = []
        # (rule, subject, destination) -> (until, identity of the alert that set it)
        self._cooldown_until: dict[tuple[str, str, str], tuple[float, str]] = {}
        self._cooldown_sweep = _COOLDOWN_SWEEP  # the size at which ended ones are dropped
        self._reminded: dict[tuple[str, int], int] = {}
        # Asset names seen (symbols and tickers, folded) -> (latest price, subject): a new
        # price subscription takes its baseline from it, even on a new book. Those no rule
        # or subscription watches are swept out when the table outgrows `_prices_sweep`
        # (Parti names a few hundred assets; a broken or hostile stream, any number).
        self._prices: dict[str, tuple[Decimal, str]] = {}
        self._prices_sweep = _PRICES_SWEEP
        self._reminded_sweep = _COOLDOWN_SWEEP
        # When the state was last saved (a stamp): the mark of a crossing whose line has no
        # saved stamp (armed by the first price since a start), so a successor that
        # restores that save and sees the same crossing again makes the same key.
        self._epoch: int | None = None
        self._subs: dict[int, _SubRecord] = {}
        self._subs_by_user: dict[int, dict[int, _SubRecord]] = {}
        # rule name -> {state key: ("line" | "move", saved state)}, oldest first
        self._pending: dict[str, dict[str, tuple[str, Mapping[str, Any]]]] = {}
        self._pending_limit = pending_limit
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
        if isinstance(rule, LiveRule):
            self.add_live(
                rule.name,
                notify=rule.notify,
                cooldown=rule.cooldown,
                users=rule.users,
                categories=rule.categories,
                exclude_users=rule.exclude_users,
                title_matches=rule.title_matches,
                min_viewers=rule.min_viewers,
            )
            return
        cooldown = self.defaults.cooldown if rule.cooldown is None else rule.cooldown
        destinations = self._destinations_of(rule.notify)
        self.counts[rule.when] += 1
        if isinstance(rule, PriceRule):
            self._add_price(rule, destinations, cooldown)
        else:
            uids, unames = _split(rule.users)
            cids, cnames = _split(rule.categories)
            self._scheduled.append(
                _Scheduled(
                    name=rule.name,
                    before=rule.before,
                    destinations=destinations,
                    user_ids=_small(uids),
                    user_names=_small(unames),
                    category_ids=_small(cids),
                    category_names=_small(cnames),
                )
            )

    def add_live(
        self,
        name: str,
        *,
        notify: Iterable[str],
        cooldown: float | None = None,
        users: Iterable[int | str] = (),
        categories: Iterable[int | str] = (),
        exclude_users: Iterable[int | str] = (),
        title_matches: str | None = None,
        min_viewers: int | None = None,
    ) -> None:
        """Compile one live rule from values already validated (as `LiveRule` validates
        them); the compile of a file calls this without building the model."""
        cooldown = self.defaults.cooldown if cooldown is None else cooldown
        destinations = self._destinations_of(notify)
        self.counts["live"] += 1
        index = len(self._live_names)
        if categories or exclude_users or title_matches is not None or min_viewers is not None:
            cids, cnames = _split(categories)
            xids, xnames = _split(exclude_users)
            key: tuple[Any, ...] = (
                destinations,
                cooldown,
                frozenset(cids),
                frozenset(cnames),
                frozenset(xids),
                frozenset(xnames),
                title_matches,
                min_viewers,
            )
            found = self._live_filters.known(key)
            if found is None:
                found = _Filter(
                    destinations,
                    cooldown,
                    _small(cids),
                    _small(cnames),
                    _small(xids),
                    _small(xnames),
                    compile_title_pattern(title_matches) if title_matches else None,
                    min_viewers,
                )
        else:
            cids, cnames = set(), set()
            key = (destinations, cooldown)
            found = self._live_filters.known(key)
            if found is None:
                found = _Filter(destinations, cooldown)
        self._live_names.append(name)
        self._live_filters.append(key, found)
        if type(users) is list and len(users) == 1 and type(users[0]) is int:
            _put(self._by_user_id, users[0], index)  # the commonest rule: one user, by id
            return
        uids, unames = _split(users)
        if uids or unames:  # users narrow most; categories are then a filter
            for uid in uids:
                _put(self._by_user_id, uid, index)
            for folded in unames:
                _put(self._by_user_name, folded, index)
        elif cids or cnames:
            for cid in cids:
                _put(self._by_category_id, cid, index)
            for folded in cnames:
                _put(self._by_category_name, folded, index)
        else:
            self._catch_all.append(index)

    def _destinations_of(self, notify: Iterable[str]) -> tuple[str, ...]:
        names = tuple(notify)
        return self._destinations.setdefault(names, names)

    def seal(self, state: Mapping[str, Any] | None = None) -> None:
        """After the last `add`: sort the price lines, then take back saved state."""
        for book in self._books.values():
            book.seal()
        for table in (
            self._by_user_id,
            self._by_user_name,
            self._by_category_id,
            self._by_category_name,
        ):
            _tighten(table)
        if state:
            self.restore_state(state)

    # ---- subscriptions -----------------------------------------------------------

    def add_subscription(self, sub: Subscription, *, now: float) -> AddResult:
        """Put a chat subscription into the engine at once, matched like a file rule.

        A price line takes the latest known price as its baseline, so the next crossing
        fires; the result says whether that price is already past the line. Raises
        ValueError (one line) for an invalid subscription or an id already present.
        """
        if sub.id in self._subs:
            raise ValueError(f"subscription {sub.id} is already in the engine")
        return self._insert(sub, to_rule(sub), now, {})

    def replace_subscription(self, sub: Subscription, *, now: float) -> AddResult:
        """Change a subscription in place (adding it when absent). Cooldowns carry over,
        and so does the state of a line or move that stays the same; an invalid
        subscription raises ValueError and leaves the old one as it was."""
        rule = to_rule(sub)
        old = self._subs.pop(sub.id, None)
        if old is None:
            return self._insert(sub, rule, now, {})
        cooldowns = self._cooldown_keys(old)
        self._unindex(old)
        carried: dict[str, _Line | _Move] = {e.state_key(): e for e in old.lines}
        if old.move is not None:
            carried[old.move.state_key()] = old.move
        result = self._insert(sub, rule, now, carried)
        new = self._subs[sub.id]
        new.last = old.last
        kept = set(self._cooldown_keys(new))
        for key in cooldowns:
            if key not in kept:
                self._cooldown_until.pop(key, None)
        return result

    def remove_subscription(self, sub_id: int) -> bool:
        """Take a subscription out; False when it was not in the engine.

        Nothing of it stays in the indexes, cooldowns or state: if the same subscription
        comes back (a paused chat resumed), it takes a fresh baseline, and its next alert a
        new identity (a crossing's is stamped with its time), never an old outbox key.
        """
        record = self._subs.pop(sub_id, None)
        if record is None:
            return False
        for key in self._cooldown_keys(record):
            self._cooldown_until.pop(key, None)
        self._unindex(record)
        return True

    def subscription_ids(self) -> frozenset[int]:
        return frozenset(self._subs)

    def last_price(self, asset: str) -> Decimal | None:
        """The latest price seen for an asset symbol or ticker (any case), else None."""
        known = self._prices.get(_fold(asset))
        return None if known is None else known[0]

    def last_decision(self, sub_id: int) -> SubDecision | None:
        """The decision about the last live event of a subscription's streamer (for /why)."""
        record = self._subs.get(sub_id)
        return None if record is None else record.last

    def _insert(
        self,
        sub: Subscription,
        rule: LiveRule | PriceRule,
        now: float,
        carried: dict[str, _Line | _Move],
    ) -> AddResult:
        cooldown = self.defaults.cooldown if rule.cooldown is None else rule.cooldown
        # Several subscriptions of a chat share one destination string.
        destination = sys.intern(sub.destination)
        destinations = (destination,)
        record = _SubRecord(id=sub.id, name=rule.name, destination=destination)
        result = AddResult()
        if isinstance(rule, LiveRule):
            record.live = self._compile_live(rule, destinations, cooldown)
            ((record.user_id,), _) = _split(rule.users)
            self._subs_by_user.setdefault(record.user_id, {})[sub.id] = record
        else:
            record.book = _fold(rule.asset)
            book = self._book(record.book)
            lines, move = self._compile_price(rule, destinations, cooldown)
            pending = self._pending.pop(rule.name, {})
            last = book.last
            for entry in lines:
                key = entry.state_key()
                before = carried.pop(key, None)
                if isinstance(before, _Line):
                    entry.armed, entry.stamp = before.armed, before.stamp
                else:
                    saved = _saved(pending.pop(key, None))
                    _apply_line(entry, saved, last)
                    book.restored |= saved is not None
                book.insert(entry)
            if move is not None:
                key = move.state_key()
                before = carried.pop(key, None)
                if isinstance(before, _Move):
                    move.stamp, move.highs, move.lows = before.stamp, before.highs, before.lows
                else:
                    saved = _saved(pending.pop(key, None))
                    _apply_move(move, saved)
                    if (saved is None or "highs" not in saved) and last is not None:
                        move.restart(now, last)  # the window starts at the known price
                book.moves.append(move)
            record.lines, record.move = tuple(lines), move
            past = last is not None and any(_past(entry, last) for entry in lines)
            result = AddResult(already_past=past, last_price=last)
        self._subs[sub.id] = record
        return result

    def _unindex(self, record: _SubRecord) -> None:
        if record.user_id is not None:
            bucket = self._subs_by_user[record.user_id]
            del bucket[record.id]
            if not bucket:
                del self._subs_by_user[record.user_id]
        if record.book:
            book = self._books[record.book]
            for entry in record.lines:
                book.remove(entry)
            if record.move is not None:
                book.remove_move(record.move)
            if book.empty():  # its latest price stays in `_prices`
                del self._books[record.book]

    def _cooldown_keys(self, record: _SubRecord) -> list[tuple[str, str, str]]:
        if record.user_id is not None:
            return [(record.name, str(record.user_id), record.destination)]
        subjects = {record.book.upper()}
        known = self._prices.get(record.book)
        if known is not None:
            subjects.add(known[1])
        return [(record.name, subject, record.destination) for subject in subjects]

    def _park_state(self, name: str, key: str, kind: str, saved: Mapping[str, Any]) -> None:
        bucket = self._pending.pop(name, None) or {}
        bucket.pop(key, None)
        bucket[key] = (kind, saved)
        while len(bucket) > _PENDING_PER_RULE:
            del bucket[next(iter(bucket))]
        self._pending[name] = bucket  # the most recent last
        while len(self._pending) > self._pending_limit:
            del self._pending[next(iter(self._pending))]

    # ---- compile ---------------------------------------------------------------

    @staticmethod
    def _compile_live(rule: LiveRule, destinations: tuple[str, ...], cooldown: float) -> _Filter:
        """A subscription's filter (its own: subscriptions come and go, a shared one would
        have to be counted)."""
        cids, cnames = _split(rule.categories)
        xids, xnames = _split(rule.exclude_users)
        return _Filter(
            destinations,
            cooldown,
            _small(cids),
            _small(cnames),
            _small(xids),
            _small(xnames),
            compile_title_pattern(rule.title_matches) if rule.title_matches else None,
            rule.min_viewers,
        )

    def _add_price(self, rule: PriceRule, destinations: tuple[str, ...], cooldown: float) -> None:
        book = self._book(_fold(rule.asset))
        lines, move = self._compile_price(rule, destinations, cooldown)
        for entry in lines:
            book.append(entry)
        if move is not None:
            book.moves.append(move)

    def add_price_lines(
        self,
        name: str,
        *,
        notify: Iterable[str],
        asset: str,
        above: Decimal | None = None,
        below: Decimal | None = None,
        rearm: str | Decimal | None = None,
        cooldown: float | None = None,
        fire_on_start: bool = False,
    ) -> None:
        """Compile one price rule of lines only (no move) from values already validated
        (as `PriceRule` validates them); the compile of a file calls this without a model."""
        cooldown = self.defaults.cooldown if cooldown is None else cooldown
        destinations = self._destinations_of(notify)
        self.counts["price"] += 1
        book = self._book(_fold(asset))
        lines = _lines(name, asset, destinations, cooldown, above, below, rearm, fire_on_start)
        for entry in lines:
            book.append(entry)

    @staticmethod
    def _compile_price(
        rule: PriceRule, destinations: tuple[str, ...], cooldown: float
    ) -> tuple[list[_Line], _Move | None]:
        lines = _lines(
            rule.name,
            rule.asset,
            destinations,
            cooldown,
            rule.above,
            rule.below,
            rule.rearm,
            rule.fire_on_start,
        )
        move = None
        if rule.move is not None and rule.within is not None:
            move = _Move(
                rule.name,
                sys.intern(rule.asset),
                destinations,
                cooldown,
                parse_percent(rule.move),
                rule.within,
            )
        return lines, move

    def _book(self, key: str) -> _Book:
        book = self._books.get(key)
        if book is None:
            known = self._prices.get(key)
            book = self._books[key] = _Book(last=None if known is None else known[0])
        return book

    # ---- evaluation --------------------------------------------------------------

    def evaluate(
        self, event: ChannelLive | PriceUpdate, now: float, *, explain: bool = False
    ) -> Evaluation:
        if isinstance(event, ChannelLive):
            return self.on_live(event, now, explain=explain)
        return self.on_price(event, now, explain=explain)

    def follows(self, event: ChannelLive) -> bool:
        """Whether some live rule or subscription matches the event's filters (no
        cooldown, no state)."""
        categories = self._categories(event.category_id, event.category_name)
        filters = self._live_filters
        if any(
            filters[i].reason(event, categories) is None
            for i in self._live_candidates(event, categories)
        ):
            return True
        subs = self._subs_by_user.get(event.user_id)
        return subs is not None and any(
            r.live is not None and r.live.reason(event, categories) is None for r in subs.values()
        )

    def _categories(self, category_id: int | None, category_name: str | None) -> _Categories:
        return _Categories(category_id, category_name, self._names_of, self._ids_of)

    def _live_candidates(self, event: ChannelLive, categories: _Categories) -> list[int]:
        """The indexes of the live rules naming the event's user or category, or anyone:
        each once, in the order user id, user names, anyone, categories."""
        found: list[int] = []
        slots: list[_Slot] = []
        slot = self._by_user_id.get(event.user_id)
        if slot is not None:
            slots.append(slot)
        by_name = self._by_user_name
        if by_name:
            slot = by_name.get(_fold(event.user_name))
            if slot is not None:
                slots.append(slot)
            if event.social_username:
                slot = by_name.get(_fold(event.social_username))
                if slot is not None:
                    slots.append(slot)
        if self._catch_all:
            slots.append(self._catch_all)
        if self._by_category_id or self._by_category_name:
            for cid in categories.ids:
                slot = self._by_category_id.get(cid)
                if slot is not None:
                    slots.append(slot)
            for name in categories.names:
                slot = self._by_category_name.get(name)
                if slot is not None:
                    slots.append(slot)
        for slot in slots:
            if isinstance(slot, int):
                found.append(slot)
            else:
                found.extend(slot)
        if len(slots) > 1:  # a rule may be found twice (by id and by name)
            found = list(dict.fromkeys(found))
        return found

    def on_live(self, event: ChannelLive, now: float, *, explain: bool = False) -> Evaluation:
        result = Evaluation()
        categories = self._categories(event.category_id, event.category_name)
        candidates = self._live_candidates(event, categories)
        subs = self._subs_by_user.get(event.user_id)
        subject = str(event.user_id)
        if not candidates and not subs:
            if explain:
                result.decisions.append(Decision(None, subject, Reason.NO_RULE))
            return result
        identity = live_identity(event)
        names, filters = self._live_names, self._live_filters
        # Rules of one filter share its verdict: worked out once per event.
        verdicts: dict[int, Reason | None] = {}
        for index in candidates:
            found = filters[index]
            key = id(found)
            if key in verdicts:
                reason = verdicts[key]
            else:
                reason = verdicts[key] = found.reason(event, categories)
            if reason is not None:
                if explain:
                    result.decisions.append(Decision(names[index], subject, reason))
                continue
            self._fire(
                result,
                names[index],
                found.destinations,
                found.cooldown,
                "live",
                subject,
                identity,
                now,
                event,
                NO_DETAILS,
                explain,
            )
        if subs:
            self._live_subs(subs, event, categories, subject, identity, now, result, explain)
        return result

    def _live_subs(
        self,
        subs: Mapping[int, _SubRecord],
        event: ChannelLive,
        categories: _Categories,
        subject: str,
        identity: str,
        now: float,
        result: Evaluation,
        explain: bool,
    ) -> None:
        """The subscriptions of the event's user: the same filters and cooldowns as a file
        rule, and a decision for each (for /why) whether it fired or not."""
        decisions = result.sub_decisions
        for record in subs.values():
            compiled = record.live
            assert compiled is not None
            name, destination = record.name, record.destination
            reason = compiled.reason(event, categories)
            detail = ""
            if reason is None:
                until = self._fire_one(
                    result,
                    name,
                    destination,
                    compiled.cooldown,
                    "live",
                    subject,
                    identity,
                    now,
                    event,
                    NO_DETAILS,
                )
                if until is None:
                    reason = Reason.FIRED
                else:
                    reason = Reason.COOLING_DOWN
                    detail = f"{math.ceil(until - now)}s left"
                if explain:
                    result.decisions.append(Decision(name, subject, reason, destination))
            else:
                if reason is Reason.TOO_FEW_VIEWERS:
                    detail = f"{event.viewers_count or 0} of {compiled.min_viewers}"
                if explain:
                    result.decisions.append(Decision(name, subject, reason))
            record.last = SubDecision(name, destination, reason, subject, identity, now, detail)
            decisions.append(record.last)

    def on_price(self, event: PriceUpdate, now: float, *, explain: bool = False) -> Evaluation:
        result = Evaluation()
        names = {_fold(event.display_symbol)}
        if event.ticker:
            names.add(_fold(event.ticker))
        subject = event.display_symbol.upper()
        known = (event.price, subject)
        prices = self._prices
        for name in names:
            prices[name] = known
        if len(prices) > self._prices_sweep:
            self._sweep_prices()
        books = [self._books[n] for n in names if n in self._books]
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
        if not book.is_sorted:  # file rules added after `seal`
            book.seal()
        price, last = event.price, book.last
        book.last = price
        if book.restored:
            _rearmed(book, price, now)
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
            lo = bisect.bisect_left(book.below_rearm_levels, last)
            hi = bisect.bisect_left(book.below_rearm_levels, price)
            for entry in book.below_rearm[lo:hi]:  # rearm levels in [last, price)
                if not entry.armed and price > entry.rearm_level:
                    entry.armed, entry.stamp = True, _after(entry.stamp, now)
                    touched.add(id(entry))
                    if explain:
                        result.decisions.append(Decision(entry.name, subject, Reason.REARMED))
        elif price < last:
            lo = bisect.bisect_left(book.below_lines, price)
            hi = bisect.bisect_left(book.below_lines, last)
            for entry in book.below[lo:hi]:  # lines in [price, last)
                touched.add(id(entry))
                self._cross(entry, price, subject, now, event, result, explain)
            lo = bisect.bisect_right(book.above_rearm_levels, price)
            hi = bisect.bisect_right(book.above_rearm_levels, last)
            for entry in book.above_rearm[lo:hi]:  # rearm levels in (price, last]
                if not entry.armed and price < entry.rearm_level:
                    entry.armed, entry.stamp = True, _after(entry.stamp, now)
                    touched.add(id(entry))
                    if explain:
                        result.decisions.append(Decision(entry.name, subject, Reason.REARMED))
        if explain:
            for entry in book.lines():
                if id(entry) not in touched:
                    reason = Reason.NOT_CROSSED if entry.armed else Reason.NOT_ARMED
                    result.decisions.append(Decision(entry.name, subject, reason))
        for move in book.moves:
            hit = move.observe(now, price)
            if hit is None:
                if explain:
                    result.decisions.append(Decision(move.name, subject, Reason.MOVE_TOO_SMALL))
                continue
            direction, change, reference = hit
            identity = f"price:{subject}:move:{direction}:{move.stamp}"
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
                move.name,
                move.destinations,
                move.cooldown,
                "price",
                subject,
                identity,
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
        if not past:
            # Armed now; a line that never crossed stays unstamped (a save leaves it out).
            if entry.stamp is not None:
                entry.stamp = _after(entry.stamp, now)
        elif entry.fire_on_start:
            mark = _after(entry.stamp, now)
            self._cross_fired(entry, mark, price, subject, now, event, result, explain)
        elif explain:
            reason = Reason.ALREADY_PAST if past else Reason.BASELINE
            result.decisions.append(Decision(entry.name, subject, reason))

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
                result.decisions.append(Decision(entry.name, subject, Reason.NOT_ARMED))
            return
        # Armed at a time not known (no saved state said): the last save's stamp, which a
        # successor restoring that save takes too (the crossing's own time before any).
        mark = entry.stamp
        if mark is None:
            mark = self._epoch if self._epoch is not None else _stamp(now)
        self._cross_fired(entry, mark, price, subject, now, event, result, explain)

    def _cross_fired(
        self,
        entry: _Line,
        mark: int,
        price: Decimal,
        subject: str,
        now: float,
        event: PriceUpdate,
        result: Evaluation,
        explain: bool,
    ) -> None:
        entry.armed, entry.stamp = False, mark
        change = (price - entry.line) * 100 / entry.line if entry.line else Decimal(0)
        details = {
            "kind": entry.direction,
            "direction": "up" if entry.direction == "above" else "down",
            "line": entry.line,
            "price": price,
            "change": change,
        }
        identity = f"price:{subject}:{entry.direction}:{entry.line}:{mark}"
        self._fire(
            result,
            entry.name,
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
                name = sched.name
                if now >= event.event_start_ts:
                    reason: Reason | None = Reason.ALREADY_STARTED
                elif now < event.event_start_ts - sched.before:
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
                if len(self._reminded) > self._reminded_sweep:
                    self._sweep_reminded(now)
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
            until = self._fire_one(
                result, rule, destination, cooldown, kind, subject, identity, now, event, details
            )
            if explain:
                reason = Reason.FIRED if until is None else Reason.COOLING_DOWN
                result.decisions.append(Decision(rule, subject, reason, destination))

    def _fire_one(
        self,
        result: Evaluation,
        rule: str,
        destination: str,
        cooldown: float,
        kind: str,
        subject: str,
        identity: str,
        now: float,
        event: ChannelLive | PriceUpdate | CalendarEvent,
        details: Mapping[str, Any],
    ) -> float | None:
        """A match for one destination (None), or the end of the cooldown holding it back."""
        cool_key = (rule, subject, destination)
        cooling = self._cooldown_until.get(cool_key)
        # A cooldown holds back other events of the subject, never the same event
        # evaluated again (a catch-up after a crash): the outbox key dedups that one.
        if cooling is not None and now < cooling[0] and cooling[1] != identity:
            result.held_back = True
            return cooling[0]
        if cooldown > 0:
            table = self._cooldown_until
            table[cool_key] = (now + cooldown, identity)
            if len(table) > self._cooldown_sweep:
                self._sweep_cooldowns(now)
        result.matches.append(
            Match(rule, destination, kind, subject, identity, now, event, details)
        )
        return None

    def _sweep_cooldowns(self, now: float) -> None:
        """Forget cooldowns long over: one per rule, subject and destination that ever
        fired would otherwise stay for good. The table is swept each time it has doubled
        since the last sweep, so the work stays in proportion to what was added."""
        horizon = now - COOLDOWN_GRACE
        kept = {k: v for k, v in self._cooldown_until.items() if v[0] > horizon}
        self._cooldown_until = kept
        self._cooldown_sweep = max(2 * len(kept), _COOLDOWN_SWEEP)

    def _sweep_prices(self) -> None:
        """Forget the prices no rule or subscription watches (swept each time the table
        has doubled since the last sweep, so the work stays in proportion to the names)."""
        books = self._books
        kept = {name: known for name, known in self._prices.items() if name in books}
        self._prices = kept
        self._prices_sweep = max(2 * len(kept), _PRICES_SWEEP)

    def _sweep_reminded(self, now: float) -> None:
        """Forget reminders of events that started long ago (as `_sweep_cooldowns`)."""
        horizon = now - REMINDED_KEEP
        kept = {k: start for k, start in self._reminded.items() if start > horizon}
        self._reminded = kept
        self._reminded_sweep = max(2 * len(kept), _COOLDOWN_SWEEP)

    # ---- state ----------------------------------------------------------------------

    def take_over(self, old: Engine) -> None:
        """At a reload's swap, after the compile restored an export taken seconds before:
        what the live engine did since (prices, crossings, re-arms, windows, cooldowns,
        reminders), straight from its tables, so nothing it did is undone (a line crossed
        meanwhile would fire again, one armed again would reuse a key). Cheap enough for
        the event loop: no text is made or read, only the crossed lines of subscriptions
        get a state key (they wait in `_pending` until the subscriptions are added)."""
        self._prices.update(old._prices)
        self._cooldown_until.update(old._cooldown_until)
        if old._epoch is not None:  # saved while the new rules compiled, perhaps
            self._epoch = max(old._epoch, self._epoch or old._epoch)
        self._reminded.update(old._reminded)
        lines: dict[tuple[str, str, str, Decimal], _Line] = {}
        moves: dict[tuple[str, str], _Move] = {}
        for book in old._books.values():
            for entry in book.lines():
                lines[(entry.name, entry.asset.upper(), entry.direction, entry.line)] = entry
            for move in book.moves:
                moves[(move.name, move.asset.upper())] = move
        for asset, book in self._books.items():
            before = old._books.get(asset)
            if before is not None and before.last is not None:
                book.last = before.last
            elif (known := old._prices.get(asset)) is not None:
                book.last = known[0]
            book.restored = True
            last = book.last
            for entry in book.lines():
                key = (entry.name, entry.asset.upper(), entry.direction, entry.line)
                found = lines.get(key)
                if found is not None:
                    entry.armed, entry.stamp = found.armed, found.stamp
                elif entry.stamp is None and last is not None:  # a new rule: the baseline
                    entry.armed = not _past(entry, last)
            for move in book.moves:
                was = moves.get((move.name, move.asset.upper()))
                if was is not None:
                    move.stamp, move.highs, move.lows = was.stamp, deque(was.highs), deque(was.lows)
        for record in old._subs.values():  # added to the new engine by the next sync
            last = None
            if record.book and (book_of := old._books.get(record.book)) is not None:
                last = book_of.last
            for entry in record.lines:
                if entry.stamp is None and entry.armed == (
                    last is not None and not _past(entry, last)
                ):
                    continue  # what the baseline gives it
                line_state = {"armed": entry.armed, "stamp": entry.stamp}
                self._park_state(record.name, entry.state_key(), "line", line_state)
            if record.move is not None:
                window = record.move
                move_state = {
                    "stamp": window.stamp,
                    "highs": [[t, str(p)] for t, p in window.highs],
                    "lows": [[t, str(p)] for t, p in window.lows],
                }
                self._park_state(record.name, window.state_key(), "move", move_state)

    def export_state(self, now: float | None = None, *, saving: bool = False) -> dict[str, Any]:
        """JSON-serialisable state; expired cooldowns are left out when `now` is given.
        `saving`: this export is to be saved, a new epoch (the mark of crossings whose
        lines have no saved stamp, see `_cross`)."""
        if saving:
            self._epoch = _after(self._epoch, time.time() if now is None else now)
        lines: dict[str, Any] = {}
        moves: dict[str, Any] = {}
        # Every known price (a subscription added after a restart takes its baseline from
        # it): as many as `_sweep_prices` leaves, not every name a stream ever sent.
        prices = {name: str(price) for name, (price, _) in self._prices.items()}
        # A line is saved only when it differs from what a restore would give it without
        # (its baseline from the saved price, no stamp), and the (armed, stamp) records
        # are shared: lines armed by one price share one, not 10,000 small dicts.
        records: dict[tuple[bool, int | None], dict[str, Any]] = {}
        for asset, book in self._books.items():
            last = book.last
            if last is not None:
                prices[asset] = str(last)
            else:  # what a restore takes as this book's price
                known = self._prices.get(asset)
                last = None if known is None else known[0]
            for entry in book.lines():
                armed, stamp = entry.armed, entry.stamp
                if stamp is None and armed == (last is not None and not _past(entry, last)):
                    continue
                record = records.get((armed, stamp))
                if record is None:
                    record = records[(armed, stamp)] = {"armed": armed, "stamp": stamp}
                lines[entry.state_key()] = record
            for move in book.moves:
                moves[move.state_key()] = {
                    "stamp": move.stamp,
                    "highs": [[t, str(p)] for t, p in move.highs],
                    "lows": [[t, str(p)] for t, p in move.lows],
                }
        for bucket in self._pending.values():  # subscriptions not back in the engine yet
            for key, (kind, saved) in bucket.items():
                (lines if kind == "line" else moves)[key] = dict(saved)
        cooldowns = {
            _table_key(k): value  # (until, identity): a JSON array, as a list would be
            for k, value in self._cooldown_until.items()
            if now is None or value[0] > now
        }
        reminded = {
            _table_key(k): start
            for k, start in self._reminded.items()
            if now is None or start > now - REMINDED_KEEP
        }
        return {
            "version": 1,
            "epoch": self._epoch,
            "prices": prices,
            "lines": lines,
            "moves": moves,
            "cooldowns": cooldowns,
            "reminded": reminded,
        }

    def restore_state(self, state: Mapping[str, Any]) -> int:
        """Take back exported state. Entries of file rules that no longer exist are dropped;
        those of subscriptions not in the engine yet wait (bounded) until they are added.

        A damaged entry (a state edited by hand, a NaN saved as null) is skipped, not a
        failed start: it costs what it held (a line takes its baseline from the known
        price, a cooldown or reminder is forgotten). Returns how many were skipped."""
        if state.get("version") != 1:
            return 0
        damaged = 0
        epoch = state.get("epoch")
        if isinstance(epoch, int) and not isinstance(epoch, bool):
            self._epoch = epoch
        elif epoch is not None:
            damaged += 1
        sections: dict[str, Mapping[str, Any]] = {}
        for section in ("prices", "lines", "moves", "cooldowns", "reminded"):
            found = state.get(section, {})
            if not isinstance(found, Mapping):
                damaged, found = damaged + 1, {}
            sections[section] = found
        lines, moves = sections["lines"], sections["moves"]
        prices: dict[str, Decimal] = {}
        for name, text in sections["prices"].items():
            try:
                prices[name] = _finite(text)
            except _DAMAGE:
                damaged += 1
        for name, value in prices.items():
            self._prices[name] = (value, name.upper())
        for asset, book in self._books.items():
            last = prices.get(asset)
            if last is not None:
                book.last = last
            book.restored = True
            for entry in book.lines():
                saved = lines.get(entry.state_key())
                checked = None
                if saved is not None:
                    try:
                        checked = _line_state(saved)
                    except _DAMAGE:
                        damaged += 1
                # without saved state (a new rule): the baseline from the known price
                _apply_line(entry, checked, book.last)
            for move in book.moves:
                saved = moves.get(move.state_key())
                try:
                    _apply_move(move, None if saved is None else _move_state(saved))
                except _DAMAGE:
                    damaged += 1
        prefix = json.dumps([SUB_PREFIX])[:-2]  # '["sub:'
        for kind, saved_states in (("line", lines), ("move", moves)):
            check = _line_state if kind == "line" else _move_state
            for key, saved in saved_states.items():
                if not key.startswith(prefix):
                    continue
                try:
                    name, checked = str(json.loads(key)[0]), check(saved)
                except _DAMAGE:
                    damaged += 1
                    continue
                sub_id = subscription_id(name)
                if sub_id is not None and sub_id not in self._subs:
                    self._park_state(name, key, kind, checked)
        for text, value in sections["cooldowns"].items():
            try:
                rule, subject, destination = json.loads(text)
                until, identity = value
                until = float(until)
                if not math.isfinite(until):
                    raise ValueError("not a finite time")
            except _DAMAGE:
                damaged += 1
                continue
            self._cooldown_until[(str(rule), str(subject), str(destination))] = (
                until,
                str(identity),
            )
        for text, start in sections["reminded"].items():
            try:
                rule, event_id = json.loads(text)
                self._reminded[(str(rule), int(event_id))] = int(start)
            except _DAMAGE:
                damaged += 1
        return damaged

    # ---- introspection -------------------------------------------------------------------

    def summary(self) -> dict[str, int]:
        """Rules of the file by kind (subscriptions: `subscription_counts`)."""
        return dict(self.counts)

    def subscription_counts(self) -> dict[str, int]:
        counts = {"live": 0, "price": 0, "move": 0}
        for record in self._subs.values():
            kind = "live" if record.live is not None else "price" if record.lines else "move"
            counts[kind] += 1
        return counts

    def index_sizes(self) -> dict[str, int]:
        """How many entries each index holds (subscription churn must not grow them)."""
        books = self._books.values()
        return {
            "user_ids": len(self._by_user_id),
            "user_names": len(self._by_user_name),
            "category_ids": len(self._by_category_id),
            "category_names": len(self._by_category_name),
            "catch_all": len(self._catch_all),
            "subscriptions": len(self._subs),
            "subscription_users": len(self._subs_by_user),
            "books": len(self._books),
            "price_lines": sum(len(b.above) + len(b.below) for b in books),
            "line_levels": sum(len(b.above_lines) + len(b.below_lines) for b in books),
            "rearm_levels": sum(len(b.above_rearm) + len(b.below_rearm) for b in books),
            "moves": sum(len(b.moves) for b in books),
            "cooldowns": len(self._cooldown_until),
            "pending": len(self._pending),
            "prices": len(self._prices),
            "reminded": len(self._reminded),
        }


def category_map(categories: Iterable[Any]) -> dict[int, list[str]]:
    """`{id: [name, display_name]}` from the categories route's answer."""
    return {c.category_id: [n for n in (c.name, c.display_name) if n] for c in categories}
