"""Rule templates rendered: every field capped and escaped for the target, in the sandbox."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from notifier.log import event, get_logger, short_error
from notifier.render.text import shorten

if TYPE_CHECKING:  # Jinja2 (about 7 MB) is imported with the first template only
    from jinja2 import Template

# A field reaches a template at most this long (code points, before escaping), so one
# hostile field cannot push the others out of the message; names and labels are shorter.
FIELD_CAP = 1000
CAPS = {"user_name": 100, "category": 100, "asset": 64, "ticker": 64, "rule": 100}
# The fields that hold a link (made by us from Parti's answers). One that is a plain https
# URL goes into a template as `link` makes it (whole: a cut link leads nowhere), so that
# it stays a link; any other value is text like every field.
LINK_FIELDS = frozenset({"url", "avatar", "image"})
LINK_LIMIT = 2048
# No character a chat's markup gives a meaning around a link ((), [], <>, *, `, |, ~,
# quotes, backslashes, spaces): such a URL is escaped as text instead.
_LINK = re.compile(r"https://[A-Za-z0-9._:/?#@!$&+,;=%-]+")
# Rule templates whose failure was logged (a line each, not one per alert).
_FAILED_LOGGED: set[tuple[str, str]] = set()
_FAILED_LOGGED_MAX = 1000

_log = get_logger("render")


def render_template(
    source: str,
    fields: Mapping[str, object],
    *,
    escape: Callable[[str], str],
    link: Callable[[str], str] | None = None,
    rule: str = "",
) -> str | None:
    """The template with every text field capped and escaped by `escape`, and each link
    field made by `link` (as text without it); None when the template fails.

    Checked at load time, so a failure here is a bug or a value no sample had: the caller
    sends its default rendering instead, and the failure is logged once for `rule`.
    """
    values = {key: _value(key, value, escape, link) for key, value in fields.items()}
    try:
        # render(), not generate(): the environment bounds a render's steps, time and output.
        return _compiled(source).render(**values).strip()
    except Exception as exc:  # a template fault must not lose the alert
        _log_failure(rule, source, exc)
        return None


def is_link(value: str) -> bool:
    """A plain https URL, as a link field goes into a template unescaped."""
    return len(value) <= LINK_LIMIT and _LINK.fullmatch(value) is not None


def _value(
    key: str, value: object, escape: Callable[[str], str], link: Callable[[str], str] | None
) -> object:
    if not isinstance(value, str):
        return value
    if link is not None and key in LINK_FIELDS and is_link(value):
        return link(value)
    return escape(shorten(value, CAPS.get(key, FIELD_CAP)))


def _log_failure(rule: str, source: str, exc: Exception) -> None:
    key = (rule, source)
    if key in _FAILED_LOGGED:
        return
    if len(_FAILED_LOGGED) >= _FAILED_LOGGED_MAX:
        _FAILED_LOGGED.clear()
    _FAILED_LOGGED.add(key)
    event(
        _log,
        "template.failed",
        logging.WARNING,
        rule=rule,
        error=short_error(exc),
        note="the default message was sent instead",
    )


@functools.lru_cache(maxsize=256)
def _compiled(source: str) -> Template:
    from notifier.rules.templates import ENVIRONMENT

    return ENVIRONMENT.from_string(source)
