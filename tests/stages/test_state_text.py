"""The engine state's JSON text, its large tables encoded a slice at a time, reads back
as the state it was made from."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from notifier.parti.models import ChannelLive
from notifier.rules.compile import compile_rules
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


def test_an_engine_restored_from_the_text_has_the_same_state(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "destinations: {t: {console: {}}}\n"
        "rules: [{name: a, when: live, notify: [t], cooldown: 10m}]\n"
    )
    engine = compile_rules(rules).engine
    now = time.time()
    for user in range(1, 2 * _SLICE + 2):  # more cooldowns than one slice
        engine.evaluate(ChannelLive(user_id=user, user_name=f"u{user}", event_id=user), now)
    saved = engine.export_state(now=now)
    assert len(saved["cooldowns"]) > _SLICE
    again = compile_rules(rules).engine
    again.restore_state(json.loads(state_text(saved)))
    assert again.export_state(now=now) == saved
