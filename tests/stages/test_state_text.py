"""The engine state's JSON text, its large tables encoded a slice at a time, reads back
as the state it was made from."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from notifier.parti.models import ChannelLive, PriceUpdate
from notifier.rules.compile import compile_rules
from notifier.rules.engine import _table_key
from notifier.stages.state import _SLICE, state_text


@pytest.mark.parametrize(
    "state",
    [
        {},
        {"version": 1, "cooldowns": {}},
        {"version": 1, "cooldowns": {f'["r","{n}","t"]': [1.5, f"live:{n}"] for n in range(5)}},
        # a table just over, and far over, one slice; keys with quotes and non-ASCII
        {"cooldowns": {f'["r{n}","é\\"{n}","t"]': [n, "x"] for n in range(_SLICE + 1)}},
        {
            "version": 1,
            "prices": {"BTC": "90000.5"},
            "lines": {f"p{n}": {"armed": True, "seq": 2} for n in range(3 * _SLICE + 7)},
            "cooldowns": {str(n): [n * 0.5, None] for n in range(2 * _SLICE)},
            "reminded": {},
        },
    ],
)
def test_the_text_reads_back_as_the_state(state: dict[str, Any]) -> None:
    assert json.loads(state_text(state)) == json.loads(json.dumps(state))


def cooling(tmp_path: Path, users: int) -> tuple[Path, float, dict[str, Any]]:
    """A rules file with a 10-minute cooldown, and the state its engine exports after a
    go-live of each of `users` streamers."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "destinations: {t: {console: {}}}\n"
        "rules: [{name: a, when: live, notify: [t], cooldown: 10m}]\n"
    )
    engine = compile_rules(rules).engine
    now = time.time()
    for user in range(1, users + 1):
        engine.evaluate(ChannelLive(user_id=user, user_name=f"u{user}", event_id=user), now)
    return rules, now, engine.export_state(now=now)


def test_an_engine_restored_from_the_text_has_the_same_state(tmp_path: Path) -> None:
    rules, now, saved = cooling(tmp_path, 2 * _SLICE + 1)  # more cooldowns than one slice
    assert len(saved["cooldowns"]) > _SLICE
    again = compile_rules(rules).engine
    again.restore_state(json.loads(state_text(saved)))
    assert again.export_state(now=now) == saved


HOSTILE = [
    "plain",
    'quote " and \\ backslash',
    "é 漢字 🙂",
    "\x00\x1f\u2028",
    "lone \ud800 surrogate",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_any_text_in_a_saved_state_reads_back_the_same(text: str) -> None:
    """orjson makes the text, and json when orjson refuses a string (a lone surrogate)."""
    state = {
        "version": 1,
        "prices": {"BTC": "1"},
        "cooldowns": {_table_key((text, "1", text)): [1.5, text] for _ in range(2)},
        "reminded": {_table_key((text, 7)): 3},
    }
    read = json.loads(state_text(state))
    assert read == json.loads(json.dumps(state))
    ((key, _),) = read["cooldowns"].items()
    assert json.loads(key) == [text, "1", text]
    ((reminder, _),) = read["reminded"].items()
    assert json.loads(reminder) == [text, 7]


def test_a_state_saved_by_the_previous_release_restores_the_same(tmp_path: Path) -> None:
    """Its cooldown and reminder keys were json's (`["a", "1", "t"]`, spaces and all, the
    event id as text): they are read with json.loads, so either form restores."""
    rules, now, saved = cooling(tmp_path, 3)
    old = dict(saved)
    old["cooldowns"] = {
        json.dumps(json.loads(key), ensure_ascii=False): value
        for key, value in saved["cooldowns"].items()
    }
    assert set(old["cooldowns"]) != set(saved["cooldowns"])  # the other form
    again = compile_rules(rules).engine
    again.restore_state(json.loads(json.dumps(old)))
    assert again.export_state(now=now) == saved


def test_a_damaged_entry_in_a_saved_state_is_forgotten_not_a_failed_start(
    tmp_path: Path,
) -> None:
    """A state edited by hand, or a NaN saved as null: that cooldown or reminder is lost,
    the others are restored, and nothing raises."""
    rules, now, saved = cooling(tmp_path, 2)
    good = dict(saved["cooldowns"])
    damaged = {
        "version": 1,
        "cooldowns": good
        | {
            '["a","9","t"]': [None, "x"],
            '["a","10","t"]': ["Infinity", "x"],
            '["a","11","t"]': [1.0],
            '["a","12"]': [now + 60, "x"],
            "not json": [now + 60, "x"],
            '["a","13","t"]': "x",
        },
        "reminded": {'["a",5]': int(now), '["a","x"]': 3, '["a"]': 3, '["a",6]': None},
    }
    again = compile_rules(rules).engine
    again.restore_state(json.loads(json.dumps(damaged)))
    restored = again.export_state(now=now)
    assert restored["cooldowns"] == good
    assert list(restored["reminded"]) == [_table_key(("a", 5))]


def test_damaged_price_line_and_move_entries_are_skipped_and_the_rest_restored(
    tmp_path: Path,
) -> None:
    """A price that is no number (or NaN: compared later, it would raise on every price),
    a line's or move's state of the wrong type: each is skipped and counted; the lines
    take their baseline from the known price, and the intact entries are restored."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "destinations: {t: {console: {}}}\n"
        "rules:\n"
        "- {name: a, when: price, asset: BTC, above: 100, cooldown: 0s, notify: [t]}\n"
        "- {name: b, when: price, asset: ETH, above: 10, cooldown: 0s, notify: [t]}\n"
        "- {name: m, when: price, asset: ETH, move: 5%, within: 1h, cooldown: 0s, notify: [t]}\n"
        "- {name: c, when: live, notify: [t], cooldown: 10m}\n"
    )
    first = compile_rules(rules).engine
    first.evaluate(ChannelLive(user_id=1, user_name="u1", event_id=1), 1.0)
    saved = json.loads(json.dumps(first.export_state(now=1.0)))
    engine = compile_rules(rules).engine
    line, move = engine._books["btc"].above[0], engine._books["eth"].moves[0]
    damaged = {
        "version": 1,
        "prices": {"btc": "90", "eth": "NaN", "sol": "abc", "doge": [1]},
        "lines": {line.state_key(): {"armed": True, "stamp": "x"}, '["sub:1"': {}},
        "moves": {move.state_key(): {"stamp": 1, "highs": [[0, "Infinity"]]}},
        "cooldowns": saved["cooldowns"],
        "reminded": [],
    }
    assert engine.restore_state(damaged) == 7
    assert engine.last_price("BTC") == Decimal(90) and engine.last_price("ETH") is None
    assert line.armed and line.stamp is None, "its baseline from the restored price"
    assert json.loads(json.dumps(engine.export_state(now=1.0)))["cooldowns"] == saved["cooldowns"]
    assert engine.evaluate(PriceUpdate(display_symbol="ETH", price=Decimal(9)), 2.0).matches == []
    assert len(engine.evaluate(PriceUpdate(display_symbol="ETH", price=Decimal(11)), 3.0).matches)
    assert len(engine.evaluate(PriceUpdate(display_symbol="BTC", price=Decimal(101)), 4.0).matches)
