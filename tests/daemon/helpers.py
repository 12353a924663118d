"""`notifier run` as a subprocess, with its JSON log lines as the events a test awaits; and
the rules and settings of an in-process `App`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from notifier.parti.simulator import Simulator
from notifier.settings import Settings
from tests.fakes.discord import BOT_TOKEN, FakeDiscord
from tests.fakes.telegram import FakeTelegram

ROOT = Path(__file__).resolve().parents[2]


class Daemon:
    def __init__(self, env: dict[str, str], rules: Path) -> None:
        self.env = env
        self.rules = rules
        self.lines: list[dict[str, Any]] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._changed = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None
        self.stderr = b""

    async def start(self) -> Daemon:
        self.lines.clear()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "notifier",
            "run",
            "--rules",
            str(self.rules),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
            cwd=ROOT,
        )
        self._reader = asyncio.create_task(self._read())
        await self.wait_log("stream.connected")
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            with contextlib.suppress(ValueError):
                self.lines.append(json.loads(line))
            async with self._changed:
                self._changed.notify_all()

    def logged(self, name: str, **fields: Any) -> list[dict[str, Any]]:
        return [
            x
            for x in self.lines
            if x.get("event") == name and all(x.get(k) == v for k, v in fields.items())
        ]

    async def wait_log(
        self, name: str, count: int = 1, timeout: float = 30.0, **fields: Any
    ) -> dict[str, Any]:
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: len(self.logged(name, **fields)) >= count)
        except TimeoutError:
            tail = "\n".join(json.dumps(x) for x in self.lines[-15:])
            message = f"no {count} x {name} {fields} in the log; last lines:\n{tail}"
            raise AssertionError(message) from None
        return self.logged(name, **fields)[count - 1]

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(predicate)

    def send(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        async with asyncio.timeout(timeout):
            code = await self.proc.wait()
        if self._reader is not None:
            await self._reader
        assert self.proc.stderr is not None
        self.stderr = await self.proc.stderr.read()
        return code

    async def kill(self) -> None:
        self.send(signal.SIGKILL)
        await self.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.send(signal.SIGTERM)
            try:
                await self.wait()
            except TimeoutError:
                await self.kill()


def daemon_env(
    tmp_path: Path,
    sim: Simulator,
    telegram: FakeTelegram | None = None,
    discord: FakeDiscord | None = None,
    **extra: str,
) -> dict[str, str]:
    env = {
        **os.environ,
        "NOTIFIER_PARTI_API_URL": sim.api_url,
        "NOTIFIER_PARTI_WS_URL": sim.ws_url,
        "NOTIFIER_STATE_PATH": str(tmp_path / "state.db"),
        "NOTIFIER_HTTP_ADDR": "",
        "NOTIFIER_LOG_FORMAT": "json",
        "NOTIFIER_LIVE_POLL": "1s",
    }
    if telegram is not None:
        env |= {
            "NOTIFIER_TELEGRAM_TOKEN": telegram.token,
            "NOTIFIER_TELEGRAM_API_URL": telegram.api_url,
        }
    if discord is not None:
        env |= {
            "NOTIFIER_DISCORD_API_URL": discord.api_url,
            "NOTIFIER_DISCORD_BOT_TOKEN": BOT_TOKEN,
        }
    return env | extra


def inprocess_app_files(tmp_path: Path, sim: Simulator, **fields: Any) -> tuple[Path, Settings]:
    """A rules file that alerts the console when SNEAKO goes live, and the settings of an
    in-process App against `sim` with its state in `tmp_path` (`fields` add or override)."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "destinations: {t: {console: {}}}\n"
        "rules: [{name: a, when: live, users: [SNEAKO], notify: [t]}]\n"
    )
    settings = Settings(
        _env_file=None,
        parti_api_url=sim.api_url,  # type: ignore[call-arg]
        parti_ws_url=sim.ws_url,
        state_path=str(tmp_path / "s.db"),
        **fields,
    )
    return rules, settings
