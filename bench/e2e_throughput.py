"""End-to-end throughput of the whole daemon process: live frames in over the WebSocket,
decoded, through the engine (ingest, events/s) and on to the fake Telegram (alerts, alerts/s).

Run: .venv/bin/python bench/e2e_throughput.py [--events 20000] [--alerts 3000] [--reps 3]
        [--rate 1e9] [--limits-scale 1000] [--busy]

ingest: the simulator emits `--events` live frames that no rule matches (one `users:` rule
for a user that never goes live); the figure is N / (time from the emit request to the
daemon's own notifier_events_total reaching N). /metrics is polled every 0.2 s and the
moment N was reached is interpolated between the last two polls. alerts: `--alerts`
frames that all match the catch-all rule of bench/latency.py, fsync on, client limits
scaled by `--limits-scale`; the figure is M / (first frame written to M-th alert received
by the fake Telegram), both read on the servers' clock. `/_bench/emit` has no unpaced mode:
the default rate of 1e9/s means it never sleeps between frames (only the socket paces it).
Each run prints the share of a core the daemon ran, the share it waited for a core
(runnable, all threads: the machine is busy) and the share the servers process ran (near
100%: the simulator limited the figure); the last line divides by the daemon's own CPU
seconds, which says what a core of its own would allow.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Daemon, Servers, busy_core, load_average, machine

CATCH_ALL = """\
destinations: {tg: {telegram: {chat_id: 1001}}}
rules:
  - {name: all, when: live, notify: [tg], cooldown: 0s}
"""
# User 1 never goes live (the simulator's bench users are 800,000 and up): nothing matches.
NO_MATCH = """\
destinations: {tg: {telegram: {chat_id: 1001}}}
rules:
  - {name: nobody, when: live, users: [1], notify: [tg]}
"""
POLL = 0.2  # seconds between reads of /metrics: a benchmark polling a report
STALL = 30.0  # seconds without progress before a run is given up (frames lost?)
PRIVATE_CHAT_LIMIT = 1.0  # Telegram's per-chat limit a second, scaled by --limits-scale


@dataclass(frozen=True)
class Run:
    count: float  # events counted (ingest) or alerts arrived (alerts)
    seconds: float
    emit_seconds: float  # how long the simulator took to write the frames
    usage: Usage
    note: str

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else float("nan")

    @property
    def per_cpu_second(self) -> float:
        """Per second of the daemon's own CPU: what a core of its own would allow, less
        what it spends waiting (fsync, the network)."""
        cpu = self.usage.daemon_cpu
        return self.count / cpu if cpu > 0 else float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def waited_seconds(pid: int) -> float:
    """Time the process's threads spent runnable but waiting for a core (a busy machine)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            total += int((task / "schedstat").read_text().split()[1])
    return total / 1e9


@dataclass(frozen=True)
class Usage:
    daemon_cpu: float  # CPU seconds, all threads
    daemon_waited: float  # seconds runnable but not running, all threads
    servers_cpu: float


class CpuMeter:
    """What the daemon and the servers use from now on (both sit idle once a run is done,
    so what they used by the last poll divided by the run's seconds is their share)."""

    def __init__(self, servers: Servers, daemon: Daemon) -> None:
        assert servers.proc is not None and daemon.proc is not None
        self.daemon, self.servers = daemon.proc.pid, servers.proc.pid
        self.start = self.now()

    def now(self) -> Usage:
        return Usage(
            cpu_seconds(self.daemon), waited_seconds(self.daemon), cpu_seconds(self.servers)
        )

    def used(self) -> Usage:
        now = self.now()
        return Usage(
            now.daemon_cpu - self.start.daemon_cpu,
            now.daemon_waited - self.start.daemon_waited,
            now.servers_cpu - self.start.servers_cpu,
        )


async def handled(daemon: Daemon) -> float:
    return await daemon.metric("notifier_events_total") + await daemon.metric(
        "notifier_frames_rejected_total"
    )


async def ingest_run(
    servers: Servers, folder: Path, count: int, rate: float, rep: int, scale: float
) -> Run:
    rules = folder / "no-match.yaml"
    rules.write_text(NO_MATCH)
    daemon = Daemon(
        servers,
        rules,
        folder / f"state-ingest-{rep}.db",
        "--limits-scale",
        f"{scale:g}",
        extra_env={"NOTIFIER_HTTP_ADDR": "127.0.0.1:0"},
    )
    await daemon.start()
    try:
        # the daemon listens before it connects: its log says so before "stream.connected"
        assert daemon.http_addr is not None
        meter = CpuMeter(servers, daemon)
        began = time.monotonic()
        emit = asyncio.create_task(
            servers.post("/_bench/emit", {"count": count, "rate": rate, "prefix": "in"})
        )
        previous_at, previous = began, 0.0
        progress_at = began
        while True:
            await asyncio.sleep(POLL)
            seen = await handled(daemon)
            now = time.monotonic()
            if seen >= count:
                # the moment the count crossed N, assuming a steady pace between two polls
                done = previous_at + (count - previous) / (seen - previous) * (now - previous_at)
                break
            if seen > previous:
                progress_at = now
            elif now - progress_at > STALL:
                done = progress_at
                break
            previous_at, previous = now, seen
        cpu = meter.used()
        emitted = await emit
        reconnects = await daemon.metric("notifier_reconnects_total")
        rejected = await daemon.metric("notifier_frames_rejected_total")
        seen = await handled(daemon)
    finally:
        await daemon.stop()
    note = f"{reconnects:.0f} reconnects, {rejected:.0f} rejected"
    if seen < count:
        note += f", STALLED at {seen:,.0f}/{count:,}"
    return Run(min(seen, count), done - began, emitted["seconds"], cpu, note)


async def alerts_run(
    servers: Servers, folder: Path, count: int, rate: float, rep: int, scale: float
) -> Run:
    rules = folder / "catch-all.yaml"
    rules.write_text(CATCH_ALL)
    daemon = Daemon(
        servers, rules, folder / f"state-alerts-{rep}.db", "--limits-scale", f"{scale:g}"
    )
    await daemon.start()
    try:
        meter = CpuMeter(servers, daemon)
        emitted = await servers.post(
            "/_bench/emit", {"count": count, "rate": rate, "prefix": "al", "start": 0}
        )
        results = await servers.wait_arrived("al", count, max(120.0, count / 20))
        cpu = meter.used()
    finally:
        await daemon.stop()
    sent: dict[str, float] = results["sent"]
    arrived: dict[str, list[float]] = results["arrived"]
    firsts = [min(times) for title, times in arrived.items() if title in sent]
    seconds = max(firsts) - min(sent.values()) if firsts else float("nan")
    note = f"{results['rate_limited']} x 429"
    if len(firsts) < count:
        note += f", ONLY {len(firsts):,}/{count:,} arrived"
    return Run(len(firsts), seconds, emitted["seconds"], cpu, note)


def row(name: str, run: Run, unit: str) -> str:
    return (
        f"  {name:<7} {run.count:8,.0f} in {run.seconds:6.2f} s = {run.per_second:9,.0f} {unit}/s"
        f"   (simulator wrote them in {run.emit_seconds:.2f} s; of a core: daemon ran "
        f"{run.usage.daemon_cpu / run.seconds:.0%}, waited for one "
        f"{run.usage.daemon_waited / run.seconds:.0%}, servers ran "
        f"{run.usage.servers_cpu / run.seconds:.0%}; {run.note})"
    )


def spread(runs: list[Run], unit: str, *, cpu: bool = False) -> str:
    values = [r.per_cpu_second if cpu else r.per_second for r in runs]
    return f"median {statistics.median(values):,.0f} {unit}/s (min {min(values):,.0f})"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000, help="frames for ingest")
    parser.add_argument("--alerts", type=int, default=3_000, help="matching frames for alerts")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rate", type=float, default=1e9, help="emit rate (1e9: unpaced)")
    parser.add_argument("--limits-scale", type=float, default=1000.0)
    parser.add_argument("--busy", action="store_true", help="keep one core busy meanwhile")
    args = parser.parse_args()
    print(machine())
    print(
        f"ingest: {args.events:,} frames no rule matches; alerts: {args.alerts:,} frames the "
        f"catch-all rule matches (fsync on, limits x{args.limits_scale:g}); emit rate "
        f"{args.rate:g}/s; {args.reps} interleaved repetitions"
        + (", one core kept busy by a spinning process" if args.busy else "")
    )
    ingest: list[Run] = []
    alerts: list[Run] = []
    with tempfile.TemporaryDirectory() as tmp, busy_core(args.busy):
        folder = Path(tmp)
        for rep in range(args.reps):
            print(f"repetition {rep + 1}: {load_average()}", flush=True)
            async with Servers() as servers:
                run = await ingest_run(
                    servers, folder, args.events, args.rate, rep, args.limits_scale
                )
            ingest.append(run)
            print(row("ingest", run, "events"), flush=True)
            async with Servers() as servers:
                run = await alerts_run(
                    servers, folder, args.alerts, args.rate, rep, args.limits_scale
                )
            alerts.append(run)
            print(row("alerts", run, "alerts"), flush=True)
        print(f"after the runs: {load_average()}")
    cap = PRIVATE_CHAT_LIMIT * args.limits_scale
    if max(r.per_second for r in alerts) > 0.9 * cap:
        print(f"note: alerts near the client's own per-chat limit ({cap:,.0f}/s at this scale)")
    print(f"end-to-end: ingest {spread(ingest, 'events')}; alerts {spread(alerts, 'alerts')}")
    print(
        f"per second of the daemon's CPU: ingest {spread(ingest, 'events', cpu=True)}; "
        f"alerts {spread(alerts, 'alerts', cpu=True)}"
    )


if __name__ == "__main__":
    asyncio.run(main())
