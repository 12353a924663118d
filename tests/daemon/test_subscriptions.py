"""Chat subscriptions in the store reach the engine without a reload and alert the chat."""

from __future__ import annotations

import time
from pathlib import Path

from notifier.parti.decode import LIVE
from notifier.parti.simulator import Simulator
from notifier.store import open_store
from tests.daemon.helpers import Daemon, daemon_env
from tests.fakes.telegram import FakeTelegram

DM = 5550001  # a private chat: positive id


async def subscribe(state: Path, chat_id: int, user_id: int) -> int:
    store = await open_store(str(state), instance="test", durable=False)
    try:
        new_id = await store.add_subscription(
            "telegram",
            str(chat_id),
            kind="live",
            target=str(user_id),
            params={},
            created_by="test",
            now=time.time(),
        )
    finally:
        await store.close()
    assert new_id is not None
    return new_id


async def test_a_stored_subscription_alerts_its_chat_and_one_added_while_running_too(
    tmp_path: Path, sim: Simulator, fake_telegram: FakeTelegram
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("destinations: {t: {console: {}}}\n")
    env = daemon_env(tmp_path, sim, fake_telegram)
    state = Path(env["NOTIFIER_STATE_PATH"])
    await subscribe(state, DM, 463000)  # before the start: loaded at start
    daemon = await Daemon(env, rules).start()
    try:
        await sim.wait_subscribed(LIVE)
        await daemon.wait_log("catch_up.done")
        await sim.go_live(463000, event_title="From the store")
        first = await daemon.wait_log("alert.sent", dest=f"@tg:{DM}")
        # Added while it runs (as a chat command does): in the engine within a second.
        await subscribe(state, DM + 1, 348242)
        await daemon.wait_log("subscriptions.synced", applied=1)
        await sim.go_live(348242, event_title="Added live")
        second = await daemon.wait_log("alert.sent", dest=f"@tg:{DM + 1}")
    finally:
        await daemon.stop()
    assert first["rule"].startswith("sub:") and second["rule"].startswith("sub:")
    chats = [r["params"]["chat_id"] for r in fake_telegram.sent() if "chat_id" in r["params"]]
    assert chats == [str(DM), str(DM + 1)]
