"""End-to-end latency: from the simulator writing a frame to the fake Telegram receiving
the alert, for the daemon (outbox fsync on and off) and for a bare relay as the floor.

Run: .venv/bin/python bench/latency.py [--events 10000] [--rate 200]

The simulator emits live events that all match one catch-all rule (10 users, so the
profiles are cached) at a steady rate. The bare relay is a websockets client that
forwards each frame with one httpx POST: no rules, no outbox, no rate limits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import websockets

from bench.common import Daemon, Servers, percentile

RULES = """\
destinations: {tg: {telegram: {chat_id: 1001}}}
rules:
  - {name: all, when: live, notify: [tg], cooldown: 0s}
"""


async def bare_relay(servers: Servers, count: int, rate: float) -> list[float]:
    info = servers.info
    url = f"{info['telegram']}/bot{info['token']}/sendMessage"
    async with (
        websockets.connect(info["ws"], proxy=None) as ws,
        httpx.AsyncClient(trust_env=False) as http,
    ):
        await ws.send('{"subscribe_options":{"NewChannelLiveNotify":{}}}')
        await asyncio.sleep(0.2)  # let the subscription land before the first frame

        async def forward() -> None:
            for _ in range(count):
                frame = json.loads(await ws.recv())
                await http.post(url, data={"chat_id": "1001", "text": frame["event_title"]})

        relay = asyncio.create_task(forward())
        await servers.post("/_bench/emit", {"count": count, "rate": rate, "prefix": "relay"})
        await relay
    return latencies(await servers.wait_arrived("relay", count, 60))


def latencies(results: dict[str, object]) -> list[float]:
    sent: dict[str, float] = results["sent"]  # type: ignore[assignment]
    arrived: dict[str, list[float]] = results["arrived"]  # type: ignore[assignment]
    return [(min(arrived[k]) - t) * 1000 for k, t in sent.items() if k in arrived]


async def daemon_run(
    servers: Servers, folder: Path, count: int, rate: float, fsync: bool
) -> tuple[list[float], int]:
    rules = folder / "rules.yaml"
    rules.write_text(RULES)
    args = ["--limits-scale", "1000"] + ([] if fsync else ["--no-fsync"])
    prefix = "on" if fsync else "off"
    daemon = Daemon(servers, rules, folder / f"state-{prefix}.db", *args)
    await daemon.start()
    try:
        await servers.post(
            "/_bench/emit", {"count": count, "rate": rate, "prefix": prefix, "start": 0}
        )
        results = await servers.wait_arrived(prefix, count, 120)
    finally:
        await daemon.stop()
    return latencies(results), len(results["arrived"])


def row(name: str, values: list[float], count: int) -> str:
    return (
        f"  {name:<34} p50 {percentile(values, 50):7.2f} ms   p99 "
        f"{percentile(values, 99):7.2f} ms   max {max(values):8.2f} ms   "
        f"({len(values)}/{count})"
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=200.0)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; {args.events} events at {args.rate:g}/s"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        async with Servers() as servers:
            relay = await bare_relay(servers, args.events, args.rate)
        async with Servers() as servers:
            on, _ = await daemon_run(servers, folder, args.events, args.rate, fsync=True)
        async with Servers() as servers:
            off, _ = await daemon_run(servers, folder, args.events, args.rate, fsync=False)
    print(row("bare relay (floor)", relay, args.events))
    print(row("parti-notifier, outbox fsync on", on, args.events))
    print(row("parti-notifier, outbox fsync off", off, args.events))
    for name, values in (("fsync on", on), ("fsync off", off)):
        p50 = percentile(values, 50) / percentile(relay, 50)
        p99 = percentile(values, 99) / percentile(relay, 99)
        print(f"  ratio to the relay, {name}: p50 {p50:.2f}x, p99 {p99:.2f}x (target <= 2)")


if __name__ == "__main__":
    asyncio.run(main())
