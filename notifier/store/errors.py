"""The store's errors: one clear line each, never a database password."""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

# The secret part of a URL anywhere in a message: scheme://user:PASSWORD@
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*):(?P<pw>[^@\s]*)@")
# libpq keyword form: password=... (quoted or not)
_KEYWORD_PASSWORD = re.compile(r"(?P<head>password\s*=\s*)(?:'(?:[^'\\]|\\.)*'|\S+)", re.I)


class StoreError(Exception):
    """A database fault, as one line without secrets."""


class StoreUnavailable(StoreError):
    """The database cannot be reached now; the caller retries later."""


class FencedOut(StoreError):
    """A write carried a stale role generation: another instance has taken the role over,
    so this one must step down (nothing was written)."""

    def __init__(self, role: str, fence: int, current: int | None) -> None:
        super().__init__(
            f"role {role!r} was taken over (generation {current}, this writer holds {fence})"
        )
        self.role = role
        self.fence = fence
        self.current = current


class SchemaTooNew(StoreError):
    """The database was migrated by a newer notifier than this one."""


def redact(text: str, url: str | None = None) -> str:
    """`text` on one line, with URL passwords (and the given URL's password, wherever it
    appears) replaced by ***."""
    if url:
        try:
            password = urlsplit(url).password
        except ValueError:
            password = None
        if password:
            for secret in {password, unquote(password)}:
                text = text.replace(secret, "***")
    text = _URL_PASSWORD.sub(r"\g<head>:***@", text)
    text = _KEYWORD_PASSWORD.sub(r"\g<head>***", text)
    return " ".join(text.split())


def describe(url: str) -> str:
    """The URL without its password, for messages: postgresql://user@host:port/db."""
    try:
        parts = urlsplit(url)
        netloc = parts.hostname or ""
        if parts.port:
            netloc = f"{netloc}:{parts.port}"
        if parts.username:
            netloc = f"{parts.username}@{netloc}"
    except ValueError:
        return redact(url)
    return f"{parts.scheme}://{netloc}{parts.path}"
