"""The quick path of the rules compile (one flow-style rule a line) gives the very engine
the full YAML path gives, takes the plain forms, and gives every other file back."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notifier.parti.models import ChannelLive
from notifier.rules.compile import Compiled, RulesError, _Quick, compile_rules, compile_text

HEADER = (
    "version: 1\n"
    "destinations:\n"
    "  me: {console: {}}\n"
    "  tg: {telegram: {chat_id: 1001}}\n"
    "defaults: {cooldown: 5m}\n"
)


def fingerprint(compiled: Compiled) -> Any:
    """Everything the engine compiled, in comparable form (reprs show the value types)."""
    engine = compiled.engine
    count = len(engine._live_names)
    books = {
        key: ([repr(line) for line in book.lines()], [repr(move) for move in book.moves])
        for key, book in engine._books.items()
    }
    return (
        compiled.rules_file,
        compiled.meta,
        engine.summary(),
        [engine._live_names[i] for i in range(count)],
        [repr(engine._live_filters[i]) for i in range(count)],
        engine._by_user_id,
        engine._by_user_name,
        engine._by_category_id,
        engine._by_category_name,
        engine._catch_all,
        books,
        [repr(s) for s in engine._scheduled],
    )


def outcome(text: str, *, fast: bool) -> Any:
    try:
        return fingerprint(compile_text(text, "r.yaml", variables={"X": "1"}, fast=fast))
    except RulesError as exc:
        return [str(p) for p in exc.problems]


def quick_takes(text: str) -> bool:
    context = {"discord_api_url": None}
    return _Quick("r.yaml", {}, context, None).run(io.StringIO(text, newline=None)) is not None


TAKEN = {
    "users-by-id-and-name": "rules:\n  - {name: a, when: live, users: [1, SNEAKO], notify: [me]}\n",
    "spaces-and-commas": "rules:\n  - { name: a b ,when: live,  users: [ Jack Doherty ,2 ], "
    "notify: [me, tg] }\n",
    "quoted": "rules:\n  - {name: \"x: y, z # w\", when: 'live', users: ['yes', \"0x1F\"], "
    "notify: ['me']}\n",
    "comments-and-blanks": "rules:   # the rules\n\n  # one\n  - {name: a, when: live, "
    "notify: [me]}  # catch-all\n   \n",
    "no-indent": "rules:\n- {name: a, when: live, categories: [Gaming, 10], notify: [me]}\n"
    "- {name: b, when: live, exclude_users: [x, 5], notify: [me]}\n",
    "filters": "rules:\n  - {name: a, when: live, users: [1], title_matches: ranked, "
    "min_viewers: 20, cooldown: 30m, on_end: delete, notify: [tg]}\n"
    "  - {name: b, when: live, users: [2], title_matches: ranked, min_viewers: 20, "
    "cooldown: 30m, notify: [tg]}\n",
    "template": "rules:\n  - {name: a, when: live, users: [1], template: '{{ user_name }} live', "
    "notify: [me]}\n",
    "price-and-scheduled": "rules:\n  - {name: p, when: price, asset: BTC, above: 100000.10, "
    "rearm: 0.5%, notify: [me]}\n  - {name: q, when: price, asset: ETH, below: 3000, rearm: 50, "
    "fire_on_start: yes, notify: [me]}\n  - {name: m, when: price, asset: ETH, move: 5%, "
    "within: 1h, notify: [me]}\n  - {name: s, when: scheduled, users: [1], before: 10m, "
    "notify: [me]}\n",
    "unicode": "rules:\n  - {name: Ünïcødé, when: live, users: [Müller, 名前], notify: [me]}\n",
    "crlf": "rules:\r\n  - {name: a, when: live, users: [1], notify: [me]}\r\n",
    "no-final-newline": "rules:\n  - {name: a, when: live, users: [1], notify: [me]}",
    "directive-and-marker": "%YAML 1.1\n---\n" + HEADER + "rules:\n  - {name: a, when: live, "
    "notify: [me]}\n",
    "octal-user": "rules:\n  - {name: a, when: live, users: [017, 0x1F], notify: [me]}\n",
    "empty-lists": "rules:\n  - {name: a, when: live, users: [], categories: [ ], notify: [me]}\n",
}


@pytest.mark.parametrize("rules", TAKEN.values(), ids=TAKEN.keys())
def test_the_quick_path_takes_plain_lines_and_compiles_what_the_full_path_does(
    rules: str,
) -> None:
    text = rules if rules.startswith("%") else HEADER + rules
    assert quick_takes(text)
    assert outcome(text, fast=True) == outcome(text, fast=False)


GIVEN_BACK = {
    "header-after-rules": "rules:\n  - {name: a, when: live, notify: [me]}\n" + HEADER,
    "flow-header": "{destinations: {me: {console: {}}}}\nrules:\n"
    "  - {name: a, when: live, notify: [me]}\n",
    "document-end": HEADER + "...\nrules:\n  - {name: a, when: live, notify: [me]}\n",
    "second-document": HEADER + "---\nrules:\n  - {name: a, when: live, notify: [me]}\n",
    "rules-twice": HEADER + "rules: []\nrules:\n  - {name: a, when: live, notify: [me]}\n",
    "duplicate-name": HEADER + "rules:\n  - {name: a, when: live, users: [1], notify: [me]}\n"
    "  - {name: a, when: live, users: [2], notify: [me]}\n",
    "unknown-destination": HEADER + "rules:\n  - {name: a, when: live, notify: [you]}\n",
    "a-key-twice": HEADER + "rules:\n  - {name: a, name: b, when: live, notify: [me]}\n",
    "boolean-key": HEADER + "rules:\n  - {name: a, when: live, on: x, notify: [me]}\n",
    "unknown-key": HEADER + "rules:\n  - {name: a, when: live, to: [me]}\n",
    "variable": HEADER + "rules:\n  - {name: '${X}', when: live, notify: [me]}\n",
    "anchor": HEADER + "rules:\n  - &a {name: a, when: live, notify: [me]}\n",
    "block-rule": HEADER + "rules:\n  - name: a\n    when: live\n    notify: [me]\n",
    "uneven-indent": HEADER + "rules:\n  - {name: a, when: live, users: [1], notify: [me]}\n"
    "    - {name: b, when: live, users: [2], notify: [me]}\n",
    "line-break-in-comment": HEADER + "rules:\n  - {name: a, when: live, users: [1], "
    "notify: [me]}  # x\u2028  - {name: b, when: live, notify: [me]}\n",
    "escape-in-quotes": HEADER + 'rules:\n  - {name: "a\\tb", when: live, notify: [me]}\n',
    "date-name": HEADER + "rules:\n  - {name: 2024-01-01, when: live, notify: [me]}\n",
    "boolean-user": HEADER + "rules:\n  - {name: a, when: live, users: [yes], notify: [me]}\n",
    "bad-cooldown": HEADER + "rules:\n  - {name: a, when: live, cooldown: soon, notify: [me]}\n",
    "cooldown-list": HEADER + "rules:\n  - {name: a, when: live, cooldown: [1], notify: [me]}\n",
    "bad-pattern": HEADER + "rules:\n  - {name: a, when: live, title_matches: 'a(?=b)', "
    "notify: [me]}\n",
    "bad-template": HEADER + "rules:\n  - {name: a, when: live, template: '{{ nope }}', "
    "notify: [me]}\n",
    "bad-price": HEADER + "rules:\n  - {name: p, when: price, asset: BTC, notify: [me]}\n",
    "line-at-0": HEADER + "rules:\n  - {name: p, when: price, asset: BTC, above: 0, "
    "notify: [me]}\n",
    "negative-line": HEADER + "rules:\n  - {name: p, when: price, asset: BTC, below: -5, "
    "notify: [me]}\n",
    "rearm-to-0": HEADER + "rules:\n  - {name: p, when: price, asset: BTC, above: 100, "
    "rearm: 100%, notify: [me]}\n",
    "rearm-past-the-line": HEADER + "rules:\n  - {name: p, when: price, asset: BTC, above: 100, "
    "rearm: 150, notify: [me]}\n",
    "bad-header": "version: 2\n" + HEADER.split("\n", 1)[1] + "rules:\n"
    "  - {name: a, when: live, notify: [me]}\n",
    "no-rules-line": HEADER + "rules: [{name: a, when: live, notify: [me]}]\n",
    "trailing-text": HEADER + "rules:\n  - {name: a, when: live, notify: [me]} x\n",
}


@pytest.mark.parametrize("text", GIVEN_BACK.values(), ids=GIVEN_BACK.keys())
def test_the_quick_path_gives_back_what_it_cannot_take_and_the_result_is_the_full_paths(
    text: str,
) -> None:
    assert not quick_takes(text)
    assert outcome(text, fast=True) == outcome(text, fast=False)


SCALARS = [
    "1", "0", "017", "0x1F", "0b11", "1_000", "-1", "+1", "1.5", ".5", "1e5", "1.0e+5", ".inf",
    ".NaN", "yes", "No", "on", "OFF", "y", "n", "true", "False", "null", "Null", "2024-01-01",
    "12.5%", "0.5%", "10m", "1h", "live", "price", "scheduled", "me", "tg", "a b", "Ü", "x.y",
    "_", "9" * 60, "1.",
]  # fmt: skip
KEYS = [
    "name", "when", "users", "notify", "categories", "exclude_users", "min_viewers",
    "cooldown", "title_matches", "on_end", "template", "asset", "above", "below", "rearm",
    "move", "within", "fire_on_start", "before", "on", "y", "bogus",
]  # fmt: skip

scalar_text = st.one_of(
    st.sampled_from(SCALARS),
    st.text(alphabet="ab1.%+-_ Ü:#,\"'$[]{}yn0x", min_size=1, max_size=6),
)
rendered = st.one_of(
    scalar_text,
    scalar_text.map(lambda t: f'"{t}"'),
    scalar_text.map(lambda t: f"'{t}'"),
)
value = st.one_of(
    rendered,
    st.lists(rendered, max_size=3).map(lambda items: "[" + ", ".join(items) + "]"),
)
base = {"name": "r", "when": "live", "users": "[1]", "notify": "[me]"}
wild = st.fixed_dictionaries({}, optional={key: value for key in KEYS}).map(
    lambda extra: {**base, **extra}
)


def pool(*texts: str) -> st.SearchStrategy[str]:
    return st.sampled_from(texts)


def listed(items: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.lists(items, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]")


WHO = pool(
    "1", "017", "0x1F", "SNEAKO", "Jack Doherty", "'yes'", '"1"', "Ü", "1_000", "a.b", "x%",
    "yes", "1.5", "null", "2024-01-01",
)  # fmt: skip
LIVE = {
    "users": listed(WHO),
    "categories": listed(WHO),
    "exclude_users": listed(WHO),
    "min_viewers": pool("0", "20", "1_000", "0x10", "'5'", "1000000001", "yes", "1.0", "-1"),
    "cooldown": pool("0s", "10m", "1h", "30", "1.5", "'10m'", "soon", "366d", "yes"),
    "title_matches": pool("ranked", "'(?i)a|b'", "x y", "'a(?=b)'", "'['"),
    "on_end": pool("edit", "delete", "ignore", "'edit'", "maybe", "null"),
    "template": pool("'{{ user_name }}'", "'{{ nope }}'", "hello", "'{{ price }}'"),
}
PRICE = {
    "asset": pool("BTC", "eth", "'BTC'", "1", "yes"),
    "above": pool("100", "100000.10", "1e3", "'100'", "0x10", "yes", ".inf", "1_000.5"),
    "below": pool("90", "0.000001", "'90'", "-5", "1000000000000000"),
    "rearm": pool("0.5%", "50", "'1%'", "101%", "-1", "yes"),
    "move": pool("5%", "'5%'", "0%", "2000%", "5"),
    "within": pool("1h", "30m", "'1h'", "soon"),
    "fire_on_start": pool("yes", "true", "no", "'yes'", "1"),
    "cooldown": LIVE["cooldown"],
}
plausible = st.one_of(
    st.fixed_dictionaries(
        {
            "name": pool("r", "'r'", '"r x"'),
            "when": pool("live", "live", "'live'", "price"),
            "notify": pool("[me]", "[tg, me]", "['tg']", "[me, me]", "[you]", "[]", "me"),
        },
        optional=LIVE,
    ),
    st.fixed_dictionaries(
        {"name": pool("p", "'p'"), "when": pool("price", "'price'"), "notify": pool("[me]")},
        optional=PRICE,
    ),
)


def numbered(rules: list[dict[str, str]]) -> list[dict[str, str]]:
    """Names made unique (a name ending in r or p), one in five left to clash."""
    named = []
    for n, rule in enumerate(rules):
        name = rule["name"]
        if n % 5 and name[-1] in "rp":
            name = name + str(n)
        named.append({**rule, "name": name})
    return named


# The same, from values that pass (tricky ones still): files the quick path takes.
VALID_WHO = pool("1", "017", "0x1F", "SNEAKO", "Jack Doherty", "'yes'", '"1"', "Ü", "1_000")
valid = st.one_of(
    st.fixed_dictionaries(
        {"name": pool("r", "'r'", '"r x"'), "when": pool("live", "'live'"), "notify": pool("[me]")},
        optional={
            "users": listed(VALID_WHO),
            "categories": listed(VALID_WHO),
            "exclude_users": listed(VALID_WHO),
            "min_viewers": pool("0", "20", "1_000", "0x10", "'5'"),
            "cooldown": pool("0s", "10m", "1h", "30", "1.5", "'10m'"),
            "title_matches": pool("ranked", "'(?i)a|b'", "x y"),
            "on_end": pool("edit", "delete", "ignore", "'edit'"),
            "template": pool("'{{ user_name }}'", "hello"),
        },
    ),
    st.fixed_dictionaries(
        {"name": pool("p", "'p'"), "when": pool("price"), "notify": pool("[tg]")},
        optional={
            "asset": pool("BTC", "eth", "'BTC'"),
            "above": pool("100", "100000.10", "1e3", "'100'", "0x10", "1_000.5"),
            "rearm": pool("0.5%", "50", "'1%'"),
            "fire_on_start": pool("yes", "true", "no", "1"),
        },
    ).map(lambda rule: {"asset": "BTC", "above": "1", **rule}),
)

rule_line = st.one_of(wild, plausible, valid)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rule_line, min_size=1, max_size=4), st.sampled_from(["", "  ", "    "]))
def test_the_quick_and_full_paths_agree_on_any_rule_lines(
    rules: list[dict[str, str]], indent: str
) -> None:
    lines = [
        indent + "- {" + ", ".join(f"{k}: {v}" for k, v in rule.items()) + "}"
        for rule in numbered(rules)
    ]
    text = HEADER + "rules:\n" + "\n".join(lines) + "\n"
    assert outcome(text, fast=True) == outcome(text, fast=False)


def test_a_big_file_is_compiled_on_the_quick_path_with_every_name(tmp_path: Path) -> None:
    lines = [HEADER + "rules:"]
    lines += [f"  - {{name: u{n}, when: live, users: [{n}], notify: [tg]}}" for n in range(9000)]
    path = tmp_path / "r.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert quick_takes(path.read_text())
    engine = compile_rules(path, env={}).engine
    event = ChannelLive(user_id=8765, user_name="someone", event_id=1)
    assert [m.rule for m in engine.on_live(event, now=0.0).matches] == ["u8765"]
    fast, full = compile_rules(path, env={}), compile_rules(path, env={}, fast=False)
    assert fingerprint(fast) == fingerprint(full)
