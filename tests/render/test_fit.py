"""`fit`'s shortcut (a value shown as it is is neither escaped nor weighed character by
character) gives exactly what escaping and weighing every character gives."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notifier.render.text import DISCORD, DISCORD_PLAIN, PLAIN, TELEGRAM, Field, Syntax, fit

SYNTAXES = {
    "telegram": TELEGRAM,
    "discord": DISCORD,
    "discord_plain": DISCORD_PLAIN,
    "plain": PLAIN,
}
# Mostly characters no chat changes, with each syntax's specials and astral ones mixed in.
TEXT = st.text(
    alphabet=st.sampled_from("abc XYZ 0189.,!?\n\t" + "&<>\"'" + "\\*_~`|>#[]()-:@" + "😀é\u200b"),
    max_size=40,
)


def _every_character(syntax: Syntax) -> Syntax:
    return dataclasses.replace(syntax, shown_as_is=lambda value: False)


@pytest.mark.parametrize("name", list(SYNTAXES))
@settings(max_examples=300, deadline=None)
@given(values=st.lists(TEXT, min_size=1, max_size=4), caps=st.data(), limit=st.integers(5, 90))
def test_the_shortcut_gives_what_escaping_every_character_gives(
    name: str, values: list[str], caps: st.DataObject, limit: int
) -> None:
    syntax = SYNTAXES[name]
    parts = ["<b>" if name == "telegram" else "**"]
    for order, value in enumerate(values):
        cap = caps.draw(st.integers(0, 50))
        parts += [Field(value, cap, order=order % 3), " / "]
    try:
        expected = fit(parts, limit, _every_character(syntax))
    except ValueError:
        with pytest.raises(ValueError):
            fit(parts, limit, syntax)
        return
    assert fit(parts, limit, syntax) == expected


@pytest.mark.parametrize(
    ("name", "value", "as_is"),
    [
        ("telegram", "Morning stream: day 3 (IRL) - 100%!", True),
        ("telegram", "a & b", False),
        ("telegram", "it's", False),
        ("discord", "Morning stream day 3", True),
        ("discord", "day 3: IRL", False),
        ("discord", "ping @everyone", False),
        ("discord", "1. first", False),
        ("discord", "line\n 2. second", False),
        ("discord", "version 2.0", True),
        ("discord_plain", "a <t:1> b", False),
        ("discord_plain", "a: b - c", True),
    ],
)
def test_which_values_are_shown_as_they_are(name: str, value: str, as_is: bool) -> None:
    syntax = SYNTAXES[name]
    assert syntax.shown_as_is(value) is as_is
    if as_is:
        assert syntax.units(value) == list(value)
        assert all(syntax.weight(unit) == 1 for unit in value)
