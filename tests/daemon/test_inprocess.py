"""The daemon's parts that are easiest to watch in-process: health, systemd notify, demo."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from notifier.app import App, Options
from notifier.parti import seed
from notifier.parti.client import PREFIX
from notifier.parti.decode import LIVE
from notifier.parti.simulator import Simulator
from notifier.settings import Settings
from notifier.stages.state import ENGINE_STATE
from notifier.store import open_store
from tests.daemon.helpers import inprocess_app_files
from tests.fakes.common import served
from tests.fakes.telegram import FakeTelegram

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def app(tmp_path: Path, sim: Simulator) -> AsyncIterator[App]:
    rules, settings = inprocess_app_files(tmp_path, sim, http_addr="127.0.0.1:0", live_poll=1.0)
    options = Options(
        reconnect_base=0.05,
        reconnect_cap=0.1,
        stream_down_budget=0.3,
        console_stream=io.StringIO(),
    )
    application = App(settings, rules_path=str(rules), options=options)
    task = asyncio.create_task(application.run())
    await application.connected_once.wait()
    yield application
    application.request_stop()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def console_app(tmp_path: Path, sim: Simulator, port: int, match: str) -> App:
    """A daemon with one live rule (`match`, its filter) to the console, its Parti API on
    127.0.0.1:`port` and its WebSocket the simulator's."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "destinations: {t: {console: {}}}\n"
        f"rules: [{{name: a, when: live, {match}, notify: [t]}}]\n"
    )
    settings = Settings(
        _env_file=None,
        parti_api_url=f"http://127.0.0.1:{port}",  # type: ignore[call-arg]
        parti_ws_url=sim.ws_url,
        state_path=str(tmp_path / "s.db"),
        http_addr="",
    )
    return App(settings, rules_path=str(rules), options=Options(console_stream=io.StringIO()))


async def test_healthz_turns_503_with_a_reason_when_the_stream_stays_down(
    app: App, sim: Simulator
) -> None:
    base = f"http://127.0.0.1:{app.http_port}"
    async with httpx.AsyncClient(base_url=base, trust_env=False) as http:
        assert (await http.get("/healthz")).status_code == 200
        sim.accept_ws = False
        await sim.drop_connections()
        async with asyncio.timeout(10), app.health_changed:
            await app.health_changed.wait_for(lambda: not app.healthy()[0])
        answer = await http.get("/healthz")
        assert answer.status_code == 503
        assert answer.json()["reason"].startswith("stream down for")
        sim.accept_ws = True
        await sim.wait_subscribed(LIVE)
        async with asyncio.timeout(10), app.health_changed:
            await app.health_changed.wait_for(lambda: app.healthy()[0])
        assert (await http.get("/healthz")).status_code == 200


async def test_systemd_is_told_ready_at_start_and_connected_later(
    tmp_path: Path, sim: Simulator
) -> None:
    path = str(tmp_path / "notify.sock")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(path)
    receiver.setblocking(False)
    rules = tmp_path / "rules.yaml"
    rules.write_text("destinations: {t: {console: {}}}\n")
    env = {
        **os.environ,
        "NOTIFY_SOCKET": path,
        "WATCHDOG_USEC": "400000",
        "NOTIFIER_PARTI_API_URL": sim.api_url,
        "NOTIFIER_PARTI_WS_URL": sim.ws_url,
        "NOTIFIER_STATE_PATH": str(tmp_path / "s.db"),
        "NOTIFIER_HTTP_ADDR": "",
        "NOTIFIER_RULES": str(rules),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "notifier",
        "run",
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    loop = asyncio.get_running_loop()
    messages: list[str] = []
    try:
        async with asyncio.timeout(20):
            while not any("STATUS=connected to Parti" in m for m in messages):
                messages.append((await loop.sock_recv(receiver, 4096)).decode())
    finally:
        proc.terminate()
        assert await proc.wait() == 0
    receiver.close()
    # Ready as soon as it started: a Parti outage must not fail the start for systemd.
    assert messages[0].startswith("READY=1")
    assert "WATCHDOG=1" in messages


async def test_notifier_demo_runs_the_whole_tour_and_exits_0() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "notifier",
        "demo",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")},
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    text = out.decode()
    assert proc.returncode == 0, err.decode()
    alerts = [line for line in text.splitlines() if line.startswith("[terminal]")]
    assert [a.split(" ", 2)[2][:30] for a in alerts] == [
        "🔴 SNEAKO is live: Morning stre",
        "🔴 Genxgaming0_1 is live: Ranke",
        "🔴 Jack Doherty is live: <b>IRL",
        "📈 BTC crossed above 100,000: n",
        "📈 BTC crossed above 100,000: n",
        "🔴 DigitalNas is live: Back onl",
        "edited: ⚫ SNEAKO ended the str",
    ]
    assert "4,340 followers" in alerts[0]
    assert "(caught up after a reconnect)" in alerts[5]
    assert text.count("(no alert:") == 3
    assert "UNEXPECTED" not in text
    # The chat scene: Ann follows SNEAKO with /follow, then gets the DM alert and its edit.
    dm = [line for line in text.splitlines() if line.startswith("[telegram DM 1001]")]
    assert dm[0].startswith("[telegram DM 1001] Following SNEAKO")
    assert dm[1].startswith("[telegram DM 1001] 🔴 SNEAKO is live")
    assert dm[2].startswith("[telegram DM 1001] edited: ⚫ SNEAKO was live")
    assert "9 of 9 alerts and edits delivered" in text


async def test_a_reload_keeps_each_bots_rate_windows(
    tmp_path: Path, sim: Simulator, fake_telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Telegram counts what the bot sent, not which senders sent it: the reload's new
    senders (and the chat lanes and command replies made from them) keep the windows."""
    rules = tmp_path / "rules.yaml"
    rules.write_text("destinations: {g: {telegram: {chat_id: -100555}}}\n")
    monkeypatch.chdir(tmp_path)  # a reload reads the settings again: from here
    for name, value in {
        "NOTIFIER_PARTI_API_URL": sim.api_url,
        "NOTIFIER_PARTI_WS_URL": sim.ws_url,
        "NOTIFIER_STATE_PATH": str(tmp_path / "s.db"),
        "NOTIFIER_HTTP_ADDR": "",
        "NOTIFIER_TELEGRAM_TOKEN": fake_telegram.token,
        "NOTIFIER_TELEGRAM_API_URL": fake_telegram.api_url,
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    app = App(settings, rules_path=str(rules), options=Options(console_stream=io.StringIO()))
    task = asyncio.create_task(app.run())
    try:
        async with asyncio.timeout(30):
            await app.connected_once.wait()
        assert app.holder is not None and app.holder.senders.bot is not None
        before = app.holder.senders.bot
        rules.write_text("destinations: {g: {telegram: {chat_id: -100555}}, h: {console: {}}}\n")
        assert app.reloader is not None and await app.reloader.reload()
        after = app.holder.senders.bot
        assert after is not None and after is not before  # new senders, the same windows
        assert after.window is before.window
        assert after.chat_window(-100555) is before.chat_window(-100555)
    finally:
        app.request_stop()
        await task


async def test_the_start_asks_parti_for_categories_and_prices_at_once(
    tmp_path: Path, sim: Simulator
) -> None:
    """Categories and prices are two round trips to Parti before the stream is read: they
    go out together. Each answer here waits for the other request to arrive (one after
    the other, the first would wait in vain)."""
    arrived = {"categories": asyncio.Event(), "prices": asyncio.Event()}
    statuses: dict[str, int] = {}

    async def reference(request: web.Request) -> web.Response:
        name = "categories" if request.path.endswith("/categories") else "prices"
        other = "prices" if name == "categories" else "categories"
        arrived[name].set()
        try:
            async with asyncio.timeout(5):
                await arrived[other].wait()
        except TimeoutError:
            statuses[name] = 404
            return web.json_response({"message": "the other request never came"}, status=404)
        statuses[name] = 200
        return web.json_response(seed.CATEGORIES if name == "categories" else seed.PRICES)

    parti = web.Application()
    parti.router.add_get(f"{PREFIX}/livestream_calendar/events/categories", reference)
    parti.router.add_get(f"{PREFIX}/assets_prices/info", reference)
    async with served(parti) as port:
        application = console_app(tmp_path, sim, port, "categories: [Gaming]")
        task = asyncio.create_task(application.run())
        try:
            async with asyncio.timeout(20):
                await application.connected_once.wait()
        finally:
            application.request_stop()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert statuses == {"categories": 200, "prices": 200}
    assert application._categories  # the rules know the categories' names


@pytest.mark.parametrize("kind", ["redirect loop", "not gzip"])
async def test_a_start_whose_reference_data_httpx_refuses_still_runs(
    tmp_path: Path, sim: Simulator, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Categories and prices answered with a redirect loop or a body that does not
    decompress: a warning each, and the daemon reads the stream all the same."""
    caplog.set_level(logging.INFO)

    async def broken(request: web.Request) -> web.StreamResponse:
        if kind == "redirect loop":
            raise web.HTTPFound(request.path)
        headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
        return web.Response(body=b"not gzip at all", headers=headers)

    parti = web.Application()
    parti.router.add_get("/{tail:.*}", broken)
    async with served(parti) as port:
        application = console_app(tmp_path, sim, port, "users: [SNEAKO]")
        task = asyncio.create_task(application.run())
        connected = asyncio.create_task(application.connected_once.wait())
        try:
            await asyncio.wait([task, connected], timeout=20, return_when=asyncio.FIRST_COMPLETED)
            assert not task.done(), f"the daemon stopped: {task.exception()!r}"
            assert connected.done()
        finally:
            connected.cancel()
            application.request_stop()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    warned = {r.getMessage() for r in caplog.records if r.levelno == logging.WARNING}
    assert {"parti.categories_unavailable", "parti.prices_unavailable"} <= warned


class Console(io.StringIO):
    """The console destination's stream: `written` is set by the first alert."""

    def __init__(self) -> None:
        super().__init__()
        self.written = asyncio.Event()

    def write(self, text: str) -> int:
        self.written.set()
        return super().write(text)


@pytest.mark.parametrize(
    "damaged",
    [
        "not json",
        "[]",
        '{"version": 1, "prices": {"BTC": "abc"}}',
        '{"version": 1, "prices": []}',
        '{"version": 1, "cooldowns": []}',
        '{"version": 1, "moves": 5}',
    ],
)
async def test_a_damaged_engine_state_is_one_warning_and_the_daemon_alerts(
    tmp_path: Path, sim: Simulator, caplog: pytest.LogCaptureFixture, damaged: str
) -> None:
    rules, settings = inprocess_app_files(tmp_path, sim, http_addr="")
    store = await open_store(settings.state_path, instance="edit", durable=False)
    await store.set_state(ENGINE_STATE, damaged, fence=None)
    await store.close()
    console = Console()
    options = Options(reconnect_base=0.05, reconnect_cap=0.1, console_stream=console)
    application = App(settings, rules_path=str(rules), options=options)
    with caplog.at_level(logging.INFO, logger="notifier"):
        task = asyncio.create_task(application.run())
        try:
            async with asyncio.timeout(20):
                await application.connected_once.wait()
                await sim.wait_subscribed(LIVE)
                await sim.go_live(463000, event_title="Still alerting")
                await console.written.wait()
            assert "Still alerting" in console.getvalue()
        finally:
            application.request_stop()
            assert await task == 0
    (warned,) = [r for r in caplog.records if r.getMessage() == "state.unreadable"]
    assert warned.levelno == logging.WARNING and not warned.exc_info


async def test_prices_are_asked_for_while_price_frames_are_silent(
    tmp_path: Path, sim: Simulator
) -> None:
    """Parti dropped the price subscription without a word (the connection stays up): a
    line crossed meanwhile is alerted from the prices route, not missed for good."""
    rules, settings = inprocess_app_files(tmp_path, sim, http_addr="", live_poll=1.0)
    rules.write_text(
        "destinations: {t: {console: {}}}\n"
        "rules: [{name: btc, when: price, asset: BTC, above: 150000, notify: [t]}]\n"
    )
    written = asyncio.Event()

    def on_written(alerts: list[Any]) -> None:
        if any(a.rule == "btc" for a in alerts):
            written.set()

    options = Options(console_stream=io.StringIO(), price_silence=1.0, on_alert_written=on_written)
    application = App(settings, rules_path=str(rules), options=options)
    task = asyncio.create_task(application.run())
    try:
        async with asyncio.timeout(20):
            await application.connected_once.wait()
            sim.silent = True  # no frame from here on: the subscription is gone
            await sim.set_price("BTC", "200000")
            await written.wait()
    finally:
        application.request_stop()
        with contextlib.suppress(asyncio.CancelledError):
            await task
