"""Delivery benchmarks: fan-out under the chat limits, and raw throughput beside Apprise.

Run: .venv/bin/python bench/delivery.py [--scale 3] [--chats 1000] [--webhooks 200]

1. Fan-out: one alert to 1,000 Telegram chats and to 200 Discord webhooks, through fakes
   (in their own process) that enforce Telegram's 30 messages/s per bot and Discord's
   5 per 2 s per webhook, both multiplied by --scale to keep the run short. Prints the
   429s (target 0) and the time against the minimum the limits allow (target <= 1.05x).
2. Raw throughput: 1,000 alerts over 20 chats against the fake with no limits, through
   the daemon's outbox and lanes (client limits lifted), and through Apprise pointed at
   the same fake, side by side in the same run. Prints both and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from pydantic import SecretStr

from notifier.deliver.factory import build_senders
from notifier.deliver.lanes import Delivery
from notifier.render import telegram as render_telegram
from notifier.render.fields import AlertView
from notifier.rules.schema import RulesFile
from notifier.settings import Settings
from notifier.store import SENT, NewAlert, open_store

HERE = Path(__file__).resolve().parent
DURABLE = os.environ.get("BENCH_FSYNC", "1") == "1"


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
    """Enqueue `alerts` and run the real lanes until every one is sent; returns seconds."""
    rules_file = RulesFile.model_validate({"destinations": destinations})
    senders = build_senders(rules_file, settings, limits_scale=scale)
    await senders.start()
    outbox = await open_store(
        str(Path(folder) / f"bench-{time.time_ns()}.db"), instance="bench", durable=DURABLE
    )
    delivery = Delivery(outbox, senders.by_name, send_timeout=60)
    runner = asyncio.create_task(delivery.run())
    started = time.monotonic()
    await outbox.enqueue(alerts, now=time.time(), fence=None)
    delivery.wake_all()
    total = len(alerts)
    async with delivery.settled:
        await delivery.settled.wait_for(lambda: delivery.sent_count >= total)
    elapsed = time.monotonic() - started
    assert (await outbox.counts()).get(SENT, 0) == total
    delivery.stop()
    await runner
    await senders.close()
    await outbox.close()
    return elapsed


def new_alerts(destinations: list[str], per_destination: int = 1) -> list[NewAlert]:
    alerts = []
    for d in destinations:
        for k in range(per_destination):
            n = len(alerts)
            alerts.append(
                NewAlert(
                    key=f"{d}:{k}",
                    destination=d,
                    rule="bench",
                    kind="live",
                    subject=str(n),
                    identity=f"live:{n}",
                    payload={"view": view(n).to_json(), "template": None},
                    event_at=time.time(),
                )
            )
    return alerts


async def fanout(scale: float, chats: int, webhooks: int, folder: str) -> None:
    proc, info = await start_fakes(scale, 0)
    try:
        settings = Settings(
            _env_file=None,
            telegram_token=SecretStr(info["token"]),  # type: ignore[call-arg]
            telegram_api_url=info["telegram"],
        )
        tg = {f"chat{n}": {"telegram": {"chat_id": 5_000_000 + n}} for n in range(chats)}
        seconds = await deliver_all(tg, new_alerts(list(tg)), settings, scale, folder)
        tg_stats = await stats(info["telegram_stats"])
    finally:
        await stop_fakes(proc)
    per_second = int(30 * scale)
    minimum = ((chats - 1) // per_second) * 1.0
    print(
        f"fan-out Telegram: 1 alert to {chats} chats, bot limit {per_second}/s "
        f"(30/s x {scale:g}): {seconds:.2f} s, minimum {minimum:.2f} s, ratio "
        f"{seconds / minimum:.3f} (target <= 1.05), 429s: {tg_stats['rate_limited']}"
    )

    # Discord at its real limit: 6 alerts per webhook, one more than a window allows,
    # so the last ones wait one window (2 s) for the first answers.
    proc, info = await start_fakes(1.0, webhooks)
    try:
        settings = Settings(_env_file=None, discord_api_url=info["discord"])  # type: ignore[call-arg]
        dc = {
            f"hook{n}": {"discord": {"webhook_url": url}} for n, url in enumerate(info["webhooks"])
        }
        per_hook = 6
        seconds = await deliver_all(dc, new_alerts(list(dc), per_hook), settings, 1.0, folder)
        dc_stats = await stats(info["discord_stats"])
    finally:
        await stop_fakes(proc)
    minimum = 2.0
    print(
        f"fan-out Discord: {per_hook} alerts to each of {webhooks} webhooks, limit 5 per "
        f"2 s each: {seconds:.2f} s, minimum {minimum:.2f} s, ratio {seconds / minimum:.3f} "
        f"(target <= 1.05), 429s: {dc_stats['rate_limited']}"
    )


async def throughput(count: int, chats: int, folder: str) -> None:
    proc, info = await start_fakes(None, 0)
    try:
        settings = Settings(
            _env_file=None,
            telegram_token=SecretStr(info["token"]),  # type: ignore[call-arg]
            telegram_api_url=info["telegram"],
        )
        tg = {f"chat{n}": {"telegram": {"chat_id": 6_000_000 + n}} for n in range(chats)}
        alerts = new_alerts(list(tg), count // chats)
        ours = await deliver_all(tg, alerts, settings, 10_000.0, folder)
        try:
            import apprise  # noqa: F401
        except ImportError:
            print(
                f"raw throughput: parti-notifier {count / ours:.1f} alerts/s; for the "
                "comparison install Apprise: .venv/bin/pip install -e '.[bench]'"
            )
            return
        theirs = await apprise_run(info, alerts, chats)
        ours_rate, theirs_rate = count / ours, count / theirs
        print(f"raw throughput, {count} alerts over {chats} chats, fake without limits:")
        print(
            f"  parti-notifier (outbox + lanes, fsync on): {ours_rate:8.1f} alerts/s ({ours:.2f} s)"
        )
        print(
            f"  Apprise {apprise_version()} (async_notify, one object per chat): "
            f"{theirs_rate:8.1f} alerts/s ({theirs:.2f} s)"
        )
        print(f"  ratio parti-notifier / Apprise: {ours_rate / theirs_rate:.2f}x")
    finally:
        await stop_fakes(proc)


def apprise_version() -> str:
    import apprise

    return str(apprise.__version__)


async def apprise_run(info: dict[str, Any], alerts: list[NewAlert], chats: int) -> float:
    import apprise
    from apprise.plugins.telegram import NotifyTelegram

    NotifyTelegram.notify_url = f"{info['telegram']}/bot"  # the same fake
    objects: dict[str, Any] = {}
    for n in range(chats):
        obj = apprise.Apprise()
        obj.add(f"tgram://{info['token']}/{6_000_000 + n}/?format=html")
        objects[f"chat{n}"] = obj
    by_chat: dict[str, list[str]] = {}
    for alert in alerts:
        body = render_telegram.render(AlertView.from_json(alert.payload["view"])).html
        by_chat.setdefault(alert.destination, []).append(body)

    async def lane(name: str) -> int:
        ok = 0
        for body in by_chat[name]:
            ok += bool(
                await objects[name].async_notify(body=body, body_format=apprise.NotifyFormat.HTML)
            )
        return ok

    started = time.monotonic()
    sent = sum(await asyncio.gather(*(lane(name) for name in by_chat)))
    elapsed = time.monotonic() - started
    if sent != len(alerts):
        print(f"  (Apprise delivered {sent} of {len(alerts)})")
    return elapsed


async def main() -> None:
    logging.getLogger("notifier").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=3.0)
    parser.add_argument("--chats", type=int, default=1000)
    parser.add_argument("--webhooks", type=int, default=200)
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory() as folder:
        await fanout(args.scale, args.chats, args.webhooks, folder)
        await throughput(args.count, 20, folder)


if __name__ == "__main__":
    asyncio.run(main())
