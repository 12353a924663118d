"""Latency side by side: this checkout's daemon against other checkouts' (a `git
worktree` of an earlier commit), interleaved with the bare relay in every repetition
(relay, A, B, relay, A, B, ...), so that the machine's drift between runs hits them
alike. Each daemon runs its own checkout's code under this virtual environment.

Run: .venv/bin/python bench/latency_ab.py --other NAME=PATH [--other ...]
         [--events 1500] [--reps 6] [--rate 200]
e.g. git worktree add /tmp/before HEAD~3 &&
     .venv/bin/python bench/latency_ab.py --other before=/tmp/before
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Servers, load_average, machine
from bench.latency import Run, bare_relay, daemon_run, ratios, spread, summary


def parse_other(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not (Path(path) / "notifier").is_dir():
        raise argparse.ArgumentTypeError(f"expected NAME=PATH of a checkout, got {text!r}")
    return name, Path(path)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--other", type=parse_other, action="append", required=True)
    parser.add_argument("--events", type=int, default=1500)
    parser.add_argument("--reps", type=int, default=6)
    parser.add_argument("--rate", type=float, default=200.0)
    args = parser.parse_args()
    daemons: dict[str, Path | None] = {"this": None, **dict(args.other)}
    print(machine())
    print(
        f"{args.events} matching events at {args.rate:g}/s, fsync on, {args.reps} interleaved "
        f"repetitions of: relay, {', '.join(daemons)}"
    )
    runs: dict[str, list[Run]] = {name: [] for name in ["relay", *daemons]}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            print(f"repetition {rep + 1}: {load_average()}", flush=True)
            for name in runs:
                async with Servers() as servers:
                    if name == "relay":
                        values = await bare_relay(servers, args.events, args.rate)
                    else:
                        values = await daemon_run(
                            servers,
                            Path(tmp),
                            args.events,
                            args.rate,
                            True,
                            rep,
                            prefix=name,
                            checkout=daemons[name],
                        )
                run = summary(values)
                runs[name].append(run)
                print(f"  {name:<10} p50 {run.p50:6.2f} ms   p99 {run.p99:6.2f} ms", flush=True)
    relay = runs["relay"]
    print(f"summary over {args.reps} repetitions (ratios taken within each repetition):")
    for name in daemons:
        p50, p99 = ratios(runs[name], relay)
        print(
            f"  {name:<10} p50 {statistics.median(m.p50 for m in runs[name]):.2f} ms, "
            f"{spread(p50, 'x')}; p99 {statistics.median(m.p99 for m in runs[name]):.2f} ms, "
            f"{spread(p99, 'x')}"
        )


if __name__ == "__main__":
    asyncio.run(main())
