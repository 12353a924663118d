"""The demo's tour counts the alerts each scene shows, not the --telegram-chat copies."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from notifier.demo import TELEGRAM_COPY, Tour
from notifier.store import NewAlert, open_store


def written(key: str, destination: str) -> NewAlert:
    return NewAlert(
        key=key,
        destination=destination,
        rule="friends-live",
        kind="live",
        subject="463000",
        identity="live:1",
        payload={"view": {}},
        event_at=time.time(),
    )


async def test_a_scene_whose_copy_was_sent_too_returns_only_its_own_alert(
    tmp_path: Path,
) -> None:
    # Both the terminal's alert and the chat's copy were sent before the tour looked:
    # the scene still has one alert (it unpacks exactly one).
    store = await open_store(str(tmp_path / "s.db"), instance="demo", durable=False)
    try:
        alerts = [written("k-terminal", "terminal"), written("k-copy", TELEGRAM_COPY)]
        await store.enqueue(alerts, now=time.time(), fence=None)
        for alert in alerts:
            (row,) = await store.claim(alert.destination, now=time.time(), lease=30, limit=1)
            assert await store.mark_sent(row.key, message_id=None, now=time.time())
        app: Any = SimpleNamespace(
            store=store, delivery=SimpleNamespace(sent_count=2, settled=asyncio.Condition())
        )
        tour = Tour(app, sim=None)  # type: ignore[arg-type]
        tour.on_written(alerts)
        assert [a.key for a in await tour.sent(1, timeout=5)] == ["k-terminal"]
    finally:
        await store.close()
