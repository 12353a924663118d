"""The daemon as a subprocess against the simulator, a fake Telegram and a fake Discord."""

from __future__ import annotations

import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from notifier.parti.decode import LIVE, PRICE
from notifier.parti.simulator import Simulator
from notifier.store import SENT, open_store
from tests.daemon.helpers import Daemon, daemon_env
from tests.fakes.discord import FakeDiscord
from tests.fakes.telegram import FakeTelegram, parse_html

GROUP = -100200300


def write_rules(
    path: Path, webhook: str, users: str = '[SNEAKO, "Jack Doherty", DigitalNas]', extra: str = ""
) -> Path:
    path.write_text(f"""\
version: 1
destinations:
  tg: {{telegram: {{chat_id: {GROUP}}}}}
  room: {{discord: {{webhook_url: "{webhook}", mention_role: 4242}}}}
rules:
  - name: friends-live
    when: live
    users: {users}
    notify: [tg, room]
  - name: ranked-gaming
    when: live
    categories: [Gaming]
    title_matches: "(?i)ranked"
    min_viewers: 20
    notify: [tg]
  - name: btc-100k
    when: price
    asset: BTC
    above: 100000
    rearm: 0.5%
    cooldown: 0s
    notify: [tg]
{extra}""")
    return path


@pytest.fixture
async def setup(
    tmp_path: Path, sim: Simulator, fake_telegram: FakeTelegram, fake_discord: FakeDiscord
) -> AsyncIterator[tuple[Daemon, Simulator, FakeTelegram, FakeDiscord]]:
    webhook = fake_discord.add_webhook(123456789012345678)
    rules = write_rules(tmp_path / "rules.yaml", webhook)
    daemon = Daemon(daemon_env(tmp_path, sim, fake_telegram, fake_discord), rules)
    await daemon.start()
    await sim.wait_subscribed(LIVE)
    await sim.wait_subscribed(PRICE)
    yield daemon, sim, fake_telegram, fake_discord
    await daemon.stop()


def tg_texts(fake: FakeTelegram) -> list[str]:
    return [
        parse_html(r["params"].get("caption") or r["params"].get("text", ""))
        for r in fake.sent()
        if r["method"] in ("sendMessage", "sendPhoto")
    ]


async def test_the_demo_scenario_alert_by_alert(
    setup: tuple[Daemon, Simulator, FakeTelegram, FakeDiscord],
) -> None:
    daemon, sim, tg, dc = setup

    # 1. a followed streamer goes live: photo with caption, enriched with the profile
    await sim.go_live(463000, event_title="Morning stream", category_name="IRL", viewers_count=5)
    await daemon.wait_log("alert.sent", 2, rule="friends-live")
    (photo,) = tg.sent("sendPhoto")
    caption = parse_html(photo["params"]["caption"])
    assert caption.startswith("🔴 SNEAKO is live\nMorning stream")
    assert "4,340 followers" in caption
    assert dc.sent()[0]["pinged"] == {"everyone": False, "roles": [4242], "users": []}

    # 2. a category rule fires; a non-matching title does not
    await sim.go_live(
        43831,
        user_name="Chilly Dolphin",
        event_title="chill",
        category_name="Gaming",
        viewers_count=112,
    )
    await sim.go_live(
        611713,
        user_name="Genxgaming0_1",
        event_title="Ranked grind",
        category_name="Gaming",
        viewers_count=40,
    )
    await daemon.wait_log("alert.sent", rule="ranked-gaming")
    assert "Genxgaming0_1 is live\nRanked grind" in tg_texts(tg)[-1]
    assert not any("Chilly" in t for t in tg_texts(tg))

    # 3. a hostile title renders harmlessly
    hostile = "<b>IRL</b> @everyone <script>x</script> & <@&1>"
    await sim.go_live(348242, event_title=hostile, category_name="IRL", viewers_count=9)
    await daemon.wait_log("alert.sent", 4, rule="friends-live")
    assert hostile in tg_texts(tg)[-1], "shown literally, accepted by Telegram's parser"
    assert dc.sent()[-1]["pinged"] == {"everyone": False, "roles": [4242], "users": []}
    assert dc.violations == []

    # 4. BTC crosses, wobbles inside the band, re-arms and crosses again
    for price in ("99000", "100100", "99900", "100200", "99000", "100300"):
        await sim.set_price("BTC", price)
    await daemon.wait_log("alert.sent", 2, rule="btc-100k")
    btc = [t for t in tg_texts(tg) if "BTC" in t]
    assert [t.split("\n")[1] for t in btc] == [
        "Now 100,100 (+0.10% from the line)",
        "Now 100,300 (+0.30% from the line)",
    ]

    # 5. the connection drops; a followed streamer goes live during the gap
    sim.accept_ws = False
    await sim.drop_connections()
    await sim.go_live(
        601379, user_name="DigitalNas", event_title="Back online", category_name="Creative"
    )
    sim.accept_ws = True
    await daemon.wait_log("stream.reconnected")
    await daemon.wait_log("alert.sent", 6, rule="friends-live")
    assert "DigitalNas is live (while we were reconnecting)" in tg_texts(tg)[-1]

    # 6. the stream ends: the alert is edited in place everywhere
    await sim.go_offline(463000)
    await daemon.wait_log("alert.sent", 2, action="edit")
    (edit,) = tg.sent("editMessageCaption")
    assert "Stream ended" in parse_html(edit["params"]["caption"])
    edited = [r for r in dc.requests if r["method"] == "PATCH"]
    assert len(edited) == 1 and edited[0]["ok"]

    # nothing was sent twice
    assert len(tg_texts(tg)) == 6
    assert len(dc.sent()) == 3

    # and no secret reached the log
    log = json.dumps(daemon.lines)
    assert tg.token not in log
    assert all(secret not in log for secret in dc.webhooks.values())


async def test_a_gap_is_caught_up_without_a_duplicate(
    setup: tuple[Daemon, Simulator, FakeTelegram, FakeDiscord],
) -> None:
    daemon, sim, tg, _ = setup
    await sim.go_live(463000, event_title="one")
    await daemon.wait_log("alert.sent", 2, rule="friends-live")
    await sim.drop_connections()
    await daemon.wait_log("stream.reconnected")
    await daemon.wait_log("catch_up.done", 2)  # the start, then the reconnect
    assert len(tg_texts(tg)) == 1, "the streamer live before the gap is not alerted again"


async def test_sighup_reloads_good_rules_and_keeps_old_ones_on_a_broken_file(
    setup: tuple[Daemon, Simulator, FakeTelegram, FakeDiscord],
    tmp_path: Path,
) -> None:
    daemon, sim, tg, dc = setup
    rules = tmp_path / "rules.yaml"
    webhook = next(f"https://discord.com/api/webhooks/{i}/{t}" for i, t in dc.webhooks.items())
    write_rules(rules, webhook, users="[SNEAKO, Capt_Robs_Adventures]")
    daemon.send(signal.SIGHUP)
    await daemon.wait_log("rules.reloaded")
    await sim.go_live(355293, user_name="Capt_Robs_Adventures", event_title="new follow")
    await daemon.wait_log("alert.sent", 2, rule="friends-live")

    rules.write_text(
        "version: 1\ndestinations: {tg: {telegram: {chat_id: 1}}}\n"
        "rules:\n  - {name: x, when: live, notify: [nobody]}\n"
    )
    daemon.send(signal.SIGHUP)
    failed = await daemon.wait_log("rules.reload_failed")
    assert failed["kept"] == "previous rules"
    (problem,) = daemon.logged("rules.error")
    assert problem["problem"].startswith(f"{rules}:4:36: rules[0].notify: unknown destination")
    await sim.go_live(463000, event_title="still followed")
    await daemon.wait_log("alert.sent", 4, rule="friends-live")
    assert any("still followed" in t for t in tg_texts(tg))


async def test_sigterm_drains_in_flight_sends_and_exits_0(
    tmp_path: Path,
    setup: tuple[Daemon, Simulator, FakeTelegram, FakeDiscord],
) -> None:
    daemon, sim, tg, _ = setup
    tg.fail(200, "", delay=2.0, methods=("sendPhoto",))
    await sim.go_live(463000, event_title="slow chat")
    await tg.wait_for(lambda: any(r["method"] == "sendPhoto" for r in tg.requests))
    daemon.send(signal.SIGTERM)
    assert await daemon.wait() == 0
    drained = daemon.logged("app.drained")
    assert drained and drained[0]["complete"] is True
    outbox = await open_store(str(tmp_path / "state.db"), instance="test", migrate=False)
    try:
        rows = [r for r in await outbox.rows() if r.destination == "tg"]
    finally:
        await outbox.close()
    assert [r.state for r in rows] == [SENT], "recorded before exit: never sent again"


async def test_sigkill_in_the_middle_of_a_burst_loses_nothing(
    setup: tuple[Daemon, Simulator, FakeTelegram, FakeDiscord],
    tmp_path: Path,
) -> None:
    daemon, sim, tg, dc = setup
    users = list(range(700_000, 700_030))
    rules = tmp_path / "rules.yaml"
    webhook = next(f"https://discord.com/api/webhooks/{i}/{t}" for i, t in dc.webhooks.items())
    write_rules(rules, webhook, users=str(users))
    daemon.send(signal.SIGHUP)
    await daemon.wait_log("rules.reloaded")
    for uid in users:
        await sim.go_live(uid, event_title=f"burst-{uid}")
    await daemon.wait_log("alert.sent", 10, dest="tg")
    await daemon.kill()
    await daemon.start()
    await daemon.wait_until(lambda: len({t.split("\n")[1] for t in tg_texts(tg)}) >= 30, timeout=60)
    titles = [t.split("\n")[1] for t in tg_texts(tg)]
    assert set(titles) == {f"burst-{u}" for u in users}, "every alert delivered"
    assert len(titles) - len(set(titles)) <= 1, "at most the send in flight is repeated"


async def test_healthz_and_metrics_answer(
    tmp_path: Path,
    sim: Simulator,
    fake_telegram: FakeTelegram,
    fake_discord: FakeDiscord,
) -> None:
    webhook = fake_discord.add_webhook(1)
    rules = write_rules(tmp_path / "rules.yaml", webhook)
    env = daemon_env(tmp_path, sim, fake_telegram, fake_discord, NOTIFIER_HTTP_ADDR="127.0.0.1:0")
    daemon = await Daemon(env, rules).start()
    try:
        listening = await daemon.wait_log("http.listening")
        base = f"http://{listening['addr']}"
        await sim.go_live(463000)
        await daemon.wait_log("alert.sent", 2)
        await sim.send_raw("garbage")
        await daemon.wait_log("stream.frame_rejected")
        async with httpx.AsyncClient(base_url=base, trust_env=False) as http:
            health = await http.get("/healthz")
            metrics = (await http.get("/metrics")).text
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert 'notifier_events_total{type="live"} 1.0' in metrics
        assert 'notifier_matches_total{destination="tg"} 1.0' in metrics, metrics
        assert 'notifier_matches_total{destination="room"} 1.0' in metrics
        # Known series are exported at 0 from the start; no `_created` series at all.
        assert 'notifier_alerts_dead_total{destination="room"} 0.0' in metrics
        assert 'notifier_rules_reloads_total{result="error"} 0.0' in metrics
        assert 'notifier_events_total{type="price"}' in metrics
        assert "_created" not in metrics
        assert 'notifier_frames_rejected_total{reason="not_json"} 1.0' in metrics
        assert 'notifier_alerts_sent_total{destination="tg"} 1.0' in metrics
        assert "notifier_event_to_sent_seconds_bucket" in metrics
        assert "notifier_outbox_depth 0.0" in metrics
    finally:
        await daemon.stop()


async def test_min_viewers_is_checked_again_on_live_list_polls(
    setup: tuple[Daemon, Simulator, FakeTelegram, FakeDiscord],
) -> None:
    daemon, sim, tg, _ = setup
    await daemon.wait_log("catch_up.done")  # the start-up catch-up is behind us
    # Streams start with few viewers: the go-live event does not pass min_viewers ...
    await sim.go_live(
        611713,
        user_name="Genxgaming0_1",
        event_title="Ranked grind",
        category_name="Gaming",
        viewers_count=3,
    )
    # ... but the live list, polled every second here, shows the crowd arriving.
    sim.live_channels[611713]["viewers_count"] = 35
    await daemon.wait_log("alert.sent", rule="ranked-gaming")
    (text,) = [t for t in tg_texts(tg) if "Genxgaming0_1" in t]
    assert "35 watching" in text and "reconnecting" not in text


async def test_a_first_start_skips_streams_already_live_by_default(
    tmp_path: Path,
    sim: Simulator,
    fake_telegram: FakeTelegram,
    fake_discord: FakeDiscord,
) -> None:
    webhook = fake_discord.add_webhook(2)
    rules = write_rules(tmp_path / "rules.yaml", webhook, users="[DBR]")  # live in the seed
    daemon = await Daemon(daemon_env(tmp_path, sim, fake_telegram, fake_discord), rules).start()
    try:
        done = await daemon.wait_log("catch_up.done")
        # A later go-live of a followed streamer still alerts: the skip was only old news.
        await sim.go_offline(567503)
        await daemon.wait_log("stream.ended", user_id=567503)
        await sim.go_live(567503, event_title="Second stream")
        await daemon.wait_log("alert.sent", rule="friends-live", dest="tg")
    finally:
        await daemon.stop()
    assert done["skipped_on_first_start"] == 1 and done["alerts"] == 0
    (text,) = tg_texts(fake_telegram)
    assert "Second stream" in text


async def test_a_first_start_alerts_streams_already_live_when_asked_without_the_gap_label(
    tmp_path: Path,
    sim: Simulator,
    fake_telegram: FakeTelegram,
    fake_discord: FakeDiscord,
) -> None:
    webhook = fake_discord.add_webhook(2)
    rules = write_rules(
        tmp_path / "rules.yaml", webhook, users="[DBR]", extra="defaults: {first_start: alert}\n"
    )
    daemon = await Daemon(daemon_env(tmp_path, sim, fake_telegram, fake_discord), rules).start()
    try:
        done = await daemon.wait_log("catch_up.done")
        await daemon.wait_log("alert.sent", rule="friends-live", dest="tg")
    finally:
        await daemon.stop()
    assert done["gap"] is False
    (text,) = tg_texts(fake_telegram)
    assert text.startswith("🔴 DBR is live\n"), "a fresh install missed nothing"
