"""The Parti simulator and a fake Telegram in a process of their own, for the end-to-end
benchmarks. Prints one JSON line with their URLs; then a small control API (on the
simulator's port, under /_bench/) emits events at a steady rate and reports timings.

Run: .venv/bin/python bench/servers.py [--fail-ratio 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiohttp import web

from notifier.parti.simulator import Simulator
from tests.fakes.telegram import FakeTelegram


class Bench:
    def __init__(self, sim: Simulator, telegram: FakeTelegram, fail_ratio: float) -> None:
        self.sim = sim
        self.telegram = telegram
        self.fail_ratio = fail_ratio
        self.sent_at: dict[str, float] = {}
        self.rng = random.Random(7)

    async def emit(self, request: web.Request) -> web.Response:
        """Emit `count` live events at `rate` per second; titles carry `prefix-N`."""
        body = await request.json()
        count, rate = int(body["count"]), float(body["rate"])
        prefix, users = str(body.get("prefix", "lat")), int(body.get("users", 10))
        distinct = bool(body.get("distinct_users", False))
        start = int(body.get("start", 0))
        began = time.monotonic()
        for n in range(start, start + count):
            due = began + (n - start) / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            uid = 800_000 + (n if distinct else n % users)
            title = f"{prefix}-{n}"
            self.sent_at[title] = time.monotonic()
            await self.sim.go_live(
                uid,
                user_name=f"bench{uid}",
                event_title=title,
                category_name="Gaming",
                viewers_count=10,
            )
        return web.json_response({"emitted": count, "seconds": time.monotonic() - began})

    async def mixed(self, request: web.Request) -> web.Response:
        """`count` frames as fast as subscribers take them: live events of followed users
        (ids below `followed`, one each) in `matching` of them, strangers otherwise, and
        every tenth a BTC price; sent as frames only, the simulator's lists untouched."""
        body = await request.json()
        count, followed = int(body["count"]), int(body["followed"])
        matching = float(body.get("matching", 0.1))
        rng = random.Random(5)
        price = 100_000.0
        began = time.monotonic()
        next_followed = 0
        for n in range(count):
            if n % 10 == 9:
                price = min(max(price * (1 + rng.gauss(0, 0.002)), 80_000), 120_000)
                await self.sim.broadcast(
                    "AssetPriceRefreshNotify",
                    [
                        {
                            "asset_type": "Crypto",
                            "display_symbol": "BTC",
                            "ticker": "bitcoin",
                            "price": f"{price:.2f}",
                            "direction": "up",
                            "price_diff": "0.1",
                        }
                    ],
                )
                continue
            if rng.random() < matching and next_followed < followed:
                uid, next_followed = next_followed, next_followed + 1
            else:
                uid = 1_000_000 + rng.randrange(5_000_000)
            await self.sim.broadcast(
                "NewChannelLiveNotify",
                {
                    "livestream_id": 10_000_000 + n,
                    "user_id": uid,
                    "user_name": f"user{uid}",
                    "event_id": 20_000_000 + n,
                    "event_title": f"mixed-{n}",
                    "category_name": "Other",
                    "viewers_count": 1,
                },
            )
            if n % 200 == 0:
                await asyncio.sleep(0)
        return web.json_response({"emitted": count, "seconds": time.monotonic() - began})

    async def price_burst(self, request: web.Request) -> web.Response:
        body = await request.json()
        count = int(body["count"])
        for n in range(count):
            await self.sim.set_price("BTC", str(90_000 + (n * 37) % 20_000))
            if n % 100 == 0:
                await asyncio.sleep(0)
        return web.json_response({"emitted": count})

    async def results(self, request: web.Request) -> web.Response:
        prefix = request.query.get("prefix", "lat")
        arrived: dict[str, list[float]] = {}
        for entry in self.telegram.requests:
            if entry.get("status") != 200 or entry["method"] not in ("sendMessage", "sendPhoto"):
                continue
            text = entry["params"].get("caption") or entry["params"].get("text", "")
            for word in text.replace("\n", " ").split():
                if word.startswith(f"{prefix}-"):
                    arrived.setdefault(word, []).append(entry["at"])
        sent = {k: v for k, v in self.sent_at.items() if k.startswith(f"{prefix}-")}
        return web.json_response(
            {
                "sent": sent,
                "arrived": arrived,
                "rate_limited": self.telegram.rate_limited,
                "requests": len(self.telegram.requests),
            }
        )

    async def drop(self, request: web.Request) -> web.Response:
        return web.json_response({"dropped": await self.sim.drop_connections()})


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fail-ratio", type=float, default=0.0)
    args = parser.parse_args()
    telegram = FakeTelegram()
    if args.fail_ratio:
        telegram.random_failures(args.fail_ratio, random.Random(11))
    await telegram.start()
    sim = Simulator()
    bench = Bench(sim, telegram, args.fail_ratio)
    await sim.start()
    app = web.Application()
    app.router.add_post("/_bench/emit", bench.emit)
    app.router.add_post("/_bench/prices", bench.price_burst)
    app.router.add_post("/_bench/mixed", bench.mixed)
    app.router.add_get("/_bench/results", bench.results)
    app.router.add_post("/_bench/drop", bench.drop)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    control = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(
        json.dumps(
            {
                "api": sim.api_url,
                "ws": sim.ws_url,
                "telegram": telegram.api_url,
                "token": telegram.token,
                "control": f"http://127.0.0.1:{control}",
            }
        ),
        flush=True,
    )
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    await runner.cleanup()
    await sim.stop()
    await telegram.stop()


if __name__ == "__main__":
    asyncio.run(main())
