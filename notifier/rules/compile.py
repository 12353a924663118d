"""The one way a rules file becomes rules, for `check`, `replay` and `run` alike: YAML events
read once with their positions, `${VAR}` from the environment and an env file, each rule
validated and compiled into the engine as it is read, every problem as file:line:col.

A file of 100,000 rules is never held whole: no node tree, no list of rule models; each
rule's data and positions live only while it is checked. Aliases are bounded (an alias
bomb is refused after a million expanded nodes), and so is nesting.
"""

from __future__ import annotations

import ctypes
import difflib
import gc
import io
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from notifier.rules.engine import Engine
from notifier.rules.schema import (
    MAX_PRICE,
    Bots,
    ConsoleTarget,
    Defaults,
    Destination,
    DiscordBot,
    DiscordTarget,
    LiveRule,
    PriceRule,
    Rule,
    RulesFile,
    ScheduledRule,
    TelegramBot,
    TelegramTarget,
    rearm_band,
)

if TYPE_CHECKING:
    from notifier.rules.templates import TemplateProblem

MAX_BYTES = 10 * 1024 * 1024
MAX_ALIAS_NODES = 1_000_000  # nodes that aliases may add, in all
MAX_DEPTH = 64
_HEADER_KEYS = ("version", "destinations", "defaults", "bots")
_RULE: TypeAdapter[Any] = TypeAdapter(Rule)
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


# ---- results and problems ---------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One error of a rules file, at a 1-based line and column."""

    path: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.message}"


class RulesError(Exception):
    """A rules file that cannot be used; `problems` holds every error found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True, slots=True)
class RuleMeta:
    """What the daemon needs of a rule besides the engine: its template and `on_end`."""

    when: str
    template: str | None = None
    on_end: str | None = None


DEFAULT_META = {kind: RuleMeta(kind) for kind in ("live", "price", "scheduled")}


@dataclass
class Compiled:
    """A compiled rules file: `rules_file` holds the destinations, defaults and bots (its
    `rules` only with keep_rules=True), the engine the rules; `meta` only the rules with a
    template or `on_end` (the others: DEFAULT_META of their kind)."""

    rules_file: RulesFile
    engine: Engine
    meta: dict[str, RuleMeta] = field(default_factory=dict)


# ---- the environment ---------------------------------------------------------------------


def rules_variables(
    env: Mapping[str, str] | None = None, env_file: str | Path | None = None
) -> Mapping[str, str]:
    """What `${VAR}` reads: the environment (os.environ unless `env` is given) over an env
    file. `env_file` None means the settings' `.env` in the current directory, if any; a
    named file must exist. Values are read as systemd's EnvironmentFile= reads them: no
    `$` expansion inside the file."""
    from dotenv import dotenv_values

    base = os.environ if env is None else env
    path = Path(".env") if env_file is None else Path(env_file)
    if env_file is None and not path.is_file():
        return base
    try:
        with path.open(encoding="utf-8") as stream:
            values = dotenv_values(stream=stream, interpolate=False)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise RulesError(
            [Problem(str(path), 1, 1, f"cannot read the env file: {reason}")]
        ) from None
    merged = {k: v for k, v in values.items() if v is not None}
    merged.update(base)  # the real environment wins over the file
    return merged


# ---- entry points --------------------------------------------------------------------------


def compile_rules(
    path: str | Path,
    *,
    env: Mapping[str, str] | None = None,
    env_file: str | Path | None = None,
    discord_api_url: str | None = None,
    categories: Mapping[int, Iterable[str]] | None = None,
    state: Mapping[str, Any] | None = None,
    keep_rules: bool = False,
    fast: bool = True,
    data: bytes | None = None,
) -> Compiled:
    """The engine for a rules file; RulesError listing every problem with its position.

    `env`: the variables (default os.environ); `env_file`: an env file under them (default
    ./.env when present); `discord_api_url`: NOTIFIER_DISCORD_API_URL, which webhook URLs are
    checked against (default Discord's own); `categories`, `state`: for the engine;
    `keep_rules`: also keep every rule model in `rules_file.rules` (for `check --online`);
    `fast`: False reads every file on the full YAML path (the quick path gives the same
    engine for the files it takes; tests compare the two); `data`: the file's bytes, when
    the caller has read them (`read_rules`) for another use too.
    """
    name = str(path)
    variables = rules_variables(env, env_file)
    raw = read_rules(path) if data is None else data
    if len(raw) > MAX_BYTES:
        raise RulesError([Problem(name, 1, 1, f"file larger than {MAX_BYTES} bytes")])
    if fast and not keep_rules:
        # Line by line from the bytes: the text is decoded whole only for the full path.
        # (Not UTF-8: the quick path gives up, and the full path says so.)
        lines = io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8", newline=None)
        context = {"discord_api_url": discord_api_url}
        quick = _Quick(name, variables, context, categories).run(lines)
        if quick is not None:
            return _finish(quick, state)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RulesError([Problem(name, 1, 1, f"not UTF-8: {exc.reason}")]) from None
    del raw
    return compile_text(
        text,
        name,
        variables=variables,
        discord_api_url=discord_api_url,
        categories=categories,
        state=state,
        keep_rules=keep_rules,
        fast=False,  # the quick path has had its chance
    )


def read_rules(path: str | Path) -> bytes:
    """A rules file's bytes, read once (a pipe such as `<(cat rules.yaml)` cannot be read
    twice), at most MAX_BYTES + 1 of them: RulesError when it cannot be read."""
    try:
        with open(path, "rb") as stream:
            # A regular file's size first: one buffer of that size, not of the bound.
            first = min(os.fstat(stream.fileno()).st_size, MAX_BYTES) + 1
            data = stream.read(first)
            if len(data) < first:
                return data
            chunks, size = [data], len(data)  # a pipe, or a file that grew
            while size <= MAX_BYTES:
                chunk = stream.read(min(1 << 16, MAX_BYTES + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            return b"".join(chunks)
    except OSError as exc:
        raise RulesError(
            [Problem(str(path), 1, 1, f"cannot read: {exc.strerror or exc}")]
        ) from None


def compile_text(
    text: str,
    name: str = "<rules>",
    *,
    variables: Mapping[str, str],
    discord_api_url: str | None = None,
    categories: Mapping[int, Iterable[str]] | None = None,
    state: Mapping[str, Any] | None = None,
    keep_rules: bool = False,
    fast: bool = True,
) -> Compiled:
    """`compile_rules` on text already read; `variables` is all `${VAR}` sees."""
    context = {"discord_api_url": discord_api_url}
    if fast and not keep_rules:
        quick = _Quick(name, variables, context, categories).run(io.StringIO(text, newline=None))
        if quick is not None:
            return _finish(quick, state)
    compiler = _Compiler(name, context, categories, keep_rules)
    try:
        _Reader(text, name, variables, compiler).run()
    except _HeaderLate:
        # A header key after the rules: read the header first, then the rules again.
        header = _Compiler(name, context, categories, keep_rules, skip_rules=True)
        _Reader(text, name, variables, header).run()
        if header.fatal_problem is not None:
            return header.result(state)
        compiler = _Compiler(name, context, categories, keep_rules, header=header)
        _Reader(text, name, variables, compiler).run()
    return compiler.result(state)


# ---- positions -------------------------------------------------------------------------------


class _Map:
    """Where a mapping and its keys and values are."""

    __slots__ = ("at", "keys", "values")

    def __init__(self, at: Any) -> None:
        self.at = at
        self.keys: dict[Any, Any] = {}
        self.values: dict[Any, Any] = {}


class _Seq:
    __slots__ = ("at", "items")

    def __init__(self, at: Any) -> None:
        self.at = at
        self.items: list[Any] = []


class _Block:
    """A block scalar (`|` or `>`): its text starts on the next line."""

    __slots__ = ("at",)

    def __init__(self, at: Any) -> None:
        self.at = at


# A position: the parser's own mark (line and column from 0) for a scalar, or one of the
# classes above. Marks are kept as they come: most are never looked at.
Position = Any


def _line_col(pos: Position) -> tuple[int, int]:
    mark = pos.at if isinstance(pos, _Map | _Seq | _Block) else pos
    if isinstance(mark, tuple):
        return mark
    return (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)


def _child(pos: Position, key: Any) -> tuple[Position, Position] | None:
    """(key position, value position) of a mapping key or sequence index."""
    if isinstance(pos, _Map):
        if key in pos.values:
            return pos.keys[key], pos.values[key]
        for candidate in pos.values:  # pydantic names keys by their text
            if str(candidate) == str(key) and not isinstance(candidate, str):
                return pos.keys[candidate], pos.values[candidate]
    elif isinstance(pos, _Seq) and isinstance(key, int) and 0 <= key < len(pos.items):
        item = pos.items[key]
        return item, item
    return None


def _locate(root: Position, loc: Sequence[Any], *, want_key: bool = False) -> Position:
    node = root
    key_node = root
    for part in loc:
        found = _child(node, part)
        if found is None:
            continue  # union tags and validator names are not in the YAML
        key_node, node = found
    return key_node if want_key else node


def _contains(pos: Position, marks: set[tuple[int, int]]) -> bool:
    stack = [pos]
    while stack:
        item = stack.pop()
        if isinstance(item, _Map):
            stack.extend(item.values.values())
        elif isinstance(item, _Seq):
            stack.extend(item.items)
        elif _line_col(item) in marks:
            return True
    return False


# ---- reading YAML events ----------------------------------------------------------------------


class _Fatal(Exception):
    """A problem after which nothing more of the file can be read."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem


class _HeaderLate(Exception):
    pass


_NO_KEY = object()
_SKIP = object()  # the value of a key that could not be used
_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
_INT = "tag:yaml.org,2002:int"
_CONSTRUCTOR = yaml.constructor.SafeConstructor()
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DECIMAL_INT = re.compile(r"[-+]?(?:0|[1-9][0-9]{0,50})")


def _resolvers_by_first_char() -> dict[str, list[tuple[str, re.Pattern[str]]]]:
    table = yaml.resolver.Resolver.yaml_implicit_resolvers
    wildcard = table.get(None, [])
    return {first: [*resolvers, *wildcard] for first, resolvers in table.items() if first}


_BY_FIRST = _resolvers_by_first_char()
_EMPTY_TAG = "tag:yaml.org,2002:null"  # a plain empty scalar


class _Frame:
    __slots__ = ("anchor", "container", "is_list", "key", "key_at", "merges", "nodes", "pos")

    def __init__(self, container: Any, pos: Any, anchor: str | None) -> None:
        self.container = container
        self.pos = pos
        self.anchor = anchor
        self.is_list = isinstance(container, list)
        self.key: Any = _NO_KEY
        self.key_at: Any = None
        self.nodes = 1
        self.merges: list[tuple[Any, Any]] | None = None


class _Reader:
    """Python values and their positions from YAML events, `${VAR}` substituted; the items
    of the top-level `rules` list go to the compiler one by one."""

    def __init__(
        self, text: str, name: str, variables: Mapping[str, str], compiler: _Compiler
    ) -> None:
        self.text = text
        self.name = name
        self.variables = variables
        self.compiler = compiler
        self.stack: list[_Frame] = []
        self.anchors: dict[str, tuple[Any, Any, int]] = {}
        self.alias_nodes = 0
        self.documents = 0
        self.top: dict[Any, Any] | None = None
        self.top_pos: _Map | None = None
        self.rules_frame: _Frame | None = None
        self.top_block = False  # the top-level mapping is a block mapping at column 0

    def problem(self, pos: Position, message: str) -> None:
        line, column = _line_col(pos)
        self.compiler.problems.append(Problem(self.name, line, column, message))

    def fatal(self, pos: Position, message: str) -> _Fatal:
        return _Fatal(Problem(self.name, *_line_col(pos), message))

    def run(self) -> None:
        loader = _Loader(self.text)
        handlers: dict[type, Any] = {
            yaml.ScalarEvent: self._scalar,
            yaml.MappingStartEvent: self._start,
            yaml.SequenceStartEvent: self._start,
            yaml.MappingEndEvent: self._end,
            yaml.SequenceEndEvent: self._end,
            yaml.AliasEvent: self._alias,
            yaml.DocumentStartEvent: self._document,
        }
        check, get = loader.check_event, loader.get_event
        try:
            while check():
                event = get()
                handler = handlers.get(type(event))
                if handler is not None:
                    handler(event)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            message = exc.problem or exc.context or "invalid YAML"
            self.compiler.fatal(Problem(self.name, *_line_col(mark), f"YAML syntax: {message}"))
            return
        except yaml.YAMLError as exc:
            self.compiler.fatal(Problem(self.name, 1, 1, f"YAML: {exc}"))
            return
        except _Fatal as exc:
            self.compiler.fatal(exc.problem)
            return
        except RecursionError:  # pragma: no cover - nesting is bounded first
            self.compiler.fatal(Problem(self.name, 1, 1, "the document nests too deeply"))
            return
        finally:
            loader.dispose()
        if self.documents == 0:
            message = "the file is empty: expected version, destinations, rules"
            self.compiler.fatal(Problem(self.name, 1, 1, message))
            return
        if self.top is not None and self.top_pos is not None:
            self.compiler.end(self.top, self.top_pos)

    def _document(self, event: Any) -> None:
        self.documents += 1
        if self.documents > 1:
            raise self.fatal(event.start_mark, "expected a single document")

    # -- values

    def _scalar(self, event: Any) -> None:
        text: str = event.value
        tag = event.tag
        if tag is None:
            if event.implicit[0]:
                tag = _STR
                for candidate, regexp in _BY_FIRST.get(text[:1], ()) if text else ():
                    if regexp.match(text):
                        tag = candidate
                        break
                else:
                    if not text:
                        tag = _EMPTY_TAG
            else:
                tag = _STR
        elif tag == "!":
            tag = _STR
        elif tag.startswith("!") and not tag.startswith("!!"):
            self.problem(event.start_mark, f"unknown tag {tag!r}")
            self._add(None, event.start_mark, 1, event.anchor)
            return
        if tag == _STR:
            value: Any = text
            if "$" in text and not self._at_key():
                value = self._substitute(text, event.start_mark)
        elif tag == _MERGE:
            value = _MERGE if self._at_key() else text  # `<<` as a value is only text
        else:
            try:
                value = self._construct(tag, text, event)
            except (yaml.YAMLError, ValueError, TypeError, ArithmeticError) as exc:
                reason = getattr(exc, "problem", None) or str(exc)
                if "digits" in reason:  # Python's bound on int(): 4300 digits
                    reason = "a number too long"
                self.problem(event.start_mark, f"cannot read {_short(text)!r}: {reason}")
                self.compiler.unset.add(_line_col(event.start_mark))
                value = None
        style = event.style
        pos = _Block(event.start_mark) if style == "|" or style == ">" else event.start_mark
        self._add(value, pos, 1, event.anchor)

    def _at_key(self) -> bool:
        frame = self.stack[-1] if self.stack else None
        return frame is not None and not frame.is_list and frame.key is _NO_KEY

    @staticmethod
    def _construct(tag: str, text: str, event: Any) -> Any:
        if tag == _INT:
            if _DECIMAL_INT.fullmatch(text):
                return int(text)
            return _CONSTRUCTOR.construct_yaml_int(yaml.ScalarNode(tag, text))
        if tag == "tag:yaml.org,2002:float":
            return _decimal(text)
        if tag == "tag:yaml.org,2002:bool":
            return _CONSTRUCTOR.bool_values[text.lower()]
        if tag == "tag:yaml.org,2002:null":
            return None
        construct = _CONSTRUCTOR.yaml_constructors.get(tag)
        if construct is None or tag in ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"):
            raise ValueError(f"unknown tag {tag!r}")
        if event is None:  # the quick path: no marks
            node = yaml.ScalarNode(tag, text)
        else:
            node = yaml.ScalarNode(tag, text, event.start_mark, event.end_mark, event.style)
        return construct(_CONSTRUCTOR, node)

    def _substitute(self, text: str, mark: Any) -> Any:
        missing: list[str] = []

        def substitute(match: re.Match[str]) -> str:
            var = match.group(1)
            if var is None:
                return "$"
            if var not in self.variables:
                missing.append(var)
                return ""
            return self.variables[var]

        value = _VAR.sub(substitute, text)
        for var in missing:
            self.problem(mark, f"environment variable {var} is not set")
            self.compiler.unset.add(_line_col(mark))
        # Text, whatever it looks like: a name of digits stays a name. The fields that
        # want a number read a number's text (an id, a count, a price, seconds).
        return value

    def _alias(self, event: Any) -> None:
        found = self.anchors.get(event.anchor)
        if found is None:
            if any(frame.anchor == event.anchor for frame in self.stack):
                raise self.fatal(event.start_mark, f"the anchor &{event.anchor} refers to itself")
            self.problem(event.start_mark, f"unknown alias *{event.anchor}")
            self.compiler.unset.add(_line_col(event.start_mark))
            self._add(None, event.start_mark, 1, None)
            return
        value, pos, nodes = found
        self.alias_nodes += nodes
        if self.alias_nodes > MAX_ALIAS_NODES:
            message = f"aliases expand to more than {MAX_ALIAS_NODES:,} nodes (an alias bomb?)"
            raise self.fatal(event.start_mark, message)
        self._add(value, pos, nodes, None)

    # -- containers

    def _start(self, event: Any) -> None:
        mark = event.start_mark
        stack = self.stack
        if len(stack) >= MAX_DEPTH:
            raise self.fatal(mark, f"nested deeper than {MAX_DEPTH} levels")
        mapping = type(event) is yaml.MappingStartEvent
        tag = event.tag
        if tag is not None and tag not in ("!", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"):
            self.problem(mark, f"unsupported tag {tag!r}")
        frame = _Frame({} if mapping else [], _Map(mark) if mapping else _Seq(mark), event.anchor)
        if not stack:
            if mapping:
                self.top, self.top_pos = frame.container, frame.pos
                self.top_block = not event.flow_style and mark.column == 0
        elif (
            not mapping
            and len(stack) == 1
            and stack[0].key == "rules"
            and self.top is not None
            and self.top_pos is not None
            and stack[0].container is self.top
            and self.rules_frame is None
        ):
            self.rules_frame = frame  # its items go to the compiler as they end
            self.compiler.rules_start(self.top, self.top_pos)
        stack.append(frame)

    def _end(self, event: Any) -> None:
        frame = self.stack.pop()
        container = frame.container
        if frame.merges:
            container = self._merge(frame)
        self._add(container, frame.pos, frame.nodes, frame.anchor)

    def _merge(self, frame: _Frame) -> dict[Any, Any]:
        """`<<: *base`: the keys of the merged mappings, under the mapping's own."""
        merged: dict[Any, Any] = {}
        positions = frame.pos
        assert frame.merges is not None
        for value, pos in reversed(frame.merges):
            sources = [(value, pos)]
            if isinstance(value, list) and isinstance(pos, _Seq):
                sources = list(zip(value, pos.items, strict=True))[::-1]
            for source, source_pos in sources:
                if not isinstance(source, dict) or not isinstance(source_pos, _Map):
                    self.problem(source_pos, "<< merges only mappings")
                    continue
                for key, item in source.items():
                    merged[key] = item
                    if key not in frame.container:
                        positions.keys[key] = source_pos.keys[key]
                        positions.values[key] = source_pos.values[key]
        merged.update(frame.container)
        return merged

    def _add(self, value: Any, pos: Any, nodes: int, anchor: str | None) -> None:
        if anchor:
            self.anchors[anchor] = (value, pos, nodes)
        stack = self.stack
        if not stack:
            if value is None:
                message = "the file is empty: expected version, destinations, rules"
                raise self.fatal(pos, message)
            if not isinstance(value, dict):
                raise self.fatal(pos, "the top level must be a mapping")
            return
        frame = stack[-1]
        frame.nodes += nodes
        if frame.is_list:
            if frame is self.rules_frame:
                self.compiler.rule(value, pos)
            else:
                frame.container.append(value)
                frame.pos.items.append(pos)
            return
        key = frame.key
        if key is _NO_KEY:
            if isinstance(value, dict | list):
                kind = "mapping" if isinstance(value, dict) else "sequence"
                self.problem(pos, f"a {kind} cannot be a key")
                frame.key = _SKIP
            elif value in frame.container:
                self.problem(pos, f"duplicate key {_short(str(value))!r}")
                frame.key = _SKIP
            else:
                frame.key = value
                frame.key_at = pos
            return
        frame.key = _NO_KEY
        if key is _SKIP:
            return
        if key is _MERGE:
            frame.merges = [*(frame.merges or []), (value, pos)]
            return
        frame.container[key] = value
        positions = frame.pos
        positions.keys[key] = frame.key_at
        positions.values[key] = pos


def _decimal(text: str) -> Any:
    """YAML floats as exact decimals: `100000.10` is a price, not a binary float."""
    value = _CONSTRUCTOR.construct_yaml_float(yaml.ScalarNode("tag:yaml.org,2002:float", text))
    if value != value or value in (float("inf"), float("-inf")) or ":" in text:
        return value
    try:
        return Decimal(text.replace("_", ""))
    except InvalidOperation:
        return value


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


# ---- the quick path --------------------------------------------------------------------------
#
# A big rules file is nearly always a header and then one rule a line, in flow style:
#   - {name: u1, when: live, users: [1], notify: [tg]}
# Such lines are read here with a few regular expressions and validated without a model
# per rule, ten times faster than YAML events; the text is decoded line by line, never whole.
# Anything outside that narrow form (a quote with an escape, an anchor, a `${VAR}`, a
# block-style rule, a rule that does not validate, any problem at all) gives the file
# back to the full path, which reads it from the start and says every problem with its
# position. So the quick path never reports, and only ever accepts what the full path
# accepts, with the same values: scalars are resolved by the same YAML resolvers.

_WORD = r"[\w.%+\-]+"
_PLAIN = rf"[\w.][\w.%+\-]*(?: +{_WORD})*"
_NOT_QUOTED = r"$\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff"  # ${VAR}, controls, YAML line breaks
_QUOTED = rf'"[^"\\{_NOT_QUOTED}]*"|\'[^\'{_NOT_QUOTED}]*\''
_ONE = rf"(?:{_PLAIN}|{_QUOTED})"
_LIST = rf"\[ *(?:{_ONE}(?: *, *{_ONE})*)? *\]"
_ITEM = rf"[A-Za-z_][A-Za-z0-9_]*: +(?:{_ONE}|{_LIST})"
_COMMENT = r"(?: +#[^\x85\u2028\u2029]*)?"
# A rule line: `- {...}`, then maybe a comment. The braces' text is checked on its own.
_RULE_LINE = re.compile(r"( *)- +\{(.*)\}(?: +#[^\x85\u2028\u2029]*| *)\n?")
# The braces' text with quotes: all of it must be items (quoted or plain), strictly.
_QUOTED_BODY = re.compile(rf" *({_ITEM}(?: *, *{_ITEM})*) *")
_ITEMS = re.compile(rf"([A-Za-z_][A-Za-z0-9_]*): +({_ONE}|{_LIST})")
_ONES = re.compile(_ONE)
# The braces' text without quotes: only these characters (no #, $, &, *, !, {, tabs ...);
# then `: `, `,`, `[` and `]` can only be what they separate, checked as it is split.
_UNQUOTED_BODY = re.compile(r"[\w.%+\-, :\[\]]*")
_RULES_KEY = re.compile(rf"rules: *{_COMMENT}\n?")
_NOTHING = re.compile(r" *(?:#[^\x85\u2028\u2029]*)?\n?")  # a blank or comment-only line
_MAX_HEADER = 1024 * 1024

_LIVE_KEYS = frozenset(LiveRule.model_fields)
_RULE_KEYS = _LIVE_KEYS | frozenset(PriceRule.model_fields) | frozenset(ScheduledRule.model_fields)
_BASIC_LIVE_KEYS = frozenset({"name", "when", "users", "notify"})
_PRICE_KEYS = frozenset(
    {"name", "when", "notify", "asset", "above", "below", "rearm", "cooldown", "fire_on_start"}
)
_ON_END = frozenset({"edit", "delete", "ignore"})
_MAX_VIEWERS = 1_000_000_000


class _Bail(Exception):
    """The quick path cannot take this file: the full path reads it."""


def _resolve(text: str) -> Any:
    """A plain scalar's value, by the resolvers the full path uses."""
    resolvers = _BY_FIRST.get(text[0])
    if resolvers is None:
        return text  # most names: no resolver starts with their first character
    if text.isdigit() and text.isascii() and len(text) <= 50 and (text[0] != "0" or text == "0"):
        return int(text)  # a decimal integer, as the int resolver and constructor read it
    known = _RESOLVED.get(text, _RESOLVED)
    if known is not _RESOLVED:
        return known
    value: Any = text
    for tag, regexp in resolvers:
        if regexp.match(text):
            if tag == _MERGE or tag == "tag:yaml.org,2002:value":
                raise _Bail
            try:
                value = _Reader._construct(tag, text, None)
            except (yaml.YAMLError, ValueError, TypeError, ArithmeticError):
                raise _Bail from None
            break
    if len(_RESOLVED) < 4096:  # words met on every line (tg, true, 0.5%): resolved once
        _RESOLVED[text] = value  # every such value is immutable: shared safely
    return value


_RESOLVED: dict[str, Any] = {}


def _plain(text: str) -> Any:
    """An unquoted scalar of the quick form: it starts with a letter, digit, _ or ."""
    if not text or not (text[0].isalnum() or text[0] in "_."):
        raise _Bail
    return _resolve(text)


def _one(text: str) -> Any:
    first = text[0]
    if first == '"' or first == "'":
        return text[1:-1]
    return _resolve(text)


def _flow_mapping(body: str) -> dict[str, Any]:
    """The mapping of a rule line from the text between its braces."""
    if '"' in body or "'" in body:
        if _QUOTED_BODY.fullmatch(body) is None:
            raise _Bail
        raw: dict[str, Any] = {}
        items = _ITEMS.findall(body)
        for key, text in items:
            if key not in _RULE_KEYS:
                raise _Bail  # unknown (and so an error), or a key YAML reads as a boolean
            if text[0] == "[":
                raw[key] = [_one(one) for one in _ONES.findall(text, 1, len(text) - 1)]
            else:
                raw[key] = _one(text)
        if len(items) != len(raw):
            raise _Bail  # a key twice
        return raw
    if _UNQUOTED_BODY.fullmatch(body) is None:
        raise _Bail
    # Without quotes, `: ` only ends a key and `,` only ends an item (a plain scalar of
    # this form holds neither): splitting is exact, and quicker than a regular expression.
    # Every `:` must be one of those `: `, every bracket an end of a list (counted below).
    parts = body.split(": ")
    last = len(parts) - 1
    if last < 1 or body.count(":") != last:
        raise _Bail
    raw = {}
    lists = 0
    key = parts[0]
    for n in range(1, last + 1):
        piece = parts[n]
        if n < last:
            text, comma, after = piece.rpartition(",")
            if not comma:
                raise _Bail
        else:
            text, after = piece, ""
        key = key.strip(" ")
        if key not in _RULE_KEYS or key in raw:
            raise _Bail  # unknown, a key YAML reads as a boolean, or a key twice
        text = text.strip(" ")
        if text[:1] == "[":
            if text[-1] != "]":
                raise _Bail
            lists += 1
            inner = text[1:-1].strip(" ")
            if "," in inner:
                raw[key] = [_plain(one.strip(" ")) for one in inner.split(",")]
            else:  # most lists: one item, or none
                raw[key] = [_plain(inner)] if inner else []
        else:
            if "," in text:
                raise _Bail
            first = text[:1]
            if not (first.isalnum() or first == "_" or first == "."):
                raise _Bail  # also an empty value
            raw[key] = text if first not in _BY_FIRST else _resolve(text)
        key = after
    if body.count("[") != lists or body.count("]") != lists:
        raise _Bail  # a bracket inside a value
    return raw


class _Quick:
    """The quick path: the header through the full reader, then each rule line."""

    def __init__(
        self,
        name: str,
        variables: Mapping[str, str],
        context: dict[str, Any],
        categories: Mapping[int, Iterable[str]] | None,
    ) -> None:
        self.name = name
        self.variables = variables
        self.context = context
        self.categories = categories
        # The names' hashes, not the names: the names are packed into the engine as they
        # come, and a set of 100,000 strings would keep every one alive until the end. Two
        # names with one hash (or one name twice) go to the full path, which tells them apart.
        self.names: set[int] = set()
        self.meta: dict[str, RuleMeta] = {}
        # Values met again and again, validated once: (field, type, value) -> the value
        self.validated: dict[tuple[Any, ...], Any] = {}
        self.patterns: dict[str, bool] = {}
        self.templates: dict[str, bool] = {}
        self.notify_ok: dict[tuple[Any, ...], bool] = {}

    def run(self, lines: Iterable[str]) -> Compiled | None:
        try:
            return self._run(iter(lines))
        except _Bail:
            return None
        except Exception:  # a case the checks above did not foresee: the full path knows
            return None

    def _run(self, lines: Iterator[str]) -> Compiled:
        header = self._header(lines)
        engine = header.engine
        assert engine is not None and header.destination_names is not None
        self.destinations = header.destination_names
        indent = None
        for line in lines:
            found = _RULE_LINE.fullmatch(line)
            if found is None:
                if _NOTHING.fullmatch(line):
                    continue
                raise _Bail
            if indent is None:
                indent = found.group(1)
            elif found.group(1) != indent:
                raise _Bail
            raw = _flow_mapping(found.group(2))
            if not self._live(raw, engine) and not self._price(raw, engine):
                self._other(raw, engine)
        assert header.rules_file is not None
        return Compiled(header.rules_file, engine, self.meta)

    def _header(self, lines: Iterator[str]) -> _Compiler:
        """The lines before `rules:` (a block mapping at column 0), through the full path."""
        text: list[str] = []
        size = 0
        content = False  # a line of the document itself (not a comment or directive) read
        for line in lines:
            if _RULES_KEY.fullmatch(line):
                break
            if line.startswith("..."):
                raise _Bail  # the end of the document: `rules:` would start another
            if line.startswith("---"):
                if content:
                    raise _Bail
                content = True
            elif not _NOTHING.fullmatch(line) and not line.startswith("%"):
                content = True
            size += len(line)
            if size > _MAX_HEADER:
                raise _Bail
            text.append(line)
        else:
            raise _Bail  # no `rules:` line
        compiler = _Compiler(self.name, self.context, self.categories, False)
        reader = _Reader("".join(text), self.name, self.variables, compiler)
        reader.run()
        top = reader.top
        if (
            compiler.problems
            or compiler.fatal_problem is not None
            or compiler.engine is None
            or compiler.destination_names is None
            or top is None
            or "rules" in top
            or not reader.top_block
        ):
            raise _Bail
        return compiler

    def _live(self, raw: dict[str, Any], engine: Engine) -> bool:
        """A live rule checked and added without a model; False when it needs one."""
        if raw.get("when") != "live":
            return False
        keys = raw.keys()
        name = raw.get("name")
        notify = raw.get("notify")
        if type(name) is not str or not 1 <= len(name) <= 100 or not self._notify(notify):
            return False
        assert isinstance(notify, list)
        if keys <= _BASIC_LIVE_KEYS:  # most rules of a big file: whom, and where to
            users = raw.get("users", _NONE)
            if type(users) is not list:
                return False
            for value in users:
                if type(value) is not int and type(value) is not str:
                    return False
            self._name(name)
            engine.add_live(name, notify=notify, users=users)
            return True
        if not keys <= _LIVE_KEYS:
            return False
        users = raw.get("users", _NONE)
        categories = raw.get("categories", _NONE)
        excluded = raw.get("exclude_users", _NONE)
        for values in (users, categories, excluded):
            if type(values) is not list:
                return False
            for value in values:
                if type(value) is not int and type(value) is not str:
                    return False
        viewers = raw.get("min_viewers")
        if viewers is not None and (type(viewers) is not int or not 0 <= viewers <= _MAX_VIEWERS):
            return False
        on_end = raw.get("on_end")
        if on_end is not None and (type(on_end) is not str or on_end not in _ON_END):
            return False
        cooldown = raw.get("cooldown")
        if cooldown is not None:
            cooldown = self._cooldown(cooldown)
            if cooldown is None:
                return False
        title = raw.get("title_matches")
        if title is not None and (type(title) is not str or not self._pattern(title)):
            return False
        template = raw.get("template")
        if template is not None and (type(template) is not str or not self._template(template)):
            return False
        self._name(name)
        if template is not None or on_end is not None:
            self.meta[name] = RuleMeta("live", template, on_end)
        engine.add_live(
            name,
            notify=notify,
            cooldown=cooldown,
            users=users,
            categories=categories,
            exclude_users=excluded,
            title_matches=title,
            min_viewers=viewers,
        )
        return True

    def _price(self, raw: dict[str, Any], engine: Engine) -> bool:
        """A price rule of lines (no move, no template) checked and added without a model;
        False when it needs one."""
        if raw.get("when") != "price" or not raw.keys() <= _PRICE_KEYS:
            return False
        name = raw.get("name")
        asset = raw.get("asset")
        if (
            type(name) is not str
            or not 1 <= len(name) <= 100
            or type(asset) is not str
            or not asset
            or not self._notify(raw.get("notify"))
        ):
            return False
        good_above, above = _price_line(raw.get("above"))
        good_below, below = _price_line(raw.get("below"))
        if not good_above or not good_below or (above is None and below is None):
            return False
        rearm = raw.get("rearm")
        if rearm is not None:
            rearm = self._validated("rearm", rearm)
            if rearm is None or (above is not None and rearm_band(rearm, above) >= above):
                return False  # the model says why
        cooldown = raw.get("cooldown")
        if cooldown is not None:
            cooldown = self._cooldown(cooldown)
            if cooldown is None:
                return False
        fire_on_start = raw.get("fire_on_start", False)
        if type(fire_on_start) is not bool:
            return False
        self._name(name)
        engine.add_price_lines(
            name,
            notify=raw["notify"],
            asset=asset,
            above=above,
            below=below,
            rearm=rearm,
            cooldown=cooldown,
            fire_on_start=fire_on_start,
        )
        return True

    def _notify(self, notify: Any) -> bool:
        """A list of distinct known destination names (the answer kept per list)."""
        if type(notify) is not list:
            return False
        ok = self.notify_ok.get(key := tuple(notify))
        if ok is None:
            ok = self.notify_ok[key] = len(set(notify)) == len(notify) > 0 and all(
                type(d) is str and d in self.destinations for d in notify
            )
        return ok

    def _validated(self, field: str, value: Any) -> Any:
        """`field` of a price rule as the model validates `value`, once per value met
        (None: it does not validate, or is not a plain value)."""
        if not isinstance(value, str | int | Decimal):
            return None  # a list, say: the model says what is wrong with it
        key = (field, type(value), value)  # the type: True and 1 are one key otherwise
        if key not in self.validated:
            # A below line: the rearm band is checked against an above line by the caller.
            data = {"name": "x", "when": "price", "asset": "x", "below": 1, "notify": ["x"]}
            try:
                rule = _RULE.validate_python({**data, field: value})
            except ValidationError:
                self.validated[key] = None
            else:
                self.validated[key] = getattr(rule, field)
        return self.validated[key]

    def _other(self, raw: dict[str, Any], engine: Engine) -> None:
        """Any other rule: through its model, as the full path validates it."""
        try:
            rule = _RULE.validate_python(raw, context=self.context)
        except ValidationError:
            raise _Bail from None
        if not set(rule.notify) <= self.destinations:
            raise _Bail
        if rule.template is not None and not self._template(rule.template, rule.when):
            raise _Bail
        self._name(rule.name)
        meta = _meta_of(rule)
        if meta is not None:
            self.meta[rule.name] = meta
        engine.add(rule)

    def _name(self, name: str) -> None:
        names = self.names
        size = len(names)
        names.add(hash(name))
        if len(names) == size:
            raise _Bail  # a duplicate name (said by the full path), or a shared hash

    def _cooldown(self, value: Any) -> float | None:
        seconds: float | None = self._validated("cooldown", value)
        return seconds

    def _pattern(self, pattern: str) -> bool:
        if pattern not in self.patterns:
            try:
                _RULE.validate_python(
                    {"name": "x", "when": "live", "notify": ["x"], "title_matches": pattern}
                )
            except ValidationError:
                self.patterns[pattern] = False
            else:
                self.patterns[pattern] = True
        return self.patterns[pattern]

    def _template(self, template: str, kind: str = "live") -> bool:
        key = f"{kind}\x00{template}"
        if key not in self.templates:
            self.templates[key] = (
                len(template) <= 10_000 and _check_template(template, kind) is None
            )
        return self.templates[key]


_NONE: list[Any] = []


def _price_line(value: Any) -> tuple[bool, Decimal | None]:
    """`above` or `below` as PriceRule validates an int or a finite Decimal: (True, it),
    (True, None) when absent, (False, None) for anything else (the model judges it)."""
    if value is None:
        return True, None
    if type(value) is int:
        line = Decimal(value)
    elif type(value) is Decimal and value.is_finite():
        line = value
    else:
        return False, None
    if line <= 0 or line >= MAX_PRICE or line.adjusted() < -18:
        return False, None
    return True, line


def _finish(compiled: Compiled, state: Mapping[str, Any] | None) -> Compiled:
    """Seal the engine, then give the heap the compile let go of back to the system."""
    compiled.engine.seal(state)
    gc.collect(1)  # what the compile let go of is young: no need to walk every module
    _trim()
    return compiled


def _trim() -> None:
    """glibc keeps freed memory for the process; malloc_trim returns it (elsewhere: no-op)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # musl, or no glibc
        return
    trim(0)


# ---- compiling ------------------------------------------------------------------------------


class _Compiler:
    """Checks the header and each rule as the reader hands them over; compiles the rules
    into the engine while the file has no problem."""

    def __init__(
        self,
        name: str,
        context: dict[str, Any],
        categories: Mapping[int, Iterable[str]] | None,
        keep_rules: bool,
        *,
        skip_rules: bool = False,
        header: _Compiler | None = None,
    ) -> None:
        self.name = name
        self.context = context
        self.categories = categories
        self.keep_rules = keep_rules
        self.skip_rules = skip_rules
        self.problems: list[Problem] = []
        # Values already reported (a missing ${VAR}, an unreadable scalar, an unknown alias):
        # schema errors inside them would only repeat the problem.
        self.unset: set[tuple[int, int]] = set()
        self.fatal_problem: Problem | None = None
        self.rules_file: RulesFile | None = None
        self.destination_names: set[str] | None = None
        self.engine: Engine | None = None
        self.meta: dict[str, RuleMeta] = {}
        self.kept: list[Any] = []
        self.first_index: dict[str, int] = {}
        self.index = 0
        self.header_keys: frozenset[Any] = frozenset()
        self.streamed = False  # the top-level rules list came item by item
        self.opened = False
        self.given_header = header
        if header is not None:
            self.problems += header.problems
            self.unset |= header.unset
            self.fatal_problem = header.fatal_problem
            self._adopt(header)

    def fatal(self, problem: Problem) -> None:
        self.fatal_problem = problem

    # -- the header

    def rules_start(self, top: dict[Any, Any], pos: _Map) -> None:
        self.streamed = True
        if self.given_header is not None or self.skip_rules:
            return
        self.header_keys = frozenset(k for k in top if k in _HEADER_KEYS)
        if "destinations" in top:
            self._open(top, pos)

    def _adopt(self, other: _Compiler) -> None:
        self.rules_file = other.rules_file
        self.destination_names = other.destination_names
        self.opened = True
        if self.rules_file is not None:
            self.engine = Engine(self.rules_file, categories=self.categories)

    def _open(self, top: dict[Any, Any], pos: _Map) -> None:
        """Validate the header (all but `rules`) and start the engine."""
        self.opened = True
        data = {k: v for k, v in top.items() if k != "rules" or not isinstance(v, list)}
        destinations = top.get("destinations")
        if isinstance(destinations, dict):
            self.destination_names = {str(k) for k in destinations}
        try:
            self.rules_file = RulesFile.model_validate(data, context=self.context)
        except ValidationError as exc:
            for error in exc.errors():
                self._pydantic_problem(pos, (), error)
            return
        self.engine = Engine(self.rules_file, categories=self.categories)

    def end(self, top: dict[Any, Any], pos: _Map) -> None:
        if self.given_header is None:
            if self.opened:
                if {k for k in top if k in _HEADER_KEYS} - self.header_keys:
                    raise _HeaderLate
            elif self.streamed and not self.skip_rules:
                raise _HeaderLate  # the rules came before the destinations
            else:
                self._open(top, pos)
        rules = top.get("rules")
        if isinstance(rules, list) and not self.streamed and not self.skip_rules:
            self._rules_from_alias(rules, pos)

    def _rules_from_alias(self, rules: list[Any], pos: _Map) -> None:
        """`rules: *all`: the list came whole, not item by item."""
        items = _locate(pos, ("rules",))
        for n, rule in enumerate(rules):
            self.rule(rule, items.items[n] if isinstance(items, _Seq) else items)

    # -- each rule

    def rule(self, raw: Any, pos: Position) -> None:
        index = self.index
        self.index += 1
        if self.skip_rules:
            return
        rule: Any = None
        before = len(self.problems)
        try:
            rule = _RULE.validate_python(raw, context=self.context)
        except ValidationError as exc:
            for error in exc.errors():
                self._pydantic_problem(pos, ("rules", index), error)
        self._rule_semantics(raw, pos, index)
        if len(self.problems) > before or rule is None:
            return
        meta = _meta_of(rule)
        if meta is not None:
            self.meta[rule.name] = meta
        if self.keep_rules:
            self.kept.append(rule)
        if self.engine is not None and not self.problems:
            self.engine.add(rule)

    def _rule_semantics(self, raw: Any, pos: Position, index: int) -> None:
        """Checks across keys, on the raw data so they are found beside schema errors."""
        if not isinstance(raw, dict):
            return
        rule_name = raw.get("name")
        if isinstance(rule_name, str):
            if rule_name in self.first_index:
                where = f"first at rules[{self.first_index[rule_name]}]"
                message = f"duplicate rule name {rule_name!r} ({where})"
                self._at(_locate(pos, ("name",)), message)
            else:
                self.first_index[rule_name] = index
        notify = raw.get("notify")
        known = self.destination_names
        if known is not None and isinstance(notify, list):
            for position, destination in enumerate(notify):
                if isinstance(destination, str) and destination not in known:
                    message = f"rules[{index}].notify: unknown destination {destination!r}"
                    close = difflib.get_close_matches(destination, sorted(known), n=1)
                    if close:
                        message += f" (did you mean {close[0]!r}?)"
                    self._at(_locate(pos, ("notify", position)), message)
        template, kind = raw.get("template"), raw.get("when")
        if isinstance(template, str) and len(template) <= 10_000 and kind in FIELDS_KINDS:
            problem = _check_template(template, kind)
            if problem is not None:
                self._template_problem(_locate(pos, ("template",)), index, problem)

    def _template_problem(self, pos: Position, index: int, problem: TemplateProblem) -> None:
        line, col = _line_col(pos)
        block = isinstance(pos, _Block)
        message = f"rules[{index}].template: {problem.message}"
        # A block scalar starts on the next line; a one-line template keeps the column.
        if problem.line > 1 or block:
            line += problem.line if block else problem.line - 1
            self.problems.append(Problem(self.name, line, 1, message))
        else:
            self.problems.append(Problem(self.name, line, col, message))

    def _at(self, pos: Position, message: str) -> None:
        line, col = _line_col(pos)
        self.problems.append(Problem(self.name, line, col, message))

    def _pydantic_problem(self, root: Position, prefix: tuple[Any, ...], error: Any) -> None:
        loc = tuple(error["loc"])
        if self.unset and _contains(_locate(root, loc), self.unset):
            return  # an error inside a value whose ${VAR} is missing only repeats that
        full = (*prefix, *loc)
        kind = error["type"]
        if loc[-1:] == ("[key]",):  # a key of a mapping, such as a destination name
            message = f"{_path_text(full[:-2])}: a key here must be text (quote it)"
            self._at(_locate(root, loc[:-1], want_key=True), message)
            return
        where = _path_text(full)
        if kind == "extra_forbidden":
            key = str(loc[-1])
            message = f"unknown key {key!r}"
            close = difflib.get_close_matches(key, _known_keys(full), n=1)
            if close:
                message += f" (did you mean {close[0]!r}?)"
            parent = _path_text(full[:-1])
            self._at(
                _locate(root, loc, want_key=True), message + (f" in {parent}" if parent else "")
            )
            return
        if kind == "missing":
            self._at(_locate(root, loc[:-1]), f"{where}: missing required key {loc[-1]!r}")
            return
        if kind == "union_tag_invalid":
            got = error.get("ctx", {}).get("tag")
            message = f"{where}.when: {got!r} is not one of live, price, scheduled"
            self._at(_locate(root, (*loc, "when")), message)
            return
        if kind == "union_tag_not_found":
            message = f"{where}: missing required key 'when' (live, price or scheduled)"
            self._at(_locate(root, loc), message)
            return
        message = str(error["msg"]).removeprefix("Value error, ")
        if kind == "too_short" and loc[-1:] == ("notify",):
            message = "names no destination: a rule needs at least one"
        node = _locate(root, loc)
        if isinstance(node, _Map):
            node = _locate(root, loc, want_key=True)  # a whole-object error points at its key
        self._at(node, f"{where}: {message}" if where else message)

    # -- the result

    def result(self, state: Mapping[str, Any] | None) -> Compiled:
        problems = list(self.problems)
        if self.fatal_problem is not None:
            problems = [self.fatal_problem]  # what came before it may be its echo
        if problems or self.rules_file is None or self.engine is None:
            if not problems:  # pragma: no cover - a header problem is always reported
                problems = [Problem(self.name, 1, 1, "no usable header")]
            raise RulesError(_sorted_unique(problems))
        rules_file = self.rules_file
        if self.keep_rules:
            rules_file = rules_file.model_copy(update={"rules": self.kept})
        return _finish(Compiled(rules_file, self.engine, self.meta), state)


FIELDS_KINDS = ("live", "price", "scheduled")


def _check_template(source: str, kind: str) -> TemplateProblem | None:
    # Jinja2 is imported with the first template: a file without any does not need it.
    from notifier.rules.templates import check_template

    return check_template(source, kind)


def _meta_of(rule: Any) -> RuleMeta | None:
    """What the daemon keeps of a rule besides the engine; None when DEFAULT_META says it."""
    on_end = rule.on_end if isinstance(rule, LiveRule) else None
    if rule.template is not None or on_end is not None:
        return RuleMeta(rule.when, rule.template, on_end)
    return None


def _sorted_unique(problems: list[Problem]) -> list[Problem]:
    return sorted(dict.fromkeys(problems), key=lambda p: (p.line, p.column))


def _path_text(loc: Sequence[Any]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in FIELDS_KINDS and text.startswith("rules["):
            continue
        else:
            text += f".{part}" if text else str(part)
    return text


def _known_keys(loc: Sequence[Any]) -> list[str]:
    models: dict[str, type[BaseModel]] = {
        "live": LiveRule,
        "price": PriceRule,
        "scheduled": ScheduledRule,
        "telegram": TelegramTarget,
        "discord": DiscordTarget,
        "console": ConsoleTarget,
        "defaults": Defaults,
        "bots": Bots,
    }
    if loc[:1] == ("bots",):
        models.update(telegram=TelegramBot, discord=DiscordBot)
    parents = [p for p in loc[:-1] if isinstance(p, str)]
    if parents and parents[-1] in models:
        return list(models[parents[-1]].model_fields)
    if len(loc) >= 3 and loc[0] == "destinations":
        return list(Destination.model_fields)
    if len(loc) == 1:
        return list(RulesFile.model_fields)
    return []
