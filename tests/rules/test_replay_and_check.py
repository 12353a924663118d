"""`notifier check` and `notifier replay` as a user runs them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from notifier.parti.simulator import Simulator

ROOT = Path(__file__).resolve().parents[2]
ENV = {
    **os.environ,
    "DISCORD_WEBHOOK_URL": "https://discord.com/api/webhooks/123456789012345678/abc",
    "NOTIFIER_LOG_FORMAT": "json",
    # the example's destinations need both tokens: check refuses what run would
    "NOTIFIER_TELEGRAM_TOKEN": "123456789:example-token-for-check",
    "NOTIFIER_DISCORD_BOT_TOKEN": "example-discord-token-for-check",
}


def notifier(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "notifier", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env or ENV,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def test_check_accepts_the_example_with_a_summary() -> None:
    done = notifier("check", "rules.example.yaml")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "rules.example.yaml: ok: rules 2 live, 3 price, 1 scheduled; destinations 5 "
        "(1 console, 2 discord, 2 telegram)"
    )


def test_check_refuses_a_destination_whose_token_is_missing() -> None:
    env = {k: v for k, v in ENV.items() if k != "NOTIFIER_TELEGRAM_TOKEN"}
    done = notifier("check", "rules.example.yaml", env=env)
    assert done.returncode == 1
    assert "rules.example.yaml: destination 'me' needs NOTIFIER_TELEGRAM_TOKEN" in done.stderr


def test_check_reports_every_error_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\ndestinations: {me: {console: {}}}\nrules:\n"
        "  - {name: a, when: live, notify: [you]}\n"
        "  - {name: b, when: price, asset: BTC, notify: [me]}\n"
    )
    done = notifier("check", str(bad))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"{bad}:4:36: rules[0].notify: unknown destination 'you'",
        f"{bad}:5:5: rules[1]: a price rule needs one of above, below, move",
        f"{bad}: 2 errors",
    ]


def test_check_reads_notifier_rules_by_default(tmp_path: Path) -> None:
    good = tmp_path / "mine.yaml"
    good.write_text("destinations: {me: {console: {}}}\n")
    done = notifier("check", env={**ENV, "NOTIFIER_RULES": str(good)})
    assert done.returncode == 0 and "mine.yaml: ok" in done.stdout


def test_check_schema_prints_the_json_schema() -> None:
    done = notifier("check", "--schema")
    schema = json.loads(done.stdout)
    assert set(schema["properties"]) == {"version", "destinations", "defaults", "bots", "rules"}


async def test_check_online_warns_about_unknown_users_and_categories(
    sim: Simulator, tmp_path: Path
) -> None:
    import asyncio

    rules = tmp_path / "r.yaml"
    rules.write_text(
        "destinations: {me: {console: {}}}\nrules:\n"
        "  - {name: a, when: live, users: [SNEAKO, NoSuchUser, 123456, 999], "
        "categories: [Gaming, Knitting, 77], notify: [me]}\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "notifier",
        "check",
        "--online",
        str(rules),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**ENV, "NOTIFIER_PARTI_API_URL": sim.api_url},
    )
    _out, err = await proc.communicate()
    assert proc.returncode == 0
    warnings = [
        line.split("warning: ")[1] for line in err.decode().splitlines() if "warning:" in line
    ]
    assert warnings == [
        "category 77 is not a Parti category",
        "category 'Knitting' is not a Parti category",
        "user 999 is not known to Parti",
        "user 'NoSuchUser' is not known to Parti",
    ]


def test_replay_prints_which_rule_alerts_which_destination() -> None:
    done = notifier("replay", "examples/events.jsonl", "--rules", "rules.example.yaml")
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()[1:-1]]
    assert [(r[0], r[3], r[4]) for r in rows] == [
        ("2", "friends-live", "me"),
        ("2", "friends-live", "community"),
        ("3", "gaming", "community"),
        ("5", "btc-100k", "me"),
        ("10", "tsla-under-300", "me"),
        ("11", "eth-swing", "crypto-group"),
        ("13", "friends-live", "me"),
        ("13", "friends-live", "community"),
    ]
    assert done.stdout.splitlines()[-1] == (
        "14 frames, 15 events, 1 rejected, 8 alerts (nothing sent)"
    )


def test_replay_explain_says_why_nothing_fired() -> None:
    done = notifier("replay", "examples/events.jsonl", "--rules", "rules.example.yaml", "--explain")
    text = done.stdout
    assert "title does not match" in text
    assert "not re-armed since the last crossing" in text
    assert "cooling down" in text
    # The reason, last, is shown whole (it was cut at 40 characters).
    assert "rejected: not_json: JSONDecodeError in 'this line is not a frame'" in text


def test_the_examples_gaming_rule_takes_gaming_streams_not_music(tmp_path: Path) -> None:
    # Its categories are [Gaming, 16]: 16 is Valorant in Parti's list (10 is Music).
    frames = [
        {"user_id": 1, "user_name": "Pianist", "category_name": "Music"},
        {"user_id": 2, "user_name": "Aimer", "category_name": "Valorant"},
        {"user_id": 3, "user_name": "Gamer", "category_name": "Gaming"},
    ]
    events = tmp_path / "events.jsonl"
    events.write_text(
        "".join(
            json.dumps(
                frame
                | {"livestream_id": 9000 + n, "event_id": 82000 + n, "viewers_count": 40}
                | {"event_title": "Ranked tournament"}
            )
            + "\n"
            for n, frame in enumerate(frames)
        )
    )
    done = notifier("replay", str(events), "--rules", "rules.example.yaml")
    assert done.returncode == 0, done.stderr
    fired = [line.split()[2] for line in done.stdout.splitlines()[1:-1] if "gaming" in line]
    assert fired == ["2", "3"]


def test_replay_with_a_broken_rules_file_fails_with_positions(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("destinations: {me: {console: {}}}\nrules: [{name: a, when: nope}]\n")
    done = notifier("replay", "examples/events.jsonl", "--rules", str(bad))
    assert done.returncode == 1
    assert f"{bad}:2:" in done.stderr


def piped(
    text: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`notifier ARGS` with `text` on its standard input (a pipe, read as /dev/stdin)."""
    return notifier(*args, env=env, stdin=text)


PIPED = "destinations: {me: {console: {}}}\nrules:\n"


def test_check_reads_a_rules_file_through_a_pipe() -> None:
    # One rule a line (the quick path), and a block-style rule (the full path).
    quick = PIPED + "  - {name: a, when: live, users: [1], notify: [me]}\n"
    done = piped(quick, "check", "/dev/stdin")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("/dev/stdin: ok: rules 1 live, 0 price, 0 scheduled;")
    full = PIPED + "  - name: a\n    when: price\n    asset: BTC\n    above: 5\n    notify: [me]\n"
    done = piped(full, "check", "/dev/stdin")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("/dev/stdin: ok: rules 0 live, 1 price, 0 scheduled;")


def test_check_of_a_broken_file_through_a_pipe_names_its_problems_and_tokens() -> None:
    env = {k: v for k, v in ENV.items() if k != "NOTIFIER_TELEGRAM_TOKEN"}
    text = "destinations: {me: {telegram: {chat_id: 1}}}\nrules:\n  - {name: a, notify: [me]}\n"
    done = piped(text, "check", "/dev/stdin", env=env)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "/dev/stdin:3:5: rules[0]: missing required key 'when' (live, price or scheduled)",
        "/dev/stdin: destination 'me' needs NOTIFIER_TELEGRAM_TOKEN",
        "/dev/stdin: 2 errors",
    ]


def test_a_rules_file_through_a_pipe_is_held_to_the_size_bound() -> None:
    from notifier.rules.compile import MAX_BYTES

    padding = ("# " + "x" * 97 + "\n") * (MAX_BYTES // 100 + 1)
    done = piped(PIPED + padding, "check", "/dev/stdin")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"/dev/stdin:1:1: file larger than {MAX_BYTES} bytes",
        "/dev/stdin: 1 error",
    ]


def test_replay_refuses_an_envelope_time_that_is_not_a_finite_number(tmp_path: Path) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(PIPED + "  - {name: a, when: live, notify: [me], cooldown: 1h}\n")
    live = {"livestream_id": 1, "user_id": 2, "user_name": "x", "event_id": 3}
    times = ["1" + "0" * 400, "NaN", "Infinity", "-Infinity", "1e400"]
    events = tmp_path / "e.jsonl"
    events.write_text(
        "".join(
            f'{{"at": {at}, "frame": {json.dumps(live | {"event_id": 10 + n})}}}\n'
            for n, at in enumerate(["1000", *times, "1001"])
        )
    )
    done = notifier("replay", str(events), "--rules", str(rules))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    # The first go-live alerts; the refused lines are not evaluated (a NaN clock would let
    # the last one through its cooldown).
    assert done.stdout.splitlines()[-1] == "7 frames, 2 events, 5 rejected, 1 alerts (nothing sent)"
    explained = notifier("replay", str(events), "--rules", str(rules), "--explain").stdout
    refused = [line for line in explained.splitlines() if "bad_time" in line]
    assert [line.split()[0] for line in refused] == ["2", "3", "4", "5", "6"]


async def test_check_online_reads_users_and_categories_as_the_engine_does(sim: Simulator) -> None:
    from notifier.rules.loader import load_text
    from notifier.rules.online import check_online

    # Quoted digits are ids, names match stripped and case-folded: no false warning.
    rules_file = load_text(
        PIPED + "  - {name: a, when: live, users: ['123456', ' SNEAKO ', ' 999 ', NoSuchUser], "
        "categories: [' gaming ', '10', ' MUSIC', '77'], notify: [me]}\n",
        env={},
    )
    warnings = await check_online(rules_file, sim.api_url)
    assert warnings == [
        "category '77' is not a Parti category",
        "user ' 999 ' is not known to Parti",
        "user 'NoSuchUser' is not known to Parti",
    ]
    # The categories cannot be listed: the users are checked all the same.
    sim.fail_next(400)
    warnings = await check_online(rules_file, sim.api_url)
    assert len(warnings) == 3 and warnings[0].startswith("cannot check categories: ")
    assert warnings[1:] == [
        "user ' 999 ' is not known to Parti",
        "user 'NoSuchUser' is not known to Parti",
    ]


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections: bound here, never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


# Secrets as check could meet them in a wrong place: a registered token (the settings'),
# a webhook URL and a database URL (secret-shaped: redacted without being registered).
CHECK_TOKEN = "7777777:CHECK-SENTINEL-abcdefghijklmnopqrstuvwxyz0123"
CHECK_BOT_TOKEN = "BOT-SENTINEL.check-token_0123456789abcdef"
CHECK_HOOK_TOKEN = "CHECK-SENTINEL-hook_0123456789abcdefghijklmnopqrstuvwxyz"
CHECK_HOOK = f"https://discord.com/api/webhooks/123456789012345678/{CHECK_HOOK_TOKEN}"
CHECK_DB_PASSWORD = "CHECK-SENTINEL-pw-0987"
CHECK_SECRETS = (
    "CHECK-SENTINEL",
    "BOT-SENTINEL",
    "check-token",
    CHECK_HOOK_TOKEN,
    CHECK_DB_PASSWORD,
)


def test_check_never_prints_a_secret_its_problems_echo(tmp_path: Path, closed_port: int) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(
        "destinations:\n  me: {console: {}}\n  '${BOT}': {telegram: {chat_id: '${TG}'}}\n"
        "  d: {discord: {webhook_url: '${HOOK}x/y', username: '${BOT}'}}\n"
        "rules:\n"
        "  - {name: a, when: price, asset: ETH, move: 5%, within: '${HOOK}', notify: [me]}\n"
        "  - {name: b, when: live, cooldown: '${TG}', notify: ['${BOT}', '${HOOK}']}\n"
        "  - {name: '${BOT}', when: live, min_viewers: '${DB}', notify: [me]}\n"
        "  - {name: '${BOT}', when: live, title_matches: '(?<=${TG})', notify: [me]}\n"
        "  - {name: d, when: price, asset: BTC, above: 5, rearm: '${DB}%', notify: [me]}\n"
        "  - {name: e, when: live, template: '{{ ${BOT} }}', notify: [me]}\n"
        f"  - {{name: f, when: live, users: [!!int {CHECK_TOKEN}], notify: [me]}}\n"
    )
    env = {
        **ENV,
        "NOTIFIER_TELEGRAM_TOKEN": CHECK_TOKEN,
        "NOTIFIER_DISCORD_BOT_TOKEN": CHECK_BOT_TOKEN,
        "NOTIFIER_STATE_PATH": str(tmp_path / "nope" / "deeper" / "state.db"),
        "NOTIFIER_PARTI_API_URL": f"http://u:{CHECK_DB_PASSWORD}@127.0.0.1:{closed_port}",
        "TG": CHECK_TOKEN,
        "BOT": CHECK_BOT_TOKEN,
        "HOOK": CHECK_HOOK,
        "DB": f"postgresql://notifier:{CHECK_DB_PASSWORD}@db.internal/notifier",
    }
    done = notifier("check", str(rules), env=env)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 14, lines  # every problem said, each as one line
    # Those that echo a value: within, cooldown, notify twice, the name, rearm, the !!int
    assert sum("[REDACTED]" in line for line in lines) == 7, lines
    for secret in CHECK_SECRETS:
        assert secret not in done.stdout + done.stderr
    # The warnings of --online too (Parti's URL may carry a password).
    good = tmp_path / "good.yaml"
    good.write_text(
        PIPED + "  - {name: a, when: live, users: [x], categories: [y], notify: [me]}\n"
    )
    env["NOTIFIER_STATE_PATH"] = str(tmp_path / "state.db")
    done = notifier("check", "--online", str(good), env=env)
    assert done.returncode == 0, done.stderr
    assert "warning: cannot check" in done.stderr
    for secret in CHECK_SECRETS:
        assert secret not in done.stdout + done.stderr
