"""`notifier check --online`: ask Parti whether the named users and categories exist."""

from __future__ import annotations

from collections.abc import Iterable

from notifier.parti.client import NotFound, PartiClient, PartiError
from notifier.rules.engine import _fold, _split
from notifier.rules.schema import LiveRule, RulesFile, ScheduledRule


def _as_engine_reads(values: Iterable[int | str]) -> tuple[dict[int, int | str], dict[str, str]]:
    """Ids and names as the engine reads them (a quoted "567503" is an id, a name is
    matched folded and stripped): id -> the value as written, folded name -> the name."""
    ids: dict[int, int | str] = {}
    names: dict[str, str] = {}
    for value in values:
        found_ids, found_names = _split([value])
        for found in found_ids:
            ids.setdefault(found, value)
        for folded in found_names:
            names.setdefault(folded, str(value).strip())
    return ids, names


async def check_online(rules_file: RulesFile, api_url: str) -> list[str]:
    """Warnings (not errors): Parti is the judge, and it may be down or change."""
    warnings: list[str] = []
    users: list[int | str] = []
    categories: list[int | str] = []
    for rule in rules_file.rules:
        if isinstance(rule, LiveRule | ScheduledRule):
            users += rule.users
            categories += rule.categories
            if isinstance(rule, LiveRule):
                users += rule.exclude_users
    user_ids, user_names = _as_engine_reads(users)
    category_ids, category_names = _as_engine_reads(categories)
    async with PartiClient(api_url, retries=1) as client:
        if category_ids or category_names:
            try:
                known = await client.categories()
            except PartiError as exc:  # the users are still checked
                warnings.append(f"cannot check categories: {exc}")
            else:
                ids = {c.category_id for c in known}
                names = {_fold(n) for c in known for n in (c.name, c.display_name) if n}
                unknown = [v for i, v in category_ids.items() if i not in ids]
                unknown += [v for n, v in category_names.items() if n not in names]
                for category in sorted(unknown, key=str):
                    warnings.append(f"category {category!r} is not a Parti category")
        checks: list[tuple[int | str, int | str]] = [(v, i) for i, v in user_ids.items()]
        checks += [(name, name) for name in user_names.values()]
        for value, key in sorted(checks, key=lambda check: str(check[0])):
            try:
                if isinstance(key, int):
                    await client.profile(key)
                else:
                    await client.user_id_from_name(key)
            except NotFound:
                warnings.append(f"user {value!r} is not known to Parti")
            except PartiError as exc:
                warnings.append(f"cannot check user {value!r}: {exc}")
    return warnings
