"""Chaos: 2,000 matching events while the WebSocket drops every few seconds, the fake
Telegram fails 20% of the sends (429 with retry_after, or 502), and the daemon is killed
with SIGKILL at 20 random moments and restarted. Counts, per alert key, what was lost
and what was delivered twice. Exits 1 when an alert is lost.

Run: .venv/bin/python bench/chaos.py [--events 2000] [--kills 20] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Daemon, Servers

RULES = """\
destinations: {tg: {telegram: {chat_id: 1001}}}
rules:
  - {name: all, when: live, notify: [tg], cooldown: 0s}
"""


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=40.0)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--drop-every", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    emit_seconds = args.events / args.rate
    kill_times = sorted(rng.uniform(1.0, emit_seconds + 5.0) for _ in range(args.kills))
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        f"chaos: {args.events} events at {args.rate:g}/s, WebSocket dropped every "
        f"{args.drop_every:g} s, 20% of sends fail (429 or 502), {args.kills} SIGKILLs"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rules = folder / "rules.yaml"
        rules.write_text(RULES)
        async with Servers("--fail-ratio", "0.2") as servers:
            daemon = Daemon(
                servers,
                rules,
                folder / "state.db",
                "--limits-scale",
                "100",
                "--reconnect-base",
                "0.2",
            )
            await daemon.start()
            started = time.monotonic()
            emitter = asyncio.create_task(
                servers.post(
                    "/_bench/emit",
                    {
                        "count": args.events,
                        "rate": args.rate,
                        "prefix": "chaos",
                        "distinct_users": True,
                    },
                )
            )

            async def dropper() -> None:
                while True:
                    await asyncio.sleep(args.drop_every)
                    await servers.post("/_bench/drop", {})

            drops = asyncio.create_task(dropper())
            kills = 0
            for at in kill_times:
                delay = started + at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await daemon.kill()
                kills += 1
                await daemon.start()
            await emitter
            emitted_in = time.monotonic() - started
            drops.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drops
            results = await servers.wait_arrived("chaos", args.events, timeout=900)
            settled_in = time.monotonic() - started
            await daemon.stop()
    expected = {f"chaos-{n}" for n in range(args.events)}
    arrived = results["arrived"]
    lost = sorted(expected - set(arrived), key=lambda k: int(k.split("-")[1]))
    duplicated = {k: len(v) - 1 for k, v in arrived.items() if len(v) > 1}
    print(
        f"emitted in {emitted_in:.1f} s, all settled after {settled_in:.1f} s; "
        f"{kills} kills; fake answered {results['requests']} requests "
        f"({results['rate_limited']} with 429)"
    )
    print(
        f"alerts expected {len(expected)}, delivered {len(set(arrived) & expected)}, "
        f"lost {len(lost)} (target 0), duplicated {sum(duplicated.values())} "
        f"(keys: {len(duplicated)}; bound: the sends in flight at the {kills} kills)"
    )
    if lost:
        print(f"LOST: {', '.join(lost[:20])}{' ...' if len(lost) > 20 else ''}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
