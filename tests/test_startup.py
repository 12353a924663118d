"""`notifier run` at start-up: every configuration problem at once, one line each, exit 2,
nothing started and no traceback; a rules file `check` accepts is one `run` starts with, and
one it refuses, `run` refuses with the same lines; `${VAR}` from the service's env file."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from notifier.parti.simulator import Simulator
from tests.fakes.discord import BOT_TOKEN, FakeDiscord
from tests.fakes.telegram import FakeTelegram
from tests.test_settings import PASSWORD, ROOT, Done, assert_clean, clean_env, notifier

CONSOLE = """\
version: 1
destinations:
  me: {console: {}}
rules:
  - {name: friends, when: live, users: [SNEAKO], notify: [me]}
"""
TELEGRAM = """\
version: 1
destinations:
  tg: {telegram: {chat_id: 42}}
rules:
  - {name: friends, when: live, users: [SNEAKO], notify: [tg]}
"""
DISCORD_BOT = """\
version: 1
destinations:
  dc: {discord: {channel_id: 123456789012345678}}
rules:
  - {name: friends, when: live, users: [SNEAKO], notify: [dc]}
"""
HOOK_RULES = """\
version: 1
destinations:
  room: {discord: {webhook_url: "${HOOK}"}}
rules:
  - {name: friends, when: live, users: [SNEAKO], notify: [room]}
"""
WEBHOOK_TOKEN = "SENTINELWEBHOOK" + "t" * 53


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections: bound here, never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 another program listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def offline_env(tmp_path: Path, closed_port: int, **extra: str) -> dict[str, str]:
    """NOTIFIER_* for a run that must not start: Parti on a closed port (a daemon that starts
    anyway connects nowhere), the state file in tmp_path, no HTTP address."""
    return {
        "NOTIFIER_PARTI_WS_URL": f"ws://127.0.0.1:{closed_port}/",
        "NOTIFIER_PARTI_API_URL": f"http://127.0.0.1:{closed_port}",
        "NOTIFIER_STATE_PATH": str(tmp_path / "state.db"),
        "NOTIFIER_HTTP_ADDR": "",
        "NOTIFIER_LOG_FORMAT": "json",
    } | extra


def refused(tmp_path: Path, *args: str, env: dict[str, str]) -> Done:
    """`notifier ARGS` that must end by itself: a daemon that started fails the test."""
    try:
        done = notifier(tmp_path, *args, **env)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"notifier {' '.join(args)} started instead of refusing") from None
    assert_clean(done)
    return Done(done.returncode, done.stdout, done.stderr)


# ---- one fault per row: exit 2, the one line, nothing started ------------------------------


@dataclass(frozen=True)
class Fault:
    id: str
    env: dict[str, str] = field(default_factory=dict)  # {tmp} {busy} {closed} are filled in
    rules: str = CONSOLE
    lines: tuple[str, ...] = ()  # after "notifier run: " ({rules} too)
    setup: str = ""  # "file": tmp/afile is a regular file


FAULTS = [
    Fault(
        "http-address-in-use",
        env={"NOTIFIER_HTTP_ADDR": "127.0.0.1:{busy}"},
        lines=("NOTIFIER_HTTP_ADDR 127.0.0.1:{busy}: cannot listen: Address already in use",),
    ),
    Fault(
        "http-host-not-on-this-machine",
        env={"NOTIFIER_HTTP_ADDR": "192.0.2.1:9464"},  # TEST-NET-1: never a local address
        lines=(
            "NOTIFIER_HTTP_ADDR 192.0.2.1:9464: cannot listen: Cannot assign requested address",
        ),
    ),
    Fault(
        "http-host-not-a-name",
        env={"NOTIFIER_HTTP_ADDR": "a" * 64 + ":9464"},
        lines=(f"NOTIFIER_HTTP_ADDR {'a' * 64}:9464: {'a' * 64} is not a valid host name",),
    ),
    Fault(
        "state-folder-missing",
        env={"NOTIFIER_STATE_PATH": "{tmp}/nope/deeper/state.db"},
        lines=(
            "NOTIFIER_STATE_PATH {tmp}/nope/deeper/state.db: the folder {tmp}/nope/deeper"
            " does not exist",
        ),
    ),
    Fault(
        "state-path-is-a-folder",
        env={"NOTIFIER_STATE_PATH": "{tmp}"},
        lines=("NOTIFIER_STATE_PATH {tmp}: is a folder, not a file",),
    ),
    Fault(
        "state-folder-is-a-file",
        env={"NOTIFIER_STATE_PATH": "{tmp}/afile/state.db"},
        setup="file",
        lines=("NOTIFIER_STATE_PATH {tmp}/afile/state.db: {tmp}/afile is a file, not a folder",),
    ),
    Fault(
        "telegram-token-missing",
        rules=TELEGRAM,
        lines=("destination 'tg' needs NOTIFIER_TELEGRAM_TOKEN",),
    ),
    Fault(
        "telegram-token-empty",
        env={"NOTIFIER_TELEGRAM_TOKEN": ""},
        rules=TELEGRAM,
        lines=("destination 'tg' needs NOTIFIER_TELEGRAM_TOKEN",),
    ),
    Fault(
        "discord-bot-token-missing",
        rules=DISCORD_BOT,
        lines=("destination 'dc' needs NOTIFIER_DISCORD_BOT_TOKEN",),
    ),
    Fault(
        "telegram-commands-without-token",
        rules=CONSOLE + "bots: {telegram: {commands: true}}\n",
        lines=("bots.telegram.commands needs NOTIFIER_TELEGRAM_TOKEN",),
    ),
]


def fill(text: str, tmp_path: Path, rules: Path, busy: int, closed: int) -> str:
    return text.format(tmp=tmp_path, rules=rules, busy=busy, closed=closed)


def faulted(
    tmp_path: Path, busy_port: int, closed_port: int, fault: Fault
) -> tuple[Path, dict[str, str]]:
    """The fault's rules file (and the file it needs), and its environment."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(fault.rules)
    if fault.setup == "file":
        (tmp_path / "afile").write_text("not a folder\n")
    env = offline_env(tmp_path, closed_port) | {
        k: fill(v, tmp_path, rules, busy_port, closed_port) for k, v in fault.env.items()
    }
    return rules, env


@pytest.mark.parametrize("fault", FAULTS, ids=[f.id for f in FAULTS])
def test_a_configuration_fault_is_one_line_exit_2_and_nothing_starts(
    tmp_path: Path, busy_port: int, closed_port: int, fault: Fault
) -> None:
    rules, env = faulted(tmp_path, busy_port, closed_port, fault)
    done = refused(tmp_path, "run", "--rules", str(rules), env=env)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "notifier run: " + fill(line, tmp_path, rules, busy_port, closed_port)
        for line in fault.lines
    ]
    assert done.stdout == ""
    assert not (tmp_path / "state.db").exists()


@pytest.mark.parametrize("fault", FAULTS, ids=[f.id for f in FAULTS])
def test_check_refuses_what_run_refuses_with_the_same_lines(
    tmp_path: Path, busy_port: int, closed_port: int, fault: Fault
) -> None:
    rules, env = faulted(tmp_path, busy_port, closed_port, fault)
    done = refused(tmp_path, "check", str(rules), env=env)
    if fault.id == "http-address-in-use":
        # Not a fault for check: the daemon it checks the next rules of holds the port.
        assert done.returncode == 0, done.stderr
        return
    assert done.returncode == 1
    count = len(fault.lines)
    assert done.stderr.splitlines() == [
        *(
            f"{rules}: " + fill(line, tmp_path, rules, busy_port, closed_port)
            for line in fault.lines
        ),
        f"{rules}: {count} error{'s' if count > 1 else ''}",
    ]
    assert not (tmp_path / "state.db").exists()


def test_a_websocket_url_that_is_not_one_is_refused_before_the_rules(
    tmp_path: Path, closed_port: int
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(CONSOLE)
    env = offline_env(
        tmp_path, closed_port, NOTIFIER_PARTI_WS_URL=f"http://127.0.0.1:{closed_port}/"
    )
    done = refused(tmp_path, "run", "--rules", str(rules), env=env)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "notifier: bad setting NOTIFIER_PARTI_WS_URL: must start with ws:// or wss:// and "
        "name a host (e.g. wss://ws-backend.parti.com/)"
    ]
    assert not (tmp_path / "state.db").exists()


def test_several_faults_at_once_are_all_reported(
    tmp_path: Path, busy_port: int, closed_port: int
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "version: 1\ndestinations:\n  tg: {telegram: {chat_id: 42}}\n"
        "  dc: {discord: {channel_id: 123456789012345678}}\n"
        "rules:\n  - {name: friends, when: live, users: [SNEAKO], notify: [tg, dc]}\n"
    )
    env = offline_env(
        tmp_path,
        closed_port,
        NOTIFIER_HTTP_ADDR=f"127.0.0.1:{busy_port}",
        NOTIFIER_STATE_PATH=str(tmp_path / "nope" / "deeper" / "state.db"),
    )
    done = refused(tmp_path, "run", "--rules", str(rules), env=env)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"notifier run: NOTIFIER_STATE_PATH {tmp_path}/nope/deeper/state.db: "
        f"the folder {tmp_path}/nope/deeper does not exist",
        f"notifier run: NOTIFIER_HTTP_ADDR 127.0.0.1:{busy_port}: cannot listen: "
        "Address already in use",
        "notifier run: destination 'tg' needs NOTIFIER_TELEGRAM_TOKEN",
        "notifier run: destination 'dc' needs NOTIFIER_DISCORD_BOT_TOKEN",
    ]


def test_rules_errors_come_with_the_other_faults(
    tmp_path: Path, busy_port: int, closed_port: int
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\ndestinations: {me: {console: {}}}\nrules: [{name: a}]\n")
    env = offline_env(tmp_path, closed_port, NOTIFIER_HTTP_ADDR=f"127.0.0.1:{busy_port}")
    done = refused(tmp_path, "run", "--rules", str(rules), env=env)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert lines[0] == (
        f"notifier run: NOTIFIER_HTTP_ADDR 127.0.0.1:{busy_port}: cannot listen: "
        "Address already in use"
    )
    assert len(lines) >= 2
    assert all(line.startswith(f"notifier run: {rules}:3:") for line in lines[1:])


def test_an_unreachable_database_is_one_line_without_its_password(
    tmp_path: Path, closed_port: int
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(CONSOLE)
    url = f"postgresql://parti:{PASSWORD}@127.0.0.1:{closed_port}/notifier"
    env = offline_env(tmp_path, closed_port, NOTIFIER_DATABASE_URL=url)
    done = refused(tmp_path, "run", "--rules", str(rules), env=env)
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith("notifier run: database ") and "unavailable" in line


# ---- check OK means run starts -------------------------------------------------------------


class Running:
    """`notifier run` as a subprocess, read until its JSON log says the stream is connected."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[str] = []
        self.stdout: list[str] = []
        self.stderr = b""

    @classmethod
    async def start(cls, cwd: Path, *args: str, env: dict[str, str]) -> Running:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "notifier",
            "run",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=clean_env(**env),
            cwd=cwd,
        )
        return cls(proc)

    async def wait_event(self, name: str, timeout: float = 30.0) -> None:
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                while name not in self.events:
                    line = await self.proc.stdout.readline()
                    if not line:
                        break  # it exited
                    self.stdout.append(line.decode(errors="replace"))
                    with contextlib.suppress(ValueError):
                        self.events.append(json.loads(line).get("event", ""))
        except TimeoutError:
            pass
        if name not in self.events:
            await self.stop()
            raise AssertionError(
                f"no {name} in the log (exit {self.proc.returncode}); "
                f"stderr: {self.stderr.decode(errors='replace')}\n"
                f"stdout tail: {''.join(self.stdout[-10:])}"
            )

    async def stop(self, timeout: float = 30.0) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(timeout):
                out, self.stderr = await self.proc.communicate()
        except TimeoutError:
            self.proc.kill()
            out, self.stderr = await self.proc.communicate()
        self.stdout.append(out.decode(errors="replace"))
        return self.proc.returncode if self.proc.returncode is not None else -1

    def output(self) -> str:
        return "".join(self.stdout) + self.stderr.decode(errors="replace")


def online_env(
    tmp_path: Path, sim: Simulator, tg: FakeTelegram, dc: FakeDiscord, **extra: str
) -> dict[str, str]:
    """NOTIFIER_* for a daemon against the simulator and the fakes, tokens set."""
    return {
        "NOTIFIER_PARTI_WS_URL": sim.ws_url,
        "NOTIFIER_PARTI_API_URL": sim.api_url,
        "NOTIFIER_STATE_PATH": str(tmp_path / "state.db"),
        "NOTIFIER_HTTP_ADDR": "",
        "NOTIFIER_LOG_FORMAT": "json",
        "NOTIFIER_TELEGRAM_TOKEN": tg.token,
        "NOTIFIER_TELEGRAM_API_URL": tg.api_url,
        "NOTIFIER_DISCORD_BOT_TOKEN": BOT_TOKEN,
        "NOTIFIER_DISCORD_API_URL": dc.api_url,
    } | extra


async def assert_starts_and_stops(cwd: Path, *args: str, env: dict[str, str]) -> Running:
    daemon = await Running.start(cwd, *args, env=env)
    await daemon.wait_event("stream.connected")
    code = await daemon.stop()
    assert code == 0, daemon.output()
    assert "Traceback" not in daemon.output()
    return daemon


ACCEPTED = {
    "every-kind-of-rule": """\
version: 1
destinations:
  me: {console: {}}
defaults: {cooldown: 0s, on_end: ignore, first_start: alert}
rules:
  - {name: friends, when: live, users: [SNEAKO, 567503], notify: [me], template: "{{ title }}"}
  - {name: gaming, when: live, categories: [Gaming], title_matches: "(?i)ranked", notify: [me]}
  - {name: btc, when: price, asset: BTC, above: 100000, rearm: 0.5%, notify: [me]}
  - {name: eth, when: price, asset: ETH, move: 5%, within: 1h, notify: [me]}
  - {name: soon, when: scheduled, users: [SNEAKO], before: 15m, notify: [me]}
""",
    "chats-and-bots": """\
version: 1
destinations:
  tg: {telegram: {chat_id: "42"}}
  dc: {discord: {channel_id: 123456789012345678}}
bots: {telegram: {commands: true}}
rules:
  - {name: friends, when: live, users: [SNEAKO], notify: [tg, dc]}
""",
    "the-example": (ROOT / "rules.example.yaml").read_text(),
}


@pytest.mark.parametrize("text", ACCEPTED.values(), ids=ACCEPTED.keys())
async def test_a_file_check_accepts_is_one_run_starts_with(
    tmp_path: Path,
    sim: Simulator,
    fake_telegram: FakeTelegram,
    fake_discord: FakeDiscord,
    text: str,
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(text)
    hook = fake_discord.add_webhook(123456789012345678, WEBHOOK_TOKEN)
    env = online_env(tmp_path, sim, fake_telegram, fake_discord, DISCORD_WEBHOOK_URL=hook)
    check = refused(tmp_path, "check", str(rules), env=env)
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith(f"{rules}: ok: ")
    daemon = await assert_starts_and_stops(tmp_path, "--rules", str(rules), env=env)
    assert WEBHOOK_TOKEN not in daemon.output()


def test_check_refuses_what_run_refuses_for_a_missing_token(
    tmp_path: Path, closed_port: int
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(TELEGRAM)
    env = offline_env(tmp_path, closed_port)
    run = refused(tmp_path, "run", "--rules", str(rules), env=env)
    assert run.returncode == 2
    check = refused(tmp_path, "check", str(rules), env=env)
    assert check.returncode != 0


async def test_an_ipv6_http_address_in_brackets_starts(
    tmp_path: Path, sim: Simulator, fake_telegram: FakeTelegram, fake_discord: FakeDiscord
) -> None:
    with socket.socket(socket.AF_INET6) as probe:
        try:
            probe.bind(("::1", 0))
        except OSError:
            pytest.skip("no IPv6 loopback here")
    rules = tmp_path / "rules.yaml"
    rules.write_text(CONSOLE)
    env = online_env(tmp_path, sim, fake_telegram, fake_discord, NOTIFIER_HTTP_ADDR="[::1]:0")
    await assert_starts_and_stops(tmp_path, "--rules", str(rules), env=env)


REFUSED = {
    # One file, one error of each kind that leaves the rest of the file readable.
    "every-kind-of-error": """\
version: 1
destinations:
  me: {console: {}}
  room: {discord: {webhook_url: "https://example.com/hook/1/abc"}}
  hook: {discord: {webhook_url: "${HOOK}"}}
rules:
  - {name: a, when: live, notify: [you]}
  - {name: b, when: price, asset: BTC, notify: [me]}
  - {name: c, when: live, title_matches: "(a)\\\\1", notify: [me]}
  - {name: d, when: live, min_viewers: 1000000000000000000000000000000, notify: [me]}
  - {name: e, when: live, min_viewers: true, notify: [me]}
  - {name: f, when: live, userz: [x], notify: [me]}
  - {name: g, when: live, users: [x], notify: [me], template: "{{ title"}
""",
    "yaml-syntax": "version: 1\ndestinations: {me: {console: {}}\nrules: [\n",
    "missing-file": "",
    # A file with an error still names the tokens its destinations and bots need.
    "an-error-and-missing-tokens": """\
destinations:
  me: {telegram: {chat_id: 1}}
  room: {discord: {channel_id: 2}}
  hook: {discord: {webhook_url: "${HOOK}"}}
  copy: &copy {telegram: {chat_id: 3}}
  again: *copy
bots: {telegram: {commands: true}, discord: {commands: yes}}
rules: [{name: a, when: live, notify: [me]}]
""",
}


@pytest.mark.parametrize("name", REFUSED, ids=REFUSED.keys())
def test_a_file_check_refuses_run_refuses_with_the_same_lines(
    tmp_path: Path, closed_port: int, name: str
) -> None:
    rules = tmp_path / "rules.yaml"
    if REFUSED[name]:
        rules.write_text(REFUSED[name])
    env = offline_env(tmp_path, closed_port)
    check = refused(tmp_path, "check", str(rules), env=env)
    assert check.returncode == 1
    *problems, summary = check.stderr.splitlines()
    assert problems
    assert summary == f"{rules}: {len(problems)} error{'s' if len(problems) > 1 else ''}"
    if name == "every-kind-of-error":
        assert len(problems) == 9, problems
    if name == "an-error-and-missing-tokens":
        assert [p.removeprefix(f"{rules}: ") for p in problems[1:]] == [
            "destination 'me' needs NOTIFIER_TELEGRAM_TOKEN",
            "destination 'room' needs NOTIFIER_DISCORD_BOT_TOKEN",
            "destination 'copy' needs NOTIFIER_TELEGRAM_TOKEN",  # 'again', an alias: not read
            "bots.telegram.commands needs NOTIFIER_TELEGRAM_TOKEN",
            "bots.discord.commands needs NOTIFIER_DISCORD_BOT_TOKEN",
        ], problems
    run = refused(tmp_path, "run", "--rules", str(rules), env=env)
    assert run.returncode == 2
    # The same lines (check names the file before a missing token; run does not).
    said = [line.removeprefix("notifier run: ") for line in run.stderr.splitlines()]
    assert said == [p.removeprefix(f"{rules}: ") for p in problems]
    assert all(line.startswith("notifier run: ") for line in run.stderr.splitlines())
    assert not (tmp_path / "state.db").exists()


# ---- ${VAR} from the service's env file ----------------------------------------------------


@pytest.fixture
def hook_rules(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(HOOK_RULES)
    return path


def hook_url(webhook_id: int = 123456789012345678) -> str:
    return f"https://discord.com/api/webhooks/{webhook_id}/{WEBHOOK_TOKEN}"


def test_check_reads_a_variable_from_the_env_file(tmp_path: Path, hook_rules: Path) -> None:
    env_file = tmp_path / "service.env"
    env_file.write_text(f"HOOK={hook_url()}\n")
    done = refused(tmp_path, "check", "--env-file", str(env_file), str(hook_rules), env={})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{hook_rules}: ok: ")
    assert WEBHOOK_TOKEN not in done.stdout + done.stderr


def test_check_without_the_env_file_names_the_missing_variable(
    tmp_path: Path, hook_rules: Path
) -> None:
    done = refused(tmp_path, "check", str(hook_rules), env={})
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"{hook_rules}:3:33: environment variable HOOK is not set",
        f"{hook_rules}: 1 error",
    ]


def test_check_reads_dot_env_of_the_current_folder(tmp_path: Path, hook_rules: Path) -> None:
    (tmp_path / ".env").write_text(f"HOOK={hook_url()}\n")
    done = refused(tmp_path, "check", str(hook_rules), env={})
    assert done.returncode == 0, done.stderr


def test_the_environment_wins_over_the_env_file(tmp_path: Path, hook_rules: Path) -> None:
    env_file = tmp_path / "service.env"
    env_file.write_text("HOOK=https://example.com/not-a-webhook\n")
    done = refused(
        tmp_path, "check", "--env-file", str(env_file), str(hook_rules), env={"HOOK": hook_url()}
    )
    assert done.returncode == 0, done.stderr


def test_a_missing_env_file_is_one_error(tmp_path: Path, hook_rules: Path) -> None:
    missing = tmp_path / "nope.env"
    check = refused(tmp_path, "check", "--env-file", str(missing), str(hook_rules), env={})
    assert check.returncode == 1
    assert check.stderr.splitlines()[0] == (
        f"{missing}:1:1: cannot read the env file: No such file or directory"
    )


async def test_run_reads_variables_and_settings_from_the_env_file(
    tmp_path: Path, hook_rules: Path, sim: Simulator, fake_discord: FakeDiscord
) -> None:
    hook = fake_discord.add_webhook(123456789012345678, WEBHOOK_TOKEN)
    env_file = tmp_path / "service.env"
    # One file for the service, as systemd's EnvironmentFile= gives it: settings and ${VAR}s.
    env_file.write_text(
        f"HOOK={hook}\n"
        f"NOTIFIER_PARTI_WS_URL={sim.ws_url}\n"
        f"NOTIFIER_PARTI_API_URL={sim.api_url}\n"
        f"NOTIFIER_DISCORD_API_URL={fake_discord.api_url}\n"
        f"NOTIFIER_STATE_PATH={tmp_path / 'state.db'}\n"
        "NOTIFIER_HTTP_ADDR=\n"
        "NOTIFIER_LOG_FORMAT=json\n"
    )
    check = refused(tmp_path, "check", "--env-file", str(env_file), str(hook_rules), env={})
    assert check.returncode == 0, check.stderr
    daemon = await assert_starts_and_stops(
        tmp_path, "--rules", str(hook_rules), "--env-file", str(env_file), env={}
    )
    assert WEBHOOK_TOKEN not in daemon.output()
    assert (tmp_path / "state.db").exists()
