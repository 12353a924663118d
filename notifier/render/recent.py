"""The last few renderings, found again by their inputs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Recent(Generic[K, V]):
    """`get(key, make)` is `make(key)`, remembered for the last `size` keys (compared by
    value): one go-live to 20,000 chats renders its message once, not 20,000 times.

    Only for a pure `make` and keys nobody changes afterwards (an outbox payload is
    never changed once written): a hit is then exactly what `make` would return. The
    value is shared by every caller that gets it: nobody may change it either."""

    def __init__(self, size: int = 8) -> None:
        self._size = size
        self._items: list[tuple[K, V]] = []  # the most recently used first
        self.hits = 0

    def get(self, key: K, make: Callable[[K], V]) -> V:
        items = self._items
        for index, (known, value) in enumerate(items):
            if known is key or known == key:
                if index:
                    items.insert(0, items.pop(index))
                self.hits += 1
                return value
        value = make(key)
        items.insert(0, (key, value))
        del items[self._size :]
        return value


def without_rule(
    payload: dict[str, Any], *, shown_by: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """`payload` as its default rendering sees it: the rule's name blanked, unless a
    template may show it or the view's kind is one whose message does (`shown_by`). Each
    chat subscription is its own rule ("sub:7"): a go-live to 20,000 followers then
    renders once. For a `Recent` key only; the payload itself is left as it is."""
    view = payload.get("view")
    if payload.get("template") is not None or not isinstance(view, dict):
        return payload
    fields = view.get("fields")
    if not isinstance(fields, dict) or "rule" not in fields or view.get("kind") in shown_by:
        return payload
    return {**payload, "view": {**view, "rule": "", "fields": {**fields, "rule": ""}}}
