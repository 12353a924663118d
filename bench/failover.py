"""Failover: three instances on one PostgreSQL, live and price events through the
simulator, the fake Telegram failing 10% of the sends (429 or 502), the ingest holder
killed with SIGKILL at random moments (seeded) and restarted, one PostgreSQL restart in
the middle. The same run with one instance on SQLite is the baseline. Prints one markdown
table row per configuration. Exits 1 when a live alert is lost.

Counts, from the fake's requests and the instances' logs:
- live alerts lost (target 0) and duplicated, and how many duplicates are explained by a
  send in flight at a kill or at the database restart (target: all of them);
- the longest time no instance held ingest (role.acquired / role.lost, kill times);
- price crossings (a fifth of the events; BTC, line 100,000, re-arm 0.5%): cycles of 24
  frames, 99,000 (re-arm), 101,000+n (crossing n), then 99,900 and 100,500+n in turn
  (inside the band: no alert). A crossing is "observable" when its re-arm and crossing
  frames reached one subscribed holder that was neither killed nor cut off by the
  database restart within 2 s; those must all be alerted (frames sent while no instance
  holds ingest are gone: Parti has no price history). A takeover while the line was
  crossed (after crossing n was alerted, before the next re-arm) must keep it crossed:
  no alert for 100,500+n, and the next crossing alerted.

Run: .venv/bin/python bench/failover.py [--quick] [--events 2000] [--kills 10] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import re
import signal
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg
from aiohttp import web

from bench.pg_server import BenchPg, PgUnavailable
from notifier.parti.decode import PRICE
from notifier.parti.simulator import Simulator
from tests.fakes.telegram import FakeTelegram, parse_html

HERE = Path(__file__).resolve().parent
RULES = """\
version: 1
destinations: {tg: {telegram: {chat_id: 1001}}}
rules:
  - {name: live, when: live, title_matches: "^fo-", notify: [tg], cooldown: 0s}
  - {name: btc, when: price, asset: BTC, above: 100000, rearm: 0.5%, cooldown: 0s, notify: [tg]}
"""
REARM, CROSS, INSIDE, WIGGLE = 99_000, 101_000, 99_900, 100_500
CYCLE = 24  # price frames a cycle: re-arm, cross, then inside the band (3 s at 8 a second)
SETTLE = 300.0  # seconds to wait for the last alerts after the emission
IN_FLIGHT = 1.0  # a send that reached the fake this long before a kill may be unrecorded
SIGNAL_SLACK = 0.25  # a request already on its way when the kill was sent arrives after it
PRICE_RE = re.compile(r"Now ([\d,]+)")


class Telegram(FakeTelegram):
    """The fake, also noting when each request was answered (by its arrival time)."""

    def __init__(self) -> None:
        super().__init__()
        self.answered: dict[float, float] = {}

    async def _answer(
        self, request: web.Request, method: str, params: dict[str, str], arrived: float
    ) -> web.Response:
        try:
            return await super()._answer(request, method, params, arrived)
        finally:
            self.answered[arrived] = time.monotonic()


@dataclass
class Timeline:
    """What happened when (time.time()): role changes, kills, the database restart."""

    roles: list[tuple[float, str, str, int]] = field(default_factory=list)  # ts, who, what, gen
    kills: list[float] = field(default_factory=list)
    db_down: list[tuple[float, float]] = field(default_factory=list)

    def disrupted(self, start: float, end: float) -> bool:
        """A kill or the database restart between start and end (+ the time to process)."""
        if any(start <= k <= end + IN_FLIGHT for k in self.kills):
            return True
        return any(a <= end + IN_FLIGHT and start <= b for a, b in self.db_down)

    def in_flight(self, at: float) -> bool:
        """A send that reached the fake at `at` may have been in flight at a kill or
        during the database restart (its outcome unrecorded)."""
        if any(k - IN_FLIGHT <= at <= k + SIGNAL_SLACK for k in self.kills):
            return True
        return any(a - IN_FLIGHT <= at <= b for a, b in self.db_down)

    def longest_gap(self, until: float) -> tuple[float, float]:
        """(longest stretch with no ingest holder, when it began), from the first holder."""
        holding: set[str] = set()
        gap_from: float | None = None
        longest, at = 0.0, 0.0
        for ts, who, what, _ in sorted(self.roles):
            if what == "acquired":
                if not holding and gap_from is not None and ts - gap_from > longest:
                    longest, at = ts - gap_from, gap_from
                holding.add(who)
            elif who in holding:
                holding.discard(who)
                if not holding:
                    gap_from = ts
        if not holding and gap_from is not None and until - gap_from > longest:
            longest, at = until - gap_from, gap_from
        return longest, at


class Instance:
    """bench/daemon_main.py (the real App, lease 10 s) as one named instance."""

    def __init__(
        self, name: str, env: dict[str, str], rules: Path, timeline: Timeline, args: list[str]
    ) -> None:
        self.name = name
        self.env = env | {"NOTIFIER_INSTANCE": name, "NOTIFIER_HTTP_ADDR": "127.0.0.1:0"}
        self.rules = rules
        self.timeline = timeline
        self.args = args
        self.proc: asyncio.subprocess.Process | None = None
        self.holds = False
        self.ready = asyncio.Event()
        self.changed = asyncio.Event()
        self.starts = 0
        self.stderr_tail = b""
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Until it serves HTTP (the store is open); started again if it exits first
        (the database may be restarting), as systemd would."""
        for attempt in range(30):
            self.ready.clear()
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(HERE / "daemon_main.py"),
                str(self.rules),
                *self.args,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self.env,
            )
            self.starts += 1
            self._reader = asyncio.create_task(self._read(self.proc))
            exited = asyncio.create_task(self.proc.wait())
            ready = asyncio.create_task(self.ready.wait())
            await asyncio.wait([exited, ready], return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()
            if self.ready.is_set():
                exited.cancel()
                return
            await self._reader
            await asyncio.sleep(min(5.0, 0.5 * (attempt + 1)))  # systemd's RestartSec
        raise RuntimeError(f"instance {self.name} did not start: {self.stderr_tail[-300:]!r}")

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None and proc.stderr is not None
        errors = asyncio.create_task(proc.stderr.read())
        while line := await proc.stdout.readline():
            if b'"role.' not in line and b'"http.listening"' not in line:
                continue
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                name = entry.get("event")
                if name == "http.listening":
                    self.ready.set()
                elif name in ("role.acquired", "role.lost") and entry.get("role") == "ingest":
                    self.holds = name == "role.acquired"
                    what = "acquired" if self.holds else "lost"
                    self.timeline.roles.append(
                        (float(entry["ts"]), self.name, what, int(entry["generation"]))
                    )
                    self.changed.set()
        self.stderr_tail = (await errors)[-2000:]
        if self.holds:  # died holding it (a kill already noted the time)
            self.holds = False
            self.timeline.roles.append((time.time(), self.name, "exited", 0))
        self.changed.set()

    async def kill(self) -> float:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        at = time.time()
        if self.holds:
            self.holds = False
            self.timeline.roles.append((at, self.name, "killed", 0))
        await self.proc.wait()
        if self._reader is not None:
            await self._reader
        return at

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                async with asyncio.timeout(30):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            await self._reader


@dataclass
class Frame:
    at: float
    price: int
    subscribed: bool
    connection: int  # the simulator's connection count so far: a reconnect changes it


@dataclass
class Result:
    name: str
    events: int
    kills: int
    db_restarts: int
    lost: int
    duplicates: int
    unexplained_duplicates: int
    in_flight_bound: int
    longest_gap: float
    crossings: int
    observable: int
    observable_lost: int
    recovered: int
    spurious: int
    takeovers_crossed: int
    survived: int
    seconds: float
    load: tuple[float, float, float]
    requests: int
    failed_answers: int
    notes: list[str]


async def holder_of(instances: list[Instance], timeout: float) -> Instance | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for instance in instances:
            if instance.holds:
                return instance
        for instance in instances:
            instance.changed.clear()
        waits = [asyncio.create_task(i.changed.wait()) for i in instances]
        await asyncio.wait(waits, timeout=deadline - time.monotonic())
        for task in waits:
            task.cancel()
    return None


async def run_config(name: str, *, database: str | None, instances: int, args: Any) -> Result:
    rng = random.Random(args.seed)
    cycles = args.events // 5 // CYCLE
    live_count = args.events - cycles * CYCLE
    emit_seconds = live_count / args.rate
    price_every = emit_seconds / max(1, cycles * CYCLE)
    kill_times = sorted(rng.uniform(3.0, emit_seconds) for _ in range(args.kills))
    timeline = Timeline()
    notes: list[str] = []
    began = time.monotonic()
    telegram = Telegram()
    telegram.random_failures(0.10, random.Random(args.seed + 10))
    await telegram.start()
    sim = await Simulator().start()
    pg: BenchPg | None = None
    with tempfile.TemporaryDirectory(prefix="failover-") as tmp:
        folder = Path(tmp)
        rules = folder / "rules.yaml"
        rules.write_text(RULES)
        env = {
            **os.environ,
            "NOTIFIER_PARTI_API_URL": sim.api_url,
            "NOTIFIER_PARTI_WS_URL": sim.ws_url,
            "NOTIFIER_TELEGRAM_TOKEN": telegram.token,
            "NOTIFIER_TELEGRAM_API_URL": telegram.api_url,
            "NOTIFIER_STATE_PATH": str(folder / "state.db"),
            "NOTIFIER_LOG_FORMAT": "json",
            "NOTIFIER_LIVE_POLL": "1h",
        }
        if database == "postgresql":
            pg = await asyncio.to_thread(BenchPg().start)
            env["NOTIFIER_DATABASE_URL"] = pg.url
        daemon_args = ["--limits-scale", "100", "--reconnect-base", "0.2", "--no-fsync"]
        names = [chr(ord("a") + n) for n in range(instances)] if instances > 1 else ["solo"]
        fleet = [Instance(n, env, rules, timeline, daemon_args) for n in names]
        try:
            await asyncio.gather(*(i.start() for i in fleet))
            if await holder_of(fleet, 60) is None:
                raise RuntimeError("no instance took the ingest role in 60 s")
            await sim.wait_subscribed(PRICE, timeout=60)
            started = time.monotonic()
            frames: list[Frame] = []

            async def emit_live() -> None:
                for n in range(live_count):
                    delay = started + n / args.rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    await sim.go_live(
                        900_000 + n,
                        user_name=f"fo{n}",
                        event_title=f"fo-{n}",
                        category_name="Gaming",
                        viewers_count=10,
                    )

            async def emit_prices() -> None:
                for n in range(cycles * CYCLE):
                    delay = started + (n + 0.5) * price_every - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    cycle, step = divmod(n, CYCLE)
                    price = (REARM, CROSS + cycle, INSIDE, WIGGLE + cycle)[min(step, 2 + step % 2)]
                    subscribed = sim.subscribers(PRICE) > 0
                    frames.append(Frame(time.time(), price, subscribed, sim.connections_total))
                    await sim.set_price("BTC", str(price))

            async def restart_db() -> None:
                assert pg is not None
                await asyncio.sleep(max(0.0, started + emit_seconds / 2 - time.monotonic()))
                down = time.time()
                took = await asyncio.to_thread(pg.restart)
                timeline.db_down.append((down, time.time()))
                notes.append(f"PostgreSQL restart took {took:.1f} s")

            tasks = [asyncio.create_task(emit_live()), asyncio.create_task(emit_prices())]
            if pg is not None and pg.can_restart:
                tasks.append(asyncio.create_task(restart_db()))
            elif pg is not None:
                notes.append("an external server (NOTIFIER_TEST_DATABASE_URL): not restarted")
            restarts: list[asyncio.Task[None]] = []
            for at in kill_times:
                delay = started + at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                holder = await holder_of(fleet, 60)
                if holder is None:
                    notes.append("a kill found no ingest holder in 60 s")
                    continue
                timeline.kills.append(await holder.kill())
                restarts.append(asyncio.create_task(holder.start()))
            await asyncio.gather(*tasks, *restarts)
            expected = {f"fo-{n}" for n in range(live_count)}
            deadline = time.monotonic() + SETTLE
            while time.monotonic() < deadline:
                if expected <= set(_live_sends(telegram)):
                    break
                await asyncio.sleep(0.5)  # a benchmark polling its fake, not a test
            target = pg.url if pg else str(folder / "state.db")
            while time.monotonic() < deadline:  # until retries of the last alerts are done
                outbox = await _outbox_counts(target)
                if not (outbox.get("pending") or outbox.get("sending")):
                    break
                await asyncio.sleep(1.0)
            end = time.time()
            outbox = await _outbox_counts(target)
            if args.show_keys:
                print(f"{name}: price alerts in the outbox (stamp, price):", flush=True)
                print(await _price_rows(target), flush=True)
            if outbox.get("dead"):
                notes.append(f"dead letters: {outbox['dead']}")
            if outbox.get("pending") or outbox.get("sending"):
                notes.append(f"still open in the outbox: {outbox}")
        finally:
            await asyncio.gather(*(i.stop() for i in fleet), return_exceptions=True)
            await sim.stop()
            await telegram.stop()
            if pg is not None:
                await asyncio.to_thread(pg.stop)
    live = _live_sends(telegram)
    lost = expected - set(live)
    duplicates = {k: len(v) - 1 for k, v in live.items() if len(v) > 1}
    unexplained = [k for k in duplicates if not timeline.in_flight(live[k][0])]
    for key in unexplained[:5]:
        first_at = live[key][0]
        nearest = min(timeline.kills, key=lambda k: abs(k - first_at), default=first_at)
        notes.append(
            f"unexplained duplicate {key}: sends at {first_at - nearest:+.2f} s"
            f" and {live[key][1] - nearest:+.2f} s from the nearest kill"
        )
    longest, _ = timeline.longest_gap(end)
    crossings = _crossings(frames, _price_sends(telegram), timeline, notes)
    return Result(
        name=name,
        events=live_count + cycles * CYCLE,
        kills=len(timeline.kills),
        db_restarts=len(timeline.db_down),
        lost=len(lost),
        duplicates=sum(duplicates.values()),
        unexplained_duplicates=len(unexplained),
        in_flight_bound=_in_flight_bound(telegram, timeline),
        longest_gap=longest,
        seconds=time.monotonic() - began,
        load=os.getloadavg(),
        requests=len(telegram.requests),
        failed_answers=sum(1 for r in telegram.requests if r["status"] not in (200, None)),
        notes=notes + ([f"LOST: {', '.join(sorted(lost)[:10])}"] if lost else []),
        **crossings,
    )


def _wall(monotonic: float) -> float:
    return monotonic + time.time() - time.monotonic()


def _texts(telegram: Telegram) -> list[tuple[float, str]]:
    """(when it reached the fake, as time.time(); the visible text) of each accepted alert."""
    return [
        (_wall(r["at"]), parse_html(r["params"].get("caption") or r["params"].get("text", "")))
        for r in telegram.requests
        if r["status"] == 200 and r["method"] in ("sendMessage", "sendPhoto")
    ]


def _live_sends(telegram: Telegram) -> dict[str, list[float]]:
    """Live alert title -> arrival times of its accepted sends."""
    found: dict[str, list[float]] = {}
    for at, text in _texts(telegram):
        for word in text.replace("\n", " ").split():
            if word.startswith("fo-"):
                found.setdefault(word, []).append(at)
    return found


def _price_sends(telegram: Telegram) -> list[tuple[float, int]]:
    """(arrival, price shown) of each accepted price alert."""
    found: list[tuple[float, int]] = []
    for at, text in _texts(telegram):
        if "BTC" in text and (match := PRICE_RE.search(text)):
            found.append((at, int(match.group(1).replace(",", ""))))
    return found


def _in_flight_bound(telegram: Telegram, timeline: Timeline) -> int:
    """Sends that reached the fake within IN_FLIGHT s before a kill or during the database
    restart: the most a crash can leave delivered but not recorded."""
    arrivals = [
        _wall(r["at"]) for r in telegram.requests if r["method"] in ("sendMessage", "sendPhoto")
    ]
    return sum(1 for at in arrivals if timeline.in_flight(at))


def _crossings(
    frames: list[Frame], sends: list[tuple[float, int]], timeline: Timeline, notes: list[str]
) -> dict[str, int]:
    cycles = len(frames) // CYCLE
    alerted = {n: sum(1 for _, p in sends if p == CROSS + n) for n in range(cycles)}
    spurious_of = {n: sum(1 for _, p in sends if p == WIGGLE + n) for n in range(cycles)}
    other = sum(
        1 for _, p in sends if not (CROSS <= p < CROSS + cycles or WIGGLE <= p < WIGGLE + cycles)
    )
    observable: dict[int, bool] = {}
    for n in range(cycles):
        rearm, cross = frames[CYCLE * n], frames[CYCLE * n + 1]
        observable[n] = (
            rearm.subscribed
            and cross.subscribed
            and rearm.connection == cross.connection
            and not timeline.disrupted(rearm.at, cross.at)
        )
    # Takeovers while the line was crossed (after crossing n, before re-arm n+1).
    crossed: set[int] = set()
    for ts, _, what, _ in timeline.roles:
        if what != "acquired":
            continue
        for n in range(cycles):
            after = frames[CYCLE * n + 1].at
            before = frames[CYCLE * (n + 1)].at if n + 1 < cycles else float("inf")
            if after < ts < before and alerted[n]:
                crossed.add(n)
    missed = [n for n in range(cycles) if observable[n] and not alerted[n]]
    if missed:
        takeovers = sorted(ts for ts, _, what, _ in timeline.roles if what == "acquired")
        since = [
            frames[CYCLE * n + 1].at
            - max((t for t in takeovers if t < frames[CYCLE * n + 1].at), default=0)
            for n in missed
        ]
        notes.append(
            "observable crossings not alerted: "
            + ", ".join(
                f"#{n} ({s:.1f} s after a takeover)" for n, s in zip(missed, since, strict=True)
            )
        )
    survived = sum(
        1
        for n in crossed
        if not spurious_of[n] and (n + 1 >= cycles or alerted[n + 1] or not observable[n + 1])
    )
    return {
        "crossings": cycles,
        "observable": sum(observable.values()),
        "observable_lost": sum(1 for n in range(cycles) if observable[n] and not alerted[n]),
        "recovered": sum(1 for n in range(cycles) if alerted[n] and not observable[n]),
        "spurious": sum(spurious_of.values())
        + other
        + sum(max(0, c - 1) for c in alerted.values()),
        "takeovers_crossed": len(crossed),
        "survived": survived,
    }


async def _outbox_counts(target: str) -> dict[str, int]:
    """Rows per state left in the outbox at the end."""
    query = "SELECT state, COUNT(*) FROM alerts GROUP BY state"
    if target.startswith("postgresql"):
        async with await psycopg.AsyncConnection.connect(target) as conn:
            rows = await (await conn.execute(query)).fetchall()
    else:
        with contextlib.closing(sqlite3.connect(target)) as db:
            rows = db.execute(query).fetchall()
    return {str(state): int(n) for state, n in rows}


async def _price_rows(target: str) -> list[tuple[str, str]]:
    """(identity, price shown) of the price alerts in the outbox, oldest first."""
    query = "SELECT identity, payload FROM alerts WHERE rule = 'btc' ORDER BY created_at"
    if target.startswith("postgresql"):
        async with await psycopg.AsyncConnection.connect(target) as conn:
            rows = await (await conn.execute(query)).fetchall()
    else:
        with contextlib.closing(sqlite3.connect(target)) as db:
            rows = db.execute(query).fetchall()
    found = []
    for identity, payload in rows:
        view = (json.loads(payload) if isinstance(payload, str) else payload)["view"]
        found.append((str(identity).rsplit(":", 1)[-1], str(view["fields"].get("price"))))
    return found


HEADER = (
    "| configuration | events | kills + DB restarts | alerts lost | duplicates"
    " (unexplained; in-flight bound) | longest gap without ingest | price crossings alerted"
    " / observable (lost; recovered; spurious) | takeovers on a crossed line: state kept"
    " | run time | load avg |\n|---|---|---|---|---|---|---|---|---|---|"
)


def row(r: Result) -> str:
    alerted = r.observable - r.observable_lost + r.recovered
    return (
        f"| {r.name} | {r.events} | {r.kills} + {r.db_restarts} | {r.lost} |"
        f" {r.duplicates} ({r.unexplained_duplicates}; {r.in_flight_bound}) |"
        f" {r.longest_gap:.1f} s | {alerted} / {r.observable} ({r.observable_lost};"
        f" {r.recovered}; {r.spurious}) | {r.survived} / {r.takeovers_crossed} |"
        f" {r.seconds:.0f} s | {r.load[0]:.1f} {r.load[1]:.1f} {r.load[2]:.1f} |"
    )


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="500 events, 4 kills")
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--rate", type=float, default=32.0, help="live events a second")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--show-keys", action="store_true", help="print the price alerts' keys at the end"
    )
    parser.add_argument("--only", choices=("postgresql", "sqlite"), default=None)
    args = parser.parse_args()
    if args.quick:
        args.events, args.kills = 500, 4
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python"
        f" {platform.python_version()}; {args.events} events (4/5 live, 1/5 price), 10% of"
        f" sends answered 429 or 502, {args.kills} SIGKILLs of the ingest holder (seed"
        f" {args.seed})",
        flush=True,
    )
    configs = [("PostgreSQL, 3 instances", "postgresql", 3), ("SQLite, 1 instance", None, 1)]
    results: list[Result] = []
    for name, database, count in configs:
        if args.only and (database or "sqlite") != args.only:
            continue
        try:
            result = await run_config(name, database=database, instances=count, args=args)
        except PgUnavailable as exc:
            print(f"{name}: skipped: {exc}", flush=True)
            continue
        results.append(result)
        print(
            f"{name}: {result.requests} requests to the fake ({result.failed_answers} answered"
            f" 429/5xx); " + "; ".join(result.notes or ["no notes"]),
            flush=True,
        )
    print()
    print(HEADER)
    for result in results:
        print(row(result))
    return 1 if any(r.lost for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
