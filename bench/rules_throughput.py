"""Rule-engine matching throughput with 10 / 1,000 / 100,000 user rules plus 10,000 price rules,
and with 100,000 chat subscriptions across 20,000 chats plus 10,000 price subscriptions.

Run: .venv/bin/python bench/rules_throughput.py [--quick]
The same mixed event stream is fed to each engine: 10% of live events come from users
that every configuration follows (so the matching work is the same), 90% from users
no rule names; price events walk BTC/ETH/TSLA/BNB through the price lines. Prints
live and price events per second (best of 5 runs, one core) and the per-event cost
ratio of 100,000 user rules to 10.

The subscription case: 20,000 chats follow 5 streamers each, drawn from 50,000 streamers
with Zipf popularity (weight 1/rank; the users 1-10 of the shared stream get random
ranks), plus price subscriptions with the same lines as the price rules. It is fed the
same streams, and prints the time to add the subscriptions one by one (and to remove
them), and the cost of an event from one of the ten most followed streamers, which
fans out to thousands of chats. Then the compile of bench/memory.py's rules file from
YAML, on the quick path and on the full path. Last, the engine state's save (made on the
event loop) after 40 go-lives of the most followed streamers with a 10-minute cooldown.
--quick: only the 100,000 cases, fewer runs.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import os
import platform
import random
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from notifier.parti.models import ChannelLive, PriceUpdate
from notifier.rules.engine import Engine
from notifier.rules.schema import RulesFile
from notifier.rules.subscriptions import Subscription

ASSETS = {"BTC": 100_000, "ETH": 4_000, "TSLA": 300, "BNB": 650}
LIVE_EVENTS = 200_000
PRICE_EVENTS = 20_000
PRICE_RULES = 10_000
CHATS = 20_000
FOLLOWS_PER_CHAT = 5
STREAMERS = 50_000
HOT_EVENTS = 300


def price_lines() -> list[tuple[str, str, str]]:
    """(asset, above|below, line) of each price rule or price subscription."""
    rng = random.Random(1)
    symbols = list(ASSETS)
    lines = []
    for n in range(PRICE_RULES):
        symbol = symbols[n % len(symbols)]
        base = ASSETS[symbol]
        line = Decimal(base) * Decimal(rng.uniform(0.9, 1.1)).quantize(Decimal("0.0001"))
        lines.append((symbol, "above" if n % 2 else "below", str(line)))
    return lines


def build(user_rules: int) -> RulesFile:
    rules: list[dict[str, object]] = []
    for n in range(1, user_rules + 1):  # Parti user ids start at 1
        user: int | str = n if n % 2 else f"user{n}"
        rules.append({"name": f"u{n}", "when": "live", "users": [user], "notify": ["me"]})
    for n, (symbol, key, line) in enumerate(price_lines()):
        rules.append(
            {
                "name": f"p{n}",
                "when": "price",
                "asset": symbol,
                key: line,
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


def build_subscriptions() -> tuple[list[Subscription], list[Subscription], list[int]]:
    """Live subscriptions (5 distinct streamers a chat, Zipf popularity), price
    subscriptions (the price rules' lines, spread over the chats), and the streamer ids
    by popularity."""
    rng = random.Random(4)
    by_rank = list(range(1, STREAMERS + 1))
    rng.shuffle(by_rank)
    weights = list(itertools.accumulate(1 / (rank + 1) for rank in range(STREAMERS)))
    live: list[Subscription] = []
    for chat in range(CHATS):
        chat_id = str(-1_000_000_000_000 - chat)
        chosen: set[int] = set()
        while len(chosen) < FOLLOWS_PER_CHAT:
            chosen.update(rng.choices(by_rank, cum_weights=weights, k=1))
        for user_id in sorted(chosen):
            live.append(
                Subscription(
                    id=len(live) + 1,
                    platform="telegram",
                    chat_id=chat_id,
                    kind="live",
                    target=str(user_id),
                    destination=f"@tg:{chat_id}",
                )
            )
    prices: list[Subscription] = []
    for n, (symbol, key, line) in enumerate(price_lines()):
        chat_id = str(-1_000_000_000_000 - n % CHATS)
        prices.append(
            Subscription(
                id=len(live) + n + 1,
                platform="telegram",
                chat_id=chat_id,
                kind="price",
                target=symbol,
                destination=f"@tg:{chat_id}",
                params={"direction": key, "line": line, "rearm": "0.5%"},
            )
        )
    return live, prices, by_rank


def empty_rules(cooldown: str = "0s") -> RulesFile:
    return RulesFile.model_validate(
        {"destinations": {"me": {"console": {}}}, "defaults": {"cooldown": cooldown}}
    )


def subscribed(subs: list[Subscription], cooldown: str = "0s") -> Engine:
    engine = Engine(empty_rules(cooldown))
    for sub in subs:
        engine.add_subscription(sub, now=0.0)
    return engine


def live_stream(
    count: int = LIVE_EVENTS, followed: float = 0.1, users: list[int] | None = None
) -> list[ChannelLive]:
    rng = random.Random(2)
    events = []
    for i in range(count):
        if rng.random() < followed:
            n = rng.choice(users) if users else 1 + rng.randrange(10)  # followed in every case
            uid, name = n, f"user{n}"
        else:
            uid = 1_000_000 + rng.randrange(50_000)
            name = f"stranger{uid}"
        events.append(
            ChannelLive(
                user_id=uid,
                user_name=name,
                event_id=i + 1,
                livestream_id=i + 1,
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


def alternate(
    pairs: list[tuple[Engine, Engine]], events: list[ChannelLive] | list[PriceUpdate]
) -> list[tuple[float, int]]:
    """Best rate and alerts of each side, the two sides' runs taking turns (so a busy
    moment of a shared machine does not land on one side only)."""
    results = [(0.0, 0), (0.0, 0)]
    for pair in pairs:
        for side, engine in enumerate(pair):
            rate, alerts = best_rate([engine], events)
            results[side] = (max(results[side][0], rate), alerts)
    return results


def row(label: str, setup: float, live: tuple[float, int], price: tuple[float, int]) -> str:
    return (
        f"{label:<44} {setup:>7.2f} {live[0]:>10,.0f} {1e6 / live[0]:>8.2f} "
        f"{price[0]:>10,.0f} {1e6 / price[0]:>8.2f} {live[1] + price[1]:>8,}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the 100,000 cases")
    quick = parser.parse_args().quick
    live_runs, price_runs = (2, 1) if quick else (5, 3)
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
    for user_rules in (100_000,) if quick else (10, 1_000, 100_000):
        started = time.perf_counter()
        rules_file = build(user_rules)
        engines = [Engine(rules_file)]
        build_seconds = time.perf_counter() - started
        engines += [Engine(rules_file) for _ in range(live_runs - 1)]
        gc.collect()
        gc.freeze()  # as the daemon does after loading rules: long-lived objects leave the GC
        live_rate, live_alerts = best_rate(engines, lives)
        price_engines = [Engine(rules_file) for _ in range(price_runs)]
        price_rate, price_alerts = best_rate(price_engines, prices)
        costs[user_rules] = 1e6 / live_rate
        print(
            f"{user_rules:>10,} {PRICE_RULES:>7,} {build_seconds:>8.2f} {live_rate:>11,.0f} "
            f"{1e6 / live_rate:>8.2f} {price_rate:>11,.0f} {1e6 / price_rate:>9.2f} "
            f"{live_alerts + price_alerts:>8,}"
        )
    if not quick:
        ratio = costs[100_000] / costs[10]
        print(f"per-live-event cost ratio, 100,000 vs 10 user rules: {ratio:.3f} (target <= 1.2)")
    print(
        f"live throughput target >= 100,000 ev/s: "
        f"{'met' if 1e6 / costs[100_000] >= 100_000 else 'MISSED'}"
    )
    subscriptions(lives, prices, rules_file, engines, build_seconds, price_runs)
    compile_from_yaml(full=not quick)
    state_save()


def state_save(go_lives: int = 40) -> None:
    """The engine state's save (`StateSaver`, every 5 s while events come, and with each
    batch of price crossings), made on the event loop: after `go_lives` go-lives of the
    most followed streamers to the subscriptions' 20,000 chats with a 10-minute cooldown,
    one cooldown per alert. Best of 3; its export and its JSON text apart."""
    from notifier.stages.state import state_text

    live_subs, price_subs, by_rank = build_subscriptions()
    engine = subscribed(live_subs + price_subs, cooldown="10m")
    alerts = 0
    for n, user in enumerate(by_rank[:go_lives]):
        event = ChannelLive(user_id=user, user_name=f"user{user}", event_id=n + 1)
        alerts += len(engine.evaluate(event, 100.0 + n).matches)
    exports, texts = [], []
    for _ in range(3):
        started = time.perf_counter()
        state = engine.export_state(now=100.0 + go_lives)
        exported = time.perf_counter()
        text = state_text(state)
        exports.append(exported - started)
        texts.append(time.perf_counter() - exported)
    print()
    print(
        f"state save after {go_lives} go-lives to {CHATS:,} chats ({alerts:,} alerts, "
        f"{len(state['cooldowns']):,} cooldowns, {len(text) / 1e6:.1f} MB): "
        f"{1e3 * min(exports):.1f} ms export + {1e3 * min(texts):.1f} ms text, "
        f"on the event loop"
    )


def compile_from_yaml(*, full: bool) -> None:
    """The daemon's compile of the memory bench's rules file: the quick path (one rule a
    line) and, unless --quick, the full YAML path the quick path gives other files to."""
    from bench.memory import rules_file as write_rules
    from notifier.rules.compile import compile_rules

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rules.yaml"
        write_rules(path, 100_000, PRICE_RULES)
        print()
        for fast in (True, False) if full else (True,):
            gc.collect()
            started = time.perf_counter()
            compile_rules(path, env={}, fast=fast)
            seconds = time.perf_counter() - started
            label = "quick path" if fast else "full YAML path"
            print(f"compile of the 110,000-rule file ({label}): {seconds:.2f} s")


def subscriptions(
    lives: list[ChannelLive],
    prices: list[PriceUpdate],
    rules_file: RulesFile,
    file_engines: list[Engine],
    build_seconds: float,
    price_runs: int,
) -> None:
    """100,000 subscriptions beside the 100,000 file rules (`file_engines`), in one run."""
    live_subs, price_subs, by_rank = build_subscriptions()
    everything = live_subs + price_subs
    gc.collect()
    started = time.perf_counter()
    engine = subscribed(everything)
    add_seconds = time.perf_counter() - started
    gc.collect()
    gc.freeze()
    # Live matching leaves no state behind (cooldown 0s): the runs share one engine. Price
    # lines keep state: each run gets engines of its own (live rules and subscriptions
    # take no part in price matching).
    file_live, sub_live = alternate([(e, engine) for e in file_engines], lives)
    price_pairs = [(Engine(rules_file), subscribed(price_subs)) for _ in range(price_runs)]
    file_price, sub_price = alternate(price_pairs, prices)
    print()
    print(
        f"{'side by side, runs taking turns':<44} {'setup s':>7} {'live ev/s':>10} "
        f"{'us/live':>8} {'price ev/s':>10} {'us/price':>8} {'alerts':>8}"
    )
    print(row("100,000 file rules + 10,000 price rules", build_seconds, file_live, file_price))
    label = f"{len(live_subs):,} subs / {CHATS:,} chats + {len(price_subs):,} price"
    print(row(label, add_seconds, sub_live, sub_price))
    print(
        f"per-live-event cost, subscriptions vs file rules: "
        f"{sub_live[0] and file_live[0] / sub_live[0]:.3f}"
    )
    print(
        f"adding {len(everything):,} subscriptions one by one: {add_seconds:.2f} s "
        f"({add_seconds * 1e6 / len(everything):.1f} us each, validation included)"
    )
    hot = live_stream(HOT_EVENTS, followed=1.0, users=by_rank[:10])
    hot_rate, hot_alerts = best_rate([engine], hot)
    followers = sum(1 for sub in live_subs if sub.target == str(by_rank[0]))
    print(
        f"an event of a top-10 streamer ({followers:,} subscriptions to the top one): "
        f"{1e3 / hot_rate:.2f} ms for {hot_alerts / len(hot):,.0f} alerts on average "
        f"({1e6 * len(hot) / hot_rate / hot_alerts:.2f} us per alert)"
    )
    gc.unfreeze()
    started = time.perf_counter()
    for sub in everything:
        engine.remove_subscription(sub.id)
    remove_seconds = time.perf_counter() - started
    left = {k: v for k, v in engine.index_sizes().items() if v}
    print(
        f"removing them one by one: {remove_seconds:.2f} s "
        f"({remove_seconds * 1e6 / len(everything):.1f} us each); indexes left: {left or 'none'}"
    )


if __name__ == "__main__":
    main()
