"""Logging: one structlog chain (stamp, traceback, redaction, JSON or console) for every line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from notifier.redact import (
    redact,
    redact_cut,
    redact_value,
    register_secret,
    register_settings_secrets,
    short_error,
)

__all__ = [
    "EX_SOFTWARE",
    "LOGGER_NAME",
    "event",
    "get_logger",
    "install_asyncio_handler",
    "redact",
    "redact_cut",
    "register_secret",
    "register_settings_secrets",
    "report_crash",
    "run_guarded",
    "setup",
    "short_error",
]

LOGGER_NAME = "notifier"
# sysexits.h EX_SOFTWARE: an internal error, not a configuration problem (2).
EX_SOFTWARE = 70
# The LogRecord attribute that carries `event`'s fields to the formatter.
_FIELDS = "notifier_fields"
# Chatty at INFO (httpx logs every request URL, which holds the Telegram token).
_LIBRARY_LOGGERS = (
    "telegram",
    "telegram.ext",
    "discord",
    "httpx",
    "httpcore",
    "aiohttp",
    "websockets",
    "asyncio",
    "psycopg",
    "psycopg.pool",
)
# The pool warns at each failed reconnect (about one a second while the database is down);
# the parts that wait for it log the outage once (`store.outage.Outage`).
_QUIETER = {"psycopg.pool": logging.ERROR}


def get_logger(name: str = "") -> logging.Logger:
    return logging.getLogger(f"{LOGGER_NAME}.{name}" if name else LOGGER_NAME)


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log the stable event `name` with fields (redacted on the way out, like every line).

    `exc_info=` (an exception, a sys.exc_info() tuple or True) adds its traceback."""
    if not logger.isEnabledFor(level):
        return
    exc_info = fields.pop("exc_info", None)
    logger.log(level, name, exc_info=exc_info, extra={_FIELDS: fields})


def _stamp(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    # Every line comes through the stdlib (ours, the libraries', structlog's own), so the
    # record has the time and the level; built in this order so JSON reads ts, level, event.
    record: logging.LogRecord = event_dict["_record"]
    line: EventDict = {
        "ts": round(record.created, 3),
        "level": record.levelname.lower(),
        "event": event_dict.pop("event", ""),
    }
    fields = getattr(record, _FIELDS, None)
    if fields is not None:
        line.update(fields)
    elif not event_dict["_from_structlog"]:
        line["logger"] = record.name
    line.update(event_dict)
    return line


def _redact(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    # The one redaction point: after the traceback became text, before any rendering.
    return {key: redact_value(value) for key, value in event_dict.items()}


def _render_json(_: WrappedLogger, __: str, event_dict: EventDict) -> str:
    return _JSON.encode(event_dict)


# One encoder for every line: json.dumps with options builds a new one per call.
_JSON = json.JSONEncoder(ensure_ascii=True, default=str)


def _render_console(_: WrappedLogger, __: str, event_dict: EventDict) -> str:
    # Not structlog's ConsoleRenderer: it prints strings as they are (ANSI escapes and
    # newlines from a hostile title would reach the terminal) and pads and colours, which
    # costs more than this line is worth.
    stamp = time.strftime("%H:%M:%S", time.localtime(event_dict.pop("ts")))
    level = event_dict.pop("level")
    name = _printable(str(event_dict.pop("event")))
    exception = event_dict.pop("exception", None)
    parts = [stamp, f"{level:<7}", name]
    parts += [f"{key}={_short(value)}" for key, value in event_dict.items()]
    line = " ".join(parts)
    if exception:
        line += "\n" + "\n".join(_printable(row) for row in str(exception).splitlines())
    return line


def _printable(text: str) -> str:
    # repr() escapes control characters, so a hostile text cannot forge log lines or drive
    # the terminal.
    return text if text.isprintable() else repr(text)[1:-1]


def _short(value: Any) -> str:
    text = str(value) if isinstance(value, int | float) else repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _formatter(fmt: str) -> structlog.stdlib.ProcessorFormatter:
    render = _render_console if fmt == "console" else _render_json
    processors: list[Processor] = [
        _stamp,
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        structlog.processors.format_exc_info,
        _redact,
        render,
    ]
    return _Formatter(render, processors=processors)


class _Formatter(structlog.stdlib.ProcessorFormatter):
    """The chain above; a line of `event`'s without a traceback (one per alert sent) takes
    a short cut to the same text: structlog copies the record and walks its processors,
    half of what such a line costs."""

    def __init__(self, render: Processor, **options: Any) -> None:
        super().__init__(**options)
        self._render = render

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, _FIELDS, None)
        if fields is None or record.exc_info or record.exc_text or record.stack_info:
            return super().format(record)
        line: EventDict = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        line.update(fields)
        return str(self._render(None, "", _redact(None, "", line)))


class _NoVoice(logging.Filter):
    """discord.py warns at every client it makes that its voice libraries are missing
    (PyNaCl, davey): the bot never speaks, and `notifier discord sync` printed two such
    lines before its answer."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "voice will NOT be supported" not in record.getMessage()


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    def handleError(self, record: logging.LogRecord) -> None:
        # The stdlib's handleError prints the record's message and arguments unredacted.
        try:
            error = sys.exc_info()[1]
            reason = short_error(error) if error is not None else "unknown error"
            sys.stderr.write(f"notifier: a log line was lost: {reason}\n")
        except Exception:  # the stream itself may be gone; nothing left to tell
            pass


def setup(
    fmt: str = "auto",
    level: int = logging.INFO,
    *,
    stream: TextIO | None = None,
    library_level: int = logging.WARNING,
) -> None:
    """Route every logger of the process through the one chain (stdout unless told otherwise).

    `notifier.*` logs at `level`, the libraries at `library_level`."""
    out = stream or sys.stdout
    # No line shows where it was logged from, nor the thread or process: the stdlib's
    # own switches for not collecting them ("Optimization" in the logging HOWTO).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    if fmt == "auto":
        fmt = "console" if _isatty(out) else "json"
    handler = _Handler(out)
    handler.setFormatter(_formatter(fmt))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(library_level)
    for name in _LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(max(library_level, _QUIETER.get(name, 0)))
    voice = logging.getLogger("discord.client")
    if not any(isinstance(f, _NoVoice) for f in voice.filters):
        voice.addFilter(_NoVoice())
    ours = logging.getLogger(LOGGER_NAME)
    ours.handlers.clear()
    ours.setLevel(level)
    ours.propagate = True
    # structlog.get_logger() users (none of ours today) join the same chain.
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        # not structlog's LoggerFactory: it swaps the class of every stdlib logger created
        # afterwards for one that walks the stack on each line
        logger_factory=_stdlib_logger,
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    sys.excepthook = _excepthook
    threading.excepthook = _thread_excepthook


def _stdlib_logger(*args: Any) -> logging.Logger:
    return logging.getLogger(str(args[0]) if args else LOGGER_NAME)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def report_crash(exc: BaseException) -> int:
    """Log an unexpected exception as `crashed` with its traceback; one line for the user."""
    event(get_logger(), "crashed", logging.CRITICAL, exc_info=exc)
    with contextlib.suppress(OSError):  # stderr is gone: the log has it
        print(
            f"notifier: internal error: {short_error(exc)} (details in the log)",
            file=sys.stderr,
            flush=True,
        )
    return EX_SOFTWARE


def run_guarded(main: Callable[[], int]) -> int:
    """`main()`, or EX_SOFTWARE after `report_crash` if it raises (Ctrl-C and exit pass)."""
    try:
        return main()
    except Exception as exc:
        return report_crash(exc)


def _excepthook(
    kind: type[BaseException], exc: BaseException, traceback: TracebackType | None
) -> None:
    if issubclass(kind, KeyboardInterrupt):
        return
    report_crash(exc.with_traceback(traceback))


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None or issubclass(args.exc_type, SystemExit):
        return
    event(
        get_logger(),
        "thread.crashed",
        logging.ERROR,
        thread=args.thread.name if args.thread is not None else "",
        exc_info=args.exc_value,
    )


def install_asyncio_handler(loop: asyncio.AbstractEventLoop) -> None:
    """Log the loop's unhandled errors ("Task exception was never retrieved", a failing
    callback) as `asyncio.error` with their traceback, through the same chain."""
    loop.set_exception_handler(_asyncio_exception)


def _asyncio_exception(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    details = {key: value for key, value in context.items() if key not in _CONTEXT_TAKEN}
    event(
        get_logger("asyncio"),
        "asyncio.error",
        logging.ERROR,
        message=context.get("message", ""),
        exc_info=context.get("exception"),
        **details,
    )


_CONTEXT_TAKEN = frozenset({"message", "exception", "exc_info"})
