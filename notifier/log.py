"""Logging to stdout: stable event names with bound fields, console on a TTY, JSON otherwise."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

LOGGER_NAME = "notifier"


def get_logger(name: str = "") -> logging.Logger:
    return logging.getLogger(f"{LOGGER_NAME}.{name}" if name else LOGGER_NAME)


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log `name` with fields; fields must never hold a secret."""
    logger.log(level, name, extra={"fields": fields})


class _ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, "fields", {})
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        parts = [stamp, f"{record.levelname.lower():<7}", record.getMessage()]
        parts += [f"{key}={_short(value)}" for key, value in fields.items()]
        return " ".join(parts)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, "fields", {})
        payload = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            **fields,
        }
        return json.dumps(payload, default=str, ensure_ascii=True)


def _short(value: Any) -> str:
    # repr() escapes control characters, so a hostile title cannot forge log lines
    # or drive the terminal.
    text = value if isinstance(value, int | float) else repr(value)
    text = str(text)
    return text if len(text) <= 200 else text[:197] + "..."


def setup(fmt: str = "auto", level: int = logging.INFO, *, stream: TextIO | None = None) -> None:
    """Configure the `notifier` logger once for the process (stdout unless told otherwise)."""
    out = stream or sys.stdout
    if fmt == "auto":
        fmt = "console" if out.isatty() else "json"
    handler = logging.StreamHandler(out)
    handler.setFormatter(_ConsoleFormatter() if fmt == "console" else _JsonFormatter())
    root = logging.getLogger(LOGGER_NAME)
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
