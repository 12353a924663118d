"""Helpers the end-to-end benchmarks share: the servers process and the daemon process."""

from __future__ import annotations

import asyncio
import compileall
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent


class Servers:
    """bench/servers.py as a child process."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.proc: asyncio.subprocess.Process | None = None
        self.info: dict[str, Any] = {}

    async def __aenter__(self) -> Servers:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(HERE / "servers.py"),
            *self.args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        self.info = json.loads(await self.proc.stdout.readline())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.close()
        await self.proc.wait()

    async def post(self, path: str, body: dict[str, Any], timeout: float = 600) -> Any:
        async with httpx.AsyncClient(trust_env=False, timeout=timeout) as http:
            return (await http.post(self.info["control"] + path, json=body)).json()

    async def results(self, prefix: str) -> dict[str, Any]:
        async with httpx.AsyncClient(trust_env=False, timeout=60) as http:
            answer: dict[str, Any] = (
                await http.get(self.info["control"] + "/_bench/results", params={"prefix": prefix})
            ).json()
            return answer

    async def wait_arrived(self, prefix: str, count: int, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            results = await self.results(prefix)
            if len(results["arrived"]) >= count or time.monotonic() > deadline:
                return results
            await asyncio.sleep(0.5)  # a benchmark polling a report, not a test


def write_bytecode(package: Path) -> None:
    """Compile a checkout's modules as `pip install` does for the installed daemon. This
    machine sets PYTHONDONTWRITEBYTECODE, so a checkout's daemon would otherwise compile
    every module from source at every start (0.1 s of its start-up)."""
    compileall.compile_dir(package, quiet=1)


class Daemon:
    """bench/daemon_main.py (the real App) as a child process, its JSON log collected."""

    def __init__(
        self,
        servers: Servers,
        rules: Path,
        state: Path,
        *args: str,
        extra_env: dict[str, str] | None = None,
        checkout: Path | None = None,
    ) -> None:
        """`checkout`: run that checkout's daemon (its notifier/) instead of this one's."""
        self.main = (checkout.resolve() / "bench" if checkout else HERE) / "daemon_main.py"
        write_bytecode(self.main.parent.parent / "notifier")
        info = servers.info
        self.env = {
            **os.environ,
            "NOTIFIER_PARTI_API_URL": info["api"],
            "NOTIFIER_PARTI_WS_URL": info["ws"],
            "NOTIFIER_TELEGRAM_TOKEN": info["token"],
            "NOTIFIER_TELEGRAM_API_URL": info["telegram"],
            "NOTIFIER_STATE_PATH": str(state),
            "NOTIFIER_HTTP_ADDR": "",
            "NOTIFIER_LOG_FORMAT": "json",
            "NOTIFIER_LIVE_POLL": "1h",
            **(extra_env or {}),
        }
        self.rules = rules
        self.args = args
        self.proc: asyncio.subprocess.Process | None = None
        self.connected = asyncio.Event()
        self.started_at = 0.0
        self.ready_after = 0.0
        self.http_addr: str | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> Daemon:
        self.connected.clear()
        self.started_at = time.monotonic()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(self.main),
            str(self.rules),
            *self.args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env=self.env,
        )
        self._reader = asyncio.create_task(self._read())
        async with asyncio.timeout(300):
            await self.connected.wait()
        self.ready_after = time.monotonic() - self.started_at
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            if b'"stream.connected"' in line or b'"stream.reconnected"' in line:
                self.connected.set()
            elif b'"http.listening"' in line:
                self.http_addr = json.loads(line)["addr"]

    async def metric(self, name: str) -> float:
        """The sum of a Prometheus metric's samples from the daemon's /metrics."""
        assert self.http_addr is not None
        async with httpx.AsyncClient(trust_env=False) as http:
            text = (await http.get(f"http://{self.http_addr}/metrics")).text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name) and not line.startswith("#")
        )

    def peak_rss_mb(self) -> float:
        assert self.proc is not None
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(status.split("VmHWM:")[1].split("kB")[0]) / 1024

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()
        if self._reader is not None:
            await self._reader

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        await self.proc.wait()
        if self._reader is not None:
            await self._reader


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def machine() -> str:
    """The machine line every benchmark prints first (the load changes: it is printed again
    with every run)."""
    return (
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; {load_average()}"
    )


def median_min(values: list[float]) -> str:
    """ "median X (min Y)" over repetitions."""
    return f"median {statistics.median(values):.3f} (min {min(values):.3f})"


@contextmanager
def busy_core(enabled: bool = True) -> Iterator[None]:
    """Keep one core busy with a spinning process (the "other core busy" runs)."""
    if not enabled:
        yield
        return
    import subprocess

    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait()
