"""The log chain: every line (ours, the libraries', crashes) redacted, as JSON or console."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
import structlog

from notifier import log
from notifier.log import event, get_logger

SENTINEL = "7777777:SENTINEL-SECRET-abcdefghijklmnopqrstuvwxyz012345"
SECRET_PART = SENTINEL.split(":", 1)[1]
# Never registered: only the patterns can catch these.
UNKNOWN_WEBHOOK = "UnKnOwN-webhook-token_abcdefghijklmnopqrstuvwxyz0123456789"
UNKNOWN_DB_PASSWORD = "Unknown-Pg-Pass-4321"
ROOT = Path(__file__).resolve().parents[1]

log.register_secret(SENTINEL)
_log = get_logger("test")


def leaked(text: str, secret: str = SECRET_PART) -> list[str]:
    """Every 12-character slice of `secret` found in `text` (none is the goal)."""
    return [secret[i : i + 12] for i in range(len(secret) - 11) if secret[i : i + 12] in text]


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def logs() -> Iterator[Callable[..., io.StringIO]]:
    """setup() into a string; the process's logging is put back as it was afterwards."""
    root = logging.getLogger()
    names = ["", "notifier", "httpx", "httpcore", "telegram", "discord", "websockets"]
    levels = {name: logging.getLogger(name).level for name in names}
    handlers = root.handlers[:]
    hooks = (sys.excepthook, threading.excepthook)

    def start(fmt: str = "json", stream: io.StringIO | None = None) -> io.StringIO:
        out = stream if stream is not None else io.StringIO()
        log.setup(fmt, stream=out)
        return out

    yield start
    root.handlers[:] = handlers
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    sys.excepthook, threading.excepthook = hooks
    structlog.reset_defaults()


def _json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def _explode() -> None:
    raise RuntimeError(f"token {SENTINEL} was rejected")


def _event_with_traceback() -> None:
    try:
        _explode()
    except RuntimeError as exc:
        event(_log, "stage.crashed", logging.ERROR, exc_info=exc)


def _library_error_with_traceback() -> None:
    try:
        _explode()
    except RuntimeError:
        logging.getLogger("telegram.ext.Application").error("Error while polling", exc_info=True)


def _webhook_url(token: str) -> str:
    return f"https://discord.com/api/webhooks/998877665544/{token}"


# (what, emit, text that must still show, secret that must not)
CASES: list[tuple[str, Callable[[], None], list[str], str]] = [
    ("a field", lambda: event(_log, "alert.sent", token=SENTINEL), ["alert.sent"], SECRET_PART),
    (
        "nested fields",
        lambda: event(
            _log,
            "alert.sent",
            payload={"a": [{"url": f"https://x/bot{SENTINEL}/send"}], "t": (SENTINEL, 5)},
        ),
        ["alert.sent", "https://x/bot", "/send"],
        SECRET_PART,
    ),
    ("the event name", lambda: event(_log, f"odd {SENTINEL}"), ["odd"], SECRET_PART),
    (
        "an exception as a field",
        lambda: event(_log, "stage.crashed", logging.ERROR, error=RuntimeError(SENTINEL)),
        ["stage.crashed"],
        SECRET_PART,
    ),
    (
        "a traceback",
        _event_with_traceback,
        ["stage.crashed", "Traceback", "_explode", "was rejected"],
        SECRET_PART,
    ),
    (
        "httpx",
        lambda: logging.getLogger("httpx").warning(
            'HTTP Request: POST %s "HTTP/1.1 401 Unauthorized"',
            f"https://api.telegram.org/bot{SENTINEL}/getMe",
        ),
        ["HTTP Request", "https://api.telegram.org/bot", "/getMe", "httpx"],
        SECRET_PART,
    ),
    (
        "python-telegram-bot",
        lambda: logging.getLogger("telegram.ext.Updater").warning("token %s rejected", SENTINEL),
        ["rejected", "telegram.ext.Updater"],
        SECRET_PART,
    ),
    (
        "python-telegram-bot with a traceback",
        _library_error_with_traceback,
        ["Error while polling", "Traceback", "_explode"],
        SECRET_PART,
    ),
    (
        "discord.py",
        lambda: logging.getLogger("discord.webhook.async_").warning(
            "Webhook %s failed", _webhook_url(UNKNOWN_WEBHOOK)
        ),
        ["Webhook", "/webhooks/998877665544/", "discord.webhook.async_"],
        UNKNOWN_WEBHOOK,
    ),
    (
        "aiohttp.access",
        lambda: logging.getLogger("aiohttp.access").warning(
            '127.0.0.1 "%s" 404', f"GET /bot{SENTINEL}/getUpdates HTTP/1.1"
        ),
        ["GET /bot", "/getUpdates", "aiohttp.access"],
        SECRET_PART,
    ),
    (
        "websockets",
        lambda: logging.getLogger("websockets.client").warning(
            "connecting to %s", f"wss://ws.example/?token={SENTINEL}"
        ),
        ["connecting to wss://ws.example/?token=", "websockets.client"],
        SECRET_PART,
    ),
    (
        "a URL-quoted token",
        lambda: event(_log, "poll.failed", url=f"https://h/?t={quote(SENTINEL, safe='')}"),
        ["poll.failed", "https://h/?t="],
        SECRET_PART,
    ),
    (
        "a quote_plus token",
        lambda: event(_log, "poll.failed", body=f"t={quote_plus(SENTINEL)}"),
        ["poll.failed"],
        SECRET_PART,
    ),
    *[
        (
            f"a value cut to {n}",
            lambda n=n: event(_log, "lane.crashed", error=f"Failed: {SENTINEL} (401)"[:n]),
            ["lane.crashed", "Failed: "],
            SECRET_PART,
        )
        for n in (20, 40, 80)
    ],
    (
        "an unregistered webhook URL",
        lambda: event(_log, "send.failed", url=_webhook_url(UNKNOWN_WEBHOOK)),
        ["send.failed", "/webhooks/998877665544/"],
        UNKNOWN_WEBHOOK,
    ),
    (
        "a PostgreSQL URL",
        lambda: event(
            _log, "db.error", dsn=f"postgresql://notifier:{UNKNOWN_DB_PASSWORD}@db:5432/n"
        ),
        ["db.error", "postgresql://notifier:", "@db:5432/n"],
        UNKNOWN_DB_PASSWORD,
    ),
    (
        "structlog's own loggers",
        lambda: structlog.get_logger("notifier.structlog").warning("odd.path", token=SENTINEL),
        ["odd.path"],
        SECRET_PART,
    ),
]


@pytest.mark.parametrize("fmt", ["json", "console"])
@pytest.mark.parametrize(
    ("emit", "visible", "secret"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_no_secret_reaches_the_log(
    logs: Callable[..., io.StringIO],
    fmt: str,
    emit: Callable[[], None],
    visible: list[str],
    secret: str,
) -> None:
    out = logs(fmt)
    emit()
    text = out.getvalue()
    assert text, "nothing was logged"
    assert leaked(text, secret) == []
    for part in visible:
        assert part in text


def test_json_is_one_object_per_line_with_ts_level_event_first(
    logs: Callable[..., io.StringIO],
) -> None:
    out = logs("json")
    event(_log, "alert.sent", rule="r1", attempts=2)
    event(_log, "alert.retry", logging.WARNING, reason="line\nbreak")
    logging.getLogger("httpx").error("boom")
    lines = _json_lines(out)
    assert [list(line)[:3] for line in lines] == [["ts", "level", "event"]] * 3
    assert [(line["level"], line["event"]) for line in lines] == [
        ("info", "alert.sent"),
        ("warning", "alert.retry"),
        ("error", "boom"),
    ]
    assert lines[0]["rule"] == "r1"
    assert lines[0]["attempts"] == 2
    assert lines[1]["reason"] == "line\nbreak"
    assert lines[2]["logger"] == "httpx"


def test_json_carries_the_traceback_as_the_exception_field(
    logs: Callable[..., io.StringIO],
) -> None:
    out = logs("json")
    _event_with_traceback()
    [line] = _json_lines(out)
    exception = str(line["exception"])
    assert exception.startswith("Traceback (most recent call last):")
    assert "in _explode" in exception
    assert "RuntimeError: token [REDACTED] was rejected" in exception


def test_console_escapes_control_characters_and_emits_no_ansi(
    logs: Callable[..., io.StringIO],
) -> None:
    out = logs("console")
    event(_log, "alert.sent", title="\x1b[2J\x1b[31mred\nforged line\x07")
    logging.getLogger("discord").warning("name \x1b]0;pwned\x07 \x9b31m")
    text = out.getvalue()
    assert "\x1b" not in text
    assert "\x07" not in text
    assert "\x9b" not in text
    lines = text.splitlines()
    assert len(lines) == 2
    assert lines[0].split()[1:3] == ["info", "alert.sent"]
    assert "title='\\x1b[2J\\x1b[31mred\\nforged line\\x07'" in lines[0]


def test_console_shows_the_traceback_under_the_line(logs: Callable[..., io.StringIO]) -> None:
    out = logs("console")
    _event_with_traceback()
    lines = out.getvalue().splitlines()
    assert lines[0].split()[1:3] == ["error", "stage.crashed"]
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == "RuntimeError: token [REDACTED] was rejected"


@pytest.mark.parametrize(
    ("stream", "first_char"), [(io.StringIO(), "{"), (_Tty(), "")], ids=["pipe", "tty"]
)
def test_auto_is_json_on_a_pipe_and_console_on_a_tty(
    logs: Callable[..., io.StringIO], stream: io.StringIO, first_char: str
) -> None:
    out = logs("auto", stream)
    event(_log, "app.started")
    text = out.getvalue()
    assert text.startswith("{") == (first_char == "{")
    assert "app.started" in text


def test_libraries_log_warnings_only_and_ours_log_info(logs: Callable[..., io.StringIO]) -> None:
    out = logs("json")
    logging.getLogger("httpx").info("HTTP Request: GET https://example/ 200")
    logging.getLogger("telegram.ext").info("Application started")
    event(_log, "app.started")
    assert [line["event"] for line in _json_lines(out)] == ["app.started"]


def test_the_database_pools_reconnect_warnings_stay_out_of_the_log(
    logs: Callable[..., io.StringIO],
) -> None:
    """About one a second while the database is down; the outage is logged once by us."""
    out = logs("json")
    pool = logging.getLogger("psycopg.pool")
    pool.warning("error connecting in 'notifier': connection refused")
    pool.error("the pool is broken")
    assert [line["event"] for line in _json_lines(out)] == ["the pool is broken"]


def test_discord_pys_missing_voice_warnings_stay_out_of_the_log(
    logs: Callable[..., io.StringIO],
) -> None:
    """Made by every discord.py client (the bot never speaks): two lines before
    `notifier discord sync` said anything."""
    out = logs("json")
    import discord

    discord.Client(intents=discord.Intents(guilds=True))  # what warns, in its own words
    logging.getLogger("discord.client").warning("the gateway closed")
    assert [line["event"] for line in _json_lines(out)] == ["the gateway closed"]


def test_setup_twice_writes_each_line_once(logs: Callable[..., io.StringIO]) -> None:
    logs("json")
    out = logs("json")
    event(_log, "app.started")
    assert len(_json_lines(out)) == 1


def _crash_with_secret() -> int:
    raise RuntimeError(f"token {SENTINEL} was rejected")


def test_run_guarded_logs_the_crash_and_prints_one_redacted_line(
    logs: Callable[..., io.StringIO], capsys: pytest.CaptureFixture[str]
) -> None:
    out = logs("json")
    assert log.run_guarded(_crash_with_secret) == log.EX_SOFTWARE == 70
    assert capsys.readouterr().err.splitlines() == [
        "notifier: internal error: RuntimeError: token [REDACTED] was rejected (details in the log)"
    ]
    [line] = _json_lines(out)
    assert (line["level"], line["event"]) == ("critical", "crashed")
    assert "in _crash_with_secret" in str(line["exception"])
    assert leaked(out.getvalue()) == []


def _interrupted() -> int:
    raise KeyboardInterrupt


def test_run_guarded_lets_ctrl_c_through(logs: Callable[..., io.StringIO]) -> None:
    out = logs("json")
    with pytest.raises(KeyboardInterrupt):
        log.run_guarded(_interrupted)
    assert out.getvalue() == ""


async def _fail_in_a_task() -> None:
    raise RuntimeError(f"task saw {SENTINEL}")


async def test_a_task_exception_never_retrieved_is_logged_through_the_chain(
    logs: Callable[..., io.StringIO],
) -> None:
    out = logs("json")
    log.install_asyncio_handler(asyncio.get_running_loop())
    task = asyncio.ensure_future(_fail_in_a_task())
    await asyncio.wait([task])
    del task
    gc.collect()
    [line] = _json_lines(out)
    assert (line["event"], line["message"]) == (
        "asyncio.error",
        "Task exception was never retrieved",
    )
    assert "in _fail_in_a_task" in str(line["exception"])
    assert leaked(out.getvalue()) == []


def test_an_exception_in_a_thread_is_logged_through_the_chain(
    logs: Callable[..., io.StringIO],
) -> None:
    out = logs("json")
    thread = threading.Thread(target=_explode, name="worker-1")
    thread.start()
    thread.join()
    [line] = _json_lines(out)
    assert (line["event"], line["thread"]) == ("thread.crashed", "worker-1")
    assert "in _explode" in str(line["exception"])
    assert leaked(out.getvalue()) == []


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def test_bad_settings_are_one_line_per_variable_without_secret_or_traceback(
    tmp_path: Path,
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "notifier", "check"],
        cwd=tmp_path,
        env=_clean_env(
            NOTIFIER_LIVE_POLL="banana",
            NOTIFIER_LOG_FORMAT="xml",
            NOTIFIER_TELEGRAM_TOKEN=SENTINEL,
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert sorted(line.split(":", 2)[1] for line in lines) == [
        " bad setting NOTIFIER_LIVE_POLL",
        " bad setting NOTIFIER_LOG_FORMAT",
    ]
    assert all(line.startswith("notifier: bad setting NOTIFIER_") for line in lines)
    assert "Traceback" not in proc.stderr
    assert "http" not in proc.stderr  # no "For further information visit https://..."
    assert leaked(proc.stderr + proc.stdout) == []


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_crash_logs_json_with_the_traceback_and_tells_the_user_one_line(
    tmp_path: Path,
) -> None:
    # The schema is larger than stdout's buffer: writing it to a full device fails inside
    # the command, an I/O error nothing expects.
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "notifier", "check", "--schema"],
            cwd=tmp_path,
            env=_clean_env(NOTIFIER_LOG_FORMAT="json", NOTIFIER_TELEGRAM_TOKEN=SENTINEL),
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 70
    *logged, last = proc.stderr.splitlines()
    assert last == (
        "notifier: internal error: OSError: [Errno 28] No space left on device (details in the log)"
    )
    [crash] = [json.loads(line) for line in logged]
    assert (crash["level"], crash["event"]) == ("critical", "crashed")
    assert str(crash["exception"]).startswith("Traceback (most recent call last):")
    assert leaked(proc.stderr) == []


FIELD_VALUES = {
    "secret": f"token {SENTINEL} in a sentence",
    "quoted_secret": quote(SENTINEL, safe=""),
    "unknown_webhook": f"https://discord.com/api/webhooks/1/{UNKNOWN_WEBHOOK}",
    "controls": "nul\x00 esc\x1b[31m cr\r lf\n tab\t",
    "astral": "😀" * 300,
    "nested": {"a": [1, 2.5, None, SENTINEL], "b": {"c": "\u202eevil"}},
    "number": 3,
    "float": 0.125,
    "boolean": True,
    "none": None,
    "bytes": b"\xff raw",
    "object": object,
}


@pytest.mark.parametrize("fmt", ["json", "console"])
@pytest.mark.parametrize("name", list(FIELD_VALUES))
def test_an_event_line_takes_the_short_cut_to_exactly_the_chains_text(
    monkeypatch: pytest.MonkeyPatch, fmt: str, name: str
) -> None:
    formatter = log._formatter(fmt)
    chain = structlog.stdlib.ProcessorFormatter.format
    through_chain: list[str] = []

    def counted(self: structlog.stdlib.ProcessorFormatter, record: logging.LogRecord) -> str:
        through_chain.append(record.getMessage())
        return chain(self, record)

    monkeypatch.setattr(structlog.stdlib.ProcessorFormatter, "format", counted)

    def record() -> logging.LogRecord:
        fields = {"dest": "tg", name: FIELD_VALUES[name], "attempts": 2}
        made = _log.makeRecord(
            _log.name,
            logging.INFO,
            "f.py",
            1,
            "alert.sent",
            None,
            None,
            extra={log._FIELDS: fields},
        )
        made.created = 1_764_300_000.1234  # both records at the same instant
        return made

    fast = formatter.format(record())
    assert through_chain == []  # the short cut was taken
    assert fast == chain(formatter, record())
    assert leaked(fast) == []
    # A line with a traceback goes through the chain.
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        failing = _log.makeRecord(
            _log.name,
            logging.ERROR,
            "f.py",
            1,
            "alert.failed",
            None,
            sys.exc_info(),
            extra={log._FIELDS: {"dest": "tg"}},
        )
    assert "RuntimeError: boom" in formatter.format(failing)
    assert through_chain == ["alert.failed"]
