"""Memory and scale: peak RSS of the daemon with 100,000 user rules and 10,000 price rules
after 100,000 events, and its start-up time with that rules file.

Run: .venv/bin/python bench/memory.py [--user-rules 100000] [--price-rules 10000]
        [--events 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Daemon, Servers


def rules_file(path: Path, user_rules: int, price_rules: int) -> None:
    lines = ["version: 1", "destinations: {tg: {telegram: {chat_id: 1001}}}", "rules:"]
    for n in range(user_rules):
        user = n if n % 2 else f"user{n}"  # half by id, half by name
        lines.append(f"  - {{name: u{n}, when: live, users: [{user}], notify: [tg]}}")
    for n in range(price_rules):
        side = "above" if n % 2 else "below"
        lines.append(
            f"  - {{name: p{n}, when: price, asset: BTC, {side}: {90_000 + 2 * n}, "
            f"rearm: 0.5%, notify: [tg]}}"
        )
    path.write_text("\n".join(lines) + "\n")


def rss_now_mb(daemon: Daemon) -> float:
    assert daemon.proc is not None
    status = Path(f"/proc/{daemon.proc.pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split("kB")[0]) / 1024


async def handled(daemon: Daemon) -> float:
    return await daemon.metric("notifier_events_total") + await daemon.metric(
        "notifier_frames_rejected_total"
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--user-rules", type=int, default=100_000)
    parser.add_argument("--price-rules", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        "; load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rules = folder / "rules.yaml"
        rules_file(rules, args.user_rules, args.price_rules)
        size_mb = rules.stat().st_size / 1e6
        async with Servers() as servers:
            daemon = Daemon(
                servers,
                rules,
                folder / "state.db",
                "--limits-scale",
                "1000",
                extra_env={"NOTIFIER_HTTP_ADDR": "127.0.0.1:0"},
            )
            await daemon.start()
            started_rss = daemon.peak_rss_mb()
            started_now = rss_now_mb(daemon)
            began = time.monotonic()
            await servers.post("/_bench/mixed", {"count": args.events, "followed": args.user_rules})
            # Every frame is counted as an event or as rejected (user id 0 is not a Parti
            # id); frames sent while the stream reconnects are lost, so: until no progress.
            count, still, done = 0.0, 0, time.monotonic()
            while count < args.events and still < 20:
                await asyncio.sleep(0.5)  # a benchmark polling /metrics
                previous, count = count, await handled(daemon)
                still = still + 1 if count == previous else 0
                if count != previous:
                    done = time.monotonic()
            seconds = done - began
            # then until the writer has put every match in the outbox
            alerts, previous = await daemon.metric("notifier_matches_total"), -1.0
            while alerts != previous:
                await asyncio.sleep(1.0)
                previous, alerts = alerts, await daemon.metric("notifier_matches_total")
            peak = daemon.peak_rss_mb()
            reconnects = await daemon.metric("notifier_reconnects_total")
            await daemon.stop()
    print(
        f"rules file: {args.user_rules:,} user rules + {args.price_rules:,} price rules "
        f"({size_mb:.1f} MB)"
    )
    print(
        f"start-up (process start to subscribed): {daemon.ready_after:.1f} s, "
        f"peak RSS then {started_rss:.0f} MB, RSS then {started_now:.0f} MB"
    )
    print(
        f"{count:,.0f} of {args.events:,} events in {seconds:.1f} s ({count / seconds:,.0f}/s), "
        f"{alerts:,.0f} alerts, {reconnects:.0f} reconnects"
    )
    print(f"peak RSS after the events: {peak:.0f} MB (target <= 120 MB)")
    print("load average: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    asyncio.run(main())
