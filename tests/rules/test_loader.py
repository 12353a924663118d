"""Loading rules files: every error with its exact line and column, all at once."""

from __future__ import annotations

import json
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notifier.rules.loader import RulesError, load_file, load_text
from notifier.rules.schema import LiveRule, PriceRule, RulesFile, ScheduledRule

ROOT = Path(__file__).resolve().parents[2]
HEAD = """\
version: 1
destinations:
  me:
    telegram: {chat_id: 123}
  room:
    discord: {webhook_url: "https://discord.com/api/webhooks/123456789012345678/x"}
rules:
"""


def errors_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(RulesError) as caught:
        load_text(textwrap.dedent(text), "r.yaml", env or {})
    return [str(p) for p in caught.value.problems]


def test_the_example_file_is_valid_with_its_variable_set() -> None:
    env = {"DISCORD_WEBHOOK_URL": "https://discord.com/api/webhooks/123456789012345678/abc"}
    rules_file = load_file(ROOT / "rules.example.yaml", env)
    kinds = [type(r) for r in rules_file.rules]
    assert kinds.count(LiveRule) == 2 and kinds.count(PriceRule) == 3
    assert kinds.count(ScheduledRule) == 1
    assert rules_file.defaults.cooldown == 600.0
    community = rules_file.destinations["community"].discord
    assert community is not None and community.webhook_url == env["DISCORD_WEBHOOK_URL"]


def test_the_committed_json_schema_is_the_current_one() -> None:
    committed = json.loads((ROOT / "rules.schema.json").read_text())
    assert committed == RulesFile.model_json_schema()
    assert "$schema=./rules.schema.json" in (ROOT / "rules.example.yaml").read_text()


CASES = [
    (
        "unknown key with did-you-mean",
        HEAD + "  - {name: a, when: live, notify: [me], titel_matches: x}\n",
        ["r.yaml:8:41: unknown key 'titel_matches' (did you mean 'title_matches'?) in rules[0]"],
    ),
    (
        "wrong type",
        HEAD + "  - {name: a, when: live, notify: [me], min_viewers: lots}\n",
        [
            "r.yaml:8:54: rules[0].min_viewers: Input should be a valid integer, "
            "unable to parse string as an integer"
        ],
    ),
    (
        "unknown destination",
        HEAD + "  - name: a\n    when: live\n    notify: [me, rom]\n",
        ["r.yaml:10:18: rules[0].notify: unknown destination 'rom' (did you mean 'room'?)"],
    ),
    (
        "invalid regex",
        HEAD + "  - name: a\n    when: live\n    title_matches: '(x'\n    notify: [me]\n",
        [
            "r.yaml:10:20: rules[0].title_matches: invalid regex: missing ), unterminated "
            "subpattern at position 0"
        ],
    ),
    (
        "invalid duration",
        HEAD + "  - {name: a, when: live, notify: [me], cooldown: 10 minutes}\n",
        [
            "r.yaml:8:51: rules[0].cooldown: invalid duration '10 minutes': expected e.g. "
            "30s, 10m, 1h, 1d"
        ],
    ),
    (
        "invalid percentage",
        HEAD + "  - {name: a, when: price, asset: BTC, above: 5, rearm: x%%, notify: [me]}\n",
        ["r.yaml:8:57: rules[0].rearm: invalid percentage 'x%%': expected e.g. 0.5%"],
    ),
    (
        "duplicate rule names",
        HEAD + "  - {name: a, when: live, notify: [me]}\n  - {name: a, when: live, notify: [me]}\n",
        ["r.yaml:9:12: duplicate rule name 'a' (first at rules[0])"],
    ),
    (
        "nothing to notify",
        HEAD + "  - {name: a, when: live, notify: []}\n",
        ["r.yaml:8:35: rules[0].notify: names no destination: a rule needs at least one"],
    ),
    (
        "notify missing",
        HEAD + "  - name: a\n    when: live\n",
        ["r.yaml:8:5: rules[0].notify: missing required key 'notify'"],
    ),
    (
        "price rule without a trigger",
        HEAD + "  - name: p\n    when: price\n    asset: BTC\n    notify: [me]\n",
        ["r.yaml:8:5: rules[0]: a price rule needs one of above, below, move"],
    ),
    (
        "move without within",
        HEAD + "  - {name: p, when: price, asset: ETH, move: 5%, notify: [me]}\n",
        ["r.yaml:8:5: rules[0]: move and within go together"],
    ),
    (
        "discord with neither webhook nor channel",
        "version: 1\ndestinations:\n  d:\n    discord: {mention_role: 1}\nrules: []\n",
        [
            "r.yaml:4:5: destinations.d.discord: a discord destination needs exactly one of "
            "webhook_url, channel_id"
        ],
    ),
    (
        "destination with two kinds",
        "version: 1\ndestinations:\n  d:\n    console: {}\n    telegram: {chat_id: 1}\n",
        [
            "r.yaml:3:3: destinations.d: a destination needs exactly one of telegram, discord, "
            "console (has telegram, console)"
        ],
    ),
    (
        "unknown rule kind",
        HEAD + "  - {name: a, when: online, notify: [me]}\n",
        ["r.yaml:8:21: rules[0].when: 'online' is not one of live, price, scheduled"],
    ),
    (
        "missing when",
        HEAD + "  - {name: a, notify: [me]}\n",
        ["r.yaml:8:5: rules[0]: missing required key 'when' (live, price or scheduled)"],
    ),
    (
        "duplicate YAML key",
        HEAD + "  - name: a\n    when: live\n    notify: [me]\n    notify: [room]\n",
        ["r.yaml:11:5: duplicate key 'notify'"],
    ),
    (
        "template with unknown field",
        HEAD + "  - {name: a, when: live, notify: [me], template: '{{ usr }}'}\n",
        [
            "r.yaml:8:51: rules[0].template: unknown template field 'usr'; known: avatar, "
            "category, caught_up, description, event_id, followers, image, livestream_id, rule, "
            "title, url, user_id, user_name, viewers"
        ],
    ),
    (
        "template syntax error on its second line",
        HEAD + "  - name: a\n    when: live\n    notify: [me]\n    template: |\n"
        "      ok {{ user_name }}\n      {% if %}\n",
        [
            "r.yaml:13:1: rules[0].template: template syntax: Expected an expression, got 'end "
            "of statement block'"
        ],
    ),
    (
        "YAML syntax error",
        "version: 1\ndestinations:\n  me: [unclosed\n",
        ["r.yaml:4:1: YAML syntax: did not find expected ',' or ']'"],
    ),
    (
        "top level is a list",
        "- a\n- b\n",
        ["r.yaml:1:1: the top level must be a mapping"],
    ),
    (
        "empty file",
        "",
        ["r.yaml:1:1: the file is empty: expected version, destinations, rules"],
    ),
    (
        "wrong version",
        "version: 2\ndestinations: {me: {console: {}}}\n",
        ["r.yaml:1:10: version: Input should be 1"],
    ),
    (
        "bad telegram chat id",
        "version: 1\ndestinations: {me: {telegram: {chat_id: 'my chat'}}}\n",
        [
            "r.yaml:2:41: destinations.me.telegram.chat_id: chat_id must be a number or an "
            "@channelusername"
        ],
    ),
]


@pytest.mark.parametrize(("case", "text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_errors_point_at_the_offending_line_and_column(
    case: str, text: str, expected: list[str]
) -> None:
    assert errors_of(text.replace("%%", "%")) == [e.replace("%%", "%") for e in expected]


def test_all_errors_of_a_file_are_reported_at_once() -> None:
    text = (
        "version: 1\n"
        "destinations:\n"
        "  me: {telegram: {chat_id: 1}}\n"
        "defaults: {cooldown: soon}\n"
        "rules:\n"
        "  - {name: a, when: live, notify: [you]}\n"
        "  - {name: a, when: price, asset: BTC, notify: [me]}\n"
        "  - {name: c, when: live, notify: [me], bogus: 1}\n"
    )
    problems = errors_of(text)
    assert [p.split(": ")[0] for p in problems] == [
        "r.yaml:4:22",
        "r.yaml:6:36",
        "r.yaml:7:5",
        "r.yaml:7:12",
        "r.yaml:8:41",
    ]


def test_environment_variables_are_interpolated() -> None:
    text = HEAD.replace("https://discord.com/api/webhooks/123456789012345678/x", "${HOOK}") + (
        "  - {name: a, when: live, users: ['$${NOT_A_VAR}'], notify: [me]}\n"
    )
    text = text.replace("chat_id: 123", 'chat_id: "${CHAT}"')
    hook = "https://discord.com/api/webhooks/223456789012345678/secret"
    rules_file = load_text(text, "r.yaml", {"HOOK": hook, "CHAT": "-100123"})
    telegram = rules_file.destinations["me"].telegram
    discord = rules_file.destinations["room"].discord
    assert telegram is not None and telegram.chat_id == -100123
    assert discord is not None and discord.webhook_url == hook
    rule = rules_file.rules[0]
    assert isinstance(rule, LiveRule) and rule.users == ["${NOT_A_VAR}"]


def test_a_missing_environment_variable_is_one_error_naming_it() -> None:
    text = HEAD.replace("https://discord.com/api/webhooks/123456789012345678/x", "${HOOK}")
    assert errors_of(text) == ["r.yaml:6:28: environment variable HOOK is not set"]


def test_an_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match=r"nope.yaml:1:1: cannot read: No such file"):
        load_file(tmp_path / "nope.yaml")
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(RulesError, match="not UTF-8"):
        load_file(binary)


def test_durations_percentages_and_decimals_are_parsed() -> None:
    text = HEAD + (
        "  - {name: p, when: price, asset: btc, above: 100000.10, rearm: 0.5%, notify: [me],"
        " cooldown: 90s}\n"
        "  - {name: m, when: price, asset: ETH, move: 5%, within: 1h, notify: [me]}\n"
        "  - {name: s, when: scheduled, users: [SNEAKO], before: 15m, notify: [me]}\n"
    )
    rules_file = load_text(text, "r.yaml", {})
    p, m, s = rules_file.rules
    assert isinstance(p, PriceRule) and isinstance(m, PriceRule) and isinstance(s, ScheduledRule)
    assert str(p.above) == "100000.10" and p.cooldown == 90.0, "YAML floats stay exact"
    assert p.above is not None and p.rearm_band(p.above) == Decimal("500.0005")
    assert m.within == 3600.0 and s.before == 900.0


yaml_text = st.text(
    alphabet=st.sampled_from([*list("abc:-[]{}\"'\n #$%&*!|>0123456789."), "\t"]),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(yaml_text)
def test_the_loader_raises_only_rules_errors_on_arbitrary_text(text: str) -> None:
    try:
        load_text(text, "r.yaml", {})
    except RulesError as exc:
        assert exc.problems
        assert all(str(p).startswith("r.yaml:") for p in exc.problems)


FUZZ_FOUND = [
    # an anchor that refers to itself (found by bench/fuzz.py)
    (
        "self-referencing anchor",
        "destinations:\n  x: &id001\n    conso%`e:%`{}%`  me: *id001\n  room: *id001\nversion: 1\n",
        "r.yaml:3:26: the anchor &id001 refers to itself",
    ),
    # a mapping used as a key
    (
        "mapping as a key",
        "{{ title }}",
        "r.yaml:1:2: a mapping cannot be a key",
    ),
    # an escape beyond Unicode in a double-quoted string
    (
        "escape beyond Unicode",
        'destinations: "\\U7fffffff"\n',
        "r.yaml:1:18: YAML syntax: found invalid Unicode character escape code",
    ),
]


@pytest.mark.parametrize(("case", "text", "expected"), FUZZ_FOUND, ids=[c[0] for c in FUZZ_FOUND])
def test_inputs_the_fuzzer_found_are_clear_errors(case: str, text: str, expected: str) -> None:
    assert expected in errors_of(text)
