"""The sync stage imports a platform's chat senders with its first subscription, not at
the first alert: a go-live to 20,000 chats does not stop for an import."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from notifier.stages import subscriptions
from notifier.stages.subscriptions import SENDER_MODULES, SubscriptionSync
from notifier.store import open_store
from tests.stages.test_calendar import core_for


async def test_each_platforms_senders_are_imported_with_its_first_subscription(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    imported: list[str] = []
    monkeypatch.setattr(subscriptions, "import_module", imported.append)
    core = core_for(tmp_path / "rules.yaml", "destinations: {t: {console: {}}}\n")
    store = await open_store(str(tmp_path / "s.db"), instance="t", durable=False)
    sync = SubscriptionSync(core, store)

    async def follow(platform: str, chat: str, user: int) -> None:
        await store.add_subscription(
            platform,
            chat,
            kind="live",
            target=str(user),
            params={},
            created_by="t",
            now=time.time(),
        )
        await sync.sync()

    try:
        await sync.sync()
        assert imported == []  # nobody follows anything: nothing to send with yet
        await follow("telegram", "5551001", 463000)
        await follow("telegram", "5551002", 463000)
        assert imported == [SENDER_MODULES["telegram"]]
        await follow("discord", "dm:42", 463000)
        await follow("discord", "123456789012345678", 463000)
        assert imported == [SENDER_MODULES["telegram"], SENDER_MODULES["discord"]]
    finally:
        await store.close()


def test_the_sender_modules_exist() -> None:
    import importlib

    for module in SENDER_MODULES.values():
        importlib.import_module(module)
