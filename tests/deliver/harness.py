"""A delivery pipeline wired to the fakes, for the end-to-end delivery tests."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from notifier.deliver.factory import Senders, build_senders
from notifier.deliver.lanes import Delivery
from notifier.outbox.policy import RetryPolicy
from notifier.render.fields import AlertView
from notifier.rules.schema import RulesFile
from notifier.settings import Settings
from notifier.store import SENT, NewAlert, Row, Store, open_store
from tests.fakes.discord import BOT_TOKEN, FakeDiscord
from tests.fakes.telegram import FakeTelegram

_keys = itertools.count(1)


def live_view(title: str = "Morning stream", **fields: Any) -> AlertView:
    base: dict[str, Any] = {
        "user_name": "SNEAKO",
        "user_id": 463000,
        "title": title,
        "category": "IRL",
        "viewers": 3,
        "url": "https://parti.com/creator/parti/SNEAKO",
        "avatar": "https://assets.parti.com/a.png",
        "image": "",
        "followers": 4340,
        "description": "",
        "rule": "r",
        "caught_up": False,
        "event_id": 1,
        "livestream_id": 2,
        "at": time.time(),
    }
    return AlertView("live", "r", base | fields)


def new_alert(
    destination: str,
    view: AlertView | None = None,
    *,
    key: str | None = None,
    template: str | None = None,
    action: str = "send",
    ref_key: str | None = None,
) -> NewAlert:
    key = key or f"k{next(_keys)}"
    return NewAlert(
        key=key,
        destination=destination,
        rule="r",
        kind="live",
        subject="463000",
        identity=f"live:{key}",
        payload={"view": (view or live_view()).to_json(), "template": template},
        event_at=time.time(),
        action=action,
        ref_key=ref_key,
    )


class Harness:
    def __init__(self, outbox: Store, delivery: Delivery, senders: Senders) -> None:
        self.outbox = outbox
        self.delivery = delivery
        self.senders = senders

    async def enqueue(self, *alerts: NewAlert) -> None:
        await self.outbox.enqueue(list(alerts), now=time.time(), fence=None)
        for alert in alerts:
            self.delivery.wake(alert.destination)

    async def hand(self, *alerts: NewAlert) -> None:
        """Write alerts leased to the lanes and hand them over, as the writer does."""
        keys, rows = await self.outbox.enqueue_leased(
            list(alerts), now=time.time(), lease=120.0, room=self.delivery.room(), fence=None
        )
        assert len(rows) == len(alerts)
        added = set(keys)
        self.delivery.written([(a.key, a.destination) for a in alerts if a.key in added], rows)

    async def row(self, key: str) -> Row:
        row = await self.outbox.get(key)
        assert row is not None
        return row

    async def wait_sent(self, *alerts: NewAlert) -> None:
        """Wait for each of `alerts` to be recorded as sent."""
        for alert in alerts:
            await self.wait_state(alert.key, SENT)

    async def wait_state(self, key: str, state: str, timeout: float = 20.0) -> Row:
        """Wait for a row to reach `state`, re-checked after each delivery outcome.

        The row is read while holding the condition's lock: an outcome recorded during
        the read is notified only after `wait()` releases it, so none is missed."""
        settled = self.delivery.settled
        async with asyncio.timeout(timeout), settled:
            while True:
                row = await self.outbox.get(key)
                if row is not None and row.state == state:
                    return row
                await settled.wait()


def rules_for(
    telegram: FakeTelegram | None, discord: FakeDiscord | None, destinations: dict[str, Any]
) -> RulesFile:
    return RulesFile.model_validate({"destinations": destinations, "rules": []})


@asynccontextmanager
async def harness(
    tmp_path: Path,
    destinations: dict[str, Any],
    *,
    telegram: FakeTelegram | None = None,
    discord: FakeDiscord | None = None,
    limits_scale: float = 1.0,
    policy: RetryPolicy | None = None,
    send_timeout: float = 10.0,
    paid_broadcast: bool = False,
    on_reachability: Callable[[str, str | None], None] | None = None,
) -> AsyncIterator[Harness]:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        telegram_token=SecretStr(telegram.token) if telegram else None,
        telegram_api_url=telegram.api_url if telegram else "http://127.0.0.1:9",
        discord_api_url=discord.api_url if discord else "http://127.0.0.1:9/api/v10",
        discord_bot_token=SecretStr(BOT_TOKEN) if discord else None,
        telegram_paid_broadcast=paid_broadcast,
    )
    rules_file = rules_for(telegram, discord, destinations)
    senders = build_senders(rules_file, settings, limits_scale=limits_scale)
    await senders.start()
    outbox = await open_store(str(tmp_path / "outbox.db"), instance="harness", durable=False)
    delivery = Delivery(
        outbox,
        senders.by_name,
        policy=policy or RetryPolicy(base=0.05, cap=0.2, max_age=60.0),
        send_timeout=send_timeout,
        edit_wait=0.05,
        on_reachability=on_reachability,
    )
    task = asyncio.create_task(delivery.run())
    try:
        yield Harness(outbox, delivery, senders)
    finally:
        delivery.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        await senders.close()
        await outbox.close()
