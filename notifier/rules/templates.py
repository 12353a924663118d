"""Rule templates: Jinja2 in a sandbox, checked when the rules load, never at send time."""

from __future__ import annotations

from dataclasses import dataclass

from jinja2 import TemplateSyntaxError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

# The fields a template may use, by rule kind (the renderer fills them, escaped).
FIELDS: dict[str, frozenset[str]] = {
    "live": frozenset(
        {
            "user_name",
            "user_id",
            "title",
            "category",
            "viewers",
            "url",
            "avatar",
            "image",
            "followers",
            "description",
            "rule",
            "caught_up",
            "event_id",
            "livestream_id",
        }
    ),
    "price": frozenset(
        {
            "asset",
            "ticker",
            "price",
            "line",
            "direction",
            "change",
            "window",
            "rule",
            "kind",
        }
    ),
    "scheduled": frozenset(
        {
            "user_name",
            "user_id",
            "title",
            "category",
            "starts_at",
            "starts_in",
            "url",
            "rule",
            "event_id",
        }
    ),
}

ENVIRONMENT = ImmutableSandboxedEnvironment(autoescape=False, keep_trailing_newline=False)


@dataclass(frozen=True)
class TemplateProblem:
    line: int
    message: str


def check_template(source: str, kind: str) -> TemplateProblem | None:
    """A syntax error or an unknown field of `source`, else None."""
    try:
        parsed = ENVIRONMENT.parse(source)
    except TemplateSyntaxError as exc:
        return TemplateProblem(exc.lineno or 1, f"template syntax: {exc.message}")
    unknown = sorted(meta.find_undeclared_variables(parsed) - FIELDS[kind])
    if unknown:
        known = ", ".join(sorted(FIELDS[kind]))
        return TemplateProblem(1, f"unknown template field {unknown[0]!r}; known: {known}")
    return None
