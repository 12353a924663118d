"""Sentinel tokens through the daemon's failure paths, over real sockets: no token, and no
12-character piece of one, reaches stdout, stderr, /healthz, /metrics or the outbox.

Also the runner the daemon tests of tokens share (tests/daemon/test_unreachable.py): the
daemon run from a folder of the test's own, so the `.env` it reads there can be rewritten
and a SIGHUP picks it up."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from notifier.parti.decode import LIVE
from notifier.parti.simulator import Simulator
from notifier.store import Row, open_store
from tests.daemon.helpers import Daemon, daemon_env
from tests.fakes.discord import FakeDiscord

# Telegram tokens are `<bot id>:<secret>`; the fake Telegram takes the bot id from it.
TG_TOKEN = "7777777:SENTINEL-SECRET-abcdefghijklmnopqrstuvwxyz012345"
TG_REVOKED = "7777777:SENTINEL-REVOKED-ZYXWVUTSRQPONMLKJIHGFEDCBA987654"
DC_BOT_TOKEN = "SENTINEL.DISCORDBOT.QWERTYUIOPasdfghjklZXCVBNM-0123456789"
DC_BOT_REVOKED = "SENTINEL.DISCORDOLD.MNBVCXZlkjhgfdsaPOIUYTREWQ-9876543210"
WEBHOOK_TOKEN = "SENTINEL-WEBHOOK-" + "k7Qp2Xw9Lm4Zr8Tn" * 3 + "aBcD"  # 68 like Discord's
SECRETS = (TG_TOKEN, TG_REVOKED, DC_BOT_TOKEN, DC_BOT_REVOKED, WEBHOOK_TOKEN)
PIECE = 12  # no slice this long of a secret may show: a token cut short still leaks
WEBHOOK_ID = 123456789012345678
GROUP = -100200300


class Runner(Daemon):
    """helpers.Daemon started in `cwd` with extra arguments, keeping every byte of stdout
    (helpers.Daemon keeps only the JSON lines) and every answer the test read from it."""

    def __init__(
        self, env: dict[str, str], rules: Path, *, cwd: Path, args: Sequence[str] = ()
    ) -> None:
        super().__init__(env, rules)
        self.cwd = cwd
        self.args = list(args)
        self.stdout = bytearray()
        self.seen: list[tuple[str, str]] = []  # (where, text) the daemon answered
        self.base_url = ""

    async def start(self) -> Runner:
        self.lines.clear()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "notifier",
            "run",
            "--rules",
            str(self.rules),
            *self.args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
            cwd=self.cwd,
        )
        self._reader = asyncio.create_task(self._read())
        await self.wait_log("stream.connected")
        if self.env.get("NOTIFIER_HTTP_ADDR"):
            listening = await self.wait_log("http.listening")
            self.base_url = f"http://{listening['addr']}"
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.stdout += line
            with contextlib.suppress(ValueError):
                self.lines.append(json.loads(line))
            async with self._changed:
                self._changed.notify_all()

    async def healthz(self) -> tuple[int, dict[str, Any]]:
        async with httpx.AsyncClient(base_url=self.base_url, trust_env=False) as http:
            answer = await http.get("/healthz")
        self.seen.append(("/healthz", answer.text))
        return answer.status_code, answer.json()

    async def metrics(self) -> str:
        async with httpx.AsyncClient(base_url=self.base_url, trust_env=False) as http:
            answer = await http.get("/metrics")
        self.seen.append(("/metrics", answer.text))
        return answer.text

    async def outbox_cli(self) -> str:
        """`notifier outbox` as an operator runs it, beside the running daemon."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "notifier",
            "outbox",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
            cwd=self.cwd,
        )
        async with asyncio.timeout(20):
            out, err = await proc.communicate()
        self.seen += [("outbox stdout", out.decode()), ("outbox stderr", err.decode())]
        assert proc.returncode == 0, err.decode()
        return out.decode()

    def rows(self) -> list[Row]:
        """The outbox as stored (read after the daemon stopped)."""
        rows = stored_rows(self.env["NOTIFIER_STATE_PATH"])
        self.seen += [(f"last_error of {r.key}", r.last_error or "") for r in rows]
        return rows

    def outputs(self) -> list[tuple[str, str]]:
        return [
            ("stdout", self.stdout.decode(errors="replace")),
            ("stderr", self.stderr.decode(errors="replace")),
            *self.seen,
        ]


def stored_rows(path: str) -> list[Row]:
    """Every outbox row of a state file, for sync callers: the store is async, so it is
    read on a thread with its own event loop (the test's loop may be running)."""

    async def read() -> list[Row]:
        store = await open_store(path, instance="test-reader", migrate=False)
        try:
            return await store.rows()
        finally:
            await store.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, read()).result()


@contextlib.asynccontextmanager
async def running(
    env: dict[str, str], rules: Path, *, cwd: Path, args: Sequence[str] = ()
) -> AsyncIterator[Runner]:
    daemon = Runner(env, rules, cwd=cwd, args=args)
    try:
        await daemon.start()
        yield daemon
    finally:
        await daemon.stop()


def env_for(tmp_path: Path, sim: Simulator, **extra: str) -> dict[str, str]:
    """The daemon's environment: the simulator, the state in tmp_path, /healthz on a free
    port; no chat token unless given (the tests put them in the `.env` file instead, since
    the environment outranks that file and a reload could not change them)."""
    env = daemon_env(tmp_path, sim, NOTIFIER_HTTP_ADDR="127.0.0.1:0")
    for key in ("NOTIFIER_TELEGRAM_TOKEN", "NOTIFIER_DISCORD_BOT_TOKEN"):
        env.pop(key, None)
    return env | extra


def write_env_file(folder: Path, **settings: str) -> Path:
    path = folder / ".env"
    path.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
    return path


def write_rules(path: Path, destinations: str, notify: Iterable[str]) -> Path:
    """One rule (SNEAKO and Jack Doherty going live) sending to every destination given."""
    path.write_text(
        "version: 1\n"
        f"destinations:\n{destinations}"
        "rules:\n"
        "  - name: friends-live\n"
        "    when: live\n"
        '    users: [SNEAKO, "Jack Doherty"]\n'
        f"    notify: [{', '.join(notify)}]\n"
    )
    return path


def webhook_url(token: str = WEBHOOK_TOKEN, webhook_id: int = WEBHOOK_ID) -> str:
    return f"https://discord.com/api/webhooks/{webhook_id}/{token}"


def pieces(secret: str) -> set[str]:
    """Every PIECE-long slice of the secret part (a Telegram token's part after the colon)."""
    bot_id, colon, rest = secret.partition(":")
    part = rest if colon and bot_id.isdigit() else secret
    return {part[i : i + PIECE] for i in range(len(part) - PIECE + 1)}


def leaks(outputs: Iterable[tuple[str, str]], secrets: Iterable[str] = SECRETS) -> list[str]:
    found = []
    for where, text in outputs:
        for secret in secrets:
            shown = [piece for piece in pieces(secret) if piece in text]
            if shown:
                line = next(x for x in text.splitlines() if shown[0] in x)
                found.append(f"{where}: {line[:300]}")
    return found


def assert_no_leak(daemon: Runner, secrets: Iterable[str] = SECRETS) -> None:
    """Call after the daemon stopped (its stderr is read at exit)."""
    assert daemon.proc is not None and daemon.proc.returncode is not None, "stop it first"
    shown = leaks(daemon.outputs(), secrets)
    assert not shown, "a secret reached an output:\n" + "\n".join(shown)
    assert_no_traceback(daemon)


def assert_no_traceback(daemon: Runner) -> None:
    for where, text in daemon.outputs():
        assert "Traceback" not in text, f"a traceback in {where}:\n{text[-2000:]}"
    crashed = [x for x in daemon.lines if "exception" in x or x.get("level") == "critical"]
    assert not crashed, crashed


# ---- the tests ------------------------------------------------------------------------


def test_the_leak_check_sees_a_token_cut_short() -> None:
    cut = "error: " + TG_TOKEN[:20] + "..."
    assert leaks([("here", cut)]) == [f"here: {cut}"]
    assert leaks([("here", "error: the bot token was rejected")]) == []


# Rules files an operator gets wrong on a line holding a new webhook token (one this
# process never saw, so only the shape of the text can tell it is a secret), or with the
# bot token pasted where the chat id goes.
NEW_WEBHOOK = "SENTINEL-NEWHOOK-" + "Vb3Nm5Qw7Er9Ty1U" * 3 + "zXcV"
SPACED_WEBHOOK = NEW_WEBHOOK[:30] + " " + NEW_WEBHOOK[30:]
PASTED_BOT_TOKEN = "8888888:SENTINEL-PASTED-AbCdEfGhIjKlMnOpQrStUvWxYz0123"
BROKEN_RULES = {
    "a webhook on another host": (
        "  room: {discord: {webhook_url: "
        f'"{webhook_url(NEW_WEBHOOK).replace("discord.com", "discord.example.com")}"}}}}\n'
    ),
    "a colon missing after webhook_url": (
        f"  room: {{discord: {{webhook_url {webhook_url(NEW_WEBHOOK)}}}}}\n"
    ),
    "a colon missing in block style": (
        f"  room:\n    discord:\n      webhook_url {webhook_url(NEW_WEBHOOK)}\n"
    ),
    "a webhook URL that is no text": (
        f"  room: {{discord: {{webhook_url: !!int {webhook_url(NEW_WEBHOOK)}}}}}\n"
    ),
    "a webhook URL with a space in the token": (
        f'  room: {{discord: {{webhook_url: "{webhook_url(SPACED_WEBHOOK)}"}}}}\n'
    ),
    "an unclosed quote": f'  room: {{discord: {{webhook_url: "{webhook_url(NEW_WEBHOOK)}}}}}\n',
    "the bot token as the chat id": f"  tg: {{telegram: {{chat_id: {PASTED_BOT_TOKEN}}}}}\n",
    "the bot token as a quoted chat id": (
        f'  tg: {{telegram: {{chat_id: "{PASTED_BOT_TOKEN}"}}}}\n'
    ),
}


async def test_a_reload_of_broken_rules_never_shows_a_token_in_its_errors(
    tmp_path: Path, sim: Simulator, fake_discord: FakeDiscord
) -> None:
    fake_discord.add_webhook(WEBHOOK_ID, WEBHOOK_TOKEN)
    rules = write_rules(
        tmp_path / "rules.yaml",
        f'  room: {{discord: {{webhook_url: "{webhook_url()}"}}}}\n',
        ["room"],
    )
    env = env_for(tmp_path, sim, NOTIFIER_DISCORD_API_URL=fake_discord.api_url)
    async with running(env, rules, cwd=tmp_path) as daemon:
        for count, (case, destinations) in enumerate(BROKEN_RULES.items(), start=1):
            notify = ["room", "tg"] if "tg:" in destinations else ["room"]
            write_rules(rules, destinations, notify)
            daemon.send(signal.SIGHUP)
            failed = await daemon.wait_log("rules.reload_failed", count)
            assert failed.get("errors") or failed.get("error"), f"{case}: no reason given"
        # The rules kept are the old ones, and they still deliver.
        await sim.wait_subscribed(LIVE)
        await sim.go_live(463000, event_title="still here")
        await daemon.wait_log("alert.sent", dest="room")
    assert len(daemon.logged("rules.error")) >= len(BROKEN_RULES)
    assert_no_leak(daemon, (*SECRETS, NEW_WEBHOOK, PASTED_BOT_TOKEN))
