"""Chat subscriptions' delivery: buttons under DM alerts, digests after a mute, and a chat
that blocked the bot is paused instead of retried."""

from __future__ import annotations

import json
import time
from pathlib import Path

from notifier.parti.decode import LIVE
from notifier.parti.simulator import Simulator
from notifier.store import open_store
from tests.daemon.helpers import Daemon, daemon_env
from tests.daemon.test_subscriptions import subscribe
from tests.fakes.telegram import FakeTelegram

DM = 5551001


async def set_chat(state: Path, chat_id: int, **fields: object) -> None:
    store = await open_store(str(state), instance="test", durable=False)
    try:
        await store.upsert_chat("telegram", str(chat_id), kind="private", now=time.time())
        await store.set_chat_fields("telegram", str(chat_id), now=time.time(), **fields)  # type: ignore[arg-type]
    finally:
        await store.close()


async def start(tmp_path: Path, sim: Simulator, tg: FakeTelegram, commands: bool) -> Daemon:
    rules = tmp_path / "rules.yaml"
    bots = "bots: {telegram: {commands: true}}\n" if commands else ""
    rules.write_text("destinations: {t: {console: {}}}\n" + bots)
    env = daemon_env(tmp_path, sim, tg)
    await subscribe(Path(env["NOTIFIER_STATE_PATH"]), DM, 463000)
    await subscribe(Path(env["NOTIFIER_STATE_PATH"]), DM, 348242)
    daemon = await Daemon(env, rules).start()
    await sim.wait_subscribed(LIVE)
    await daemon.wait_log("catch_up.done")
    return daemon


async def test_a_dm_alert_carries_unfollow_and_mute_buttons(
    tmp_path: Path, sim: Simulator, fake_telegram: FakeTelegram
) -> None:
    daemon = await start(tmp_path, sim, fake_telegram, commands=True)
    try:
        await sim.go_live(463000)
        await daemon.wait_log("alert.sent", dest=f"@tg:{DM}")
    finally:
        await daemon.stop()
    (sent,) = [r for r in fake_telegram.sent() if r["params"].get("chat_id") == str(DM)]
    markup = json.loads(sent["params"]["reply_markup"])
    labels = [button["text"] for row in markup["inline_keyboard"] for button in row]
    assert labels == ["Unfollow", "Mute 1h"]
    data = [button["callback_data"] for row in markup["inline_keyboard"] for button in row]
    assert data == ["uf:463000", "mu:3600"]


async def test_alerts_during_a_mute_arrive_as_one_digest_when_it_ends(
    tmp_path: Path, sim: Simulator, fake_telegram: FakeTelegram
) -> None:
    env_state = tmp_path / "state.db"
    await set_chat(env_state, DM, mute_until=time.time() + 3.0)
    daemon = await start(tmp_path, sim, fake_telegram, commands=False)
    try:
        await sim.go_live(463000, event_title="First while muted")
        await sim.go_live(348242, event_title="Second while muted")
        digest = await daemon.wait_log("alert.digest", dest=f"@tg:{DM}")
    finally:
        await daemon.stop()
    assert digest["alerts"] == 2
    (sent,) = [r for r in fake_telegram.sent() if r["params"].get("chat_id") == str(DM)]
    text = sent["params"]["text"]
    assert "First while muted" in text and "Second while muted" in text


async def test_a_chat_that_blocked_the_bot_is_paused_and_its_next_alert_dropped(
    tmp_path: Path, sim: Simulator, fake_telegram: FakeTelegram
) -> None:
    fake_telegram.block(DM)
    daemon = await start(tmp_path, sim, fake_telegram, commands=False)
    try:
        await sim.go_live(463000)
        await daemon.wait_log("chat.paused", dest=f"@tg:{DM}")
        await sim.go_live(348242)
        await daemon.wait_log("alert.dropped", dest=f"@tg:{DM}")
    finally:
        await daemon.stop()
    attempts = [r for r in fake_telegram.requests if r["params"].get("chat_id") == str(DM)]
    assert len(attempts) == 1  # the refused one; the next was not even tried
