"""Store error messages never carry a database password."""

from __future__ import annotations

import pytest

from notifier.store.errors import describe, redact

URL = "postgresql://notifier:s3cr%40t@db.example:5432/alerts"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("connect postgresql://u:hunter2@h/db failed", "connect postgresql://u:***@h/db failed"),
        ("postgres://u:pw@h:1/d", "postgres://u:***@h:1/d"),
        ("host=h password=hunter2 user=u", "host=h password=*** user=u"),
        ("password='a b\\' c' user=u", "password=*** user=u"),
        ("line one\n\tline two", "line one line two"),
        ("auth failed for s3cr@t and s3cr%40t", "auth failed for *** and ***"),
    ],
)
def test_redact_removes_passwords_and_joins_lines(text: str, expected: str) -> None:
    assert redact(text, URL) == expected


def test_describe_names_the_server_without_the_password() -> None:
    assert describe(URL) == "postgresql://notifier@db.example:5432/alerts"
