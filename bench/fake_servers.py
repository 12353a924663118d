"""The fake Telegram and Discord APIs as their own process, so a benchmark's client and
server do not share one event loop. Prints one JSON line with their URLs, then serves
until stdin closes.

Run: .venv/bin/python bench/fake_servers.py [--scale S] [--webhooks N] [--telegram-scale S]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fakes.discord import FakeDiscord
from tests.fakes.telegram import FakeTelegram


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--scale",
        type=float,
        default=None,
        help="enforce the chat limits, multiplied by this (none: no limits)",
    )
    parser.add_argument("--webhooks", type=int, default=0)
    args = parser.parse_args()
    telegram = await FakeTelegram(limits_scale=args.scale).start()
    discord = await FakeDiscord(limits_scale=args.scale).start()
    hooks = [
        discord.add_webhook(10_000 + n, f"hook{n:04d}" + "x" * 60) for n in range(args.webhooks)
    ]
    print(
        json.dumps(
            {
                "telegram": telegram.api_url,
                "token": telegram.token,
                "discord": discord.api_url,
                "webhooks": hooks,
                "telegram_stats": f"{telegram.api_url}/_fake/stats",
                "discord_stats": f"http://127.0.0.1:{discord.port}/_fake/stats",
            }
        ),
        flush=True,
    )
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    await telegram.stop()
    await discord.stop()


if __name__ == "__main__":
    asyncio.run(main())
