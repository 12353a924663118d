"""Secret redaction: registered secrets and secret-shaped strings become [REDACTED]."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus, unquote, urlsplit

from pydantic import BaseModel, SecretStr

REDACTED = "[REDACTED]"
# Shorter values would turn ordinary words into [REDACTED]; real tokens are far longer.
MIN_SECRET_LENGTH = 6
# A registered secret cut to at least this many characters (by `text[:n]` somewhere before
# it was logged) is still recognised and redacted.
PREFIX_MATCH = 12
# Nested values deeper than this are flattened to text (and so still redacted): a cyclic
# structure cannot recurse forever.
_MAX_DEPTH = 12

# Secrets nobody registered. Each alternative has at most one capturing group: the part kept
# in front of [REDACTED] (a URL path, a header name, a user name).
_PATTERNS = "|".join(
    (
        # Telegram API URLs: /bot<id>:<token>/method
        r"(/bot)\d+(?::|%3[Aa])[^/\s?#\"'<>]+",
        # a Telegram bot token anywhere
        r"\d{5,}(?::|%3[Aa])[A-Za-z0-9_-]{30,}",
        # Discord webhook URLs: the id stays, the token goes
        r"(/webhooks/\d+/)[^/\s?#\"'<>]+",
        # URL user info: scheme://user:password@host (postgresql://, https://, ...)
        r"(://[^:/@\s?#\"'<>]*:)[^@\s/?#\"'<>]+(?=@)",
        # Authorization headers, in HTTP form or as a repr'd dict
        r"(?i:(authorization[\"']?\s*[:=]\s*[\"']?(?:(?:bot|bearer|basic|token)\s+)?))"
        r"[^\s\"',;}]+",
        r"\b((?:Bot|Bearer|bearer)\s+)[A-Za-z0-9_.+/=-]{20,}",
        # query and connection-string parameters
        r"(?i:((?:token|password|passwd|pwd|secret)=))[^&\s\"',;]+",
    )
)
_PATTERN_RE = re.compile(_PATTERNS)


def _may_match_pattern(text: str) -> bool:
    # What each pattern cannot match without; most log values (names, keys such as
    # `live:1:2`, numbers as text) have none of it, and `in` is far cheaper than a regex scan.
    return (
        "://" in text
        or "/bot" in text
        or "/webhooks/" in text
        or "=" in text
        or (len(text) >= 36 and (":" in text or "%3" in text))
        or "uthorization" in text
        or "UTHORIZATION" in text
        or "Bot " in text
        or "earer " in text
    )


def _keep_prefix(match: re.Match[str]) -> str:
    index = match.lastindex
    return REDACTED if index is None else match.group(index) + REDACTED


@dataclass(frozen=True)
class _Known:
    """The registered secrets, as the spellings they can appear in, longest first."""

    forms: tuple[str, ...] = ()
    # The first PREFIX_MATCH characters of every form: a text holding none of them holds
    # no registered secret, not even a cut one.
    probes: tuple[str, ...] = ()


def _spellings(secret: str) -> set[str]:
    forms = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret)}
    bot_id, colon, token = secret.partition(":")
    if colon and bot_id.isdigit():
        # a Telegram token: the part after the colon is the secret on its own
        forms.add(token)
    if "://" in secret:
        # a URL with a password: the password alone, and unquoted
        try:
            password = urlsplit(secret).password
        except ValueError:
            password = None
        if password:
            forms |= {password, unquote(password)}
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


class Redactor:
    """One registry of secrets; `redact` and `redact_value` are safe from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._known = _Known()

    def register(self, secret: str) -> None:
        """Redact every later occurrence of `secret` (and its URL-quoted spellings)."""
        secret = secret.strip()
        if len(secret) < MIN_SECRET_LENGTH:
            return
        with self._lock:
            if secret in self._secrets:
                return
            self._secrets.add(secret)
            forms: set[str] = set()
            for each in self._secrets:
                forms |= _spellings(each)
            ordered = tuple(sorted(forms, key=lambda form: (-len(form), form)))
            probes = tuple(dict.fromkeys(form[:PREFIX_MATCH] for form in ordered))
            # One assignment: readers see the old registry or the new one, never half.
            self._known = _Known(ordered, probes)

    def register_model(self, model: BaseModel) -> None:
        """Register every `SecretStr` field of a pydantic model (nested models included)."""
        for value in _model_values(model):
            if isinstance(value, SecretStr):
                self.register(value.get_secret_value())

    def redact(self, text: str) -> str:
        known = self._known
        for probe in known.probes:
            if probe in text:
                text = _cut_known(text, known.forms)
                break
        if _may_match_pattern(text):
            return _PATTERN_RE.sub(_keep_prefix, text)
        return text

    def redact_value(self, value: Any, depth: int = 0) -> Any:
        """`value` with every string in it redacted; anything not JSON-native becomes text."""
        kind = type(value)
        if kind is str:
            return self.redact(value)
        if kind is int or kind is float or kind is bool or value is None:
            return value
        if depth < _MAX_DEPTH:
            if isinstance(value, dict):
                return {
                    self.redact(key) if isinstance(key, str) else key: self.redact_value(
                        item, depth + 1
                    )
                    for key, item in value.items()
                }
            if isinstance(value, list | tuple | set | frozenset):
                return [self.redact_value(item, depth + 1) for item in value]
        if isinstance(value, int | float):
            return value  # IntEnum, bool subclasses: JSON-native already
        return self.redact(str(value))


def _cut_known(text: str, forms: tuple[str, ...]) -> str:
    # Whole secrets first: two secrets may share a beginning, and the longer one's cut
    # form would take only that beginning of the shorter one.
    for form in forms:
        text = text.replace(form, REDACTED)
    for form in forms:
        head = form[:PREFIX_MATCH]
        start = text.find(head)
        while start != -1:
            # Extend the match as far as the text follows the secret: a secret cut short
            # is redacted as far as it goes.
            end = start + len(head)
            limit = min(len(text), start + len(form))
            while end < limit and text[end] == form[end - start]:
                end += 1
            text = text[:start] + REDACTED + text[end:]
            start = text.find(head, start + len(REDACTED))
    return text


def _model_values(model: BaseModel) -> Iterable[Any]:
    for name in type(model).model_fields:
        value = getattr(model, name, None)
        if isinstance(value, BaseModel):
            yield from _model_values(value)
        else:
            yield value


_default = Redactor()


def register_secret(secret: str) -> None:
    """Redact `secret` from every later log line and terminal error of this process."""
    _default.register(secret)


def register_settings_secrets(settings: BaseModel) -> None:
    """Register every `SecretStr` field of the settings (call once they are loaded)."""
    _default.register_model(settings)


def redact(text: str) -> str:
    """`text` with every registered secret and every secret-shaped string replaced."""
    return _default.redact(text)


def redact_value(value: Any) -> Any:
    return _default.redact_value(value)


def redact_cut(text: str, limit: int) -> str:
    """`text` redacted, then cut to `limit` characters ("..." marks a cut): in this order,
    since a secret split by the cut could no longer be recognised."""
    text = redact(text)
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."


def short_error(exc: BaseException, limit: int = 300) -> str:
    """One line for a terminal: `Type: message`, redacted before it is cut (a cut secret
    could no longer be recognised), newlines folded."""
    return redact_cut(" ".join(f"{type(exc).__name__}: {exc}".split()), limit)
