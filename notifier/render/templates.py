"""Rendering of rule templates: values arrive escaped for the target; the sandbox does the rest."""

from __future__ import annotations

from typing import Any

from jinja2 import TemplateError

from notifier.rules.templates import ENVIRONMENT


def render_template(source: str, fields: dict[str, Any]) -> str:
    """The template with `fields` (already escaped for the target); checked at load time,
    so an error here is a bug: the text says so instead of failing the alert."""
    try:
        return ENVIRONMENT.from_string(source).render(**fields).strip()
    except TemplateError as exc:  # pragma: no cover - `notifier check` rejects these
        return f"(template error: {type(exc).__name__})"
