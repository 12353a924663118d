"""Cleaning text: the short cut for text with nothing to change gives exactly what the
full pass gives, for any text."""

from __future__ import annotations

import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from notifier.parti import sanitize
from notifier.render import fields

# The full passes, as they run for text the short cut does not take.


def _full_clean_line(text: str) -> str:
    text = sanitize._SURROGATES.sub("\ufffd", text[: sanitize.MAX_TEXT])
    text = sanitize._BREAKS.sub(" ", text)
    return sanitize._JOINERS.sub(sanitize._joiner, sanitize.UNSAFE.sub("", text))


def _full_clean(text: str, single_line: bool) -> str:
    text = fields._SURROGATE.sub("\ufffd", fields._UNSAFE.sub("", text))
    return " ".join(text.split()) if single_line else text


TEXT = st.text(
    alphabet=st.one_of(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E),  # printable ASCII, often
        st.characters(),  # anything, surrogates and controls included
    ),
    max_size=60,
)


@settings(max_examples=2000, deadline=None)
@given(text=TEXT)
@example("Morning stream: day 3 (IRL) - 100%!")
@example("tab\tand\nnewline")
@example("del\x7f and esc\x1b[31m")
@example("  spaced   out  ")
@example("x" * (sanitize.MAX_TEXT + 5))
def test_the_short_cut_cleans_exactly_as_the_full_pass(text: str) -> None:
    assert sanitize.clean_line(text) == _full_clean_line(text)
    for single_line in (True, False):
        assert fields.clean(text, single_line=single_line) == _full_clean(text, single_line)


def test_what_the_short_cut_takes_has_nothing_to_remove() -> None:
    # Printable ASCII holds none of the characters any of the patterns removes.
    printable = "".join(chr(c) for c in range(0x20, 0x7F))
    assert printable.isascii() and printable.isprintable()
    for pattern in (sanitize.UNSAFE, sanitize._BREAKS, sanitize._SURROGATES, fields._UNSAFE):
        assert re.search(pattern, printable) is None
