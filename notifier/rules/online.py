"""`notifier check --online`: ask Parti whether the named users and categories exist."""

from __future__ import annotations

from notifier.parti.client import NotFound, PartiClient, PartiError
from notifier.rules.schema import LiveRule, RulesFile, ScheduledRule


async def check_online(rules_file: RulesFile, api_url: str) -> list[str]:
    """Warnings (not errors): Parti is the judge, and it may be down or change."""
    warnings: list[str] = []
    users: set[int | str] = set()
    categories: set[int | str] = set()
    for rule in rules_file.rules:
        if isinstance(rule, LiveRule | ScheduledRule):
            users.update(rule.users)
            categories.update(rule.categories)
            if isinstance(rule, LiveRule):
                users.update(rule.exclude_users)
    async with PartiClient(api_url, retries=1) as client:
        try:
            known = await client.categories()
        except PartiError as exc:
            return [f"cannot check categories: {exc}"]
        ids = {c.category_id for c in known}
        names = {n.casefold() for c in known for n in (c.name, c.display_name) if n}
        for category in sorted(categories, key=str):
            if (isinstance(category, int) and category not in ids) or (
                isinstance(category, str) and category.casefold() not in names
            ):
                warnings.append(f"category {category!r} is not a Parti category")
        for user in sorted(users, key=str):
            try:
                if isinstance(user, int):
                    await client.profile(user)
                else:
                    await client.user_id_from_name(user)
            except NotFound:
                warnings.append(f"user {user!r} is not known to Parti")
            except PartiError as exc:
                warnings.append(f"cannot check user {user!r}: {exc}")
    return warnings
