"""Delivery benchmarks: fan-out under the chat limits, and raw throughput beside Apprise.

Run: .venv/bin/python bench/delivery.py [--reps 3] [--scale 3] [--chats 1000]
         [--webhooks 200] [--busy] [--apprise-python PATH] [--only tg|discord|raw]

Every alert goes the way the daemon's writer sends it: written to the store (SQLite,
fsync on unless BENCH_FSYNC=0) in batches of 100 with `enqueue_leased`, and the rows that
come back leased handed to their lanes (`Delivery.hand`), which send them through the
real senders. Each measure runs --reps times (ours and Apprise interleaved), and the
median and minimum are printed with the load average.

1. Fan-out: one alert to 1,000 Telegram chats and 6 alerts to each of 200 Discord
   webhooks, through fakes (in their own process) that enforce Telegram's 30 messages/s
   per bot (times --scale, to keep the run short) and Discord's 5 per 2 s per webhook
   (announced in X-RateLimit-* headers, as Discord does). Prints the 429s (target 0) and
   the time against the minimum the limits allow (target <= 1.05x). `--busy` keeps one
   core busy with a spinning process meanwhile. Each Discord run is followed by a bare
   aiohttp client against a fresh fake: what the fake and this machine allow at least.
2. Raw throughput: 1,000 alerts over 20 chats against the fake without limits (client
   limits lifted), and Apprise (a process of its own, run by --apprise-python: an
   interpreter that has Apprise; by default this one if it has it) sending the same
   rendered texts to the same fake, one task per chat. Both are warmed up first
   (untimed). Prints both and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
import httpx
from pydantic import SecretStr

from bench.common import busy_core, load_average, machine
from notifier.deliver.discord import WEBHOOK_CONNECTIONS
from notifier.deliver.factory import build_senders
from notifier.deliver.lanes import Delivery
from notifier.render import telegram as render_telegram
from notifier.render.fields import AlertView
from notifier.rules.schema import RulesFile
from notifier.settings import Settings
from notifier.stages.writer import WRITE_BATCH  # batches as the daemon's writer writes them
from notifier.store import SENT, NewAlert, open_store

HERE = Path(__file__).resolve().parent
DURABLE = os.environ.get("BENCH_FSYNC", "1") == "1"
LEASE = 120.0

# Apprise in a process of its own: reads {"api", "token", "chats": {chat_id: [html]}} on
# stdin, sends every chat's texts in order (one task per chat), prints JSON.
APPRISE_RUNNER = """
import asyncio, json, sys, time
import apprise
from apprise.plugins.telegram import NotifyTelegram

spec = json.load(sys.stdin)
NotifyTelegram.notify_url = spec["api"] + "/bot"
objects = {}
for chat in spec["chats"]:
    obj = apprise.Apprise()
    obj.add(f"tgram://{spec['token']}/{chat}/?format=html")
    objects[chat] = obj

async def lane(chat):
    ok = 0
    for body in spec["chats"][chat]:
        done = await objects[chat].async_notify(body=body, body_format=apprise.NotifyFormat.HTML)
        ok += bool(done)
    return ok

async def main():
    first = next(iter(spec["chats"]))  # warm up (imports, first connection), untimed
    await objects[first].async_notify(body="warm-up", body_format=apprise.NotifyFormat.HTML)
    started = time.monotonic()
    sent = sum(await asyncio.gather(*(lane(chat) for chat in spec["chats"])))
    print(json.dumps({"seconds": time.monotonic() - started, "sent": sent,
                      "version": apprise.__version__}))

asyncio.run(main())
"""


def view(n: int) -> AlertView:
    return AlertView(
        "live",
        "bench",
        {
            "user_name": f"streamer{n}",
            "user_id": n,
            "title": f"Stream number {n}",
            "category": "Gaming",
            "viewers": 12,
            "url": f"https://parti.com/creator/parti/s{n}",
            "avatar": "",
            "image": "",
            "followers": 1000,
            "description": "",
            "rule": "bench",
            "caught_up": False,
            "event_id": n,
            "livestream_id": n,
            "at": time.time(),
        },
    )


async def start_fakes(scale: float | None, webhooks: int) -> tuple[Any, dict[str, Any]]:
    args = [sys.executable, str(HERE / "fake_servers.py"), "--webhooks", str(webhooks)]
    if scale is not None:
        args += ["--scale", str(scale)]
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    info = json.loads(await proc.stdout.readline())
    return proc, info


async def stop_fakes(proc: Any) -> None:
    proc.stdin.close()
    await proc.wait()


async def stats(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(trust_env=False) as http:
        answer: dict[str, Any] = (await http.get(url)).json()
        return answer


async def deliver_all(
    destinations: dict[str, Any],
    alerts: list[NewAlert],
    settings: Settings,
    scale: float,
    folder: str,
) -> float:
    """Write `alerts` as the daemon's writer does and run the real lanes until every one
    is sent; returns the seconds from the first write to the last send recorded."""
    rules_file = RulesFile.model_validate({"destinations": destinations})
    senders = build_senders(rules_file, settings, limits_scale=scale)
    await senders.start()
    store = await open_store(
        str(Path(folder) / f"bench-{time.time_ns()}.db"), instance="bench", durable=DURABLE
    )
    delivery = Delivery(store, senders.by_name, send_timeout=60, lease=LEASE)
    runner = asyncio.create_task(delivery.run())
    await asyncio.sleep(0.5)  # the lanes start (no alert is waiting for them yet)
    started = time.monotonic()
    for first in range(0, len(alerts), WRITE_BATCH):  # the writer's hand-off path
        batch = alerts[first : first + WRITE_BATCH]
        keys, rows = await store.enqueue_leased(
            batch, now=time.time(), lease=LEASE, room=delivery.room(), fence=None
        )
        added = set(keys)
        delivery.written([(a.key, a.destination) for a in batch if a.key in added], rows)
    total = len(alerts)
    async with delivery.settled:
        await delivery.settled.wait_for(lambda: delivery.sent_count >= total)
    elapsed = time.monotonic() - started
    delivery.stop()
    await runner
    sent = (await store.counts()).get(SENT, 0)
    await senders.close()
    await store.close()
    assert sent == total, f"{sent} of {total} recorded as sent"
    return elapsed


def new_alerts(destinations: list[str], per_destination: int = 1) -> list[NewAlert]:
    """`per_destination` events, each to every destination, in the order they happen (the
    writer writes an event's alerts together). An event's alerts carry its view, as the
    daemon's do: a fan-out renders each event once, not once per destination."""
    alerts = []
    for k in range(per_destination):
        event = view(k).to_json()
        for d in destinations:
            alerts.append(
                NewAlert(
                    key=f"{d}:{k}",
                    destination=d,
                    rule="bench",
                    kind="live",
                    subject=str(k),
                    identity=f"live:{k}",
                    payload={"view": event, "template": None},
                    event_at=time.time(),
                )
            )
    return alerts


def spread(values: list[float], digits: int = 3) -> str:
    return f"median {statistics.median(values):.{digits}f} (min {min(values):.{digits}f})"


async def telegram_fanout(scale: float, chats: int, folder: str) -> tuple[float, int]:
    proc, info = await start_fakes(scale, 0)
    try:
        settings = Settings(
            _env_file=None,
            telegram_token=SecretStr(info["token"]),  # type: ignore[call-arg]
            telegram_api_url=info["telegram"],
        )
        tg = {f"chat{n}": {"telegram": {"chat_id": 5_000_000 + n}} for n in range(chats)}
        seconds = await deliver_all(tg, new_alerts(list(tg)), settings, scale, folder)
        limited = int((await stats(info["telegram_stats"]))["rate_limited"])
    finally:
        await stop_fakes(proc)
    return seconds, limited


def cpu_seconds(pid: int) -> float:
    """The user + system CPU time a process used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def discord_fanout(webhooks: int, per_hook: int, folder: str) -> tuple[float, int]:
    proc, info = await start_fakes(1.0, webhooks)
    try:
        settings = Settings(_env_file=None, discord_api_url=info["discord"])  # type: ignore[call-arg]
        dc = {
            f"hook{n}": {"discord": {"webhook_url": url}} for n, url in enumerate(info["webhooks"])
        }
        fake_cpu, own_cpu = cpu_seconds(proc.pid), time.process_time()
        seconds = await deliver_all(dc, new_alerts(list(dc), per_hook), settings, 1.0, folder)
        fake_cpu, own_cpu = cpu_seconds(proc.pid) - fake_cpu, time.process_time() - own_cpu
        print(
            f"    CPU during the run: the fake Discord {fake_cpu:.2f} s, the sender (this "
            f"process, its start included) {own_cpu:.2f} s",
            flush=True,
        )
        limited = int((await stats(info["discord_stats"]))["rate_limited"])
    finally:
        await stop_fakes(proc)
    return seconds, limited


async def bare_discord_fanout(webhooks: int, per_hook: int) -> float:
    """The least any client can do against the same fake: one aiohttp session, each
    webhook's requests in turn, a fixed body, sleeping `X-RateLimit-Reset-After` (and the
    daemon's 2 ms margin) when the bucket is empty; no outbox, rendering or library.
    Seconds from the first request to the last answer."""
    proc, info = await start_fakes(1.0, webhooks)
    body = json.dumps(
        {"content": None, "embeds": [{"title": "Live", "type": "rich"}], "tts": False}
        | {"allowed_mentions": {"parse": []}}
    ).encode()
    try:
        connector = aiohttp.TCPConnector(limit=WEBHOOK_CONNECTIONS)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def hook(url: str) -> float:
                for _ in range(per_hook):
                    async with session.post(
                        url.replace("https://discord.com/api", info["discord"]),
                        params={"wait": "1"},
                        data=body,
                        headers={"Content-Type": "application/json"},
                    ) as answer:
                        await answer.read()
                        assert answer.status == 200, answer.status
                        if answer.headers.get("X-RateLimit-Remaining") == "0":
                            # The reset is rounded to the millisecond: the daemon's margin.
                            reset = float(answer.headers["X-RateLimit-Reset-After"])
                            await asyncio.sleep(reset + 0.002)
                return time.monotonic()

            started = time.monotonic()
            ends = await asyncio.gather(*(hook(url) for url in info["webhooks"]))
        assert int((await stats(info["discord_stats"]))["rate_limited"]) == 0
    finally:
        await stop_fakes(proc)
    return max(ends) - started


async def fanouts(args: argparse.Namespace, folder: str) -> None:
    if args.only in (None, "tg"):
        per_second = int(30 * args.scale)
        floor = ((args.chats - 1) // per_second) * 1.0
        print(
            f"fan-out Telegram: 1 alert to {args.chats} chats, bot limit {per_second}/s "
            f"(30/s x {args.scale:g}), minimum {floor:.2f} s"
            + (", one core kept busy" if args.busy else "")
        )
        ratios, limited = [], []
        with busy_core(args.busy):
            for rep in range(args.reps):
                seconds, refused = await telegram_fanout(args.scale, args.chats, folder)
                ratios.append(seconds / floor)
                limited.append(refused)
                print(
                    f"  run {rep + 1}: {seconds:.2f} s, ratio {seconds / floor:.3f}, 429s: "
                    f"{refused}; {load_average()}",
                    flush=True,
                )
        print(f"  ratio {spread(ratios)} (target <= 1.05), 429s {limited} (target 0)")
    if args.only in (None, "discord"):
        per_hook, floor = 6, 2.0
        print(
            f"fan-out Discord: {per_hook} alerts to each of {args.webhooks} webhooks, limit 5 "
            f"per 2 s each, minimum {floor:.2f} s"
        )
        ratios, limited, bare = [], [], []
        for rep in range(args.reps):
            seconds, refused = await discord_fanout(args.webhooks, per_hook, folder)
            ratios.append(seconds / floor)
            limited.append(refused)
            least = await bare_discord_fanout(args.webhooks, per_hook)
            bare.append(least / floor)
            print(
                f"  run {rep + 1}: {seconds:.2f} s, ratio {seconds / floor:.3f}, 429s: "
                f"{refused}; a bare aiohttp client: {least:.2f} s, ratio {least / floor:.3f}; "
                f"{load_average()}",
                flush=True,
            )
        print(f"  ratio {spread(ratios)} (target <= 1.05), 429s {limited} (target 0)")
        print(f"  a bare aiohttp client against the same fake: ratio {spread(bare)}")


def apprise_python(given: str | None) -> str | None:
    """An interpreter that can import Apprise, or None."""
    for candidate in (given, os.environ.get("BENCH_APPRISE_PYTHON"), sys.executable):
        if not candidate:
            continue
        found = subprocess.run(
            [candidate, "-c", "import apprise"], capture_output=True, check=False
        )
        if found.returncode == 0:
            return candidate
        if candidate == given:
            print(f"  ({given} cannot import apprise)")
    return None


async def apprise_run(python: str, info: dict[str, Any], alerts: list[NewAlert]) -> dict[str, Any]:
    chats: dict[str, list[str]] = {}
    for alert in alerts:
        chat = str(6_000_000 + int(alert.destination.removeprefix("chat")))
        body = render_telegram.render(AlertView.from_json(alert.payload["view"])).html
        chats.setdefault(chat, []).append(body)
    spec = json.dumps({"api": info["telegram"], "token": info["token"], "chats": chats})
    proc = await asyncio.create_subprocess_exec(
        python,
        "-c",
        APPRISE_RUNNER,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "NO_PROXY": "*"},
    )
    out, _ = await proc.communicate(spec.encode())
    answer: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return answer


async def throughput(args: argparse.Namespace, folder: str) -> None:
    count, chats = args.count, 20
    python = apprise_python(args.apprise_python)
    print(
        f"raw throughput: {count} alerts over {chats} chats, fake without limits, "
        f"outbox fsync {'on' if DURABLE else 'off'}"
    )
    if python is None:
        print(
            "  (no Apprise row: give --apprise-python an interpreter that has Apprise, or "
            "install it with .venv/bin/pip install -e '.[bench]')"
        )
    ours: list[float] = []
    theirs: list[float] = []
    version = "?"
    proc, info = await start_fakes(None, 0)
    try:  # warm up (first renders, connections, code paths), untimed: Apprise's runner too
        settings = Settings(
            _env_file=None,
            telegram_token=SecretStr(info["token"]),  # type: ignore[call-arg]
            telegram_api_url=info["telegram"],
        )
        warm = {f"chat{n}": {"telegram": {"chat_id": 6_000_000 + n}} for n in range(chats)}
        await deliver_all(warm, new_alerts(list(warm), 5), settings, 10_000.0, folder)
    finally:
        await stop_fakes(proc)
    for rep in range(args.reps):
        proc, info = await start_fakes(None, 0)
        try:
            settings = Settings(
                _env_file=None,
                telegram_token=SecretStr(info["token"]),  # type: ignore[call-arg]
                telegram_api_url=info["telegram"],
            )
            tg = {f"chat{n}": {"telegram": {"chat_id": 6_000_000 + n}} for n in range(chats)}
            alerts = new_alerts(list(tg), count // chats)
            order = ["ours", "apprise"] if rep % 2 == 0 else ["apprise", "ours"]
            line = []
            for who in order:
                if who == "ours":
                    rate = count / await deliver_all(tg, alerts, settings, 10_000.0, folder)
                    ours.append(rate)
                    line.append(f"parti-notifier {rate:7.1f}/s")
                elif python is not None:
                    answer = await apprise_run(python, info, alerts)
                    version = answer["version"]
                    rate = answer["sent"] / answer["seconds"]
                    theirs.append(rate)
                    line.append(f"Apprise {rate:7.1f}/s ({answer['sent']}/{count} sent)")
            print(f"  run {rep + 1}: {', '.join(line)}; {load_average()}", flush=True)
        finally:
            await stop_fakes(proc)
    print(f"  parti-notifier (writer hand-off, lanes): alerts/s {spread(ours, 1)}")
    if theirs:
        ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
        print(
            f"  Apprise {version} (async_notify, one object per chat): alerts/s {spread(theirs, 1)}"
        )
        print(f"  ratio parti-notifier / Apprise (same run): {spread(ratios, 2)} (target >= 2)")


async def main() -> None:
    logging.getLogger("notifier").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--scale", type=float, default=3.0)
    parser.add_argument("--chats", type=int, default=1000)
    parser.add_argument("--webhooks", type=int, default=200)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--busy", action="store_true", help="keep one core busy (fan-out)")
    parser.add_argument("--apprise-python", default=None)
    parser.add_argument("--only", choices=["tg", "discord", "raw"], default=None)
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as folder:
        if args.only != "raw":
            await fanouts(args, folder)
        if args.only in (None, "raw"):
            await throughput(args, folder)
    print(f"after the runs: {load_average()}")


if __name__ == "__main__":
    asyncio.run(main())
