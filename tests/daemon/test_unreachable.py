"""A chat API that is down or rejects its token is that destination's problem, not the
daemon's: the daemon starts, ingests, writes the outbox, serves the other destinations,
shows the bad one in /healthz and /metrics, retries it with backoff, and sends the alerts
that waited once it answers again (a token fixed by a reload included). No token leaks."""

from __future__ import annotations

import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from notifier.parti.decode import LIVE
from notifier.parti.simulator import Simulator
from notifier.store.types import DEAD, SENT
from tests.daemon.test_secrets import (
    DC_BOT_REVOKED,
    DC_BOT_TOKEN,
    GROUP,
    TG_REVOKED,
    TG_TOKEN,
    WEBHOOK_ID,
    WEBHOOK_TOKEN,
    Runner,
    assert_no_leak,
    env_for,
    running,
    webhook_url,
    write_env_file,
    write_rules,
)
from tests.fakes.discord import FakeDiscord
from tests.fakes.telegram import FakeTelegram

TG = f"  tg: {{telegram: {{chat_id: {GROUP}}}}}\n"
ROOM = f'  room: {{discord: {{webhook_url: "{webhook_url()}"}}}}\n'
CHANNEL_ID = 555000000000000001
CHAN = f"  chan: {{discord: {{channel_id: {CHANNEL_ID}}}}}\n"
CONSOLE = "  cons: {console: {}}\n"
TOKEN_REJECTED = "the bot token was rejected"


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    """The fake Telegram knowing the sentinel token (any other gets 401 for every method)."""
    fake = await FakeTelegram(token=TG_TOKEN).start()
    yield fake
    await fake.stop()


@pytest.fixture
async def discord() -> AsyncIterator[FakeDiscord]:
    """The fake Discord with the sentinel bot token, a channel and the sentinel webhook."""
    fake = await FakeDiscord(bot_token=DC_BOT_TOKEN).start()
    fake.channels.add(CHANNEL_ID)
    fake.add_webhook(WEBHOOK_ID, WEBHOOK_TOKEN)
    yield fake
    await fake.stop()


def tg_sends(fake: FakeTelegram) -> list[dict[str, object]]:
    return [r for r in fake.sent() if r["method"] in ("sendMessage", "sendPhoto")]


async def assert_down(daemon: Runner, destination: str, reason: str | None = None) -> None:
    """/healthz: still 200, degraded, naming the destination; /metrics: its up gauge 0."""
    status, health = await daemon.healthz()
    assert status == 200, health
    assert health["status"] == "degraded", health
    assert destination in health["destinations_unreachable"], health
    if reason is not None:
        assert health["destinations_unreachable"][destination] == reason, health
    metrics = await daemon.metrics()
    assert f'notifier_destination_up{{destination="{destination}"}} 0.0' in metrics


async def assert_up(daemon: Runner, destination: str) -> None:
    status, health = await daemon.healthz()
    assert (status, health["status"], health["destinations_unreachable"]) == (200, "ok", {})
    metrics = await daemon.metrics()
    assert f'notifier_destination_up{{destination="{destination}"}} 1.0' in metrics


async def assert_waiting(daemon: Runner, destination: str) -> None:
    """The alert for `destination` waits in the outbox: listed, neither sent nor dead."""
    listed = await daemon.outbox_cli()
    mine = [line for line in listed.splitlines() if f" {destination} " in line]
    assert len(mine) == 1, listed
    assert mine[0].split()[0] in ("pending", "sending"), listed


# ---- Telegram ------------------------------------------------------------------------


async def test_a_telegram_token_rejected_at_start_waits_and_a_reload_with_the_right_one_sends(
    tmp_path: Path, sim: Simulator, telegram: FakeTelegram, discord: FakeDiscord
) -> None:
    write_env_file(tmp_path, NOTIFIER_TELEGRAM_TOKEN=TG_REVOKED)
    rules = write_rules(tmp_path / "rules.yaml", TG + ROOM, ["tg", "room"])
    env = env_for(
        tmp_path,
        sim,
        NOTIFIER_TELEGRAM_API_URL=telegram.api_url,
        NOTIFIER_DISCORD_API_URL=discord.api_url,
    )
    async with running(env, rules, cwd=tmp_path) as daemon:
        down = await daemon.wait_log("destination.unreachable", dest="tg")
        assert down["reason"] == TOKEN_REJECTED
        await sim.wait_subscribed(LIVE)
        await sim.go_live(463000, event_title="token trouble")
        await daemon.wait_log("alert.sent", dest="room")  # the other destination is served
        await assert_down(daemon, "tg", TOKEN_REJECTED)
        await assert_waiting(daemon, "tg")
        assert tg_sends(telegram) == []

        write_env_file(tmp_path, NOTIFIER_TELEGRAM_TOKEN=TG_TOKEN)
        daemon.send(signal.SIGHUP)
        await daemon.wait_log("rules.reloaded")
        await daemon.wait_log("alert.sent", dest="tg", timeout=10)
        await assert_up(daemon, "tg")
        assert len(daemon.logged("destination.unreachable", dest="tg")) == 1, "logged once"
    (sent,) = tg_sends(telegram)
    assert "token trouble" in sent["params"].get("caption", sent["params"].get("text", ""))
    assert {r.destination: r.state for r in daemon.rows()} == {"tg": SENT, "room": SENT}
    assert_no_leak(daemon)


class _OnReservedPort(FakeTelegram):
    """The fake Telegram listening on a socket bound before it started (so the port was
    known to the daemon, and refused its connections, while nothing listened)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(token=TG_TOKEN)
        self.sock = sock

    async def serve(self, app: web.Application) -> None:
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, self.sock).start()
        self.port = self.sock.getsockname()[1]


async def test_a_telegram_api_down_at_start_waits_and_its_alert_goes_out_when_it_answers(
    tmp_path: Path, sim: Simulator, discord: FakeDiscord
) -> None:
    # Bound but not listening: connections to the port are refused until the fake starts.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    late = _OnReservedPort(sock)
    write_env_file(tmp_path, NOTIFIER_TELEGRAM_TOKEN=TG_TOKEN)
    rules = write_rules(tmp_path / "rules.yaml", TG + ROOM, ["tg", "room"])
    env = env_for(
        tmp_path,
        sim,
        NOTIFIER_TELEGRAM_API_URL=f"http://127.0.0.1:{port}",
        NOTIFIER_DISCORD_API_URL=discord.api_url,
    )
    try:
        async with running(env, rules, cwd=tmp_path) as daemon:
            down = await daemon.wait_log("destination.unreachable", dest="tg")
            assert down["reason"].startswith("network: "), down
            await sim.wait_subscribed(LIVE)
            await sim.go_live(463000, event_title="api down")
            await daemon.wait_log("alert.sent", dest="room")
            await assert_down(daemon, "tg")
            await assert_waiting(daemon, "tg")

            await late.start()
            # Retries back off (1-2 s, then up to 4 s, 8 s): this waits for a few of them.
            await daemon.wait_log("alert.sent", dest="tg", timeout=20)
            await daemon.wait_log("destination.reachable", dest="tg", timeout=5)
            await assert_up(daemon, "tg")
    finally:
        await late.stop()
        sock.close()
    (sent,) = tg_sends(late)
    assert "api down" in sent["params"].get("caption", sent["params"].get("text", ""))
    assert_no_leak(daemon)


async def test_a_telegram_token_rejected_on_a_send_pauses_the_lane_and_keeps_the_alert(
    tmp_path: Path, sim: Simulator, telegram: FakeTelegram, discord: FakeDiscord
) -> None:
    write_env_file(tmp_path, NOTIFIER_TELEGRAM_TOKEN=TG_TOKEN)
    rules = write_rules(tmp_path / "rules.yaml", TG + ROOM, ["tg", "room"])
    env = env_for(
        tmp_path,
        sim,
        NOTIFIER_TELEGRAM_API_URL=telegram.api_url,
        NOTIFIER_DISCORD_API_URL=discord.api_url,
    )
    async with running(env, rules, cwd=tmp_path) as daemon:
        await sim.wait_subscribed(LIVE)
        await sim.go_live(463000, event_title="first")
        await daemon.wait_log("alert.sent", dest="tg")

        telegram.token = TG_REVOKED  # the owner revoked the token in BotFather
        await sim.go_live(348242, event_title="second")
        down = await daemon.wait_log("destination.unreachable", dest="tg")
        assert down["reason"] == TOKEN_REJECTED and down["retry_in"] >= 1.0
        await daemon.wait_log("alert.sent", 2, dest="room")
        await assert_down(daemon, "tg", TOKEN_REJECTED)
        await assert_waiting(daemon, "tg")
        assert daemon.logged("alert.dead") == []

        telegram.token = TG_TOKEN  # ... and put it back: the next retry goes through
        await daemon.wait_log("alert.sent", 2, dest="tg", timeout=10)
        await daemon.wait_log("destination.reachable", dest="tg", timeout=5)
        await assert_up(daemon, "tg")
    texts = [r["params"].get("caption", r["params"].get("text", "")) for r in tg_sends(telegram)]
    assert ["first" in texts[0], "second" in texts[1]] == [True, True], texts
    rows = daemon.rows()
    assert sorted(r.state for r in rows if r.destination == "tg") == [SENT, SENT]
    assert all(r.attempts <= 1 for r in rows), "a rejected token is not the alert's fault"
    assert_no_leak(daemon)


# ---- Discord -------------------------------------------------------------------------


async def test_a_discord_bot_token_rejected_at_start_waits_and_a_reload_with_the_right_one_sends(
    tmp_path: Path, sim: Simulator, discord: FakeDiscord
) -> None:
    write_env_file(tmp_path, NOTIFIER_DISCORD_BOT_TOKEN=DC_BOT_REVOKED)
    rules = write_rules(tmp_path / "rules.yaml", CHAN + ROOM, ["chan", "room"])
    env = env_for(tmp_path, sim, NOTIFIER_DISCORD_API_URL=discord.api_url)
    async with running(env, rules, cwd=tmp_path) as daemon:
        down = await daemon.wait_log("destination.unreachable", dest="chan")
        assert down["reason"] == TOKEN_REJECTED
        await sim.wait_subscribed(LIVE)
        await sim.go_live(463000, event_title="bot trouble")
        await daemon.wait_log("alert.sent", dest="room")  # the webhook needs no bot token
        await assert_down(daemon, "chan", TOKEN_REJECTED)
        await assert_waiting(daemon, "chan")

        write_env_file(tmp_path, NOTIFIER_DISCORD_BOT_TOKEN=DC_BOT_TOKEN)
        daemon.send(signal.SIGHUP)
        await daemon.wait_log("rules.reloaded")
        await daemon.wait_log("alert.sent", dest="chan", timeout=10)
        await assert_up(daemon, "chan")
    posted = [m for m in discord.sent() if "bot trouble" in str(m)]
    assert len(posted) == 2, "once by the webhook, once by the bot"
    assert_no_leak(daemon)


async def test_a_discord_webhook_with_an_invalid_token_is_a_dead_letter_without_the_token(
    tmp_path: Path, sim: Simulator, discord: FakeDiscord
) -> None:
    rules = write_rules(tmp_path / "rules.yaml", ROOM + CONSOLE, ["room", "cons"])
    env = env_for(tmp_path, sim, NOTIFIER_DISCORD_API_URL=discord.api_url)
    discord.fail(401, "Invalid Webhook Token", code=50027)
    async with running(env, rules, cwd=tmp_path) as daemon:
        await sim.wait_subscribed(LIVE)
        await sim.go_live(463000, event_title="hook trouble")
        dead = await daemon.wait_log("alert.dead", dest="room")
        await daemon.wait_log("alert.sent", dest="cons")
        assert "Invalid Webhook Token" in dead["reason"], dead
        assert daemon.logged("destination.unreachable") == [], "one webhook, not the bot"
        listed = await daemon.outbox_cli()
        (line,) = [x for x in listed.splitlines() if " room " in x]
        assert line.startswith("dead") and "Invalid Webhook Token" in line, listed
        status, health = await daemon.healthz()
        assert (status, health["status"]) == (200, "ok"), health
    (row,) = [r for r in daemon.rows() if r.destination == "room"]
    assert row.state == DEAD and "Invalid Webhook Token" in (row.last_error or "")
    assert_no_leak(daemon)


async def test_a_reload_that_fixes_a_token_logs_the_destination_reachable_with_no_alert_waiting(
    tmp_path: Path, sim: Simulator, telegram: FakeTelegram
) -> None:
    write_env_file(tmp_path, NOTIFIER_TELEGRAM_TOKEN=TG_REVOKED)
    rules = write_rules(tmp_path / "rules.yaml", TG, ["tg"])
    env = env_for(tmp_path, sim, NOTIFIER_TELEGRAM_API_URL=telegram.api_url)
    async with running(env, rules, cwd=tmp_path) as daemon:
        await daemon.wait_log("destination.unreachable", dest="tg")
        write_env_file(tmp_path, NOTIFIER_TELEGRAM_TOKEN=TG_TOKEN)
        daemon.send(signal.SIGHUP)
        await daemon.wait_log("rules.reloaded")
        # The new bot's getMe is the probe: no alert needs to go out to show it answers.
        await daemon.wait_log("destination.reachable", dest="tg", timeout=5)
        await assert_up(daemon, "tg")
    assert_no_leak(daemon)


# ---- what a reload changes besides the file's destinations ----------------------------

DM = 5551001


async def test_a_chat_subscription_gets_the_token_a_reload_fixed(
    tmp_path: Path, sim: Simulator, telegram: FakeTelegram, discord: FakeDiscord
) -> None:
    # No Telegram destination in the file: the chat's lane makes its bot from the settings
    # the daemon holds, which must be the reload's, not the start's.
    from tests.daemon.test_subscriptions import subscribe

    write_env_file(tmp_path, NOTIFIER_TELEGRAM_TOKEN=TG_REVOKED)
    rules = tmp_path / "rules.yaml"
    rules.write_text(f"destinations:\n{CONSOLE}")
    env = env_for(tmp_path, sim, NOTIFIER_TELEGRAM_API_URL=telegram.api_url)
    await subscribe(Path(env["NOTIFIER_STATE_PATH"]), DM, 463000)
    async with running(env, rules, cwd=tmp_path) as daemon:
        await sim.wait_subscribed(LIVE)
        await daemon.wait_log("catch_up.done")
        await sim.go_live(463000, event_title="token trouble")
        await daemon.wait_log("destination.unreachable", dest=f"@tg:{DM}")
        assert tg_sends(telegram) == []

        write_env_file(tmp_path, NOTIFIER_TELEGRAM_TOKEN=TG_TOKEN)
        daemon.send(signal.SIGHUP)
        await daemon.wait_log("rules.reloaded")
        await daemon.wait_log("alert.sent", dest=f"@tg:{DM}", timeout=20)
    (sent,) = tg_sends(telegram)
    assert sent["params"]["chat_id"] == str(DM)
    assert_no_leak(daemon)


async def test_a_reload_starts_and_stops_the_command_bot(
    tmp_path: Path, sim: Simulator, telegram: FakeTelegram
) -> None:
    write_env_file(tmp_path, NOTIFIER_TELEGRAM_TOKEN=TG_TOKEN)
    rules = tmp_path / "rules.yaml"
    rules.write_text(f"destinations:\n{CONSOLE}")
    env = env_for(tmp_path, sim, NOTIFIER_TELEGRAM_API_URL=telegram.api_url)
    async with running(env, rules, cwd=tmp_path) as daemon:
        await sim.wait_subscribed(LIVE)
        assert daemon.logged("bot.started") == []

        rules.write_text(f"destinations:\n{CONSOLE}bots: {{telegram: {{commands: true}}}}\n")
        daemon.send(signal.SIGHUP)
        started = await daemon.wait_log("bot.started", timeout=20)
        assert started["platform"] == "telegram"
        await telegram.wait_for(lambda: any(r["method"] == "getUpdates" for r in telegram.requests))

        rules.write_text(f"destinations:\n{CONSOLE}")
        daemon.send(signal.SIGHUP)
        await daemon.wait_log("bot.stopped", timeout=20)
        # Stopped for good: a third reload that changes nothing of the bots starts none.
        daemon.send(signal.SIGHUP)
        await daemon.wait_log("rules.reloaded", count=3)
        polls = sum(1 for r in telegram.requests if r["method"] == "getUpdates")
        # Proof that nothing polls: another instance may take the token's updates now.
        await daemon.wait_log("bot.started", count=1)
    assert len(daemon.logged("bot.started")) == 1
    assert len(daemon.logged("bots.restarting")) == 2
    assert sum(1 for r in telegram.requests if r["method"] == "getUpdates") == polls
    assert_no_leak(daemon)
