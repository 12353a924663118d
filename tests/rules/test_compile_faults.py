"""`notifier check` answers every fault `notifier run` would hit, at its position, with the
same message from `check`, `replay` and the daemon's own compile."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from notifier.parti.models import ChannelLive
from notifier.rules.compile import compile_text
from notifier.rules.schema import LiveRule, PriceRule
from notifier.rules.stream import RulesError, compile_rules

ROOT = Path(__file__).resolve().parents[2]
HOOK = "https://discord.com/api/webhooks/123456789012345678/" + "T0ken-Secret_" * 5
TOKEN = HOOK.rsplit("/", 1)[1]


def destinations(extra: str = "") -> str:
    return (
        "version: 1\n"
        "destinations:\n"
        "  me: {telegram: {chat_id: 123}}\n"
        f"  room: {{discord: {{webhook_url: '{HOOK}'}}}}\n" + extra
    )


def rule(body: str) -> str:
    return destinations() + "rules:\n  - {name: r, notify: [me], " + body + "}\n"


BAD_WEBHOOK = "not a Discord webhook URL (https://discord.com/api/webhooks/ID/TOKEN)"

USERNAME_AT = f"{{webhook_url: '{HOOK}', username: "


def named(username: str) -> str:
    return f"destinations: {{d: {{discord: {USERNAME_AT}{username}}}}}}}\n"


# (case, file text, where the problem is: the first text of the file that, message).
FAULTS = [
    (
        "chat id beyond int64",
        "destinations: {me: {telegram: {chat_id: 9223372036854775808}}}\n",
        "9223372036854775808",
        "destinations.me.telegram.chat_id: chat_id is out of range for a Telegram chat id "
        "(64 bits)",
    ),
    (
        "chat id a boolean",
        "destinations: {me: {telegram: {chat_id: yes}}}\n",
        "yes",
        "destinations.me.telegram.chat_id: expected a number, not a boolean (true)",
    ),
    (
        "thread id beyond int32",
        "destinations: {me: {telegram: {chat_id: 1, thread_id: 1099511627776}}}\n",
        "1099511627776",
        "destinations.me.telegram.thread_id: out of range: must be from 1 to 2147483647",
    ),
    (
        "discord channel id beyond 2^64",
        "destinations: {d: {discord: {channel_id: 18446744073709551616}}}\n",
        "18446744073709551616",
        "destinations.d.discord.channel_id: out of range: must be from 1 to 18446744073709551615",
    ),
    (
        "mention role a boolean",
        "destinations: {d: {discord: {channel_id: 123456789012345678, mention_role: true}}}\n",
        "true",
        "destinations.d.discord.mention_role: expected a number, not a boolean (true)",
    ),
    (
        "webhook on another host",
        "destinations: {d: {discord: {webhook_url: 'https://example.com/api/webhooks/"
        f"123456789012345678/{TOKEN}'}}}}}}\n",
        "'https",
        f"destinations.d.discord.webhook_url: {BAD_WEBHOOK}",
    ),
    (
        "webhook over http",
        f"destinations: {{d: {{discord: {{webhook_url: '{HOOK.replace('https', 'http')}'}}}}}}\n",
        "'http",
        f"destinations.d.discord.webhook_url: {BAD_WEBHOOK}",
    ),
    (
        "webhook with a channel path",
        "destinations: {d: {discord: {webhook_url: "
        "'https://discord.com/channels/123456789012345678/123456789012345678'}}}\n",
        "'https",
        f"destinations.d.discord.webhook_url: {BAD_WEBHOOK}",
    ),
    (
        "webhook id too short",
        "destinations: {d: {discord: {webhook_url: "
        f"'{HOOK.replace('123456789012', '')}'}}}}}}\n",
        "'https",
        f"destinations.d.discord.webhook_url: {BAD_WEBHOOK}",
    ),
    (
        "webhook without a token",
        "destinations: {d: {discord: {webhook_url: "
        "'https://discord.com/api/webhooks/123456789012345678'}}}\n",
        "'https",
        f"destinations.d.discord.webhook_url: {BAD_WEBHOOK}",
    ),
    (
        "webhook username with discord",
        named("My Discord bot"),
        "My Discord",
        "destinations.d.discord.username: Discord refuses a webhook username containing 'discord'",
    ),
    (
        "webhook username with clyde",
        named("Clyde"),
        "Clyde",
        "destinations.d.discord.username: Discord refuses a webhook username containing 'clyde'",
    ),
    (
        "webhook username everyone",
        named("everyone"),
        "everyone",
        "destinations.d.discord.username: Discord refuses the webhook username 'everyone'",
    ),
    (
        "webhook username with a colon",
        named("'a:b'"),
        "'a:b'",
        "destinations.d.discord.username: Discord refuses a webhook username containing ':'",
    ),
    (
        "webhook username too long",
        named("x" * 81),
        "x" * 81,
        "destinations.d.discord.username: a webhook username has 1 to 80 characters",
    ),
    (
        "version a boolean",
        "version: true\ndestinations: {me: {console: {}}}\n",
        "true",
        "version: expected a number, not a boolean (true)",
    ),
    (
        "first_start unknown",
        "destinations: {me: {console: {}}}\ndefaults: {first_start: maybe}\n",
        "maybe",
        "defaults.first_start: Input should be 'alert' or 'skip'",
    ),
    (
        "bots: a key misspelt",
        "destinations: {me: {console: {}}}\nbots: {telegram: {comands: true}}\n",
        "comands",
        "unknown key 'comands' (did you mean 'commands'?) in bots.telegram",
    ),
    (
        "bots: a boolean for a limit",
        "destinations: {me: {console: {}}}\nbots: {discord: {max_follows: yes}}\n",
        "yes",
        "bots.discord.max_follows: expected a number, not a boolean (true)",
    ),
    (
        "min_viewers a boolean",
        rule("when: live, min_viewers: true"),
        "true",
        "rules[0].min_viewers: expected a number, not a boolean (true)",
    ),
    (
        "min_viewers huge",
        rule("when: live, min_viewers: 100000000000000000000000"),
        "100000000000000000000000",
        "rules[0].min_viewers: out of range: must be from 0 to 1000000000",
    ),
    (
        "cooldown in days beyond a year",
        rule("when: live, cooldown: 99999999999d"),
        "99999999999d",
        "rules[0].cooldown: duration '99999999999d' is too long: at most 365d",
    ),
    (
        "cooldown an infinite float",
        rule("when: live, cooldown: 1.0e+400"),
        "1.0e+400",
        "rules[0].cooldown: duration inf is too long: at most 365d",
    ),
    (
        "cooldown an integer beyond a float",
        rule("when: live, cooldown: " + "9" * 400),
        "9" * 400,
        "rules[0].cooldown: duration " + "9" * 400 + " is too long: at most 365d",
    ),
    (
        "reminder with an exponent",
        rule("when: scheduled, before: 1e400s"),
        "1e400s",
        "rules[0].before: invalid duration '1e400s': expected e.g. 30s, 10m, 1h, 1d",
    ),
    (
        "price line of 10^1000",
        rule("when: price, asset: BTC, above: 1e1000"),
        "1e1000",
        "rules[0].above: price out of range: at most 15 digits before the point",
    ),
    (
        "price line of 1000 digits",
        rule("when: price, asset: BTC, below: " + "1" * 1000),
        "1" * 1000,
        "rules[0].below: price out of range: at most 15 digits before the point",
    ),
    (
        "price line a boolean",
        rule("when: price, asset: BTC, above: false"),
        "false",
        "rules[0].above: expected a number, not a boolean (false)",
    ),
    (
        "rearm absurd",
        rule("when: price, asset: BTC, above: 5, rearm: 5000%"),
        "5000%",
        "rules[0].rearm: rearm 5000% is too large: at most 100%",
    ),
    (
        "move absurd",
        rule("when: price, asset: BTC, move: 99999%, within: 1h"),
        "99999%",
        "rules[0].move: move 99999% is too large: at most 1000%",
    ),
    (
        "move within no time",
        rule("when: price, asset: ETH, move: 5%, within: 0s"),
        "0s",
        "rules[0].within: must be above 0 seconds (0 would never fire)",
    ),
    (
        "reminder at the start",
        rule("when: scheduled, before: 0"),
        "0}",
        "rules[0].before: must be above 0 seconds (0 would never fire)",
    ),
    (
        "price line at 0",
        rule("when: price, asset: BTC, above: 0"),
        "0}",
        "rules[0].above: the line must be above 0, not 0",
    ),
    (
        "price line below 0",
        rule("when: price, asset: BTC, below: -5"),
        "-5",
        "rules[0].below: the line must be above 0, not -5",
    ),
    (
        "rearm the whole line",
        rule("when: price, asset: BTC, above: 100, rearm: 100%"),
        "100%",
        "rules[0].rearm: rearm 100% would re-arm the line 100 only at a price of 0 or below, "
        "so never: the band must be smaller than the line",
    ),
    (
        "rearm past the line",
        rule("when: price, asset: BTC, above: 100.5, rearm: 101"),
        "101}",
        "rules[0].rearm: rearm 101 would re-arm the line 100.5 only at a price of 0 or below, "
        "so never: the band must be smaller than the line",
    ),
    (
        "title_matches with a backreference",
        rule(r"when: live, title_matches: '(a)\1'"),
        "'(a)",
        r"rules[0].title_matches: not supported by the linear-time engine: "
        r"invalid escape sequence: \1",
    ),
    (
        "title_matches with a lookbehind",
        rule("when: live, title_matches: '(?<=x)y'"),
        "'(?<=",
        "rules[0].title_matches: not supported by the linear-time engine: "
        "invalid perl operator: (?<=",
    ),
    (
        "template looping a billion times",
        rule("when: live, template: '{% for x in range(10**9) %}x{% endfor %}'"),
        "'{%",
        "rules[0].template: template too costly to render: an operation would build a "
        "value that is too large",
    ),
    (
        "template with nested loops",
        rule(
            "when: live, template: '{% for x in range(99999) %}{% for y in range(99999) %}"
            "{% endfor %}{% endfor %}'"
        ),
        "'{%",
        "rules[0].template: template too costly to render: more than 50,000 loop steps and calls",
    ),
    (
        "template with a recursive macro",
        rule("when: live, template: '{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}'"),
        "'{%",
        "rules[0].template: template recursion too deep",
    ),
    (
        "template doubling a string",
        rule(
            'when: live, template: "{% set ns = namespace(s=title) %}{% for i in range(60) %}'
            '{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}"'
        ),
        '"{%',
        "rules[0].template: template too costly to render: a value grows beyond 100,000 characters",
    ),
    (
        "template failing on empty fields",
        rule("when: live, template: '{{ viewers + 1 }}'"),
        "'{{",
        "rules[0].template: template fails on the empty sample fields: TypeError: "
        'can only concatenate str (not "int") to str',
    ),
    (
        "alias bomb",
        "destinations: {me: {console: {}}}\n"
        "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(
            f"{chr(98 + n)}: &{chr(98 + n)} [{', '.join(['*' + chr(97 + n)] * 10)}]\n"
            for n in range(8)
        ),
        "",  # where the count passes the bound depends on the bomb's shape
        "aliases expand to more than 1,000,000 nodes (an alias bomb?)",
    ),
]


def position(text: str, needle: str) -> str:
    """line:column of the first `needle` of the file."""
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return f"{number}:{line.index(needle) + 1}"
    raise AssertionError(f"{needle!r} not in the text")


def problems_of(path: Path) -> list[str]:
    """The daemon's compile, as `notifier run` calls it (settings' Discord API)."""
    try:
        compile_rules(path, env={}, discord_api_url="https://discord.com/api/v10")
    except RulesError as exc:
        return [str(p) for p in exc.problems]
    return []


@pytest.fixture(scope="module")
def fault_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("faults")
    files = {}
    for n, (case, text, _needle, _message) in enumerate(FAULTS):
        path = folder / f"fault{n:02d}.yaml"
        path.write_text(text)
        files[case] = path
    return files


@pytest.mark.parametrize(("case", "text", "needle", "message"), FAULTS, ids=[c[0] for c in FAULTS])
def test_check_reports_each_fault_at_its_position(
    case: str, text: str, needle: str, message: str, fault_files: dict[str, Path]
) -> None:
    path = fault_files[case]
    problems = problems_of(path)
    if not needle:
        assert len(problems) == 1 and problems[0].endswith(f": {message}")
        return
    assert problems == [f"{path}:{position(text, needle)}: {message}"]


def test_no_webhook_fault_repeats_the_token(fault_files: dict[str, Path]) -> None:
    for case, path in fault_files.items():
        assert all(TOKEN not in p for p in problems_of(path)), case


# One process runs `check` and `replay` (through the command line's own entry point) and
# the daemon's compile (`notifier.app.compile_for`) on every fault file.
TOKENS = {"NOTIFIER_TELEGRAM_TOKEN": "123456:TEST", "NOTIFIER_DISCORD_BOT_TOKEN": "bot.token"}
_DRIVER = """
import contextlib, io, json, sys
from notifier.cli import main
from notifier.app import compile_for
from notifier.settings import Settings
from notifier.rules.stream import RulesError

out = {}
for path in sys.argv[2:]:
    seen = {}
    for name, argv in (("check", ["check", path]),
                       ("replay", ["replay", sys.argv[1], "--rules", path])):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
        seen[name] = [code, [l for l in err.getvalue().splitlines() if l.startswith(path)]]
    try:
        compile_for(Settings(), path)
        seen["run"] = []
    except RulesError as exc:
        seen["run"] = [str(p) for p in exc.problems]
    out[path] = seen
print(json.dumps(out))
"""


def test_check_replay_and_run_report_the_same_problems(fault_files: dict[str, Path]) -> None:
    paths = [str(p) for p in fault_files.values()]
    done = subprocess.run(
        [sys.executable, "-c", _DRIVER, str(ROOT / "examples" / "events.jsonl"), *paths],
        capture_output=True,
        text=True,
        # Tokens set: the problems compared are the file's (check also names a missing
        # token, which replay does not need).
        env={**os.environ, "NOTIFIER_LOG_FORMAT": "json"} | TOKENS,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout)
    for path in paths:
        run = seen[path]["run"]
        check_code, check_lines = seen[path]["check"]
        replay_code, replay_lines = seen[path]["replay"]
        assert run, path
        assert check_code == replay_code == 1
        # `check` ends with a count line ("PATH: N errors"); the problems come before it.
        assert check_lines[:-1] == run == replay_lines, path
        assert check_lines[-1] == f"{path}: {len(run)} error{'s' if len(run) > 1 else ''}"


# ---- what check accepts ---------------------------------------------------------------------


ACCEPTED = [
    (
        "rearm of a below line past the line",
        destinations() + "rules:\n  - {name: r, notify: [me], when: price, asset: BTC, "
        "below: 100, rearm: 100%}\n  - {name: s, notify: [me], when: price, asset: BTC, "
        "below: 100, rearm: 500}\n",
    ),
    (
        "rearm just under an above line",
        destinations() + "rules:\n  - {name: r, notify: [me], when: price, asset: BTC, "
        "above: 100, rearm: 99.99%}\n  - {name: s, notify: [me], when: price, asset: BTC, "
        "above: 100, rearm: 99}\n",
    ),
    ("quoted numeric chat id", "destinations: {me: {telegram: {chat_id: '-100123'}}}\n"),
    ("channel name chat id", "destinations: {me: {telegram: {chat_id: '@parti_alerts'}}}\n"),
    (
        "webhook on discordapp.com with an API version",
        "destinations: {d: {discord: {webhook_url: "
        "'https://discordapp.com/api/v10/webhooks/12345678901234567/abc_DEF-1'}}}\n",
    ),
    (
        "webhook on canary",
        "destinations: {d: {discord: {webhook_url: "
        "'https://canary.discord.com/api/webhooks/12345678901234567890/abc'}}}\n",
    ),
    (
        "webhook with a good username",
        f"destinations: {{d: {{discord: {{webhook_url: '{HOOK}', username: Parti alerts}}}}}}\n",
    ),
    ("bots block", "destinations: {me: {console: {}}}\nbots: {telegram: {commands: true}}\n"),
    (
        "template using loops and filters",
        "destinations: {me: {console: {}}}\nrules:\n"
        "  - name: r\n    when: live\n    notify: [me]\n    template: |\n"
        "      {% for word in title.split()[:5] %}{{ word|title }} {% endfor %}\n"
        "      {{ user_name|truncate(50) }} ({{ viewers or 'no' }} viewers)\n",
    ),
]


@pytest.mark.parametrize(("case", "text"), ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_check_accepts(case: str, text: str, tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    assert problems_of(path) == []


def test_a_quoted_chat_id_is_a_number() -> None:
    compiled = compile_rules(ROOT / "rules.example.yaml", env={"DISCORD_WEBHOOK_URL": HOOK})
    telegram = compiled.rules_file.destinations["me"].telegram
    assert telegram is not None and telegram.chat_id == 123456789


def test_the_bots_block_is_kept_with_its_defaults(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("destinations: {me: {console: {}}}\nbots: {telegram: {commands: true}}\n")
    bots = compile_rules(path, env={}).rules_file.bots
    assert bots.telegram.commands and bots.telegram.max_follows == 200
    assert bots.telegram.max_price_alerts == 50
    assert not bots.discord.commands and bots.discord.max_follows == 200


def test_first_start_defaults_to_skip(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("destinations: {me: {console: {}}}\n")
    assert compile_rules(path, env={}).rules_file.defaults.first_start == "skip"
    path.write_text("destinations: {me: {console: {}}}\ndefaults: {first_start: alert}\n")
    assert compile_rules(path, env={}).rules_file.defaults.first_start == "alert"


# ---- webhooks against a fake Discord --------------------------------------------------------


def test_webhooks_on_the_configured_api_origin_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        "destinations:\n"
        "  a: {discord: {webhook_url: 'http://127.0.0.1:8123/api/v10/webhooks/7/tok'}}\n"
        "  b: {discord: {webhook_url: 'https://discord.com/api/webhooks/55/tok'}}\n"
    )
    compile_rules(path, env={}, discord_api_url="http://127.0.0.1:8123/api/v10")
    with pytest.raises(RulesError) as caught:
        compile_rules(path, env={}, discord_api_url="https://discord.com/api/v10")
    assert [p.line for p in caught.value.problems] == [2, 3]


def test_a_webhook_on_another_port_of_the_fake_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        "destinations: {a: {discord: {webhook_url: 'http://127.0.0.1:9999/api/webhooks/7/t'}}}\n"
    )
    with pytest.raises(RulesError, match="not a Discord webhook URL"):
        compile_rules(path, env={}, discord_api_url="http://127.0.0.1:8123/api/v10")


# ---- ${VAR} from an env file --------------------------------------------------------------


RULES_WITH_VARS = "destinations:\n  room: {discord: {webhook_url: '${HOOK}'}}\n"


def test_variables_come_from_the_env_file(tmp_path: Path) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(RULES_WITH_VARS)
    env_file = tmp_path / "env"
    env_file.write_text(f"# the service's EnvironmentFile=\nHOOK={HOOK}\nOTHER='x y'\n")
    compiled = compile_rules(rules, env={}, env_file=env_file)
    discord = compiled.rules_file.destinations["room"].discord
    assert discord is not None and discord.webhook_url == HOOK


def test_the_environment_wins_over_the_env_file(tmp_path: Path) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(RULES_WITH_VARS)
    env_file = tmp_path / "env"
    env_file.write_text("HOOK=https://example.com/not-this-one\n")
    compiled = compile_rules(rules, env={"HOOK": HOOK}, env_file=env_file)
    discord = compiled.rules_file.destinations["room"].discord
    assert discord is not None and discord.webhook_url == HOOK


def test_the_dot_env_of_the_current_directory_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "r.yaml").write_text(RULES_WITH_VARS)
    (tmp_path / ".env").write_text(f"NOTIFIER_LOG_FORMAT=json\nHOOK={HOOK}\n")
    monkeypatch.chdir(tmp_path)
    compile_rules("r.yaml", env={})


def test_a_missing_env_file_is_one_clear_error(tmp_path: Path) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(RULES_WITH_VARS)
    with pytest.raises(RulesError) as caught:
        compile_rules(rules, env={}, env_file=tmp_path / "nope")
    assert [str(p) for p in caught.value.problems] == [
        f"{tmp_path / 'nope'}:1:1: cannot read the env file: No such file or directory"
    ]


def test_check_with_env_file_reads_the_services_variables(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES_WITH_VARS)
    env_file = tmp_path / "env"
    env_file.write_text(f"HOOK={HOOK}\n")
    env = {k: v for k, v in os.environ.items() if k != "HOOK"}
    base = [sys.executable, "-m", "notifier", "check"]
    run = {"capture_output": True, "text": True, "env": env, "cwd": tmp_path, "timeout": 60}
    without = subprocess.run([*base, str(rules)], check=False, **run)  # type: ignore[call-overload]
    assert without.returncode == 1
    assert "environment variable HOOK is not set" in without.stderr
    done = subprocess.run(  # type: ignore[call-overload]
        [*base, "--env-file", str(env_file), str(rules)], check=False, **run
    )
    assert done.returncode == 0, done.stderr
    assert "ok: rules 0 live" in done.stdout
    assert TOKEN not in done.stdout + done.stderr


VAR_TEXTS = ["--5", "\u00b2", "\u0661\u0662", "123", " 7 ", "-0"]  # digits int() also takes


@pytest.mark.parametrize("value", VAR_TEXTS)
def test_a_variable_in_a_text_field_stays_text(value: str) -> None:
    text = (
        "destinations: {d: {discord: {channel_id: '${ID}', username: '${X}'}}}\n"
        "rules:\n  - {name: '${X}', when: live, title_matches: '${X}', users: ['${X}'],"
        " min_viewers: '${N}', cooldown: '${N}', notify: [d]}\n"
        "  - {name: p, when: price, asset: '${X}', above: '${N}', rearm: '${R}', notify: [d]}\n"
    )
    variables = {"X": value, "ID": "123456789012345678", "N": "10", "R": "5"}
    compiled = compile_text(text, "r.yaml", variables=variables, keep_rules=True)
    live, price = compiled.rules_file.rules
    assert isinstance(live, LiveRule) and isinstance(price, PriceRule)
    assert live.name == live.title_matches == price.asset == value
    assert live.users == [value]
    assert live.min_viewers == 10 and live.cooldown == 10.0
    assert price.above == Decimal(10) and price.rearm == Decimal(5)
    assert compiled.engine.summary() == {"live": 1, "price": 1, "scheduled": 0}


@pytest.mark.parametrize("value", ["--5", "\u00b2", "5x", ""])
@pytest.mark.parametrize(
    "field",
    ["min_viewers", "cooldown", "above", "version", "chat_id", "thread_id", "max_follows"],
)
def test_a_variable_that_is_not_a_number_where_one_is_wanted_is_one_problem(
    field: str, value: str, tmp_path: Path
) -> None:
    fields = {
        "version": "version: '${X}'\n",
        "chat_id": "destinations: {t: {telegram: {chat_id: '${X}'}}}\n",
        "thread_id": "destinations: {t: {telegram: {chat_id: 1, thread_id: '${X}'}}}\n",
        "max_follows": "bots: {discord: {max_follows: '${X}'}}\n",
    }
    text = fields.get(field, "") + "destinations: {me: {console: {}}}\nrules:\n"
    if field not in fields:
        kind = "price, asset: BTC" if field == "above" else "live"
        text += f"  - {{name: r, when: {kind}, {field}: '${{X}}', notify: [me]}}\n"
    if field in ("chat_id", "thread_id"):
        text = text.replace("destinations: {me: {console: {}}}\n", "")
    with pytest.raises(RulesError) as caught:
        compile_text(text, "r.yaml", variables={"X": value}, fast=False)
    [problem] = caught.value.problems
    assert str(problem).startswith(f"r.yaml:{position(text, chr(39) + '${X}')}: "), problem
    assert field in problem.message


def test_check_with_a_variable_int_cannot_read_is_one_line_not_a_crash(tmp_path: Path) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(
        "destinations: {me: {console: {}}}\n"
        "rules:\n  - {name: '${X}', when: live, min_viewers: '${X}', notify: [me]}\n"
    )
    env = {**os.environ, "X": "--5"}
    done = subprocess.run(
        [sys.executable, "-m", "notifier", "check", str(rules)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        f"{rules}:3:45: rules[0].min_viewers: Input should be a valid integer, unable to parse "
        "string as an integer",
        f"{rules}: 1 error",
    ]


def test_the_example_rules_check_with_the_example_env_file() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DISCORD_WEBHOOK_URL"}
    done = subprocess.run(
        [
            *(sys.executable, "-m", "notifier", "check"),
            *("--env-file", "examples/parti-notifier.env", "rules.example.yaml"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("rules.example.yaml: ok:")


H = "destinations: {me: {console: {}}}\n"
YAML_FAULTS = [
    (
        "unknown alias",
        H + "rules: [{name: a, when: live, notify: *nope}]\n",
        "2:39: unknown alias *nope",
    ),
    (
        "a number as a destination name",
        "destinations: {1: {console: {}}}\n",
        "1:16: destinations: a key here must be text (quote it)",
    ),
    (
        "a number beyond Python's digits",
        H + "rules: [{name: a, when: live, users: [" + "9" * 5000 + "], notify: [me]}]\n",
        "2:39: cannot read '9999999999999999999999999999999999999...': a number too long",
    ),
    (
        "a Python tag",
        H + "version: !!python/object:os.system {}\n",
        "2:10: unsupported tag 'tag:yaml.org,2002:python/object:os.system'",
    ),
    ("two documents", H + "---\n" + H, "2:1: expected a single document"),
    (
        "a self-referencing anchor",
        "destinations: &d {me: *d}\n",
        "1:23: the anchor &d refers to itself",
    ),
]


@pytest.mark.parametrize(("case", "text", "expected"), YAML_FAULTS, ids=[c[0] for c in YAML_FAULTS])
def test_yaml_faults_are_one_clear_error(
    case: str, text: str, expected: str, tmp_path: Path
) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    assert f"{path}:{expected}" in problems_of(path)


def test_a_merge_key_is_text_where_a_value_is_expected(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(H + "rules: [{name: <<, when: live, notify: [me]}]\n")
    engine = compile_rules(path, env={}).engine
    event = ChannelLive(user_id=1, user_name="anyone", event_id=1)
    assert [m.rule for m in engine.on_live(event, now=0.0).matches] == ["<<"]


# ---- bounded inputs ------------------------------------------------------------------------


def test_many_aliases_below_the_bound_still_load(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    lines = ["destinations: {me: {console: {}}}", "to: &to [me]", "rules:"]
    lines += [f"  - {{name: r{n}, when: live, users: [{n}], notify: *to}}" for n in range(20_000)]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RulesError, match="unknown key 'to'"):
        compile_rules(path, env={})  # `to:` is not a key of the file: said, after all rules
    path.write_text(path.read_text().replace("to: &to [me]", "version: 1").replace("*to", "[me]"))
    assert compile_rules(path, env={}).engine.summary()["live"] == 20_000


def test_a_deeply_nested_document_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("destinations: " + "[" * 100 + "]" * 100 + "\n")
    with pytest.raises(RulesError, match="nested deeper than 64 levels"):
        compile_rules(path, env={})


_MATCH_TITLE = """
from notifier.parti.models import ChannelLive
from notifier.rules.stream import compile_rules
engine = compile_rules(__import__("sys").argv[1], env={}).engine
title = "a" * 50000 + "b"
event = ChannelLive(user_id=1, user_name="x", event_id=1, event_title=title)
print(len(engine.on_live(event, now=0.0).matches))
"""


def test_a_catastrophic_title_pattern_is_matched_in_bounded_time(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            destinations: {me: {console: {}}}
            rules:
              - {name: r, when: live, title_matches: '(a+)+$', notify: [me]}
            """
        )
    )
    done = subprocess.run(
        [sys.executable, "-c", _MATCH_TITLE, str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=10,
        check=True,
    )
    # Only the first 1,000 characters are matched: all a's, so the pattern matches.
    assert done.stdout.strip() == "1"


@pytest.mark.parametrize("pattern", ["[[", "[a--b]", "[[a"])
def test_a_pattern_pythons_re_would_warn_about_is_one_clear_error(pattern: str) -> None:
    # The fallback that words the error must not let Python's FutureWarning out (a user
    # would see it on stderr; under the test settings it is an exception).
    from notifier.rules.regex import PatternError, compile_title_pattern

    with pytest.raises(PatternError, match=r"^invalid regex: "):
        compile_title_pattern(pattern)
