"""Fan-out at scale: one go-live to N chats that follow the streamer (chat subscriptions),
through the daemon, against a fake Telegram that enforces the paid-broadcast rate (1,000
messages a second per bot) and 1 a second per private chat.

Reports the time from the go-live to the last message against the floor (N / 1,000 s),
the 429s, and the daemon's memory while it sends (peak, and sampled every second). Flat
memory: what the go-live adds at once (the subscriptions' cooldowns and /why decisions,
the matches' transient objects) stays level while the 20,000 messages go out; the
backlog waits in the outbox on disk.

Run: .venv/bin/python bench/subscriptions_fanout.py [--chats 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from notifier.parti.decode import LIVE
from notifier.parti.simulator import Simulator
from notifier.store import open_store
from tests.fakes.telegram import FakeTelegram

SNEAKO = 463000
PAID_RATE = 1000.0


async def subscribe(state: Path, chats: int) -> None:
    store = await open_store(str(state), instance="bench", durable=False)
    try:
        now = time.time()
        for n in range(chats):
            await store.add_subscription(
                "telegram",
                str(10_000_000 + n),
                kind="live",
                target=str(SNEAKO),
                params={},
                created_by="bench",
                now=now,
            )
    finally:
        await store.close()


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split(f"{field}:")[1].split("kB")[0]) / 1024


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chats", type=int, default=20_000)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load average {os.getloadavg()[0]:.2f}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        state = folder / "state.db"
        started = time.monotonic()
        await subscribe(state, args.chats)
        print(f"{args.chats} subscriptions stored in {time.monotonic() - started:.1f} s")
        rules = folder / "rules.yaml"
        rules.write_text("destinations: {t: {console: {}}}\n")
        telegram = await FakeTelegram(limits_scale=1.0).start()
        async with Simulator() as sim:
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")},
                "NOTIFIER_PARTI_API_URL": sim.api_url,
                "NOTIFIER_PARTI_WS_URL": sim.ws_url,
                "NOTIFIER_TELEGRAM_TOKEN": telegram.token,
                "NOTIFIER_TELEGRAM_API_URL": telegram.api_url,
                "NOTIFIER_TELEGRAM_PAID_BROADCAST": "true",
                "NOTIFIER_STATE_PATH": str(state),
                "NOTIFIER_HTTP_ADDR": "",
                "NOTIFIER_LOG_FORMAT": "json",
                "NOTIFIER_LIVE_POLL": "1h",
            }
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "notifier",
                "run",
                "--rules",
                str(rules),
                env=env,
                cwd=folder,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            try:
                await sim.wait_subscribed(LIVE, timeout=120)
                rss_before = rss_mb(proc.pid)
                go_live = time.monotonic()
                await sim.go_live(SNEAKO, event_title="Fan-out")
                samples: list[float] = []
                sent = 0
                async with asyncio.timeout(max(120.0, 10 * args.chats / PAID_RATE)):
                    while sent < args.chats:
                        await asyncio.sleep(1.0)  # a benchmark sampling, not a test
                        sent = sum(
                            1
                            for r in telegram.sent()
                            if r["method"] in ("sendMessage", "sendPhoto")
                        )
                        samples.append(rss_mb(proc.pid))
                # When the last message arrived (the fake stamps each request on arrival).
                last = max(
                    r["at"]
                    for r in telegram.requests
                    if r["method"] in ("sendMessage", "sendPhoto")
                )
                elapsed = last - go_live
                peak = rss_mb(proc.pid, "VmHWM")
            finally:
                proc.terminate()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), 30)
        await telegram.stop()
    floor = args.chats / PAID_RATE
    print(
        f"| one go-live to {args.chats:,} chats (paid broadcast, 1,000/s) | "
        f"{elapsed:.1f} s vs {floor:.1f} s floor ({elapsed / floor:.2f}x) | "
        f"{telegram.rate_limited} x 429 | RSS {rss_before:.0f} MB before, "
        f"{samples[0]:.0f} MB a second after the go-live, {min(samples):.0f}-"
        f"{max(samples):.0f} MB while sending, {samples[-1]:.0f} MB at the last message, "
        f"peak {peak:.0f} MB | "
        f"load {os.getloadavg()[0]:.2f} |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
