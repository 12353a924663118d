"""End-to-end latency: from the simulator writing a frame to the fake Telegram receiving
the alert, for the daemon (outbox fsync on and off) and for a bare relay as the floor,
interleaved (relay, on, off, relay, on, off, ...) so a change in the machine's load hits
all of them alike; the median and the minimum of the repetitions are reported.

Run: .venv/bin/python bench/latency.py [--events 3000] [--rate 200] [--reps 3] [--busy]

The simulator emits live events that all match one catch-all rule (10 users, so the
profiles are cached) at a steady rate. The bare relay is a websockets client that
forwards each frame with one httpx POST: no rules, no outbox, no rate limits. `--busy`
keeps one core busy with a spinning process for the whole run (the loaded machine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import websockets

from bench.common import Daemon, Servers, busy_core, load_average, machine, percentile

RULES = """\
destinations: {tg: {telegram: {chat_id: 1001}}}
rules:
  - {name: all, when: live, notify: [tg], cooldown: 0s}
"""
SLOW_MS = 50.0  # "no alert slower than this" at 200 alerts/s


@dataclass(frozen=True)
class Run:
    p50: float
    p99: float
    worst: float
    slow: int  # alerts slower than SLOW_MS
    arrived: int


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
    servers: Servers,
    folder: Path,
    count: int,
    rate: float,
    fsync: bool,
    rep: int,
    *,
    prefix: str | None = None,
    checkout: Path | None = None,
) -> list[float]:
    """The daemon (of `checkout`, else this one) relaying `count` events; their latencies."""
    rules = folder / "rules.yaml"
    rules.write_text(RULES)
    args = ["--limits-scale", "1000"] + ([] if fsync else ["--no-fsync"])
    prefix = prefix or ("on" if fsync else "off")
    daemon = Daemon(servers, rules, folder / f"state-{prefix}-{rep}.db", *args, checkout=checkout)
    await daemon.start()
    try:
        await servers.post(
            "/_bench/emit", {"count": count, "rate": rate, "prefix": prefix, "start": 0}
        )
        results = await servers.wait_arrived(prefix, count, 120)
    finally:
        await daemon.stop()
    return latencies(results)


def summary(values: list[float]) -> Run:
    return Run(
        percentile(values, 50),
        percentile(values, 99),
        max(values, default=float("nan")),
        sum(1 for v in values if v > SLOW_MS),
        len(values),
    )


def row(name: str, run: Run, count: int) -> str:
    return (
        f"  {name:<18} p50 {run.p50:7.2f} ms   p99 {run.p99:8.2f} ms   max {run.worst:8.2f} ms"
        f"   > {SLOW_MS:g} ms: {run.slow:4d}   ({run.arrived}/{count})"
    )


def ratios(mine: list[Run], relay: list[Run]) -> tuple[list[float], list[float]]:
    """p50 and p99 over the relay's, repetition by repetition."""
    pairs = list(zip(mine, relay, strict=True))
    return [m.p50 / r.p50 for m, r in pairs], [m.p99 / r.p99 for m, r in pairs]


def spread(values: list[float], unit: str = "") -> str:
    return f"median {statistics.median(values):.2f}{unit} (min {min(values):.2f}{unit})"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--busy", action="store_true", help="keep one core busy meanwhile")
    parser.add_argument("--no-fsync-off", action="store_true", help="skip the fsync-off runs")
    args = parser.parse_args()
    print(machine())
    print(
        f"{args.events} matching events at {args.rate:g}/s, {args.reps} interleaved repetitions"
        + (", one core kept busy by a spinning process" if args.busy else "")
    )
    variants = ["relay", "fsync on"] + ([] if args.no_fsync_off else ["fsync off"])
    runs: dict[str, list[Run]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as tmp, busy_core(args.busy):
        folder = Path(tmp)
        for rep in range(args.reps):
            print(f"repetition {rep + 1}: {load_average()}")
            for name in variants:
                async with Servers() as servers:
                    if name == "relay":
                        values = await bare_relay(servers, args.events, args.rate)
                    else:
                        fsync = name == "fsync on"
                        values = await daemon_run(
                            servers, folder, args.events, args.rate, fsync, rep
                        )
                run = summary(values)
                runs[name].append(run)
                print(row(name, run, args.events), flush=True)
        print(f"after the runs: {load_average()}")
    print(f"summary over {args.reps} repetitions (ratios taken within each repetition):")
    relay = runs["relay"]
    print(
        f"  relay: p50 {spread([r.p50 for r in relay], ' ms')}, p99 "
        f"{spread([r.p99 for r in relay], ' ms')}"
    )
    for name in variants[1:]:
        mine = runs[name]
        p50, p99 = ratios(mine, relay)
        print(
            f"  {name}: p50 {spread([m.p50 for m in mine], ' ms')}, p99 "
            f"{spread([m.p99 for m in mine], ' ms')}, max "
            f"{spread([m.worst for m in mine], ' ms')}, alerts > {SLOW_MS:g} ms: "
            f"{[m.slow for m in mine]}"
        )
        print(
            f"  {name} / relay: p50 {spread(p50, 'x')} (target <= 1.5x), "
            f"p99 {spread(p99, 'x')} (target <= 2x)"
        )


if __name__ == "__main__":
    asyncio.run(main())
