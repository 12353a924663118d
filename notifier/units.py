"""Parsing of the human units used in settings and rules: durations and percentages."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


class UnitError(ValueError):
    """A duration or percentage that cannot be read."""


def parse_duration(text: str | int | float) -> float:
    """`30s`, `10m`, `1h`, `1d` (or a bare number of seconds) -> seconds."""
    if isinstance(text, bool):
        raise UnitError(f"invalid duration {text!r}: expected e.g. 30s, 10m, 1h, 1d")
    if isinstance(text, int | float):
        if text < 0:
            raise UnitError(f"invalid duration {text!r}: must not be negative")
        return float(text)
    match = _DURATION.match(text)
    if match is None:
        raise UnitError(f"invalid duration {text!r}: expected e.g. 30s, 10m, 1h, 1d")
    return float(match.group(1)) * _SECONDS[match.group(2)]


def parse_percent(text: str) -> Decimal:
    """`0.5%` -> Decimal('0.5')."""
    match = _PERCENT.match(text) if isinstance(text, str) else None
    if match is None:
        raise UnitError(f"invalid percentage {text!r}: expected e.g. 0.5%")
    try:
        return Decimal(match.group(1))
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only digits
        raise UnitError(f"invalid percentage {text!r}") from exc
