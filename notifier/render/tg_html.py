"""Telegram HTML as Telegram reads it (pure): validity, visible length, a cut that stays valid.

Follows tdlib's `parse_html` (td/telegram/MessageEntity.cpp): which tags exist, how
attributes are quoted, which `&...;` are entities (the rest stay literal text), and that
Telegram counts the code points of the parsed text. Our own renderers build valid markup by
construction; this module is for markup we did not build: an operator's template output.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from enum import Enum

ELLIPSIS = "…"

_TAGS = frozenset(
    {
        "a",
        "b",
        "strong",
        "i",
        "em",
        "s",
        "strike",
        "del",
        "u",
        "ins",
        "tg-spoiler",
        "tg-emoji",
        "tg-time",
        "span",
        "pre",
        "code",
        "blockquote",
    }
)
_SPACES = frozenset(" \t\r\n\0\v")
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_ALPHA = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_DIGITS = frozenset("0123456789")
_HEX = _DIGITS | frozenset("abcdefABCDEF")


class Kind(Enum):
    TEXT = "text"  # one visible code point: a character or an entity
    OPEN = "open"
    CLOSE = "close"


@dataclass(frozen=True)
class Token:
    kind: Kind
    source: str  # the markup it was read from
    tag: str = ""  # OPEN: the tag's name
    atomic: bool = False  # OPEN: its text must not be cut (a custom emoji, a link to itself)


class Invalid(ValueError):
    """Markup Telegram would refuse."""


def escape(text: str) -> str:
    """Text for Telegram HTML: &, <, > and quotes become entities."""
    return html.escape(text, quote=True)


def tokens(markup: str) -> list[Token]:
    """The markup as Telegram reads it, or Invalid."""
    return _Reader(markup).read()


def visible(markup: str) -> str:
    """The text a reader sees, or Invalid."""
    return "".join(_decode(t.source) for t in tokens(markup) if t.kind is Kind.TEXT)


def cut(markup: str, limit: int) -> str:
    """Valid markup of at most `limit` visible code points, ending in an ellipsis when cut.

    Cuts between tokens only (never inside a tag or an entity), keeps no half custom emoji,
    and closes the tags still open. Invalid when the markup is not valid to begin with.
    """
    read = tokens(markup)
    if sum(1 for t in read if t.kind is Kind.TEXT) <= limit:
        return markup
    kept: list[str] = []
    stack: list[tuple[str, int, bool]] = []  # tag, where it starts in `kept`, atomic
    budget = max(0, limit - 1)
    for token in read:
        if token.kind is Kind.TEXT:
            if budget == 0:
                break
            budget -= 1
        elif token.kind is Kind.OPEN:
            stack.append((token.tag, len(kept), token.atomic))
        else:
            stack.pop()
        kept.append(token.source)
    atomic = next((i for i, (_, _, whole) in enumerate(stack) if whole), None)
    if atomic is not None:  # an atomic element did not fit whole: drop it
        del kept[stack[atomic][1] :]
        del stack[atomic:]
    if limit > 0:
        kept.append(ELLIPSIS)
    kept.extend(f"</{tag}>" for tag, _, _ in reversed(stack))
    return "".join(kept)


def _decode(source: str) -> str:
    if source.startswith("&") and len(source) > 1:
        code = _entity(source + "\0", 0)[0]
        return chr(code) if code else source
    return source


def _entity(text: str, pos: int) -> tuple[int, int]:
    """tdlib's decode_html_entity on `text` (NUL-terminated): (code point or 0, end)."""
    end = pos + 1
    if text[pos + 1] == "#":
        end += 1
        code = 0
        if text[pos + 2] == "x":
            end += 1
            while text[end] in _HEX:
                code = code * 16 + int(text[end], 16)
                end += 1
        else:
            while text[end] in _DIGITS:
                code = code * 10 + int(text[end])
                end += 1
        # Counted in bytes by tdlib; every character here is ASCII, so the same.
        if code == 0 or code >= 0x10FFFF or end - pos >= 10:
            return 0, pos
    else:
        while text[end] in _ALPHA:
            end += 1
        named = _NAMED.get(text[pos + 1 : end])
        if named is None:
            return 0, pos
        code = ord(named)
    return code, end + 1 if text[end] == ";" else end


class _Reader:
    def __init__(self, markup: str) -> None:
        self.text = markup + "\0"  # tdlib reads a C string: NUL ends every scan
        self.size = len(markup)
        self.out: list[Token] = []
        self.stack: list[_Open] = []
        self.visible = 0

    def read(self) -> list[Token]:
        text, i = self.text, 0
        while i < self.size:
            c = text[i]
            if c == "&":
                code, end = _entity(text, i)
                if code:
                    if 0xD800 <= code <= 0xDFFF:
                        raise Invalid("a numeric entity names a surrogate")
                    self.out.append(Token(Kind.TEXT, text[i:end]))
                    self.visible += 1
                    i = end
                    continue
            if c != "<":
                if 0xD800 <= ord(c) <= 0xDFFF:
                    raise Invalid("a lone surrogate cannot be sent")
                self.out.append(Token(Kind.TEXT, c))
                self.visible += 1
                i += 1
                continue
            end = self.end_tag(i) if text[i + 1] == "/" else self.start_tag(i)
            i = end + 1
        if self.stack:
            raise Invalid(f"<{self.stack[-1].tag}> is never closed")
        return self.out

    def start_tag(self, begin: int) -> int:
        text, i = self.text, begin + 1
        while text[i] not in _SPACES and text[i] != ">":
            i += 1
        if text[i] == "\0":
            raise Invalid("a start tag is not closed")
        tag = _ascii_lower(text[begin + 1 : i])
        if tag not in _TAGS:
            raise Invalid(f"unsupported start tag {tag!r}")
        argument = ""  # one per tag, as tdlib keeps it: the last attribute that sets it wins
        while text[i] != ">":
            while text[i] in _SPACES and text[i] != "\0":
                i += 1
            if text[i] == ">":
                break
            name_begin = i
            while text[i] not in _SPACES and text[i] not in "=>/\"'":
                i += 1
            name = text[name_begin:i]
            if not name:
                raise Invalid(f"empty attribute name in <{tag}>")
            while text[i] in _SPACES and text[i] != "\0":
                i += 1
            if text[i] != "=":
                if text[i] == "\0":
                    raise Invalid(f"<{tag}> is not closed")
                if tag == "blockquote" and name == "expandable":
                    argument = "1"
                continue
            i += 1
            while text[i] in _SPACES and text[i] != "\0":
                i += 1
            if text[i] == "\0":
                raise Invalid(f"<{tag}> is not closed")
            if text[i] not in "'\"":
                token_begin = i
                while text[i] in _ALPHA or text[i] in _DIGITS or text[i] in ".-":
                    i += 1
                value = _ascii_lower(text[token_begin:i])
                if text[i] not in _SPACES and text[i] != ">":
                    raise Invalid("an unquoted attribute value ends badly")
            else:
                quote = text[i]
                i += 1
                value_begin = i
                while text[i] != quote and text[i] != "\0":
                    i += 1
                value = "".join(_decode_all(text[value_begin:i]))
                if text[i] == quote:
                    i += 1
            if text[i] == "\0":
                raise Invalid("a start tag is not closed")
            argument = _argument(tag, name, value, argument)
        if tag == "span" and argument != "spoiler":
            raise Invalid('<span> needs class="tg-spoiler"')
        self.stack.append(_Open(tag, argument, self.visible))
        # Custom emoji and a link to its own text must not be cut: kept whole or dropped.
        atomic = tag == "tg-emoji" or (tag == "a" and not argument)
        self.out.append(Token(Kind.OPEN, text[begin : i + 1], tag, atomic))
        return i

    def end_tag(self, begin: int) -> int:
        text, i = self.text, begin + 2
        if not self.stack:
            raise Invalid("an end tag closes nothing")
        while text[i] not in _SPACES and text[i] != ">":
            i += 1
        name = _ascii_lower(text[begin + 2 : i])
        while text[i] in _SPACES and text[i] != "\0":
            i += 1
        if text[i] != ">":
            raise Invalid("an end tag is not closed")
        opened = self.stack.pop()
        if name and name != opened.tag:
            raise Invalid(f"</{name}> closes <{opened.tag}>")
        if self.visible > opened.visible:  # tdlib checks arguments of non-empty elements only
            if opened.tag == "tg-emoji" and not _INT64.fullmatch(opened.argument):
                raise Invalid("<tg-emoji> needs a numeric emoji-id")
            if opened.tag == "tg-emoji" and not (
                -(2**63) <= int(opened.argument) < 2**63 and int(opened.argument) != 0
            ):
                raise Invalid("<tg-emoji> needs a numeric emoji-id")
            if opened.tag == "tg-time" and not _DATE_FORMAT.fullmatch(opened.argument):
                raise Invalid("<tg-time> has an unknown format")
        self.out.append(Token(Kind.CLOSE, text[begin : i + 1]))
        return i


@dataclass(frozen=True)
class _Open:
    tag: str
    argument: str
    visible: int  # visible code points before it


def _argument(tag: str, name: str, value: str, argument: str) -> str:
    if (tag, name) in (("a", "href"), ("tg-emoji", "emoji-id"), ("tg-time", "format")):
        return value
    if tag == "code" and name == "class" and value.startswith("language-"):
        return value[9:]
    if tag == "span" and name == "class" and value.startswith("tg-"):
        return value[3:]
    if tag == "blockquote" and name == "expandable":
        return "1"
    return argument


def _ascii_lower(name: str) -> str:
    # tdlib folds ASCII letters only (str.lower would fold the Kelvin sign to "k")
    return name.translate(_LOWER)


_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}
# to_integer_safe<int64>: the number prints back as written
_INT64 = re.compile(r"-?(0|[1-9][0-9]{0,18})")
_DATE_FORMAT = re.compile(r"[rR]|[tTdDwW]*")


def _decode_all(value: str) -> list[str]:
    text, i, out = value + "\0", 0, []
    while i < len(value):
        if text[i] == "&":
            code, end = _entity(text, i)
            if code:
                out.append(chr(code))
                i = end
                continue
        out.append(text[i])
        i += 1
    return out
