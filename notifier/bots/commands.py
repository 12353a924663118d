"""Pure parsing and checking of chat command arguments, button data and the per-user flood
limit (no I/O, the clock passed in): what a command means, or why it cannot be done."""

from __future__ import annotations

import enum
import html
import math
import re
import unicodedata
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from notifier.store.types import SubscriptionKind
from notifier.units import UnitError, parse_duration, parse_percent

MAX_ARGUMENT: Final = 200  # characters of a command's arguments; names and prices are short
ECHO_LIMIT: Final = 40  # characters of user text echoed back in a reply
MAX_PRICE: Final = Decimal(10) ** 15  # as the rules file's price rules
MAX_MUTE: Final = 7 * 86400.0
MIN_WINDOW: Final = 60.0
MAX_WINDOW: Final = 30 * 86400.0
MAX_MOVE: Final = Decimal(1000)
CALLBACK_LIMIT: Final = 64  # bytes of callback_data Telegram keeps
_INT64: Final = 2**63

# Directional text overrides can make an echoed name read as something else.
_BIDI_CONTROLS: Final = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_NUMBER = re.compile(r"[0-9][0-9,_]*(?:\.[0-9]+)?|\.[0-9]+")
_GROUPED = re.compile(r"[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?")


class CommandError(ValueError):
    """A command that cannot be done: `html` is the short reply (already escaped)."""

    def __init__(self, html_text: str) -> None:
        super().__init__(html_text)
        self.html = html_text


def cut(text: str, limit: int) -> str:
    """`text`, or its first `limit - 1` characters and "…" when it is longer than `limit`."""
    return text if len(text) <= limit else text[: max(1, limit - 1)] + "…"


def echo(text: str, limit: int = ECHO_LIMIT) -> str:
    """User text as it may appear in an HTML reply: cut, then escaped."""
    return html.escape(cut(text, limit), quote=False)


def plural(count: int, word: str) -> str:
    """`1 streamer`, `2 streamers`."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def pages_of(count: int, page: int, *, size: int) -> tuple[int, int]:
    """How many pages `count` items fill (at least one), and `page` brought into them (a
    button from an older, longer list shows the last page)."""
    pages = max(1, math.ceil(count / size))
    return pages, min(max(page, 0), pages - 1)


def check_argument(raw: str) -> str:
    """A command's argument text, spaces folded; refuses text too long to be a name or a
    price, and control characters (they have no place in either and can garble a reply)."""
    if len(raw) > MAX_ARGUMENT:
        raise CommandError(f"That is too long: at most {MAX_ARGUMENT} characters, please.")
    spaced = raw.replace("\n", " ").replace("\t", " ").replace("\r", " ")
    for ch in spaced:
        if unicodedata.category(ch) == "Cc" or ch in _BIDI_CONTROLS:
            raise CommandError("That contains control characters; please type it plainly.")
    return " ".join(spaced.split())


# ---- numbers, durations -----------------------------------------------------------------


def parse_line(text: str) -> Decimal:
    """A price line: `100000`, `100,000`, `0.25` (no exponents, above 0, below 10^15)."""
    cleaned = text.strip().lstrip("$")
    if cleaned.startswith("-"):
        raise CommandError(f"The line must be above 0, not {echo(text)}.")
    if not _NUMBER.fullmatch(cleaned) or ("," in cleaned and not _GROUPED.fullmatch(cleaned)):
        raise CommandError(f"{echo(text)} is not a price; write it like 100000 or 0.25.")
    try:
        number = Decimal(cleaned.replace(",", "").replace("_", ""))
    except InvalidOperation:
        raise CommandError(f"{echo(text)} is not a price; write it like 100000 or 0.25.") from None
    if number <= 0:
        raise CommandError(f"The line must be above 0, not {echo(text)}.")
    if number >= MAX_PRICE:
        raise CommandError("That line is too large.")
    return number


def plain_number(number: Decimal) -> str:
    """A decimal as plain text without an exponent or trailing zeros: `100000`, `0.25`."""
    text = format(number.normalize(), "f")
    return text


def format_price(number: Decimal) -> str:
    """A price for people: thousands grouped, `103,510` or `0.25`."""
    plain = plain_number(number)
    whole, _, fraction = plain.partition(".")
    grouped = f"{int(whole):,}"
    return f"{grouped}.{fraction}" if fraction else grouped


def parse_percent_text(text: str, *, what: str) -> Decimal:
    """`5%` (or `5`) -> Decimal 5."""
    given = text.strip()
    try:
        return parse_percent(given if given.endswith("%") else given + "%")
    except UnitError:
        raise CommandError(f"{echo(text)} is not a percentage for {what}; e.g. 5%.") from None


def parse_mute(text: str) -> float:
    """A mute duration: `30m`, `2h`, `1d`, at most 7 days."""
    try:
        seconds = parse_duration(text.strip().lower())
    except UnitError:
        raise CommandError(f"{echo(text)} is not a duration; e.g. 30m, 2h or 1d.") from None
    if seconds <= 0:
        raise CommandError("The duration must be above 0.")
    if seconds > MAX_MUTE:
        raise CommandError("At most 7d; use /quiet for hours you never want alerts.")
    return seconds


def describe_price(kind: str, target: str, params: Mapping[str, Any]) -> str:
    """A price or move alert by its asset and line (never a list index), as plain text:
    `BTC above 100,000 (rearm 0.5%)`, `ETH moves 5% within 1h`."""
    if kind == SubscriptionKind.MOVE:
        percent = str(params.get("percent", "?"))
        window = params.get("window")
        try:
            span = format_duration(parse_duration(window)) if window is not None else "?"
        except (UnitError, TypeError):
            span = str(window)
        return f"{target} moves {percent} within {span}"
    direction = str(params.get("direction", "?"))
    try:
        line = format_price(Decimal(str(params.get("line"))))
    except (InvalidOperation, ValueError):
        line = str(params.get("line"))
    rearm = params.get("rearm")
    suffix = f" (rearm {rearm})" if rearm is not None else ""
    return f"{target} {direction} {line}{suffix}"


def format_duration(seconds: float) -> str:
    """`1d 2h`, `1h 30m`, `45m`, `20s`: two units at most."""
    total = max(0, round(seconds))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count}{unit}")
    return " ".join(parts[:2]) or "0s"


# ---- /price and /move -------------------------------------------------------------------


class Direction(enum.StrEnum):
    ABOVE = "above"
    BELOW = "below"


_DIRECTIONS: Final = {
    "above": Direction.ABOVE,
    "over": Direction.ABOVE,
    ">": Direction.ABOVE,
    "below": Direction.BELOW,
    "under": Direction.BELOW,
    "<": Direction.BELOW,
}

PRICE_USAGE: Final = (
    "Usage: /price ASSET above|below LINE [rearm X%], e.g. /price BTC above 100000 rearm 0.5%"
)
MOVE_USAGE: Final = "Usage: /move ASSET X% WINDOW, e.g. /move ETH 5% 1h"


@dataclass(frozen=True, slots=True)
class PriceRequest:
    asset: str
    direction: Direction
    line: Decimal
    rearm: str | None  # "0.5%" or a plain price, as the subscription keeps it


@dataclass(frozen=True, slots=True)
class MoveRequest:
    asset: str
    percent: Decimal
    window: float  # seconds


def parse_price(text: str) -> PriceRequest:
    words = text.split()
    if len(words) not in (3, 5):
        raise CommandError(html.escape(PRICE_USAGE, quote=False))
    asset, direction_text, line_text = words[:3]
    direction = _DIRECTIONS.get(direction_text.lower())
    if direction is None:
        raise CommandError(f"Say above or below, not {echo(direction_text)}.")
    line = parse_line(line_text)
    rearm: str | None = None
    if len(words) == 5:
        if words[3].lower() != "rearm":
            raise CommandError(html.escape(PRICE_USAGE, quote=False))
        rearm = _rearm(words[4])
    return PriceRequest(_asset_text(asset), direction, line, rearm)


def _rearm(text: str) -> str:
    if text.strip().endswith("%"):
        percent = parse_percent_text(text, what="rearm")
        if not 0 < percent <= 100:
            raise CommandError("rearm is a percentage above 0 and at most 100%.")
        return f"{plain_number(percent)}%"
    try:
        band = parse_line(text)
    except CommandError:
        raise CommandError(
            f"rearm takes a percentage (0.5%) or a price (500), not {echo(text)}."
        ) from None
    return plain_number(band)


def parse_move(text: str) -> MoveRequest:
    words = text.split()
    if len(words) != 3:
        raise CommandError(html.escape(MOVE_USAGE, quote=False))
    asset, percent_text, window_text = words
    percent = parse_percent_text(percent_text, what="the move")
    if not 0 < percent <= MAX_MOVE:
        raise CommandError("The move is a percentage above 0 and at most 1000%.")
    try:
        window = parse_duration(window_text.lower())
    except UnitError:
        raise CommandError(f"{echo(window_text)} is not a window; e.g. 15m, 1h or 1d.") from None
    if not MIN_WINDOW <= window <= MAX_WINDOW:
        raise CommandError("The window is between 1m and 30d.")
    return MoveRequest(_asset_text(asset), percent, window)


def _asset_text(text: str) -> str:
    if len(text) > 40:
        raise CommandError(f"{echo(text)} is not an asset; e.g. BTC or ETH.")
    return text


# ---- /start payloads --------------------------------------------------------------------

FOLLOW_PAYLOAD: Final = "f_"


def follow_payload(user_id: int) -> str:
    return f"{FOLLOW_PAYLOAD}{int(user_id)}"


def parse_follow_payload(payload: str) -> int | None:
    """The user id of a `f_<id>` deep-link payload, else None."""
    if payload.startswith(FOLLOW_PAYLOAD):
        return _id(payload[len(FOLLOW_PAYLOAD) :])
    return None


def _id(text: str) -> int | None:
    if text.isascii() and text.isdigit() and len(text) <= 19:
        value = int(text)
        if 0 < value < _INT64:
            return value
    return None


# ---- button data ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Unfollow:
    """Unfollow a streamer; `page` is set on a /list message (it is redrawn)."""

    user_id: int
    page: int | None = None


@dataclass(frozen=True, slots=True)
class Mute:
    seconds: int


@dataclass(frozen=True, slots=True)
class ListPage:
    page: int


@dataclass(frozen=True, slots=True)
class AlertsPage:
    page: int


@dataclass(frozen=True, slots=True)
class Cancel:
    """Cancel a price or move alert of this chat; `page` of the /alerts message."""

    sub_id: int
    page: int = 0


Callback = Unfollow | Mute | ListPage | AlertsPage | Cancel
MAX_PAGE: Final = 10_000


def encode_callback(action: Callback) -> str:
    """Short self-describing callback data (at most 64 bytes), readable after a restart."""
    match action:
        case Unfollow(user_id, None):
            data = f"uf:{user_id}"
        case Unfollow(user_id, page):
            data = f"uf:{user_id}:{page}"
        case Mute(seconds):
            data = f"mu:{seconds}"
        case ListPage(page):
            data = f"pg:{page}"
        case AlertsPage(page):
            data = f"pa:{page}"
        case Cancel(sub_id, page):
            data = f"cx:{sub_id}:{page}"
    assert len(data.encode()) <= CALLBACK_LIMIT
    return data


def parse_callback(data: str) -> Callback | None:
    """The action of a button, or None for data this bot never made."""
    if len(data) > CALLBACK_LIMIT:
        return None
    kind, _, rest = data.partition(":")
    parts = rest.split(":")
    numbers = [_number_part(p) for p in parts]
    if any(n is None for n in numbers):
        return None
    values = [n for n in numbers if n is not None]
    if kind == "uf" and len(values) in (1, 2) and values[0] > 0:
        page = values[1] if len(values) == 2 else None
        if page is not None and page > MAX_PAGE:
            return None
        return Unfollow(values[0], page)
    if kind == "mu" and len(values) == 1 and 0 < values[0] <= MAX_MUTE:
        return Mute(values[0])
    if kind in ("pg", "pa") and len(values) == 1 and values[0] <= MAX_PAGE:
        return ListPage(values[0]) if kind == "pg" else AlertsPage(values[0])
    if kind == "cx" and len(values) == 2 and values[0] > 0 and values[1] <= MAX_PAGE:
        return Cancel(values[0], values[1])
    return None


def _number_part(text: str) -> int | None:
    if text == "0":
        return 0
    return _id(text) if not text.startswith("0") else None


# ---- the flood limit --------------------------------------------------------------------


class Flood(enum.Enum):
    ALLOW = "allow"
    WARN = "warn"  # the first command beyond the limit: one "slow down" reply
    DROP = "drop"  # later ones, until the window frees: silence


class FloodGate:
    """At most `limit` commands per user in any `window` seconds (a sliding window over the
    times of admitted commands). Refused commands don't count, so a user who keeps typing
    gets through again as soon as the window frees."""

    def __init__(self, *, limit: int = 20, window: float = 60.0, max_users: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self.max_users = max_users
        self._seen: dict[int, deque[float]] = {}
        self._warned: set[int] = set()

    def check(self, user: int, now: float) -> Flood:
        times = self._seen.get(user)
        if times is None:
            if len(self._seen) >= self.max_users:
                self._forget_idle(now)
            times = self._seen[user] = deque()
        horizon = now - self.window
        while times and times[0] <= horizon:
            times.popleft()
        if len(times) < self.limit:
            times.append(now)
            self._warned.discard(user)
            return Flood.ALLOW
        if user in self._warned:
            return Flood.DROP
        self._warned.add(user)
        return Flood.WARN

    def _forget_idle(self, now: float) -> None:
        horizon = now - self.window
        for user in [u for u, t in self._seen.items() if not t or t[-1] <= horizon]:
            del self._seen[user]
            self._warned.discard(user)
