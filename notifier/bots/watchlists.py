"""Chat watchlists as YAML, for `notifier subs export|import` (pure: text in, values out)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml

from notifier.rules.subscriptions import KINDS, PLATFORMS, chat_destination, to_rule, valid_chat_id
from notifier.rules.subscriptions import Subscription as RuleSubscription
from notifier.store.types import Subscription

MAX_ENTRIES = 1_000_000


@dataclass(frozen=True)
class Entry:
    platform: str
    chat_id: str
    kind: str
    target: str
    params: dict[str, Any]


class WatchlistError(ValueError):
    """Entries the engine would skip: `problems` has one line each (`where: why`)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(problems[0])
        self.problems = problems


def dump_watchlists(subs: Iterable[Subscription]) -> str:
    """One document: chats, each with its subscriptions (ids and times are not carried)."""
    chats: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for sub in subs:
        item: dict[str, Any] = {"kind": sub.kind, "target": sub.target}
        if sub.params:
            item["params"] = dict(sub.params)
        chats.setdefault((sub.platform, sub.chat_id), []).append(item)
    document = {
        "version": 1,
        "chats": [
            {"platform": platform, "chat_id": chat_id, "subscriptions": items}
            for (platform, chat_id), items in sorted(chats.items())
        ],
    }
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def load_watchlists(text: str, *, chat: str | None = None) -> list[Entry]:
    """The entries of an export; `chat` moves them all into that chat. ValueError, with
    where it is, for anything that is not an export; WatchlistError naming every entry the
    engine would skip (a live target that is not a user id, a price without a line...)."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"not YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(document, dict) or document.get("version") != 1:
        raise ValueError("not a watchlist export (needs version: 1 and chats:)")
    chats = document.get("chats")
    if not isinstance(chats, list):
        raise ValueError("chats: expected a list")
    entries: list[Entry] = []
    problems: list[str] = []
    for index, found in enumerate(chats):
        where = f"chats[{index}]"
        if not isinstance(found, dict):
            raise ValueError(f"{where}: expected a mapping")
        platform = found.get("platform")
        if platform not in PLATFORMS:
            raise ValueError(f"{where}.platform: one of {', '.join(PLATFORMS)}")
        chat_id = str(chat if chat is not None else found.get("chat_id", ""))
        # A number, or a Discord user's DMs as `subs export` writes them (dm:<user id>).
        if not valid_chat_id(platform, chat_id):
            raise ValueError(f"{where}.chat_id: expected a numeric chat id (or dm:<user id>)")
        items = found.get("subscriptions") or []
        if not isinstance(items, list):
            raise ValueError(f"{where}.subscriptions: expected a list")
        for number, item in enumerate(items):
            at = f"{where}.subscriptions[{number}]"
            if not isinstance(item, dict) or item.get("kind") not in KINDS:
                raise ValueError(f"{at}: needs kind (one of {', '.join(KINDS)}) and target")
            params = item.get("params") or {}
            if not isinstance(params, dict):
                raise ValueError(f"{at}.params: expected a mapping")
            entry = Entry(platform, chat_id, str(item["kind"]), str(item.get("target", "")), params)
            problem = _problem(entry)
            if problem is not None:
                problems.append(f"{at}: {problem}")
            entries.append(entry)
            if len(entries) > MAX_ENTRIES:
                raise ValueError(f"more than {MAX_ENTRIES} subscriptions")
    if problems:
        raise WatchlistError(problems)
    return entries


def _problem(entry: Entry) -> str | None:
    """Why the engine would skip this entry (the rules' own words), None when it takes it."""
    candidate = RuleSubscription(
        id=0,
        platform=entry.platform,
        chat_id=entry.chat_id,
        kind=entry.kind,
        target=entry.target,
        destination=chat_destination(entry.platform, entry.chat_id),
        params=entry.params,
    )
    try:
        to_rule(candidate)
    except ValueError as exc:
        # "subscription 0: line: ..." -> the part after the id
        return str(exc).partition(": ")[2] or str(exc)
    return None
