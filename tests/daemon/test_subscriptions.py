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


async def test_follow_in_a_dm_then_the_streamer_goes_live_then_unfollow_and_no_alert(
    tmp_path: Path, sim: Simulator, fake_telegram: FakeTelegram
) -> None:
    rules = tmp_path / "rules.yaml"
    # A file rule on the console for the same streamer shows when an event was evaluated.
    rules.write_text(
        "destinations: {t: {console: {}}}\nbots: {telegram: {commands: true}}\n"
        "defaults: {cooldown: 0s}\n"
        "rules: [{name: watch, when: live, users: [SNEAKO], notify: [t]}]\n"
    )
    daemon = await Daemon(daemon_env(tmp_path, sim, fake_telegram), rules).start()
    try:
        await fake_telegram.wait_polling(timeout=30)
        fake_telegram.push_message(DM, DM, "/follow SNEAKO")
        reply = await fake_telegram.wait_reply(DM, timeout=30)
        assert "SNEAKO" in reply.text
        await daemon.wait_log("subscriptions.synced", applied=1)
        await sim.go_live(463000, event_title="Followed from the chat")
        await daemon.wait_log("alert.sent", dest=f"@tg:{DM}")
        fake_telegram.push_message(DM, DM, "/unfollow SNEAKO")
        await fake_telegram.wait_reply(DM, timeout=30)
        await daemon.wait_log("subscriptions.synced", 2)
        await sim.go_offline(463000)
        await daemon.wait_log("stream.ended", user_id=463000)
        await sim.go_live(463000, event_title="Nobody follows this one")
        # The second go-live's console alert (not the ended edit): the event was evaluated.
        await daemon.wait_log("alert.sent", 2, dest="t", action="send")
    finally:
        await daemon.stop()
    texts = [m.text for m in fake_telegram.replies_to(DM)]
    assert any("Followed from the chat" in t for t in texts)
    assert not any("Nobody follows this one" in t for t in texts)


async def test_why_answers_with_the_engines_last_decision_for_the_chat(
    tmp_path: Path, sim: Simulator, fake_telegram: FakeTelegram
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("destinations: {t: {console: {}}}\nbots: {telegram: {commands: true}}\n")
    env = daemon_env(tmp_path, sim, fake_telegram)
    await subscribe(Path(env["NOTIFIER_STATE_PATH"]), DM, 463000)
    daemon = await Daemon(env, rules).start()
    try:
        await fake_telegram.wait_polling(timeout=30)
        await sim.go_live(463000, event_title="Why this one")
        await daemon.wait_log("alert.sent", dest=f"@tg:{DM}")
        await daemon.wait_log("decisions.recorded")  # written in the background
        fake_telegram.push_message(DM, DM, "/why SNEAKO")
        reply = await fake_telegram.wait_reply(DM, timeout=20)
    finally:
        await daemon.stop()
    assert "SNEAKO" in reply.text and "fired" in reply.text
