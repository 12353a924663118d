"""Rule-engine matching throughput with 10 / 1,000 / 100,000 user rules plus 10,000 price rules.

Run: .venv/bin/python bench/rules_throughput.py
The same mixed event stream is fed to each engine: 10% of live events come from users
that every configuration follows (so the matching work is the same), 90% from users
no rule names; price events walk BTC/ETH/TSLA/BNB through the price lines. Prints
live and price events per second (best of 5 runs, one core) and the per-event cost
ratio of 100,000 user rules to 10.
"""

from __future__ import annotations

import gc
import os
import platform
import random
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from notifier.parti.models import ChannelLive, PriceUpdate
from notifier.rules.engine import Engine
from notifier.rules.schema import RulesFile

ASSETS = {"BTC": 100_000, "ETH": 4_000, "TSLA": 300, "BNB": 650}
LIVE_EVENTS = 200_000
PRICE_EVENTS = 20_000
PRICE_RULES = 10_000


def build(user_rules: int) -> RulesFile:
    rng = random.Random(1)
    rules: list[dict[str, object]] = []
    for n in range(user_rules):
        user: int | str = n if n % 2 else f"user{n}"
        rules.append({"name": f"u{n}", "when": "live", "users": [user], "notify": ["me"]})
    symbols = list(ASSETS)
    for n in range(PRICE_RULES):
        symbol = symbols[n % len(symbols)]
        base = ASSETS[symbol]
        line = Decimal(base) * Decimal(rng.uniform(0.9, 1.1)).quantize(Decimal("0.0001"))
        key = "above" if n % 2 else "below"
        rules.append(
            {
                "name": f"p{n}",
                "when": "price",
                "asset": symbol,
                key: str(line),
                "rearm": "0.5%",
                "notify": ["me"],
            }
        )
    rules_file = RulesFile.model_validate(
        {
            "destinations": {"me": {"console": {}}},
            "defaults": {"cooldown": "0s"},
            "rules": rules,
        }
    )
    return rules_file


def live_stream() -> list[ChannelLive]:
    rng = random.Random(2)
    events = []
    for i in range(LIVE_EVENTS):
        if rng.random() < 0.1:
            n = rng.randrange(10)  # followed in every configuration
            uid, name = n, f"user{n}"
        else:
            uid = 1_000_000 + rng.randrange(50_000)
            name = f"stranger{uid}"
        events.append(
            ChannelLive(
                user_id=uid,
                user_name=name,
                event_id=i,
                livestream_id=i,
                event_title="I'm Live on Parti",
                category_name="Other",
                viewers_count=rng.randrange(100),
            )
        )
    return events


def price_stream() -> list[PriceUpdate]:
    rng = random.Random(3)
    prices = {s: float(v) for s, v in ASSETS.items()}
    events = []
    for _ in range(PRICE_EVENTS):
        symbol = rng.choice(list(ASSETS))
        prices[symbol] *= 1 + rng.gauss(0, 0.002)
        prices[symbol] = min(max(prices[symbol], ASSETS[symbol] * 0.85), ASSETS[symbol] * 1.15)
        events.append(PriceUpdate(display_symbol=symbol, price=Decimal(f"{prices[symbol]:.2f}")))
    return events


def best_rate(
    engine_for_run: list[Engine], events: list[ChannelLive] | list[PriceUpdate]
) -> tuple[float, int]:
    best = 0.0
    matches = 0
    for engine in engine_for_run:
        evaluate = engine.evaluate
        started = time.perf_counter()
        count = 0
        for i, event in enumerate(events):
            count += len(evaluate(event, float(i)).matches)
        elapsed = time.perf_counter() - started
        best = max(best, len(events) / elapsed)
        matches = count
    return best, matches


def main() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    lives, prices = live_stream(), price_stream()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; pinned to one core"
    )
    print(
        f"{'user rules':>10} {'+price':>7} {'build s':>8} {'live ev/s':>11} {'us/live':>8} "
        f"{'price ev/s':>11} {'us/price':>9} {'alerts':>8}"
    )
    costs = {}
    for user_rules in (10, 1_000, 100_000):
        started = time.perf_counter()
        rules_file = build(user_rules)
        engines = [Engine(rules_file)]
        build_seconds = time.perf_counter() - started
        engines += [Engine(rules_file) for _ in range(4)]
        gc.collect()
        gc.freeze()  # as the daemon does after loading rules: long-lived objects leave the GC
        live_rate, live_alerts = best_rate(engines, lives)
        price_engines = [Engine(rules_file) for _ in range(3)]
        price_rate, price_alerts = best_rate(price_engines, prices)
        costs[user_rules] = 1e6 / live_rate
        print(
            f"{user_rules:>10,} {PRICE_RULES:>7,} {build_seconds:>8.2f} {live_rate:>11,.0f} "
            f"{1e6 / live_rate:>8.2f} {price_rate:>11,.0f} {1e6 / price_rate:>9.2f} "
            f"{live_alerts + price_alerts:>8,}"
        )
    ratio = costs[100_000] / costs[10]
    print(f"per-live-event cost ratio, 100,000 vs 10 user rules: {ratio:.3f} (target <= 1.2)")
    print(
        f"live throughput target >= 100,000 ev/s: "
        f"{'met' if 1e6 / costs[100_000] >= 100_000 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
