"""Fuzzing the two parsers that take outside input: the frame decoder and the rules loader.

Run: .venv/bin/python bench/fuzz.py [--inputs 100000]

Hypothesis generates the inputs (no shrinking database; a fixed seed, so a run can be
repeated). A crash is any exception other than the parser's own error (DecodeError,
RulesError). Prints inputs tried and crashes for each; exits 1 on a crash, which then
belongs in a regression test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from notifier.parti.decode import DecodeError, decode_frame
from notifier.rules.loader import RulesError, load_text

FRAME_KEYS = [
    "user_id",
    "user_name",
    "livestream_id",
    "event_id",
    "event_title",
    "price",
    "display_symbol",
    "ticker",
    "type",
    "data",
    "payload",
    "category_name",
    "viewers_count",
    "NewChannelLiveNotify",
    "AssetPriceRefreshNotify",
    "kind",
]
RULE_KEYS = [
    "name",
    "when",
    "users",
    "categories",
    "title_matches",
    "min_viewers",
    "exclude_users",
    "notify",
    "on_end",
    "template",
    "asset",
    "above",
    "below",
    "rearm",
    "move",
    "within",
    "fire_on_start",
    "cooldown",
    "before",
    "bogus",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(
        [
            "live",
            "price",
            "scheduled",
            "5%",
            "10m",
            "${HOME}",
            "${NOPE}",
            "me",
            "{{ title }}",
            "{% if %}",
            "(x",
            "NaN",
        ]
    )
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(FRAME_KEYS) | st.text(max_size=6), inner, max_size=6)
    ),
    max_leaves=25,
)
rule = st.dictionaries(
    st.sampled_from(RULE_KEYS),
    st.recursive(scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=5),
    max_size=8,
)
rules_doc = st.fixed_dictionaries(
    {
        "version": st.sampled_from([1, 1, 1, 2, "1"]),
        "destinations": st.dictionaries(
            st.sampled_from(["me", "room", "x"]),
            st.sampled_from(
                [
                    {"console": {}},
                    {"telegram": {"chat_id": 1}},
                    {
                        "discord": {
                            "webhook_url": "https://discord.com/api/webhooks/123456789012345678/t"
                        }
                    },
                    {"discord": {}},
                    {"telegram": {"chat_id": "nope"}},
                    {},
                ]
            ),
            max_size=3,
        ),
        "rules": st.lists(rule, max_size=4),
    }
)


class Tally:
    def __init__(self, name: str) -> None:
        self.name = name
        self.tried = 0
        self.crashes: list[str] = []

    def crash(self, data: Any) -> None:
        self.crashes.append(f"{data!r:.300}\n{traceback.format_exc(limit=3)}")


def _settings(examples: int) -> settings:
    # Generation only: no shrinking database, a fixed seed per test, no health checks.
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )


def fuzz_decoder(inputs: int) -> Tally:
    tally = Tally("frame decoder")
    config = _settings(inputs // 2)

    @seed(1)
    @config
    @given(st.text(max_size=300) | st.binary(max_size=300))
    def raw(data: str | bytes) -> None:
        tally.tried += 1
        try:
            decode_frame(data)
        except DecodeError:
            pass
        except Exception:
            tally.crash(data)

    @seed(2)
    @config
    @given(json_values)
    def structured(value: Any) -> None:
        tally.tried += 1
        text = json.dumps(value)
        try:
            decode_frame(text)
        except DecodeError:
            pass
        except Exception:
            tally.crash(text)

    raw()
    structured()
    return tally


def fuzz_loader(inputs: int) -> Tally:
    tally = Tally("rules loader")
    config = _settings(inputs // 2)
    env = {"HOME": "/root"}

    def load(text: str) -> None:
        tally.tried += 1
        try:
            load_text(text, "fuzz.yaml", env)
        except RulesError as exc:
            assert exc.problems and all(p.line >= 1 and p.column >= 1 for p in exc.problems)
        except Exception:
            tally.crash(text)

    @seed(3)
    @config
    @given(
        rules_doc,
        st.integers(min_value=0, max_value=3),
        st.integers(0, 10_000),
        st.text(alphabet="{}[]:-#&*!|>'\"%@` \n\t", max_size=3),
    )
    def documents(doc: dict[str, Any], mutations: int, where: int, junk: str) -> None:
        try:
            text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
        except yaml.YAMLError:
            return
        for _ in range(mutations):  # damage the text a little, like a typo would
            position = where % (len(text) + 1)
            text = text[:position] + junk + text[position + 1 :]
        load(text)

    @seed(4)
    @config
    @given(st.text(alphabet=st.characters(codec="utf-8"), max_size=200))
    def raw(text: str) -> None:
        load(text)

    documents()
    raw()
    return tally


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--inputs", type=int, default=100_000)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    failed = False
    for run in (fuzz_decoder, fuzz_loader):
        started = time.monotonic()
        tally = run(args.inputs)
        seconds = time.monotonic() - started
        print(
            f"{tally.name}: {tally.tried:,} inputs in {seconds:.0f} s, "
            f"{len(tally.crashes)} crashes (target 0)"
        )
        for crash in tally.crashes[:3]:
            print(crash)
        failed = failed or bool(tally.crashes)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
