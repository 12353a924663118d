"""Load a rules file: YAML with positions, `${VAR}` interpolation, every error as file:line:col."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from notifier.rules.schema import (
    ConsoleTarget,
    Defaults,
    Destination,
    DiscordTarget,
    LiveRule,
    PriceRule,
    RulesFile,
    ScheduledRule,
    TelegramTarget,
)
from notifier.rules.templates import TemplateProblem, check_template

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_MAX_BYTES = 10 * 1024 * 1024


class _DecimalLoader(yaml.SafeLoader):
    """Reads YAML floats as exact decimals: `100000.10` is a price, not a binary float."""


def _construct_decimal(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    value = loader.construct_yaml_float(node)
    text = str(node.value).replace("_", "")
    try:
        return Decimal(text) if value == value and abs(value) != float("inf") else value
    except ArithmeticError:
        return value


_DecimalLoader.add_constructor("tag:yaml.org,2002:float", _construct_decimal)


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


def load_file(path: str | Path, env: Mapping[str, str] | None = None) -> RulesFile:
    """Read and validate a rules file; raises RulesError listing every problem."""
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise RulesError([Problem(name, 1, 1, f"cannot read: {exc.strerror or exc}")]) from None
    if len(raw) > _MAX_BYTES:
        raise RulesError([Problem(name, 1, 1, f"file larger than {_MAX_BYTES} bytes")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RulesError([Problem(name, 1, 1, f"not UTF-8: {exc.reason}")]) from None
    return load_text(text, name, env)


def load_text(text: str, name: str = "<rules>", env: Mapping[str, str] | None = None) -> RulesFile:
    env = os.environ if env is None else env
    # A valid file loads straight to data with libyaml; only a file with a problem is
    # composed node by node, which is what gives every error its line and column.
    try:
        fast = _load_fast(text, env)
    except (TypeError, ValueError, RecursionError):
        fast = None
    if fast is not None:
        return fast
    try:
        return _load_with_positions(text, name, env)
    except RecursionError:
        message = "the document nests too deeply, or an anchor refers to itself"
        raise RulesError([Problem(name, 1, 1, message)]) from None
    except (TypeError, ValueError) as exc:
        # PyYAML's own slips: a mapping used as a key, an escape beyond Unicode
        raise RulesError([Problem(name, 1, 1, f"YAML: {exc}")]) from None


class _FastLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml when present; floats as decimals; a duplicate key is a problem to report."""


class _Duplicate(Exception):
    pass


def _fast_mapping(loader: Any, node: yaml.MappingNode) -> dict[Any, Any]:
    keys = [k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode)]
    if len(keys) != len(set(keys)):
        raise _Duplicate
    return dict(loader.construct_pairs(node, deep=True))


_FastLoader.add_constructor("tag:yaml.org,2002:float", lambda ld, n: _construct_decimal(ld, n))
_FastLoader.add_constructor("tag:yaml.org,2002:map", _fast_mapping)


def _load_fast(text: str, env: Mapping[str, str]) -> RulesFile | None:
    """The rules when the file has no problem at all; None to take the slow path."""
    try:
        data = yaml.load(text, Loader=_FastLoader)
        data = _interpolate_data(data, env)
        if not isinstance(data, dict) or _semantic_problems("", None, data):
            return None
        return RulesFile.model_validate(data)
    except (yaml.YAMLError, _Duplicate, _MissingVariable, ValidationError, RecursionError):
        return None


class _MissingVariable(Exception):
    pass


def _interpolate_data(value: Any, env: Mapping[str, str]) -> Any:
    if isinstance(value, str) and "$" in value:

        def substitute(match: re.Match[str]) -> str:
            var = match.group(1)
            if var is None:
                return "$"
            if var not in env:
                raise _MissingVariable(var)
            return env[var]

        replaced = _VAR.sub(substitute, value)
        if replaced != value and replaced.strip().lstrip("-").isdigit():
            return int(replaced)
        return replaced
    if isinstance(value, dict):
        return {k: _interpolate_data(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate_data(v, env) for v in value]
    return value


def _load_with_positions(text: str, name: str, env: Mapping[str, str]) -> RulesFile:
    problems: list[Problem] = []
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = exc.problem or exc.context or "invalid YAML"
        raise RulesError([Problem(name, line, col, f"YAML syntax: {message}")]) from None
    except yaml.YAMLError as exc:
        raise RulesError([Problem(name, 1, 1, f"YAML: {exc}")]) from None
    if node is None:
        raise RulesError(
            [Problem(name, 1, 1, "the file is empty: expected version, destinations, rules")]
        )
    if not isinstance(node, yaml.MappingNode):
        raise RulesError([_at(name, node, "the top level must be a mapping")])

    _check_duplicate_keys(node, name, problems)
    _unset_nodes: list[yaml.Node] = []
    _interpolate(node, name, env, problems, _unset_nodes)
    try:
        data = _DecimalLoader("").construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise RulesError([Problem(name, line, col, f"YAML: {exc.problem}")]) from None
    except yaml.YAMLError as exc:
        raise RulesError([_at(name, node, f"YAML: {exc}")]) from None

    # Schema errors inside a value whose ${VAR} is missing only repeat that problem.
    unset = {id(n) for n in _unset_nodes}
    rules_file: RulesFile | None = None
    try:
        rules_file = RulesFile.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            if not (unset and _contains(_locate(node, tuple(error["loc"])), unset)):
                problems.append(_from_pydantic(name, node, error))
    problems += _semantic_problems(name, node, data)
    if problems:
        problems.sort(key=lambda p: (p.line, p.column))
        raise RulesError(_unique(problems))
    assert rules_file is not None
    return rules_file


# ---- positions -------------------------------------------------------------------


def _at(name: str, node: yaml.Node, message: str) -> Problem:
    return Problem(name, node.start_mark.line + 1, node.start_mark.column + 1, message)


def _child(node: yaml.Node, key: Any) -> tuple[yaml.Node, yaml.Node] | None:
    """(key node, value node) for a mapping key or sequence index, if present."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(key):
                return key_node, value_node
    elif (
        isinstance(node, yaml.SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value)
    ):
        item = node.value[key]
        return item, item
    return None


def _locate(root: yaml.Node, loc: Sequence[Any], *, want_key: bool = False) -> yaml.Node:
    node = root
    key_node = root
    for part in loc:
        found = _child(node, part)
        if found is None:
            continue  # union tags and validator names are not in the YAML
        key_node, node = found
    return key_node if want_key else node


def _path_text(loc: Sequence[Any]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in ("live", "price", "scheduled") and text.startswith("rules["):
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
    }
    parents = [p for p in loc[:-1] if isinstance(p, str)]
    if parents and parents[-1] in models:
        return list(models[parents[-1]].model_fields)
    if len(loc) >= 3 and loc[0] == "destinations":
        return list(Destination.model_fields)
    if len(loc) == 1:
        return list(RulesFile.model_fields)
    return []


def _from_pydantic(name: str, root: yaml.Node, error: Any) -> Problem:
    loc = tuple(error["loc"])
    kind = error["type"]
    where = _path_text(loc)
    if kind == "extra_forbidden":
        key = str(loc[-1])
        node = _locate(root, loc, want_key=True)
        message = f"unknown key {key!r}"
        close = difflib.get_close_matches(key, _known_keys(loc), n=1)
        if close:
            message += f" (did you mean {close[0]!r}?)"
        parent = _path_text(loc[:-1])
        return _at(name, node, message + (f" in {parent}" if parent else ""))
    if kind == "missing":
        node = _locate(root, loc[:-1])
        return _at(name, node, f"{where}: missing required key {loc[-1]!r}")
    if kind == "union_tag_invalid":
        node = _locate(root, (*loc, "when"))
        got = error.get("ctx", {}).get("tag")
        return _at(name, node, f"{where}.when: {got!r} is not one of live, price, scheduled")
    if kind == "union_tag_not_found":
        node = _locate(root, loc)
        return _at(name, node, f"{where}: missing required key 'when' (live, price or scheduled)")
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind == "too_short" and loc[-1] == "notify":
        message = "names no destination: a rule needs at least one"
    node = _locate(root, loc)
    if isinstance(node, yaml.MappingNode):
        node = _locate(root, loc, want_key=True)  # a whole-object error points at its key
    return _at(name, node, f"{where}: {message}" if where else message)


def _unique(problems: list[Problem]) -> list[Problem]:
    seen: set[Problem] = set()
    out = []
    for p in problems:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


# ---- YAML-level checks --------------------------------------------------------------


def _check_duplicate_keys(node: yaml.Node, name: str, problems: list[Problem]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                if key_node.value in seen:
                    problems.append(_at(name, key_node, f"duplicate key {key_node.value!r}"))
                seen.add(key_node.value)
            _check_duplicate_keys(value_node, name, problems)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _check_duplicate_keys(item, name, problems)


def _contains(node: yaml.Node, ids: set[int]) -> bool:
    if id(node) in ids:
        return True
    if isinstance(node, yaml.MappingNode):
        return any(_contains(value, ids) for _, value in node.value)
    if isinstance(node, yaml.SequenceNode):
        return any(_contains(item, ids) for item in node.value)
    return False


def _interpolate(
    node: yaml.Node,
    name: str,
    env: Mapping[str, str],
    problems: list[Problem],
    unset: list[yaml.Node],
) -> None:
    """Replace `${VAR}` in scalar values from the environment; `$$` is a literal `$`."""
    if isinstance(node, yaml.ScalarNode):
        if "$" not in node.value:
            return
        missing: list[str] = []

        def substitute(match: re.Match[str]) -> str:
            var = match.group(1)
            if var is None:
                return "$"
            if var not in env:
                missing.append(var)
                return ""
            return env[var]

        value = _VAR.sub(substitute, node.value)
        for var in missing:
            problems.append(_at(name, node, f"environment variable {var} is not set"))
        if missing:
            unset.append(node)
        if value != node.value:
            node.value = value
            if node.tag == "tag:yaml.org,2002:str" and value.strip().lstrip("-").isdigit():
                node.tag = "tag:yaml.org,2002:int"
    elif isinstance(node, yaml.MappingNode):
        for _, value_node in node.value:
            _interpolate(value_node, name, env, problems, unset)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _interpolate(item, name, env, problems, unset)


# ---- checks across the file ------------------------------------------------------------


def _semantic_problems(name: str, root: yaml.Node | None, data: Any) -> list[Problem]:
    """Checks across keys, on the raw data so they are found even beside schema errors."""
    problems: list[Problem] = []
    if not isinstance(data, dict):
        return problems
    destinations = data.get("destinations")
    known = set(destinations) if isinstance(destinations, dict) else None
    rules = data.get("rules")
    if not isinstance(rules, list):
        return problems
    first_index: dict[str, int] = {}
    for index, rule in enumerate(rules):
        if not isinstance(rule, dict):
            continue
        rule_name = rule.get("name")
        if isinstance(rule_name, str):
            if rule_name in first_index:
                where = f"first at rules[{first_index[rule_name]}]"
                message = f"duplicate rule name {rule_name!r} ({where})"
                problems.append(_where(name, root, ("rules", index, "name"), message))
            else:
                first_index[rule_name] = index
        notify = rule.get("notify")
        if known is not None and isinstance(notify, list):
            for position, destination in enumerate(notify):
                if isinstance(destination, str) and destination not in known:
                    message = f"rules[{index}].notify: unknown destination {destination!r}"
                    close = difflib.get_close_matches(destination, sorted(known), n=1)
                    if close:
                        message += f" (did you mean {close[0]!r}?)"
                    path = ("rules", index, "notify", position)
                    problems.append(_where(name, root, path, message))
        template, kind = rule.get("template"), rule.get("when")
        if isinstance(template, str) and kind in ("live", "price", "scheduled"):
            problem = check_template(template, kind)
            if problem is not None:
                if root is None:
                    problems.append(Problem(name, 1, 1, problem.message))
                    continue
                node = _locate(root, ("rules", index, "template"))
                problems.append(_template_problem(name, node, index, problem))
    return problems


def _where(name: str, root: yaml.Node | None, path: tuple[Any, ...], message: str) -> Problem:
    # Without a node tree (the fast path only asks whether there is a problem): 1:1.
    return Problem(name, 1, 1, message) if root is None else _at(name, _locate(root, path), message)


def _template_problem(name: str, node: yaml.Node, index: int, problem: TemplateProblem) -> Problem:
    line = node.start_mark.line + 1
    block = getattr(node, "style", None) in ("|", ">")
    # A block scalar starts on the next line; a one-line template keeps the column.
    if problem.line > 1 or block:
        line += problem.line if block else problem.line - 1
        return Problem(name, line, 1, f"rules[{index}].template: {problem.message}")
    return _at(name, node, f"rules[{index}].template: {problem.message}")
