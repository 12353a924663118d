"""Telegram's HTML parse mode as Telegram parses it: a port of tdlib's `parse_html`.

Ported from tdlib `td/telegram/MessageEntity.cpp` (`decode_html_entity`, `parse_html`;
tdlib/td commit 1a901a0e, with `<tg-time>` as later tdlib versions add it) and
`td/telegram/FormattedDate.cpp` (`get_date_flags`), with `is_space`, `is_alpha`,
`to_integer` and `to_integer_safe` from `tdutils/td/utils/misc.h`. It walks the UTF-8
bytes as tdlib does, so the byte offsets in the errors are Telegram's. Facts worth knowing
(each is a table row in tests/render/test_telegram_html.py):

- Tags: a, b, strong, i, em, s, strike, del, u, ins, tg-spoiler, tg-emoji, tg-time, span
  (only with class "tg-spoiler"), pre, code, blockquote. Tag names are case-insensitive,
  attribute names are not. `</>` closes whatever tag is open.
- Entities: &lt; &gt; &amp; &quot; and numeric ones (&#N; and &#xN;, lower-case x), the
  `;` optional. Anything else after `&` (&nbsp;, &bogus;, a lone &, &#0;, &#x10FFFF;, a
  reference of 10 or more characters) is NOT an error: it stays literal text. A numeric
  reference to a surrogate is an error.
- A lone `>` is literal text; a `<` always starts a tag (so `a < b` is an error).
- `<a href>` is not validated here: tdlib drops a link it finds invalid without an error,
  and the text stays. Length limits count code points of the parsed text.

The error messages are tdlib's, prefixed as the Bot API reports them ("Can't parse
entities: ..."; on the wire it reads "Bad Request: can't parse entities: ...").
"""

from __future__ import annotations

from dataclasses import dataclass

TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024

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
_SPACES = frozenset(b" \t\r\n\0\v")  # tdlib's is_space: NUL counts, form feed does not


class HtmlError(ValueError):
    """Telegram refused the HTML; the message is Telegram's."""


@dataclass(frozen=True)
class Entity:
    """One entity of the parsed text; offset and length in UTF-16 code units, as tdlib."""

    type: str
    offset: int
    length: int
    argument: str = ""


@dataclass(frozen=True)
class Parsed:
    text: str
    entities: tuple[Entity, ...]


def parse_html(text: str) -> str:
    """The visible text of Telegram HTML, or HtmlError with Telegram's wording."""
    return parse(text).text


def text_length(text: str) -> int:
    """What Telegram counts against its 4096/1024 limits: code points of the parsed text."""
    return len(parse_html(text))


def parse(text: str) -> Parsed:
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate cannot be sent at all; the Bot API checks before parsing.
        raise HtmlError("Strings must be encoded in UTF-8") from None
    try:
        return _Parser(data).run()
    except _Refused as refused:
        raise HtmlError(f"Can't parse entities: {refused}") from None


class _Refused(Exception):
    pass


def _is_alpha(c: int) -> bool:
    return ord("a") <= (c | 0x20) <= ord("z")


def _is_digit(c: int) -> bool:
    return ord("0") <= c <= ord("9")


def _is_hex(c: int) -> bool:
    return _is_digit(c) or ord("a") <= (c | 0x20) <= ord("f")


def _lower(raw: bytes) -> str:
    # tdlib's to_lower folds ASCII only
    return raw.decode("utf-8", "surrogateescape").translate(_ASCII_LOWER)


_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def _to_integer(raw: str, bits: int) -> int:
    """tdlib's to_integer<intN>: optional '-', digits up to the first non-digit, wrapping."""
    mask = (1 << bits) - 1
    negative = raw.startswith("-")
    value = 0
    for ch in raw[1:] if negative else raw:
        if not "0" <= ch <= "9":
            break
        value = (value * 10 + ord(ch) - 48) & mask
    top = (1 << (bits - 1)) - 1
    if value > top:
        value = (~value + 1) & mask
        negative = not negative
        if value > top:
            return -(top + 1)
    return -value if negative else value


def _to_integer_safe(raw: str, bits: int) -> int | None:
    value = _to_integer(raw, bits)
    return value if str(value) == raw else None


def _date_flags_ok(date_format: str) -> bool:
    """FormattedDate::get_date_flags: "r"/"R" alone, or any of t T d D w W."""
    return date_format in ("r", "R") or all(c in "tTdDwW" for c in date_format)


@dataclass
class _Open:
    tag: str
    argument: str
    date: int
    utf16_offset: int
    begin: int  # position in the output bytes


class _Parser:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)
        self.out = bytearray()
        self.utf16 = 0
        self.recheck_utf8 = False
        self.entities: list[Entity] = []
        self.stack: list[_Open] = []

    def at(self, i: int) -> int:
        # The C string's terminating NUL, past the end.
        return self.data[i] if i < self.size else 0

    def entity(self, pos: int) -> tuple[int, int]:
        """decode_html_entity: (code point or 0, position after it)."""
        at = self.at
        end = pos + 1
        code = 0
        if at(pos + 1) == ord("#"):
            end += 1
            if at(pos + 2) == ord("x"):
                end += 1
                while _is_hex(at(end)):
                    code = (code * 16 + int(chr(at(end)), 16)) & 0xFFFFFFFF
                    end += 1
            else:
                while _is_digit(at(end)):
                    code = (code * 10 + at(end) - 48) & 0xFFFFFFFF
                    end += 1
            if code == 0 or code >= 0x10FFFF or end - pos >= 10:
                return 0, pos
        else:
            while _is_alpha(at(end)):
                end += 1
            code = {b"lt": 0x3C, b"gt": 0x3E, b"amp": 0x26, b"quot": 0x22}.get(
                self.data[pos + 1 : end], 0
            )
            if code == 0:
                return 0, pos
        return code, end + 1 if at(end) == ord(";") else end

    def run(self) -> Parsed:
        i = 0
        while i < self.size:
            c = self.data[i]
            if c == ord("&"):
                code, after = self.entity(i)
                if code:
                    self.utf16 += 1 + (code > 0xFFFF)
                    if 0xD800 <= code <= 0xDFFF:
                        self.recheck_utf8 = True
                    self.out += chr(code).encode("utf-8", "surrogatepass")
                    i = after
                    continue
            if c != ord("<"):
                if c & 0xC0 != 0x80:  # the first byte of a character
                    self.utf16 += 1 + (c >= 0xF0)
                self.out.append(c)
                i += 1
                continue
            i = self.end_tag(i) if self.at(i + 1) == ord("/") else self.start_tag(i)
            i += 1  # past the '>'
        if self.stack:
            raise _Refused(f'Can\'t find end tag corresponding to start tag "{self.stack[-1].tag}"')
        try:
            text = self.out.decode("utf-8")
        except UnicodeDecodeError:
            raise _Refused(
                "Text contains invalid Unicode characters after decoding HTML entities, "
                "check for unmatched surrogate code units"
            ) from None
        entities = [
            Entity("code", e.offset, e.length) if e.type == "code" else e for e in self.entities
        ]
        entities.sort(key=lambda e: (e.offset, -e.length))
        return Parsed(text, tuple(entities))

    def start_tag(self, begin: int) -> int:
        at = self.at
        i = begin + 1
        while at(i) not in _SPACES and at(i) != ord(">"):
            i += 1
        if at(i) == 0:
            raise _Refused(f"Unclosed start tag at byte offset {begin}")
        tag = _lower(self.data[begin + 1 : i])
        if tag not in _TAGS:
            raise _Refused(f'Unsupported start tag "{tag}" at byte offset {begin}')
        argument = ""
        date = 0
        while at(i) != ord(">"):
            while at(i) != 0 and at(i) in _SPACES:
                i += 1
            if at(i) == ord(">"):
                break
            name_begin = i
            while at(i) not in _SPACES and at(i) not in b"=>/\"'":
                i += 1
            name = self.data[name_begin:i]
            if not name:
                raise _Refused(f'Empty attribute name in the tag "{tag}" at byte offset {begin}')
            while at(i) != 0 and at(i) in _SPACES:
                i += 1
            if at(i) != ord("="):
                if at(i) == 0:
                    raise _Refused(f'Unclosed start tag "{tag}" at byte offset {begin}')
                if tag == "blockquote" and name == b"expandable":
                    argument = "1"
                continue
            i += 1
            while at(i) != 0 and at(i) in _SPACES:
                i += 1
            if at(i) == 0:
                raise _Refused(f'Unclosed start tag "{tag}" at byte offset {begin}')
            if at(i) not in b"'\"":
                # A name token: letters, digits, periods, hyphens; not case-sensitive.
                token_begin = i
                while _is_alpha(at(i)) or _is_digit(at(i)) or at(i) in b".-":
                    i += 1
                value = _lower(self.data[token_begin:i])
                if at(i) not in _SPACES and at(i) != ord(">"):
                    raise _Refused(f"Unexpected end of name token at byte offset {token_begin}")
            else:
                quote = at(i)
                i += 1
                raw = bytearray()
                while at(i) != quote and at(i) != 0:
                    if at(i) == ord("&"):
                        code, after = self.entity(i)
                        if code:
                            raw += chr(code).encode("utf-8", "surrogatepass")
                            i = after
                            continue
                    raw.append(at(i))
                    i += 1
                if at(i) == quote:
                    i += 1
                value = bytes(raw).decode("utf-8", "surrogateescape")
            if at(i) == 0:
                raise _Refused(f"Unclosed start tag at byte offset {begin}")
            if tag == "a" and name == b"href":
                argument = value
            elif tag == "code" and name == b"class" and value.startswith("language-"):
                argument = value[9:]
            elif tag == "span" and name == b"class" and value.startswith("tg-"):
                argument = value[3:]
            elif (tag == "tg-emoji" and name == b"emoji-id") or (
                tag == "tg-time" and name == b"format"
            ):
                argument = value
            elif tag == "blockquote" and name == b"expandable":
                argument = "1"
            elif tag == "tg-time" and name == b"unix":
                date = _to_integer(value, 32)
        if tag == "span" and argument != "spoiler":
            raise _Refused(f'Tag "span" must have class "tg-spoiler" at byte offset {begin}')
        self.stack.append(_Open(tag, argument, date, self.utf16, len(self.out)))
        return i

    def end_tag(self, begin: int) -> int:
        at = self.at
        if not self.stack:
            raise _Refused(f"Unexpected end tag at byte offset {begin}")
        i = begin + 2
        while at(i) not in _SPACES and at(i) != ord(">"):
            i += 1
        name = _lower(self.data[begin + 2 : i])
        while at(i) in _SPACES and at(i) != 0:
            i += 1
        if at(i) != ord(">"):
            raise _Refused(f"Unclosed end tag at byte offset {begin}")
        opened = self.stack[-1]
        if name and name != opened.tag:
            raise _Refused(
                f'Unmatched end tag at byte offset {begin}, expected "</{opened.tag}>", '
                f'found "</{name}>"'
            )
        if self.utf16 > opened.utf16_offset:
            self.close(opened)
        self.stack.pop()
        return i

    def close(self, opened: _Open) -> None:
        tag, offset = opened.tag, opened.utf16_offset
        length = self.utf16 - offset
        kind = {
            "i": "italic",
            "em": "italic",
            "b": "bold",
            "strong": "bold",
            "s": "strikethrough",
            "strike": "strikethrough",
            "del": "strikethrough",
            "u": "underline",
            "ins": "underline",
            "tg-spoiler": "spoiler",
            "span": "spoiler",
        }.get(tag)
        if kind is not None:
            self.entities.append(Entity(kind, offset, length))
        elif tag == "tg-emoji":
            emoji_id = _to_integer_safe(opened.argument, 64)
            if not emoji_id:
                raise _Refused("Invalid custom emoji identifier specified")
            self.entities.append(Entity("custom_emoji", offset, length, str(emoji_id)))
        elif tag == "tg-time":
            if not _date_flags_ok(opened.argument):
                raise _Refused("Invalid date format used")
            if opened.date > 0:
                self.entities.append(Entity("date_time", offset, length, opened.argument))
        elif tag == "a":
            url = opened.argument or self.out[opened.begin :].decode("utf-8", "surrogatepass")
            self.entities.append(Entity("text_link", offset, length, url))
        elif tag == "pre":
            last = self.entities[-1] if self.entities else None
            if (
                last is not None
                and last.type == "code"
                and (last.offset, last.length) == (offset, length)
                and last.argument
            ):
                self.entities[-1] = Entity("pre", offset, length, last.argument)
            else:
                self.entities.append(Entity("pre", offset, length))
        elif tag == "code":
            last = self.entities[-1] if self.entities else None
            if (
                last is not None
                and last.type == "pre"
                and (last.offset, last.length) == (offset, length)
                and opened.argument
            ):
                self.entities[-1] = Entity("pre", offset, length, opened.argument)
            else:
                self.entities.append(Entity("code", offset, length, opened.argument))
        else:  # blockquote
            quote = "expandable_blockquote" if opened.argument else "blockquote"
            self.entities.append(Entity(quote, offset, length))
