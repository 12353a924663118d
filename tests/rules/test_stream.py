"""Compiling rules straight from YAML events gives what the full loader gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from notifier.parti.models import ChannelLive
from notifier.rules.loader import RulesError
from notifier.rules.stream import compile_rules

ROOT = Path(__file__).resolve().parents[2]
ENV = {"DISCORD_WEBHOOK_URL": "https://discord.com/api/webhooks/123456789012345678/abc"}


def test_the_example_compiles_with_its_templates_and_on_end() -> None:
    compiled = compile_rules(ROOT / "rules.example.yaml", env=ENV)
    assert compiled.engine.summary() == {"live": 2, "price": 3, "scheduled": 1}
    assert compiled.rules_file.rules == []
    assert compiled.meta["friends-live"].on_end == "edit"
    assert compiled.meta["gaming"].template is not None
    assert compiled.rules_file.destinations["community"].discord is not None


@pytest.mark.parametrize(
    "text",
    [
        # the header after the rules
        "rules:\n  - {name: a, when: live, users: [SNEAKO], notify: [me]}\n"
        "destinations: {me: {console: {}}}\ndefaults: {cooldown: 0s}\n",
        # anchors and aliases
        "destinations: {me: {console: {}}}\nx: &who [SNEAKO]\n"
        "rules:\n  - {name: a, when: live, users: *who, notify: [me]}\n",
        # a merge key
        "destinations: {me: {console: {}}}\nbase: &b {when: live, notify: [me]}\n"
        "rules:\n  - {<<: *b, name: a, users: [SNEAKO]}\n",
    ],
    ids=["header-after-rules", "alias", "merge-key"],
)
def test_forms_the_stream_does_not_take_still_compile(tmp_path: Path, text: str) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    try:
        compiled = compile_rules(path, env={})
    except RulesError as exc:  # unknown top-level keys are errors: that is fine too
        assert all(str(p).startswith(str(path)) for p in exc.problems)
        return
    event = ChannelLive(user_id=1, user_name="SNEAKO", event_id=1)
    assert [m.rule for m in compiled.engine.on_live(event, now=0.0).matches] == ["a"]


def test_a_file_with_errors_reports_them_with_positions(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        "destinations: {me: {console: {}}}\nrules:\n  - {name: a, when: live, notify: [you]}\n"
    )
    with pytest.raises(RulesError) as caught:
        compile_rules(path, env={})
    assert str(caught.value.problems[0]).startswith(f"{path}:3:36: rules[0].notify")


def test_defaults_and_duplicate_names_are_honoured(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        "destinations: {me: {console: {}}}\ndefaults: {cooldown: 0s}\n"
        "rules:\n  - {name: a, when: live, users: [1], notify: [me]}\n"
        "  - {name: a, when: live, users: [2], notify: [me]}\n"
    )
    with pytest.raises(RulesError, match="duplicate rule name"):
        compile_rules(path, env={})
    path.write_text(
        "destinations: {me: {console: {}}}\ndefaults: {cooldown: 0s}\n"
        "rules:\n  - {name: a, when: live, users: [1], notify: [me]}\n"
    )
    engine = compile_rules(path, env={}).engine
    first = engine.on_live(ChannelLive(user_id=1, user_name="x", event_id=1), now=0.0)
    second = engine.on_live(ChannelLive(user_id=1, user_name="x", event_id=2), now=1.0)
    assert len(first.matches) == len(second.matches) == 1, "cooldown 0s from defaults"
