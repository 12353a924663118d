"""Compiling a large rules file without holding it twice: YAML events in, one rule at a
time validated, compiled into the engine and let go.

With 100,000 rules, a node tree, the whole data, the pydantic models and the engine
together would cost several hundred megabytes; streaming keeps only the engine. Any
problem at all (a schema error, an unknown destination, an anchor to follow, a missing
variable) sends the caller back to `load_file`, which reports every error with its
position.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from notifier.rules.engine import Engine
from notifier.rules.loader import (
    _construct_decimal,
    _FastLoader,
    _interpolate_data,
    _MissingVariable,
    load_file,
)
from notifier.rules.schema import LiveRule, Rule, RulesFile
from notifier.rules.templates import check_template

_RULE: TypeAdapter[Any] = TypeAdapter(Rule)


@dataclass(frozen=True, slots=True)
class RuleMeta:
    """What the daemon needs of a rule besides the engine: its template and `on_end`."""

    when: str
    template: str | None = None
    on_end: str | None = None


DEFAULT_META = {kind: RuleMeta(kind) for kind in ("live", "price", "scheduled")}


@dataclass
class Compiled:
    rules_file: RulesFile  # destinations and defaults; `rules` left empty
    engine: Engine
    meta: dict[str, RuleMeta]


class _Fallback(Exception):
    pass


def compile_rules(
    path: str | Path,
    *,
    categories: Mapping[int, Iterable[str]] | None = None,
    state: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Compiled:
    """The engine for a rules file; RulesError (with positions) when it has problems."""
    env = os.environ if env is None else env
    try:
        text = Path(path).read_text(encoding="utf-8")
        return _stream(text, env, categories, state)
    except (
        _Fallback,
        OSError,
        UnicodeDecodeError,
        yaml.YAMLError,
        RecursionError,
        TypeError,
        ValueError,
    ):
        pass
    rules_file = load_file(path, env)  # raises RulesError with every position
    header = rules_file.model_copy(update={"rules": []})
    engine = Engine(header, categories=categories)
    meta: dict[str, RuleMeta] = {}
    for rule in rules_file.rules:
        engine.add(rule)
        _remember(meta, rule)
    engine.seal(state)
    return Compiled(header, engine, meta)


def _remember(meta: dict[str, RuleMeta], rule: Any) -> None:
    on_end = rule.on_end if isinstance(rule, LiveRule) else None
    if rule.template is not None or on_end is not None:
        meta[rule.name] = RuleMeta(rule.when, rule.template, on_end)
    else:
        meta[rule.name] = DEFAULT_META[rule.when]


class _Builder:
    """Python values from YAML events; the items of the top-level `rules` list go to
    `on_rule` one by one instead of into a list."""

    def __init__(self, on_rule: Any) -> None:
        self._loader = _FastLoader("")
        self._resolver = yaml.resolver.Resolver()
        self.stack: list[tuple[Any, Any]] = []  # (container, pending mapping key)
        self._on_rule = on_rule
        self.top: dict[str, Any] | None = None

    def _scalar(self, event: yaml.ScalarEvent) -> Any:
        tag = event.tag
        if tag is None or tag == "!":
            tag = self._resolver.resolve(yaml.ScalarNode, event.value, event.implicit)  # type: ignore[no-untyped-call]
        if tag == "tag:yaml.org,2002:merge":
            raise _Fallback
        node = yaml.ScalarNode(tag, event.value, style=event.style)
        if tag == "tag:yaml.org,2002:float":
            return _construct_decimal(self._loader, node)
        # The constructor function itself: `construct_object` would cache every node.
        construct = self._loader.yaml_constructors.get(tag)
        if construct is None:
            raise _Fallback
        return construct(self._loader, node)

    def _add(self, value: Any) -> None:
        if not self.stack:
            if not isinstance(value, dict):
                raise _Fallback
            self.top = value
            return
        container, key = self.stack[-1]
        if isinstance(container, list):
            if len(self.stack) == 2 and self.stack[0][1] == "rules":
                self._on_rule(value)  # an item of the top-level rules list
            else:
                container.append(value)
        elif key is _NO_KEY:
            if not isinstance(value, str | int) or value in container:
                raise _Fallback  # a complex or duplicate key: let the full loader say
            self.stack[-1] = (container, value)
        else:
            container[key] = value
            self.stack[-1] = (container, _NO_KEY)

    def feed(self, event: yaml.Event) -> None:
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise _Fallback
        if isinstance(event, yaml.ScalarEvent):
            self._add(self._scalar(event))
        elif isinstance(event, yaml.MappingStartEvent):
            self.stack.append(({}, _NO_KEY))
        elif isinstance(event, yaml.SequenceStartEvent):
            self.stack.append(([], _NO_KEY))
        elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            container, key = self.stack.pop()
            if key is not _NO_KEY:
                raise _Fallback
            self._add(container)


_NO_KEY = object()


def _stream(
    text: str,
    env: Mapping[str, str],
    categories: Mapping[int, Iterable[str]] | None,
    state: Mapping[str, Any] | None,
) -> Compiled:
    compiled: list[Compiled] = []  # set once the header (destinations, defaults) is known
    pending: list[Any] = []  # rules read before the header
    names: set[str] = set()

    def on_rule(raw: Any) -> None:
        if compiled:
            _compile_one(compiled[0], raw, env, names)
        else:
            pending.append(raw)

    def start(top: dict[str, Any]) -> None:
        data = {
            k: _interpolate_data(v, env)
            for k, v in top.items()
            if k in ("version", "destinations", "defaults")
        }
        try:
            rules_file = RulesFile.model_validate(data)
        except (ValidationError, _MissingVariable):
            raise _Fallback from None
        compiled.append(Compiled(rules_file, Engine(rules_file, categories=categories), {}))
        for raw in pending:
            _compile_one(compiled[0], raw, env, names)
        pending.clear()

    builder = _Builder(on_rule)
    for event in yaml.parse(text, Loader=_FastLoader):
        builder.feed(event)
        # When the rules list opens, the keys read so far are the header.
        if (
            not compiled
            and isinstance(event, yaml.SequenceStartEvent)
            and len(builder.stack) == 2
            and "destinations" in builder.stack[0][0]
        ):
            start(builder.stack[0][0])
    top = builder.top
    if top is None:
        raise _Fallback
    if not compiled:
        start(top)
    result = compiled[0]
    whole = {k: _interpolate_data(v, env) for k, v in top.items() if k != "rules"}
    try:
        if RulesFile.model_validate(whole) != result.rules_file:
            raise _Fallback  # `defaults` came after `rules`: compile the slow way
    except (ValidationError, _MissingVariable):
        raise _Fallback from None
    result.engine.seal(state)
    return result


def _compile_one(target: Compiled, raw: Any, env: Mapping[str, str], names: set[str]) -> None:
    try:
        data = _interpolate_data(raw, env)
        rule = _RULE.validate_python(data)
    except (ValidationError, _MissingVariable):
        raise _Fallback from None
    if rule.name in names or any(d not in target.rules_file.destinations for d in rule.notify):
        raise _Fallback
    if rule.template is not None and check_template(rule.template, rule.when) is not None:
        raise _Fallback
    names.add(rule.name)
    target.engine.add(rule)
    _remember(target.meta, rule)
