"""Settings: every wrong `NOTIFIER_*` value is one line naming the variable, exit 2, for any
command, with no secret and no traceback; the validators' accepted forms."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from notifier.cli import main
from notifier.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "123456:SENTINELTOKEN"  # set beside every wrong value: it must never be printed
BOT_TOKEN = "SENTINELBOTTOKEN"
PASSWORD = "SENTINELPW"
SECRETS = (TOKEN, "SENTINELTOKEN", BOT_TOKEN, PASSWORD)
GOOD_RULES = "version: 1\ndestinations: {me: {console: {}}}\n"


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without any NOTIFIER_* (and this tree importable)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env | extra


def notifier(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m notifier ARGS` in `cwd` (so no stray .env is read), NOTIFIER_* only as given."""
    return subprocess.run(
        [sys.executable, "-m", "notifier", *args],
        capture_output=True,
        text=True,
        env=clean_env(**env),
        cwd=cwd,
        timeout=30,
        check=False,
    )


@dataclass(frozen=True)
class Done:
    """What a command did: its exit code and output."""

    returncode: int
    stdout: str
    stderr: str


def assert_clean(done: subprocess.CompletedProcess[str] | Done) -> None:
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output
    for secret in SECRETS:
        assert secret not in output, output


# (variable, wrong value, what the line says after "notifier: bad setting VARIABLE: ")
WRONG = [
    ("NOTIFIER_PARTI_WS_URL", "http://x", "must start with ws:// or wss://"),
    ("NOTIFIER_PARTI_WS_URL", "not a url", "must start with ws:// or wss://"),
    ("NOTIFIER_PARTI_WS_URL", "ws://[::1", "not a URL"),
    ("NOTIFIER_PARTI_WS_URL", "ws://h:port/", "not a URL"),
    ("NOTIFIER_PARTI_API_URL", "ftp://x", "must start with http:// or https://"),
    ("NOTIFIER_PARTI_API_URL", "https://", "name a host"),
    ("NOTIFIER_TELEGRAM_API_URL", "api.telegram.org", "(e.g. https://api.telegram.org)"),
    ("NOTIFIER_DISCORD_API_URL", "nope", "(e.g. https://discord.com/api/v10)"),
    ("NOTIFIER_DISCORD_GATEWAY_URL", "https://x", "(e.g. wss://gateway.discord.gg/)"),
    ("NOTIFIER_HTTP_ADDR", "banana", "expected HOST:PORT such as 127.0.0.1:9464"),
    ("NOTIFIER_HTTP_ADDR", "127.0.0.1:99999", "expected HOST:PORT"),
    ("NOTIFIER_HTTP_ADDR", ":abc", "expected HOST:PORT"),
    ("NOTIFIER_HTTP_ADDR", "[::1:9464", "an IPv6 host goes in brackets"),
    ("NOTIFIER_HTTP_ADDR", "::1:9464", "an IPv6 host goes in brackets"),
    ("NOTIFIER_HTTP_ADDR", "127.0.0.1:\u00b2", "expected HOST:PORT"),  # isdigit(), not int()
    ("NOTIFIER_HTTP_ADDR", "127.0.0.1:\u0661\u0662", "expected HOST:PORT"),
    ("NOTIFIER_HTTP_ADDR", "my host:9464", "the host has a space"),
    ("NOTIFIER_LIVE_POLL", "banana", "invalid duration 'banana'"),
    ("NOTIFIER_LIVE_POLL", "0s", "must be longer than 0s"),
    ("NOTIFIER_LIVE_POLL", "-5s", "invalid duration '-5s'"),
    ("NOTIFIER_LIVE_POLL", "inf", "invalid duration 'inf'"),
    ("NOTIFIER_LIVE_POLL", "1ms", "too short: at least 1s"),  # a poll runs under this timeout
    ("NOTIFIER_LIVE_POLL", "2d", "too long a duration: at most 1d"),
    ("NOTIFIER_RETENTION", "1ms", "too short: at least 1h"),
    ("NOTIFIER_RETENTION", "59m", "too short: at least 1h"),
    ("NOTIFIER_TELEGRAM_PAID_BROADCAST", "maybe", "valid boolean"),
    ("NOTIFIER_RETENTION", "nope", "invalid duration 'nope'"),
    ("NOTIFIER_RETENTION", "9" * 400 + "d", "too long a duration"),
    ("NOTIFIER_LOG_FORMAT", "xml", "'auto', 'console' or 'json'"),
    ("NOTIFIER_DATABASE_URL", f"mysql://u:{PASSWORD}@h/db", "must be a postgresql:// URL"),
    ("NOTIFIER_RULES", "rules\n.yaml", "must not contain control characters"),
    ("NOTIFIER_STATE_PATH", "a\tb.db", "must not contain control characters"),
    ("NOTIFIER_INSTANCE", "a\x7f", "must not contain control characters"),
]
WRONG_IDS = [f"{name}={value[:20]!r}" for name, value, _ in WRONG]


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(GOOD_RULES)
    return path


@pytest.fixture
def in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., Done]:
    """`notifier ARGS` through cli.main in this process: the same code as the command, without
    an interpreter start per row (a wrong setting returns before anything global is set up)."""

    def run(*args: str, **env: str) -> Done:
        monkeypatch.chdir(tmp_path)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        code = main(list(args))
        out, err = capsys.readouterr()
        return Done(code, out, err)

    return run


@pytest.mark.parametrize(("name", "value", "says"), WRONG, ids=WRONG_IDS)
def test_a_wrong_setting_is_one_line_naming_it_exit_2(
    in_process: Callable[..., Done], rules: Path, name: str, value: str, says: str
) -> None:
    done = in_process(
        "check",
        str(rules),
        **{name: value, "NOTIFIER_TELEGRAM_TOKEN": TOKEN, "NOTIFIER_DISCORD_BOT_TOKEN": BOT_TOKEN},
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith(f"notifier: bad setting {name}: "), line
    assert says in line
    assert_clean(done)


def test_the_command_prints_one_line_for_a_wrong_setting(tmp_path: Path, rules: Path) -> None:
    done = notifier(
        tmp_path,
        "check",
        str(rules),
        NOTIFIER_TELEGRAM_TOKEN=TOKEN,
        NOTIFIER_DATABASE_URL=f"mysql://u:{PASSWORD}@h/db",
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "notifier: bad setting NOTIFIER_DATABASE_URL: must be a postgresql:// URL "
        "(or unset for the SQLite file)"
    ]
    assert_clean(done)


@pytest.mark.parametrize(
    "command",
    [
        ["check", "--schema"],
        ["replay", "events.jsonl"],
        ["send-test", "me"],
        ["outbox"],
        ["db"],
        ["subs"],
        ["parti", "live"],
        ["demo"],
    ],
    ids=lambda command: command[0],
)
def test_every_command_refuses_a_wrong_setting_before_it_starts(
    in_process: Callable[..., Done], tmp_path: Path, command: list[str]
) -> None:
    done = in_process(*command, NOTIFIER_LIVE_POLL="0s")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "notifier: bad setting NOTIFIER_LIVE_POLL: must be longer than 0s"
    ]
    assert done.stdout == ""
    assert not (tmp_path / "notifier.db").exists()


@pytest.mark.parametrize("command", [["run"], ["sim", "--port", "0"]], ids=["run", "sim"])
def test_the_servers_refuse_a_wrong_setting_before_they_start(
    tmp_path: Path, command: list[str]
) -> None:
    done = notifier(tmp_path, *command, NOTIFIER_LIVE_POLL="0s")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "notifier: bad setting NOTIFIER_LIVE_POLL: must be longer than 0s"
    ]
    assert done.stdout == ""
    assert not (tmp_path / "notifier.db").exists()


def test_several_wrong_settings_are_one_line_each(tmp_path: Path, rules: Path) -> None:
    wrong = {
        "NOTIFIER_PARTI_WS_URL": "http://x",
        "NOTIFIER_HTTP_ADDR": "banana",
        "NOTIFIER_LIVE_POLL": "0s",
        "NOTIFIER_LOG_FORMAT": "xml",
        "NOTIFIER_DATABASE_URL": f"mysql://u:{PASSWORD}@h/db",
    }
    done = notifier(tmp_path, "run", "--rules", str(rules), NOTIFIER_TELEGRAM_TOKEN=TOKEN, **wrong)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    named = [line.removeprefix("notifier: bad setting ").partition(":")[0] for line in lines]
    assert sorted(named) == sorted(wrong)
    assert_clean(done)


def test_a_wrong_setting_in_the_env_file_is_named_like_one_in_the_environment(
    tmp_path: Path, rules: Path
) -> None:
    env_file = tmp_path / "service.env"
    env_file.write_text(f"NOTIFIER_TELEGRAM_TOKEN={TOKEN}\nNOTIFIER_HTTP_ADDR=127.0.0.1:99999\n")
    done = notifier(tmp_path, "check", "--env-file", str(env_file), str(rules))
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith("notifier: bad setting NOTIFIER_HTTP_ADDR: expected HOST:PORT")
    assert_clean(done)


def test_a_wrong_setting_in_dot_env_of_the_current_folder_is_named(
    tmp_path: Path, rules: Path
) -> None:
    (tmp_path / ".env").write_text("NOTIFIER_RETENTION=nope\n")
    done = notifier(tmp_path, "check", str(rules))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "notifier: bad setting NOTIFIER_RETENTION: invalid duration 'nope': "
        "expected e.g. 30s, 10m, 1h, 1d"
    ]


def test_an_env_file_that_is_not_utf8_is_one_line_exit_2(tmp_path: Path, rules: Path) -> None:
    env_file = tmp_path / "service.env"
    env_file.write_bytes(b"NOTIFIER_TELEGRAM_TOKEN=" + TOKEN.encode() + b"\xff\n")
    done = notifier(tmp_path, "check", "--env-file", str(env_file), str(rules))
    assert_clean(done)
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert str(env_file) in line


# ---- the validators, in-process ------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_notifier_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("NOTIFIER_"):
            monkeypatch.delenv(name)


def make(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "value", "says"), WRONG, ids=WRONG_IDS)
def test_the_validator_refuses_the_wrong_value_for_its_field_only(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        make()
    [error] = caught.value.errors()
    assert error["loc"] == (name.removeprefix("NOTIFIER_").lower(),)
    assert says in error["msg"]
    assert PASSWORD not in str(caught.value)


def test_the_defaults_are_valid() -> None:
    defaults = make()
    assert defaults.http_addr == "127.0.0.1:9464"
    assert defaults.live_poll == 60.0
    assert defaults.retention == 7 * 86400.0
    assert defaults.telegram_token is None and defaults.database_url is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("parti_ws_url", "ws://127.0.0.1:1/"),
        ("parti_ws_url", "wss://ws-backend.parti.com/"),
        ("discord_gateway_url", "ws://[::1]:8080/gateway"),
        ("parti_api_url", "http://127.0.0.1:1"),
        ("telegram_api_url", "https://api.telegram.org"),
        ("discord_api_url", "http://localhost:5000/api/v10"),
        ("http_addr", "127.0.0.1:9464"),
        ("http_addr", "[::1]:9464"),
        ("http_addr", "0.0.0.0:0"),
        ("http_addr", ":9464"),
        ("http_addr", ""),  # disables /healthz and /metrics
        ("log_format", "json"),
        ("instance", "a-1"),
        ("rules", "/etc/parti-notifier/rules.yaml"),
        ("state_path", "/var/lib/parti-notifier/notifier.db"),
    ],
)
def test_a_valid_value_is_kept_as_given(field: str, value: str) -> None:
    assert getattr(make(**{field: value}), field) == value


@pytest.mark.parametrize("value", ["postgresql://u:p@h/db", "postgres://h/db"])
def test_a_postgresql_database_url_is_kept_secret(value: str) -> None:
    made = make(database_url=value)
    assert made.database_url is not None and made.database_url.get_secret_value() == value
    assert "u:p@" not in repr(made)


@pytest.mark.parametrize(
    ("field", "text", "seconds"),
    [
        ("live_poll", "1s", 1.0),
        ("live_poll", "30s", 30.0),
        ("live_poll", "1.5m", 90.0),
        ("live_poll", 45, 45.0),
        ("live_poll", "1d", 86400.0),
        ("retention", "1h", 3600.0),
        ("retention", "7d", 604800.0),
        ("retention", 7200, 7200.0),
        ("retention", "3650d", 3650 * 86400.0),
    ],
)
def test_durations_read_as_seconds(field: str, text: str | int, seconds: float) -> None:
    assert getattr(make(**{field: text}), field) == seconds


@pytest.mark.parametrize("value", ["", "  "])
@pytest.mark.parametrize("field", list(Settings.model_fields))
def test_an_empty_setting_is_its_default(
    monkeypatch: pytest.MonkeyPatch, field: str, value: str
) -> None:
    # As an unset variable; only NOTIFIER_HTTP_ADDR has a meaning for empty: no ops server.
    monkeypatch.setenv(f"NOTIFIER_{field.upper()}", value)
    made = getattr(make(), field)
    assert made == ("" if field == "http_addr" else Settings.model_fields[field].default)


def test_the_command_takes_an_empty_setting_as_its_default(tmp_path: Path, rules: Path) -> None:
    empty = {f"NOTIFIER_{field.upper()}": "" for field in Settings.model_fields}
    done = notifier(tmp_path, "check", str(rules), **empty)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{rules}: ok:")


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_token_or_database_url_is_no_token(value: str) -> None:
    made = make(telegram_token=value, discord_bot_token=value, database_url=value)
    assert made.telegram_token is None
    assert made.discord_bot_token is None
    assert made.database_url is None


def test_a_token_is_kept_secret() -> None:
    made = make(telegram_token=TOKEN)
    assert made.telegram_token is not None and made.telegram_token.get_secret_value() == TOKEN
    assert TOKEN not in repr(made)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=30))
def test_any_duration_text_is_a_positive_finite_number_or_a_value_error(text: str) -> None:
    try:
        made = make(live_poll=text)
    except ValidationError as exc:
        assert [e["loc"] for e in exc.errors()] == [("live_poll",)]
        return
    assert math.isfinite(made.live_poll) and made.live_poll > 0


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=30))
def test_any_http_addr_is_host_and_port_or_a_value_error(text: str) -> None:
    try:
        made = make(http_addr=text)
    except ValidationError as exc:
        assert [e["loc"] for e in exc.errors()] == [("http_addr",)]
        return
    if made.http_addr:
        host, _, port = made.http_addr.rpartition(":")
        assert 0 <= int(port) <= 65535
        assert host.startswith("[") == host.endswith("]")


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=40))
def test_any_url_text_is_a_url_or_a_value_error(text: str) -> None:
    try:
        made = make(parti_ws_url=text, parti_api_url=text)
    except ValidationError as exc:
        assert {e["loc"] for e in exc.errors()} <= {("parti_ws_url",), ("parti_api_url",)}
        return
    if not text.strip():  # empty: each its own default
        assert made == make()
        return
    raise AssertionError(f"{text!r} was taken as both a ws:// and an http:// URL: {made}")
