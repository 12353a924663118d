"""The fake's Telegram HTML parser agrees with tdlib's `parse_html`, and ours agrees with it.

Each row cites the tdlib behaviour (td/telegram/MessageEntity.cpp, `decode_html_entity` and
`parse_html`; FormattedDate.cpp for `<tg-time>`; tdutils misc.h for `is_space`).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notifier.render import tg_html
from tests.fakes.telegram_html import Entity, HtmlError, parse, parse_html, text_length

ACCEPTED = [
    # (markup, visible text, why)
    ("plain text", "plain text", "no markup"),
    ("<b>b</b><strong>s</strong>", "bs", "b and strong are bold"),
    ("<i>i</i><em>e</em><u>u</u><ins>n</ins>", "ieun", "italic and underline aliases"),
    ("<s>s</s><strike>t</strike><del>d</del>", "std", "strikethrough aliases"),
    ("<tg-spoiler>x</tg-spoiler>", "x", "tg-spoiler"),
    ('<span class="tg-spoiler">x</span>', "x", 'span only with class "tg-spoiler"'),
    ("<span class=tg-spoiler>x</span>", "x", "an unquoted value is a name token"),
    ("<span class=TG-SPOILER>x</span>", "x", "name tokens are lower-cased"),
    ('<a href="https://e.x/?a=1&amp;b=2">l</a>', "l", "entities decode in quoted values"),
    ("<a href='https://e.x'>l</a>", "l", "single quotes"),
    ('<a href="https://e.x" title="ignored">l</a>', "l", "unknown attributes are ignored"),
    ("<a>https://e.x</a>", "https://e.x", "a without href links its own text"),
    ('<a href="javascript:alert(1)">x</a>', "x", "a bad link is dropped, not refused"),
    ("<code>c</code><pre>p</pre>", "cp", "code and pre"),
    ('<pre><code class="language-py">x</code></pre>', "x", "pre code with a language"),
    ("<blockquote>q</blockquote>", "q", "blockquote"),
    ("<blockquote expandable>q</blockquote>", "q", "expandable blockquote"),
    ('<tg-emoji emoji-id="5368324170671202286">👍</tg-emoji>', "👍", "custom emoji"),
    ('<tg-time unix="1647531900" format="wDT">x</tg-time>', "x", "tg-time"),
    ('<tg-time unix="1" format="r">x</tg-time>', "x", "tg-time relative"),
    ("<tg-emoji></tg-emoji>", "", "an empty custom emoji: its id is not checked"),
    ("<B>x</b>", "x", "tag names are case-insensitive"),
    ("<b >x</b >", "x", "spaces before > are allowed"),
    ("<b>x</>", "x", "</> closes whatever is open"),
    ("<b><i>x</i></b>", "x", "nesting"),
    ("&lt;&gt;&amp;&quot;", '<>&"', "the four named entities"),
    ("&#60;&#x3C;&#x3c;", "<<<", "numeric entities, decimal and hex"),
    ("&lt1", "<1", "the ; is optional"),
    ("&#128512;", "😀", "an astral numeric entity"),
    ("&nbsp;&apos;&copy;", "&nbsp;&apos;&copy;", "other named entities stay literal"),
    ("&bogus; & lone", "&bogus; & lone", "an unknown entity or lone & is literal text"),
    ("&#X3C;", "&#X3C;", "only a lower-case x makes a hex reference"),
    ("&#0;&#;&#x;", "&#0;&#;&#x;", "a reference to 0 or to nothing is literal"),
    ("&#x10FFFF;&#x110000;", "&#x10FFFF;&#x110000;", "at or above 0x10FFFF: literal"),
    ("&#00000060;", "&#00000060;", "a reference of 10 or more bytes is literal"),
    ("&#0000060;", "<", "a reference of 9 bytes decodes"),
    ("a > b", "a > b", "a lone > is literal"),
    ("x\x00y", "x\x00y", "NUL in text is copied (refused later, outside parse_html)"),
]

REFUSED = [
    # (markup, tdlib's message after "Can't parse entities: ")
    ("a < b", 'Unsupported start tag "" at byte offset 2'),
    ("<p>x</p>", 'Unsupported start tag "p" at byte offset 0'),
    ("<script>x</script>", 'Unsupported start tag "script" at byte offset 0'),
    ("<br/>", 'Unsupported start tag "br/" at byte offset 0'),
    ("😀<x>", 'Unsupported start tag "x" at byte offset 4'),
    ("<b", "Unclosed start tag at byte offset 0"),
    ("<b>x", 'Can\'t find end tag corresponding to start tag "b"'),
    ("</b>", "Unexpected end tag at byte offset 0"),
    ("<b>x</i>", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
    ("<b>x</b y>", "Unclosed end tag at byte offset 4"),
    ("<b>x</b", "Unclosed end tag at byte offset 4"),
    ("<span>x</span>", 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
    ('<span class="x">x</span>', 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
    ('<a href="x"/>', 'Empty attribute name in the tag "a" at byte offset 0'),
    ("<a href=x&y>", "Unexpected end of name token at byte offset 8"),
    ('<a href="x', "Unclosed start tag at byte offset 0"),
    ("<a href", 'Unclosed start tag "a" at byte offset 0'),
    ("<a href=", 'Unclosed start tag "a" at byte offset 0'),
    ("<tg-emoji>👍</tg-emoji>", "Invalid custom emoji identifier specified"),
    ('<tg-emoji emoji-id="0">👍</tg-emoji>', "Invalid custom emoji identifier specified"),
    ('<tg-emoji emoji-id="012">👍</tg-emoji>', "Invalid custom emoji identifier specified"),
    ('<tg-time unix="1" format="x">t</tg-time>', "Invalid date format used"),
    ('<tg-time unix="1" format="rd">t</tg-time>', "Invalid date format used"),
    (
        "&#xD83D;&#xDE00;",
        "Text contains invalid Unicode characters after decoding HTML entities, "
        "check for unmatched surrogate code units",
    ),
]


@pytest.mark.parametrize(("markup", "text", "why"), ACCEPTED, ids=[row[2] for row in ACCEPTED])
def test_tdlib_accepts(markup: str, text: str, why: str) -> None:
    assert parse_html(markup) == text


@pytest.mark.parametrize(("markup", "message"), REFUSED, ids=[row[1] for row in REFUSED])
def test_tdlib_refuses_with_its_wording(markup: str, message: str) -> None:
    with pytest.raises(HtmlError) as refused:
        parse_html(markup)
    assert str(refused.value) == f"Can't parse entities: {message}"


def test_a_lone_surrogate_cannot_be_sent_at_all() -> None:
    with pytest.raises(HtmlError, match="Strings must be encoded in UTF-8"):
        parse_html("x\ud800")


def test_length_counts_code_points_of_the_parsed_text() -> None:
    # 😀 is two UTF-16 units and four bytes; Telegram's limit counts it once.
    assert text_length("<b>😀</b>&amp;&#128512;") == 3


@pytest.mark.parametrize(
    ("markup", "entities"),
    [
        ("<b>ab</b>", (Entity("bold", 0, 2),)),
        ("😀<i>x</i>", (Entity("italic", 2, 1),)),  # offsets in UTF-16, as tdlib
        ("<b></b>x", ()),  # an empty element makes no entity
        ('<pre><code class="language-py">x</code></pre>', (Entity("pre", 0, 1, "py"),)),
        ('<code class="language-py">x</code>', (Entity("code", 0, 1),)),
        ("<a>https://e.x</a>", (Entity("text_link", 0, 11, "https://e.x"),)),
        ("<blockquote expandable>q</blockquote>", (Entity("expandable_blockquote", 0, 1),)),
    ],
)
def test_entities_are_what_tdlib_makes(markup: str, entities: tuple[Entity, ...]) -> None:
    assert parse(markup).entities == entities


# --- ours (notifier/render/tg_html.py) agrees with the fake ---------------------------

ALL_ROWS = [row[0] for row in ACCEPTED] + [row[0] for row in REFUSED]


@pytest.mark.parametrize("markup", ALL_ROWS)
def test_our_reader_agrees_with_tdlib_on_every_row(markup: str) -> None:
    assert _ours(markup) == _theirs(markup)


PIECES = [
    "a",
    "😀",
    " ",
    "<",
    ">",
    "&",
    ";",
    "#",
    "x",
    "&lt;",
    "&amp;",
    "&#60;",
    "&#x3c;",
    "&nbsp;",
    "<b>",
    "</b>",
    "<i>",
    "</i>",
    "</>",
    '<a href="https://e.x">',
    "<a>",
    "</a>",
    '<span class="tg-spoiler">',
    "<span>",
    "</span>",
    '<tg-emoji emoji-id="5">',
    "<tg-emoji>",
    "</tg-emoji>",
    "<pre>",
    '<code class="language-py">',
    "</code>",
    "</pre>",
    "<blockquote expandable>",
    "</blockquote>",
    "<p>",
    '"',
    "'",
    "=",
    "/",
]
MARKUP = st.lists(st.sampled_from(PIECES), max_size=30).map("".join)


@settings(max_examples=400, deadline=None)
@given(MARKUP)
def test_our_reader_agrees_with_tdlib_on_any_markup(markup: str) -> None:
    assert _ours(markup) == _theirs(markup)


@settings(max_examples=300, deadline=None)
@given(MARKUP, st.integers(min_value=0, max_value=12))
def test_our_cut_stays_valid_and_within_the_limit(markup: str, limit: int) -> None:
    try:
        parse_html(markup)
    except HtmlError:
        return
    result = tg_html.cut(markup, limit)
    assert text_length(result) <= limit


def test_our_cut_never_splits_a_custom_emoji() -> None:
    markup = 'ab<tg-emoji emoji-id="5">👍👍</tg-emoji>'
    assert tg_html.cut(markup, 3) == "ab…"


def _ours(markup: str) -> str | None:
    try:
        return tg_html.visible(markup)
    except tg_html.Invalid:
        return None


def _theirs(markup: str) -> str | None:
    try:
        return parse_html(markup)
    except HtmlError:
        return None
