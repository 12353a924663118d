"""Rule templates rendered: every field capped and escaped for the target, in the sandbox."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from notifier.render.text import shorten

if TYPE_CHECKING:  # Jinja2 (about 7 MB) is imported with the first template only
    from jinja2 import Template

# A field reaches a template at most this long (code points, before escaping), so one
# hostile field cannot push the others out of the message; names and labels are shorter.
FIELD_CAP = 1000
CAPS = {"user_name": 100, "category": 100, "asset": 64, "ticker": 64, "rule": 100}


def render_template(
    source: str, fields: Mapping[str, object], *, escape: Callable[[str], str]
) -> str:
    """The template with every text field capped and escaped by `escape`.

    Checked at load time, so a failure here is a bug or a value no sample had: the text
    says so in one line instead of failing the alert.
    """
    values = {
        key: escape(shorten(value, CAPS.get(key, FIELD_CAP))) if isinstance(value, str) else value
        for key, value in fields.items()
    }
    try:
        # render(), not generate(): the environment bounds a render's steps, time and output.
        return _compiled(source).render(**values).strip()
    except Exception as exc:  # a template fault must not lose the alert
        return f"(template error: {type(exc).__name__})"


@functools.lru_cache(maxsize=256)
def _compiled(source: str) -> Template:
    from notifier.rules.templates import ENVIRONMENT

    return ENVIRONMENT.from_string(source)
