"""`notifier run` with the benchmark knobs the settings do not offer (client rate-limit
scale, fsync, reconnect pace). The daemon itself is the same App.

Run: .venv/bin/python bench/daemon_main.py RULES [--limits-scale S] [--no-fsync]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from notifier import log
from notifier.app import App, Options
from notifier.settings import Settings


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("rules")
    parser.add_argument("--limits-scale", type=float, default=1.0)
    parser.add_argument("--no-fsync", action="store_true")
    parser.add_argument("--reconnect-base", type=float, default=1.0)
    args = parser.parse_args()
    settings = Settings()
    log.setup(settings.log_format)
    options = Options(
        limits_scale=args.limits_scale,
        durable=not args.no_fsync,
        reconnect_base=args.reconnect_base,
        reconnect_cap=5.0,
        lease=10.0,
    )
    app = App(settings, rules_path=args.rules, options=options)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, app.request_stop)
    loop.add_signal_handler(signal.SIGHUP, app.request_reload)
    return await app.run()


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
