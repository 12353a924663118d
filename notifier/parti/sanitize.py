"""Untrusted wire values made safe: clean text, ids, counts and prices (pure, no I/O).

Every text field of a frame can carry anything JSON allows (lone surrogates, NUL,
terminal escapes, bidirectional overrides, megabytes). What leaves here is text a
terminal, a log line, Telegram and Discord can all take; renderers cut it further.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any

MAX_TEXT = 10_000  # code points; a chat shows far less, renderers cut further
MAX_ID = 2**63 - 1  # ids are stored in int64 columns (SQLite, PostgreSQL bigint)
MAX_PRICE = Decimal(10) ** 15
# No asset is priced below 1e-30, and a bound exponent keeps formatting a price cheap.
MIN_PRICE_EXPONENT = -30
PRICE_DIGITS = 34  # significant digits kept (IEEE decimal128)
_MAX_NUMBER_TEXT = 100
_MAX_JSON_DEPTH = 8
_FLOAT_EXACT = 2**53

_SURROGATES = re.compile("[\ud800-\udfff]")
# Line breaks and tabs of every kind: a single-line field turns each run into one space.
_BREAKS = re.compile("[\t\n\x0b\x0c\r\x1c-\x1e\x85\u2028\u2029]+")
_NEWLINES = re.compile("\r\n|[\n\x0b\x0c\r\x1c-\x1e\x85\u2028\u2029]")
# Removed everywhere: C0/C1 controls and DEL (NUL, terminal escapes), bidirectional
# controls (they reorder what a reader sees: U+061C, U+200E/F, U+202A-202E,
# U+2066-2069), and invisible characters that only serve to make two names look alike
# (zero-width space, word joiner, invisible operators, deprecated format characters,
# BOM, interlinear annotations).
UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u180e\u200b\u200e\u200f\u202a-\u202e"
    "\u2060-\u206f\ufeff\ufff9-\ufffb]"
)
# Zero-width (non-)joiners are kept only between two non-ASCII characters, where they
# build emoji sequences and Persian or Indic words; next to ASCII they only hide things.
_JOINERS = re.compile("[\u200c\u200d]+")


def clean_line(text: str) -> str:
    """One line of safe text: breaks become a space, unsafe characters go, length capped."""
    text = text[:MAX_TEXT]
    if text.isascii() and text.isprintable():  # most names and titles: nothing to change
        return text
    text = _SURROGATES.sub("\ufffd", text)
    text = _BREAKS.sub(" ", text)
    return _JOINERS.sub(_joiner, UNSAFE.sub("", text))


def clean_text(text: str) -> str:
    """Multi-line safe text (descriptions): line breaks kept as `\\n`, tabs as spaces."""
    text = _SURROGATES.sub("\ufffd", text[:MAX_TEXT])
    text = _NEWLINES.sub("\n", text).replace("\t", " ")
    text = "\n".join(UNSAFE.sub("", line) for line in text.split("\n"))
    return _JOINERS.sub(_joiner, text)


def _joiner(match: re.Match[str]) -> str:
    start, end, text = match.start(), match.end(), match.string
    before = text[start - 1] if start else " "
    after = text[end] if end < len(text) else " "
    if before.isascii() or after.isascii() or before.isspace() or after.isspace():
        return ""
    return match.group()[0]


def clean_json(value: Any, depth: int = 0) -> Any:
    """An unknown field's value, kept for display: its texts cleaned, depth bounded."""
    if isinstance(value, str):
        return clean_text(value)
    if depth >= _MAX_JSON_DEPTH:
        return None
    if isinstance(value, list):
        return [clean_json(item, depth + 1) for item in value]
    if isinstance(value, dict):
        return {clean_line(str(k)): clean_json(v, depth + 1) for k, v in value.items()}
    return value


# ---- numbers ---------------------------------------------------------------------------


def parse_id(value: object) -> int:
    """A positive id that fits in int64 (ints, integral floats, digit strings); else ValueError."""
    number = _integer(value)
    if number is None or not 1 <= number <= MAX_ID:
        raise ValueError("not a positive 64-bit integer")
    return number


def parse_count(value: object) -> int | None:
    """A count (viewers, members): a non-negative int64, else None (it is informational)."""
    number = _integer(value)
    if number is None or not 0 <= number <= MAX_ID:
        return None
    return number


def _integer(value: object) -> int | None:
    if isinstance(value, bool):
        return None  # JSON true is not the id 1
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) <= _FLOAT_EXACT:
            return int(value)
        return None
    if isinstance(value, str):
        digits = value.strip()
        negative = digits.startswith("-")
        digits = digits.removeprefix("-")
        if 0 < len(digits) <= _MAX_NUMBER_TEXT and digits.isascii() and digits.isdigit():
            return -int(digits) if negative else int(digits)
    return None


def parse_price(value: object) -> Decimal:
    """A price: a positive finite decimal no larger than 10**15; else ValueError."""
    number = _decimal(value)
    if number is None:
        raise ValueError("not a decimal number")
    if number <= 0:
        raise ValueError("not positive")
    if number > MAX_PRICE:
        raise ValueError("larger than 10**15")
    if number.adjusted() < MIN_PRICE_EXPONENT:
        raise ValueError("smaller than 1e-30")
    return _rounded(number)


def parse_change(value: object) -> Decimal | None:
    """A price change (informational): a finite decimal within ±10**15, else None."""
    number = _decimal(value)
    if number is None or number.copy_abs() > MAX_PRICE:
        return None
    if number and number.adjusted() < MIN_PRICE_EXPONENT:
        return Decimal(0)
    return _rounded(number)


def _decimal(value: object) -> Decimal | None:
    # Floats go through their shortest repr, so 0.1 stays 0.1, never 0.1000000000000000055.
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))
    elif isinstance(value, str):
        text = value.strip()
        if not text or len(text) > _MAX_NUMBER_TEXT or not text.isascii() or "_" in text:
            return None
        try:
            number = Decimal(text)
        except InvalidOperation:
            return None
    else:
        return None
    return number if number.is_finite() else None


def _rounded(number: Decimal) -> Decimal:
    # Only called within the bounds above, so rounding cannot overflow the context.
    if len(number.as_tuple().digits) <= PRICE_DIGITS:
        return number
    with localcontext() as context:
        context.prec = PRICE_DIGITS
        return +number
