"""Rule templates: Jinja2 in a sandbox bounded in work, time and size, checked when the rules
load by rendering them on sample fields, so a template that `check` passes renders at send
time."""

from __future__ import annotations

import contextvars
import functools
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateError, TemplateSyntaxError, meta, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.runtime import Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import _PassArg

# The fields a template may use, by rule kind (the renderer fills them, escaped).
FIELDS: dict[str, frozenset[str]] = {
    "live": frozenset(
        {
            "user_name",
            "user_id",
            "title",
            "category",
            "viewers",
            "url",
            "avatar",
            "image",
            "followers",
            "description",
            "rule",
            "caught_up",
            "event_id",
            "livestream_id",
        }
    ),
    "price": frozenset(
        {
            "asset",
            "ticker",
            "price",
            "line",
            "direction",
            "change",
            "window",
            "rule",
            "kind",
        }
    ),
    "scheduled": frozenset(
        {
            "user_name",
            "user_id",
            "title",
            "category",
            "starts_at",
            "starts_in",
            "url",
            "rule",
            "event_id",
        }
    ),
}

# Bounds of one render. No real alert template comes near them; a hostile or mistaken
# one (a loop of a billion, a recursive macro, a string doubled in a loop) stops at them.
MAX_STEPS = 50_000  # loop iterations plus calls
MAX_SECONDS = 0.5  # processor time of the rendering thread: a busy machine does not count
MAX_TEXT = 100_000  # characters of any one value (items, for a list) and of the output
MAX_WORK = 10_000_000  # the largest result one operation may be asked to build
MAX_BITS = 100_000  # bits of an integer


class TemplateTooCostly(SecurityError):
    """A render that went past one of the bounds above."""


class _Budget:
    __slots__ = ("deadline", "steps")

    def __init__(self) -> None:
        self.steps = 0
        self.deadline = time.thread_time() + MAX_SECONDS


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "template_budget", default=None
)


def _tick() -> None:
    budget = _BUDGET.get()
    if budget is None:
        return
    budget.steps += 1
    if budget.steps > MAX_STEPS:
        raise TemplateTooCostly(f"more than {MAX_STEPS:,} loop steps and calls")
    if time.thread_time() > budget.deadline:
        raise TemplateTooCostly(f"rendering takes more than {MAX_SECONDS} s")


def _size(value: Any, limit: int = MAX_WORK) -> int:
    """Characters of a string, digits of an integer, items (deep) of a container; counting
    stops past `limit`."""
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, bool) or value is None:
        return 1
    if isinstance(value, int):
        return value.bit_length() // 3 + 1
    if not isinstance(value, list | tuple | dict | set | frozenset):
        return 1
    total = 0
    stack: list[Any] = [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, dict):
            total += len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            total += len(item)
            stack.extend(item)
        elif isinstance(item, str | bytes):
            total += len(item)
        else:
            total += 1
    return total


def _amount(value: Any) -> int:
    """How much an argument can ask for: a number is a width or a count."""
    if isinstance(value, int) and not isinstance(value, bool):
        return abs(value)
    return _size(value)


def _check_work(value: Any, extras: Iterable[Any]) -> None:
    """An operation's result grows at most with the product of its two largest inputs."""
    sizes = sorted([_size(value), *(_amount(e) for e in extras)], reverse=True)
    if len(sizes) > 1 and sizes[0] * sizes[1] > MAX_WORK:
        raise TemplateTooCostly("an operation would build a value that is too large")


def _check_result(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > MAX_BITS:
            raise TemplateTooCostly("a number grows beyond the bounds")
    elif _size(value, MAX_TEXT) > MAX_TEXT:
        raise TemplateTooCostly(f"a value grows beyond {MAX_TEXT:,} characters")
    return value


_PRINTF_WIDE = re.compile(r"%[-#0 +]*(?:\*|\d{5,}|\d*\.(?:\*|\d{5,}))")
_FORMAT_WIDE = re.compile(r"\{[^{}]*:[^{}]*?\d{5,}")


def _check_format(text: Any, *, printf: bool) -> None:
    if isinstance(text, str) and (_PRINTF_WIDE if printf else _FORMAT_WIDE).search(text):
        raise TemplateTooCostly("a format width or precision is too large")


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    skip = 1 if _PassArg.from_obj(func) is not None else 0  # context or environment first

    @functools.wraps(func)  # keeps `jinja_pass_arg`
    def guarded(*args: Any, **kwargs: Any) -> Any:
        value = args[skip] if len(args) > skip else None
        extras = [*args[skip + 1 :], *kwargs.values()]
        if name == "format":
            _check_format(value, printf=True)
        _check_work(value, extras)
        if time.thread_time() > _deadline():
            raise TemplateTooCostly(f"rendering takes more than {MAX_SECONDS} s")
        return _check_result(func(*args, **kwargs))

    return guarded


def _deadline() -> float:
    budget = _BUDGET.get()
    return float("inf") if budget is None else budget.deadline


def _bounded_iter(iterable: Iterable[Any]) -> Iterator[Any]:
    for item in iterable:
        _tick()
        yield item


def _join_values(values: Iterable[Any]) -> str:
    """`a ~ b ~ c`: the parts measured before they are joined."""
    parts = [str(v) for v in values]
    if sum(len(p) for p in parts) > MAX_TEXT:
        raise TemplateTooCostly(f"a value grows beyond {MAX_TEXT:,} characters")
    return "".join(parts)


def _concat(parts: Iterable[str]) -> str:
    """Every output buffer (macros, blocks) goes through here; the whole template's output
    too, as a generator: its render gets a budget of steps and time."""
    if isinstance(parts, list):
        if sum(len(p) for p in parts) > MAX_TEXT:
            raise TemplateTooCostly(f"the output grows beyond {MAX_TEXT:,} characters")
        return "".join(parts)
    token = _BUDGET.set(_Budget())
    try:
        out: list[str] = []
        total = 0
        for part in parts:
            total += len(part)
            if total > MAX_TEXT:
                raise TemplateTooCostly(f"the output grows beyond {MAX_TEXT:,} characters")
            out.append(part)
        return "".join(out)
    finally:
        _BUDGET.reset(token)


class _GuardedCodeGenerator(CodeGenerator):
    """Every loop counts its steps; `~` measures what it joins."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        iterable = node.iter
        if not (
            isinstance(iterable, nodes.Call)
            and isinstance(iterable.node, nodes.EnvironmentAttribute)
            and iterable.node.name == "bounded_iter"
        ):
            node.iter = nodes.Call(
                nodes.EnvironmentAttribute("bounded_iter"),
                [iterable],
                [],
                None,
                None,
                lineno=node.lineno,
            )
        super().visit_For(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.join_values((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox, plus bounds: steps and time per render, the size of every value."""

    code_generator_class = _GuardedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})
    concat = staticmethod(_concat)
    bounded_iter = staticmethod(_bounded_iter)
    join_values = staticmethod(_join_values)

    def __init__(self) -> None:
        super().__init__(autoescape=False, keep_trailing_newline=False)
        self.globals.pop("lipsum", None)  # a paragraph generator: work without a size
        self.filters = {name: _guard_filter(name, f) for name, f in self.filters.items()}

    def call(
        __self,  # the sandbox's own names: a template's keyword arguments pass through
        __context: Any,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        _tick()
        if not isinstance(__obj, Macro):
            plain = {k: v for k, v in kwargs.items() if k not in ("_loop_vars", "_block_vars")}
            wrapped = getattr(__obj, "__wrapped__", __obj)  # str.format, as the sandbox wraps it
            owner = getattr(wrapped, "__self__", None)
            if isinstance(owner, str) and getattr(wrapped, "__name__", "") in (
                "format",
                "format_map",
            ):
                _check_format(owner, printf=False)
            _check_work(owner, [*args, *plain.values()])
        return _check_result(super().call(__context, __obj, *args, **kwargs))

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return _check_result(super().call_binop(context, operator, left, right))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_binop(operator: str, left: Any, right: Any) -> None:
    if operator == "**":
        if (
            _is_int(left)
            and _is_int(right)
            and right > 0
            and abs(left) > 1
            and left.bit_length() * right > MAX_BITS
        ):
            raise TemplateTooCostly("a power grows beyond the bounds")
    elif operator == "*":
        if _is_int(left) and _is_int(right):
            if left.bit_length() + right.bit_length() > MAX_BITS:
                raise TemplateTooCostly("a product grows beyond the bounds")
        elif _is_int(right) or _is_int(left):
            count, sequence = (right, left) if _is_int(right) else (left, right)
            if max(count, 0) * _size(sequence, MAX_TEXT) > MAX_TEXT:
                raise TemplateTooCostly(f"a value grows beyond {MAX_TEXT:,} characters")
    elif operator == "+":
        if not (_is_int(left) or _is_int(right)) and (
            _size(left, MAX_TEXT) + _size(right, MAX_TEXT) > MAX_TEXT
        ):
            raise TemplateTooCostly(f"a value grows beyond {MAX_TEXT:,} characters")
    elif operator == "%" and isinstance(left, str):
        _check_format(left, printf=True)
        _check_work(left, [right])


ENVIRONMENT = BoundedEnvironment()


@dataclass(frozen=True)
class TemplateProblem:
    line: int
    message: str


# Sample fields a template is rendered on at check time: ordinary values, the empty
# values the renderer gives for what Parti left out, and hostile ones (long markup).
_MARKUP = ("<b>&amp;</b> *_~`|>[x](y) @everyone {{ }} " * 200)[:5000]
_SAMPLES: dict[str, dict[str, dict[str, Any]]] = {
    "live": {
        "ordinary": {
            "user_name": "SNEAKO",
            "user_id": 567503,
            "title": "Ranked games",
            "category": "Gaming",
            "viewers": 1234,
            "url": "https://parti.com/creator/parti/SNEAKO",
            "avatar": "https://assets.parti.com/a.png",
            "image": "https://assets.parti.com/i.png",
            "followers": 100000,
            "description": "Streams daily",
            "rule": "friends-live",
            "caught_up": False,
            "event_id": 123456,
            "livestream_id": 654321,
        },
        "empty": {
            "user_name": "1",
            "user_id": 1,
            "title": "",
            "category": "",
            "viewers": "",
            "url": "",
            "avatar": "",
            "image": "",
            "followers": "",
            "description": "",
            "rule": "r",
            "caught_up": True,
            "event_id": "",
            "livestream_id": "",
        },
        "hostile": {
            "user_name": _MARKUP,
            "user_id": 2**63 - 1,
            "title": _MARKUP,
            "category": _MARKUP,
            "viewers": 2**31 - 1,
            "url": "https://parti.com/" + _MARKUP,
            "avatar": "",
            "image": "",
            "followers": 2**31 - 1,
            "description": _MARKUP[:500],
            "rule": "r" * 100,
            "caught_up": True,
            "event_id": 2**63 - 1,
            "livestream_id": 2**63 - 1,
        },
    },
    "price": {
        "ordinary": {
            "asset": "BTC",
            "ticker": "BTC-USD",
            "price": "100,250.5",
            "line": "100,000",
            "direction": "above",
            "change": "+5.00%",
            "window": "1h",
            "rule": "btc-100k",
            "kind": "line",
        },
        "empty": {
            "asset": "",
            "ticker": "",
            "price": "",
            "line": "",
            "direction": "",
            "change": "",
            "window": "",
            "rule": "r",
            "kind": "move",
        },
        "hostile": {
            "asset": _MARKUP,
            "ticker": _MARKUP,
            "price": "9" * 40,
            "line": "9" * 40,
            "direction": "below",
            "change": "-99.99%",
            "window": "365d 0h",
            "rule": "r" * 100,
            "kind": "line",
        },
    },
    "scheduled": {
        "ordinary": {
            "user_name": "SNEAKO",
            "user_id": 567503,
            "title": "Ranked games",
            "category": "Gaming",
            "starts_at": 1767225600.0,
            "starts_in": "15m",
            "url": "https://parti.com/creator/parti/SNEAKO",
            "rule": "sneako-schedule",
            "event_id": 123456,
        },
        "empty": {
            "user_name": "1",
            "user_id": 1,
            "title": "",
            "category": "",
            "starts_at": 0.0,
            "starts_in": "0s",
            "url": "",
            "rule": "r",
            "event_id": 1,
        },
        "hostile": {
            "user_name": _MARKUP,
            "user_id": 2**63 - 1,
            "title": _MARKUP,
            "category": _MARKUP,
            "starts_at": 2.0**40,
            "starts_in": "365d 0h",
            "url": "https://parti.com/" + _MARKUP,
            "rule": "r" * 100,
            "event_id": 2**63 - 1,
        },
    },
}


def sample_fields(kind: str) -> Mapping[str, Mapping[str, Any]]:
    """The sample field sets of a rule kind, by name."""
    return _SAMPLES[kind]


@functools.lru_cache(maxsize=1024)
def check_template(source: str, kind: str) -> TemplateProblem | None:
    """A syntax error, an unknown field, or a failure (an error, or too much work, time or
    output) when rendered on every sample set of its kind; else None."""
    try:
        parsed = ENVIRONMENT.parse(source)
    except TemplateSyntaxError as exc:
        return TemplateProblem(exc.lineno or 1, f"template syntax: {exc.message}")
    unknown = sorted(meta.find_undeclared_variables(parsed) - FIELDS[kind])
    if unknown:
        known = ", ".join(sorted(FIELDS[kind]))
        return TemplateProblem(1, f"unknown template field {unknown[0]!r}; known: {known}")
    try:
        template = ENVIRONMENT.from_string(source)
    except TemplateError as exc:  # pragma: no cover - parse() found the syntax errors
        return TemplateProblem(1, f"template: {_one_line(exc)}")
    for name, fields in _SAMPLES[kind].items():
        try:
            template.render(**fields)
        except TemplateTooCostly as exc:
            return TemplateProblem(1, f"template too costly to render: {exc}")
        except RecursionError:
            return TemplateProblem(1, "template recursion too deep")
        except MemoryError:  # pragma: no cover - the bounds come first
            return TemplateProblem(1, "template too costly to render: out of memory")
        except Exception as exc:
            where = f"on the {name} sample fields"
            return TemplateProblem(1, f"template fails {where}: {_one_line(exc)}")
    return None


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
