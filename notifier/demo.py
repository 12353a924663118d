"""`notifier demo`: the real daemon against the in-process simulator, on a scripted tour.

Console destination, no tokens, nothing beyond 127.0.0.1. Each step makes Parti do
something and waits for the daemon's answer (an alert, an edit, or deliberately
nothing), then a summary table. With `--telegram-chat` and NOTIFIER_TELEGRAM_TOKEN the
same alerts also go to a real Telegram chat.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import sys
import tempfile
import time
from pathlib import Path

from pydantic import SecretStr

from notifier.app import App, Options
from notifier.deliver.lanes import Delivery
from notifier.demo_chat import TOKEN as DEMO_TOKEN
from notifier.demo_chat import DemoChat
from notifier.parti.decode import LIVE, PRICE
from notifier.parti.simulator import Simulator
from notifier.render import discord, telegram
from notifier.render.fields import AlertView
from notifier.settings import Settings
from notifier.store.types import DEAD, DROPPED, SENT, NewAlert, Row

DEMO_RULES = """\
version: 1
destinations:
  terminal: {console: {}}
defaults:
  cooldown: 10m
rules:
  - name: friends-live
    when: live
    users: [SNEAKO, "Jack Doherty", DigitalNas]
    notify: [terminal]
  - name: ranked-gaming
    when: live
    categories: [Gaming]
    title_matches: "(?i)ranked|tournament"
    min_viewers: 20
    notify: [terminal]
  - name: btc-100k
    when: price
    asset: BTC
    above: 100000
    rearm: 0.5%
    cooldown: 0s
    notify: [terminal]
"""

DEMO_DM = 1001  # Ann's private chat with the bot

TELEGRAM_COPY = "chat"  # the destination of `--telegram-chat`: a copy of every alert
HOSTILE_TITLE = "<b>IRL</b> stream @everyone <script>alert(1)</script> & <@&1234>"


class Tour:
    """Drives the simulator and waits for the daemon's answers through its hooks."""

    def __init__(self, app: App, sim: Simulator) -> None:
        self.app = app
        self.sim = sim
        self.chat: DemoChat | None = None
        self.written: list[NewAlert] = []
        self.step = 0
        self.evaluated = 0
        self._seen = 0
        self._evaluated_flag = asyncio.Event()
        self._done: list[NewAlert] = []

    def on_written(self, alerts: list[NewAlert]) -> None:
        self.written += alerts

    def on_evaluated(self, _: object) -> None:
        self.evaluated += 1
        self._evaluated_flag.set()

    def say(self, text: str) -> None:
        self.step += 1
        print(f"\n▶ {self.step}. {text}", flush=True)

    async def sent(self, count: int, timeout: float = 20.0) -> list[NewAlert]:
        """Wait until `count` more alerts were written and delivered; returns them.

        The copies for `--telegram-chat` do not count: that chat may be slow or refuse
        them (reported at the end), and each scene's count stays what the terminal shows."""
        start = len(self._done)
        delivery = self.app.delivery
        async with asyncio.timeout(timeout):
            while True:
                seen = delivery.sent_count
                self._done = [
                    a
                    for a in self.written
                    if a.destination != TELEGRAM_COPY and await self._is_sent(a.key)
                ]
                if len(self._done) >= start + count:
                    return self._done[start:]
                await _progress(delivery, seen)

    async def _is_sent(self, key: str) -> bool:
        assert self.app.store is not None
        row = await self.app.store.get(key)
        return row is not None and row.state == SENT

    def mark(self) -> None:
        """Count evaluated events from now."""
        self._seen = self.evaluated

    async def quiet(self, events: int, what: str, timeout: float = 10.0) -> None:
        """Show that nothing fired: the daemon evaluated `events` more events, wrote nothing."""
        before = len(self.written)
        async with asyncio.timeout(timeout):
            while self.evaluated < self._seen + events:
                self._evaluated_flag.clear()
                await self._evaluated_flag.wait()
        await self.app.core.queue.join()
        self._seen = self.evaluated
        outcome = f"no alert: {what}" if len(self.written) == before else "UNEXPECTED ALERT"
        print(f"  ({outcome})", flush=True)


async def run_demo(settings: Settings, *, telegram_chat: str | None = None) -> int:
    logging.getLogger("notifier").setLevel(logging.ERROR)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="parti-notifier-demo-") as folder:
        rules = DEMO_RULES
        if telegram_chat:
            if settings.telegram_token is None:
                print(
                    "notifier demo: --telegram-chat needs NOTIFIER_TELEGRAM_TOKEN", file=sys.stderr
                )
                return 2
            if not re.fullmatch(r"-?\d{1,19}|@[A-Za-z0-9_]{5,32}", telegram_chat):
                print(
                    "notifier demo: --telegram-chat takes a chat id (e.g. -1001234567890) "
                    "or a public @channelname",
                    file=sys.stderr,
                )
                return 2
            chat = f"  {TELEGRAM_COPY}: {{telegram: {{chat_id: {json.dumps(telegram_chat)}}}}}\n"
            rules = rules.replace(
                "  terminal: {console: {}}\n", "  terminal: {console: {}}\n" + chat
            )
            rules = rules.replace("notify: [terminal]", f"notify: [terminal, {TELEGRAM_COPY}]")
        # Without a real chat, a local stand-in for Telegram shows the chat commands.
        local_chat = None if telegram_chat else await DemoChat().start()
        if local_chat is not None:
            rules += "bots:\n  telegram: {commands: true}\n"
        rules_path = Path(folder) / "demo-rules.yaml"
        rules_path.write_text(rules)
        async with Simulator() as sim, contextlib.AsyncExitStack() as stack:
            if local_chat is not None:
                stack.push_async_callback(local_chat.stop)
            update: dict[str, object] = {
                "parti_api_url": sim.api_url,
                "parti_ws_url": sim.ws_url,
                "state_path": str(Path(folder) / "demo.db"),
                "http_addr": "",
                "live_poll": 1.0,
                "rules": str(rules_path),
            }
            if local_chat is not None:
                update |= {
                    "telegram_token": SecretStr(DEMO_TOKEN),
                    "telegram_api_url": local_chat.api_url,
                }
            demo_settings = settings.model_copy(update=update)
            options = Options(
                reconnect_base=0.2,
                reconnect_cap=0.5,
                enrich_budget=2.0,
                durable=False,
                console_stream=sys.stdout,
                drain_deadline=5.0,
            )
            app = App(demo_settings, options=options)
            tour = Tour(app, sim)
            tour.chat = local_chat
            options.on_alert_written = tour.on_written
            options.on_evaluated = tour.on_evaluated
            print(f"parti-notifier demo: simulator on {sim.api_url}, rules:\n")
            print("  " + DEMO_RULES.replace("\n", "\n  "))
            runner = asyncio.create_task(app.run())
            try:
                await _tour(tour)
                if telegram_chat:
                    await _settle(app, TELEGRAM_COPY)
                assert app.store is not None
                rows = await app.store.rows(limit=1000)
                unreachable = dict(app.health.destinations)
            finally:
                app.request_stop()
                with contextlib.suppress(asyncio.CancelledError):
                    await runner
            _summary(rows, time.monotonic() - started)
    return _failures(rows, unreachable) if telegram_chat else 0


async def _settle(app: App, destination: str, timeout: float = 30.0) -> None:
    """Give the real chat time to take what is waiting (it may be slower than the terminal)."""
    assert app.store is not None
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while destination not in app.health.destinations:
                rows = await app.store.rows(limit=1000)
                # Dropped: an edit or deletion of a message that never went out.
                settled = (SENT, DEAD, DROPPED)
                if all(r.state in settled for r in rows if r.destination == destination):
                    return
                async with app.delivery.settled:
                    await app.delivery.settled.wait()


async def _progress(delivery: Delivery, seen: int) -> None:
    """Until the delivery records another sent alert."""
    async with delivery.settled:
        await delivery.settled.wait_for(lambda: delivery.sent_count != seen)


def _failures(rows: list[Row], unreachable: dict[str, str]) -> int:
    """With --telegram-chat: every alert the chat did not get, with the reason; exit 1."""
    failed = [r for r in rows if r.destination == TELEGRAM_COPY and r.state not in (SENT, DROPPED)]
    if not failed and TELEGRAM_COPY not in unreachable:
        return 0
    if TELEGRAM_COPY in unreachable:
        print(
            f"notifier demo: Telegram chat unreachable: {unreachable[TELEGRAM_COPY]}",
            file=sys.stderr,
        )
    for row in failed:
        reason = row.last_error or "not sent yet"
        print(f"notifier demo: {row.rule} not delivered to the chat: {reason}", file=sys.stderr)
    return 1


async def _tour(tour: Tour) -> None:
    sim, app = tour.sim, tour.app
    await app.connected_once.wait()
    await sim.wait_subscribed(LIVE)
    await sim.wait_subscribed(PRICE)
    await app.core.queue.join()

    dm = 0
    if tour.chat is not None:
        tour.say("Ann types /follow SNEAKO to the bot in a private chat (a local Telegram)")
        await tour.chat.type(DEMO_DM, "/follow SNEAKO")
        await tour.chat.reply(DEMO_DM)
        await _subscribed(app)
        dm = 1  # from now on SNEAKO's alerts also go to Ann's DM

    tour.say("SNEAKO goes live: a followed streamer, enriched with the profile (followers)")
    await sim.go_live(463000, event_title="Morning stream", category_name="IRL", viewers_count=5)
    await tour.sent(1 + dm)

    tour.say(
        "Genxgaming0_1 goes live in Gaming with 'Ranked grind' and 40 viewers: a category rule"
    )
    await sim.go_live(
        611713,
        user_name="Genxgaming0_1",
        event_title="Ranked grind",
        category_name="Gaming",
        viewers_count=40,
    )
    await tour.sent(1)
    tour.mark()
    await sim.go_live(
        43831,
        user_name="Chilly Dolphin",
        event_title="chill Rust",
        category_name="Gaming",
        viewers_count=112,
    )
    await tour.quiet(1, "Chilly Dolphin, live in Gaming with 'chill Rust': no 'ranked' in it")

    tour.say("Jack Doherty goes live with a hostile title: HTML, @everyone, a role mention")
    await sim.go_live(348242, event_title=HOSTILE_TITLE, category_name="IRL", viewers_count=9)
    (hostile,) = await tour.sent(1)
    view = AlertView.from_json(hostile.payload["view"])
    print(f"  Telegram HTML: {telegram.render(view).html.splitlines()[1]}")
    print(f"  Discord title: {discord.render(view).embed['title']}  (allowed_mentions: none)")

    tour.say("BTC falls to 99,000, then crosses 100,000: the line fires")
    tour.mark()
    await sim.set_price("BTC", "99000")
    await tour.quiet(1, "99,000 is below the line; the band re-arms it")
    await sim.set_price("BTC", "100100")
    await tour.sent(1)
    tour.say("BTC wobbles inside the hysteresis band (99,900 -> 100,200): no re-fire")
    tour.mark()
    await sim.set_price("BTC", "99900")
    await sim.set_price("BTC", "100200")
    await tour.quiet(2, "not re-armed: 99,900 is above 100,000 - 0.5%")
    tour.say("BTC drops to 99,000 (re-armed) and crosses again: fires again")
    await sim.set_price("BTC", "99000")
    await sim.set_price("BTC", "100300")
    await tour.sent(1)

    tour.say("The connection drops; DigitalNas goes live during the outage")
    sim.accept_ws = False
    await sim.drop_connections()
    await sim.go_live(
        601379,
        user_name="DigitalNas",
        event_title="Back online",
        category_name="Creative",
        viewers_count=3,
    )
    print("  (the daemon is reconnecting; the WebSocket frame went to nobody)", flush=True)
    sim.accept_ws = True
    (caught,) = await tour.sent(1, timeout=30)
    print(f"  caught up after the reconnect: {caught.rule} for {caught.subject}")

    tour.say("SNEAKO's stream ends: the alert is edited in place")
    await sim.go_offline(463000)
    await tour.sent(1 + dm, timeout=30)


async def _subscribed(app: App, timeout: float = 20.0) -> None:
    """Until the engine has the chat's subscription (synced from the store)."""
    async with asyncio.timeout(timeout):
        # The demo only: the sync stage polls the store, there is no event to wait on.
        while not app.core.rules.engine.subscription_ids():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


def _summary(rows: list[Row], seconds: float) -> None:
    print("\nSummary")
    print(
        f"  {'#':>2}  {'rule':<14} {'to':<9} {'what':<5} {'subject':<8} {'state':<7} {'latency':>8}"
    )
    for number, row in enumerate(rows, start=1):
        latency = f"{(row.sent_at - row.event_at) * 1000:.0f} ms" if row.sent_at else "-"
        print(
            f"  {number:>2}  {row.rule:<14} {row.destination:<9} {row.action:<5} "
            f"{row.subject:<8} {row.state:<7} {latency:>8}"
        )
    sent = sum(1 for r in rows if r.state == SENT)
    print(f"\n{sent} of {len(rows)} alerts and edits delivered; demo took {seconds:.1f}s")
