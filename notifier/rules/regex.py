"""`title_matches` on a linear-time engine (RE2): no pattern can backtrack forever."""

from __future__ import annotations

import functools
import re
import warnings
from typing import Any, Protocol

import re2  # type: ignore[import-untyped]

# A title longer than this is matched on its beginning only: the time is bounded by it.
MAX_TITLE = 1000

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # RE2 would print its own complaint on stderr


class TitlePattern(Protocol):
    """What the engine needs of a compiled `title_matches`."""

    def search(self, text: str) -> object | None: ...


class PatternError(ValueError):
    """A `title_matches` that cannot be used; the text says why, in one line."""


@functools.lru_cache(maxsize=4096)
def compile_title_pattern(text: str) -> TitlePattern:
    """The pattern on RE2 (linear time); PatternError when it is not a regex, or uses what
    only a backtracking engine can do (backreferences, lookarounds)."""
    try:
        compiled = re2.compile(text, _OPTIONS)
    except re2.error as exc:
        reason = _reason(exc)
        try:
            with warnings.catch_warnings():  # "Possible nested set" and the like: not ours
                warnings.simplefilter("ignore")
                re.compile(text)
        except re.error as python_error:
            raise PatternError(f"invalid regex: {python_error}") from None
        except (RecursionError, OverflowError):
            raise PatternError("invalid regex: too large") from None
        raise PatternError(f"not supported by the linear-time engine: {reason}") from None
    return _Bounded(compiled)


def _reason(error: Exception) -> str:
    detail: Any = error.args[0] if error.args else error
    if isinstance(detail, bytes):
        detail = detail.decode("utf-8", "replace")
    return str(detail)


class _Bounded:
    """Searches the first MAX_TITLE characters of a title."""

    __slots__ = ("_compiled", "pattern")

    def __init__(self, compiled: Any) -> None:
        self._compiled = compiled
        self.pattern: str = compiled.pattern

    def search(self, text: str) -> object | None:
        text = text[:MAX_TITLE]
        try:
            return self._compiled.search(text)  # type: ignore[no-any-return]
        except UnicodeEncodeError:  # a lone surrogate: RE2 reads UTF-8
            return self._compiled.search(  # type: ignore[no-any-return]
                text.encode("utf-8", "replace").decode("utf-8")
            )

    def __repr__(self) -> str:
        return f"TitlePattern({self.pattern!r})"
