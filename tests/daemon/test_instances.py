"""Several `notifier run` instances on one PostgreSQL database: one ingest holder, a
takeover after SIGKILL with the next generation, and no alert lost or sent twice."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from notifier.parti.decode import LIVE, PRICE
from notifier.parti.simulator import Simulator
from tests.daemon.helpers import ROOT, Daemon, daemon_env
from tests.fakes.telegram import FakeTelegram, parse_html

GROUP = -100200300
RULES = f"""\
version: 1
destinations:
  tg: {{telegram: {{chat_id: {GROUP}}}}}
rules:
  - {{name: anyone-live, when: live, notify: [tg], cooldown: 0s}}
  - name: btc-100k
    when: price
    asset: BTC
    above: 100000
    rearm: 0.5%
    cooldown: 0s
    notify: [tg]
"""
TAKEOVER = 10.0  # seconds a survivor may take to hold the role after the holder died
SURVIVOR_SENDS = 10.0  # seconds a survivor may take to send what the dead holder left


class Instance(Daemon):
    """One named instance. A standby never connects to Parti, so it counts as started
    once its HTTP endpoint listens (the store is open and migrated by then)."""

    def __init__(self, name: str, env: dict[str, str], rules: Path) -> None:
        super().__init__(
            env | {"NOTIFIER_INSTANCE": name, "NOTIFIER_HTTP_ADDR": "127.0.0.1:0"}, rules
        )
        self.name = name

    async def start(self) -> Instance:
        self.lines.clear()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "notifier",
            "run",
            "--rules",
            str(self.rules),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
            cwd=ROOT,
        )
        self._reader = asyncio.create_task(self._read())
        await self.wait_log("http.listening")
        return self

    @property
    def holds(self) -> bool:
        """The last word of this run's log on the ingest role was that it took it."""
        said = [x for x in self.lines if x.get("event") in ("role.acquired", "role.lost")]
        return bool(said) and said[-1]["event"] == "role.acquired"

    @property
    def generation(self) -> int:
        return int(self.logged("role.acquired")[-1]["generation"])


async def first(
    instances: list[Instance], ready: Callable[[Instance], bool], timeout: float
) -> Instance:
    """The first of `instances` for which `ready` holds (checked on each of its log lines)."""
    waits = {
        asyncio.ensure_future(i.wait_until(lambda i=i: ready(i), timeout)): i for i in instances
    }
    try:
        done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
        for task in waits:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await task
    ok = [waits[t] for t in done if not t.cancelled() and t.exception() is None]
    assert ok, f"none of {[i.name for i in instances]} got there in {timeout:g} s"
    return ok[0]


async def stream_ready(holder: Instance, sim: Simulator) -> None:
    """The holder's stream is subscribed, and no other connection is left at the simulator
    (a killed holder's socket closes when the kernel reaps it)."""
    await holder.wait_log("stream.connected")
    await sim.wait_for(
        lambda: (
            sim.state()["connections"] == 1
            and sim.subscribers(LIVE) == 1
            and sim.subscribers(PRICE) == 1
        )
    )


def sends_tried(tg: FakeTelegram) -> list[dict[str, Any]]:
    """Alert sends that reached the fake, answered or not yet."""
    return [r for r in tg.requests if r["method"] in ("sendMessage", "sendPhoto")]


def sends_with(tg: FakeTelegram, words: str) -> list[dict[str, Any]]:
    """Alerts the fake accepted whose text contains `words`."""
    return [
        r
        for r in tg.sent()
        if r["method"] in ("sendMessage", "sendPhoto")
        and words in parse_html(r["params"].get("caption") or r["params"].get("text", ""))
    ]


async def outbox(url: str) -> list[tuple[str, str]]:
    """(rule, state) of every row in the shared outbox."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute("SELECT rule, state FROM alerts ORDER BY created_at")
        return [(str(rule), str(state)) for rule, state in await cur.fetchall()]


async def until_stored(url: str, text: str, timeout: float = 15.0) -> None:
    """Until the stored engine state contains `text` (the state saver has no log line)."""
    async with asyncio.timeout(timeout), await psycopg.AsyncConnection.connect(url) as conn:
        while True:
            cur = await conn.execute("SELECT value FROM kv WHERE name = 'engine_state'")
            found = await cur.fetchone()
            await conn.commit()
            if found is not None and text in str(found[0]):
                return
            await asyncio.sleep(0.2)  # polling the database: no notification to wait on


@pytest.fixture
async def pair(
    tmp_path: Path, pg_url: str, sim: Simulator, fake_telegram: FakeTelegram
) -> AsyncIterator[tuple[Instance, Instance]]:
    """Instances a and b on one database; the one holding ingest is subscribed to Parti."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    env = daemon_env(tmp_path, sim, fake_telegram, NOTIFIER_DATABASE_URL=pg_url)
    a, b = Instance("a", env, rules), Instance("b", env, rules)
    try:
        await asyncio.gather(a.start(), b.start())
        holder = await first([a, b], lambda i: i.holds, TAKEOVER)
        await stream_ready(holder, sim)
        # The first start's poll records the streams already live (not alerted): a
        # successor would otherwise alert them as caught up.
        await holder.wait_log("catch_up.done", skipped_on_first_start=len(sim.live_channels))
        yield a, b
    finally:
        await asyncio.gather(a.stop(), b.stop())


def roles(pair: tuple[Instance, Instance]) -> tuple[Instance, Instance]:
    """(the ingest holder, the standby)."""
    a, b = pair
    return (a, b) if a.holds else (b, a)


async def test_two_instances_one_ingest_holder_and_one_alert_per_go_live(
    pair: tuple[Instance, Instance], sim: Simulator, fake_telegram: FakeTelegram, pg_url: str
) -> None:
    holder, standby = roles(pair)
    await sim.go_live(700001, user_name="Solo", event_title="only once please")
    await holder.wait_log("alert.sent", rule="anyone-live")
    assert await outbox(pg_url) == [("anyone-live", "sent")]
    assert len(sends_with(fake_telegram, "only once please")) == 1
    assert len(holder.logged("role.acquired")) == 1
    assert standby.logged("role.acquired") == [] and not standby.logged("stream.connected")


async def test_sigkill_of_the_holder_hands_ingest_to_the_other_with_the_next_generation(
    pair: tuple[Instance, Instance], sim: Simulator, fake_telegram: FakeTelegram, pg_url: str
) -> None:
    holder, standby = roles(pair)
    await sim.go_live(700002, user_name="Before", event_title="before the kill")
    await holder.wait_log("alert.sent", rule="anyone-live")
    generation = holder.generation
    await holder.kill()
    taken = await standby.wait_log("role.acquired", timeout=TAKEOVER)
    assert taken["generation"] == generation + 1
    await stream_ready(standby, sim)
    await standby.wait_log("catch_up.done")  # the streamer still live is not alerted again
    await sim.go_live(700003, user_name="After", event_title="after the kill")
    await standby.wait_log("alert.sent", rule="anyone-live")
    assert len(sends_with(fake_telegram, "after the kill")) == 1
    assert len(sends_with(fake_telegram, "before the kill")) == 1
    assert await outbox(pg_url) == [("anyone-live", "sent"), ("anyone-live", "sent")]


@pytest.mark.xfail(
    strict=True,
    reason="a row leased by a dead instance waits out its whole lease (Options.lease, 120 s)"
    " before a survivor may claim it: nothing releases the leases of an instance whose"
    " sessions are gone (notifier/store/postgres.py claim/next_due)",
)
async def test_an_alert_in_flight_when_the_holder_dies_is_sent_by_the_survivor(
    pair: tuple[Instance, Instance], sim: Simulator, fake_telegram: FakeTelegram
) -> None:
    holder, standby = roles(pair)
    # The holder's send hangs (its answer, a 502, would come far too late): it dies mid-send.
    fake_telegram.fail(502, "Bad Gateway", delay=600, methods=("sendMessage", "sendPhoto"))
    await sim.go_live(700004, user_name="Stuck", event_title="stuck in flight")
    await fake_telegram.wait_for(lambda: len(sends_tried(fake_telegram)) == 1)
    await holder.kill()
    await standby.wait_log("role.acquired", timeout=TAKEOVER)
    await stream_ready(standby, sim)
    await sim.go_live(700005, user_name="Later", event_title="after the takeover")  # wakes its lane
    await standby.wait_log("alert.sent", rule="anyone-live")
    await fake_telegram.wait_for(
        lambda: len(sends_with(fake_telegram, "stuck in flight")) == 1, timeout=SURVIVOR_SENDS
    )


@pytest.mark.xfail(
    strict=True,
    reason="a survivor's delivery lanes sleep until their own writer wakes them: nothing"
    " listens to the outbox NOTIFY (PostgresStore.watch_outbox is never used), there is no"
    " polling fallback, and a takeover does not wake the lanes",
)
async def test_a_retry_pending_when_the_holder_dies_is_sent_by_the_survivor(
    pair: tuple[Instance, Instance], sim: Simulator, fake_telegram: FakeTelegram
) -> None:
    holder, standby = roles(pair)
    fake_telegram.fail(
        429, "Too Many Requests: retry after 3", retry_after=3, methods=("sendMessage", "sendPhoto")
    )
    await sim.go_live(700006, user_name="Retry", event_title="retry pending")
    await holder.wait_log("alert.retry")  # back in the outbox, due in 3 s, leased to nobody
    await holder.kill()
    await standby.wait_log("role.acquired", timeout=TAKEOVER)
    await fake_telegram.wait_for(
        lambda: len(sends_with(fake_telegram, "retry pending")) == 1, timeout=SURVIVOR_SENDS
    )


async def test_a_price_crossing_stays_crossed_across_a_takeover(
    pair: tuple[Instance, Instance], sim: Simulator, fake_telegram: FakeTelegram, pg_url: str
) -> None:
    holder, standby = roles(pair)
    for price in ("99000", "100100", "99900"):  # crossed; back in the band, not re-armed
        await sim.set_price("BTC", price)
    await holder.wait_log("alert.sent", rule="btc-100k")
    await until_stored(pg_url, '"99900"')  # the state saver's round (every 5 s) is done
    await holder.kill()
    await standby.wait_log("role.acquired", timeout=TAKEOVER)
    await stream_ready(standby, sim)
    for price in ("100200", "99000", "100300"):  # up again inside the band; re-armed; crossed
        await sim.set_price("BTC", price)
    await standby.wait_log("alert.sent", rule="btc-100k")
    btc = [parse_html(r["params"].get("text", "")) for r in sends_with(fake_telegram, "BTC")]
    assert [t.split("\n")[1] for t in btc] == [
        "Now 100,100 (+0.10% from the line)",
        "Now 100,300 (+0.30% from the line)",
    ]


@pytest.mark.xfail(
    strict=False,  # passes by chance when the 5 s state save falls between crossing and kill
    reason="the engine state (with each line's crossing count) is saved every 5 s, apart"
    " from the alerts: a successor restores an older count, and its next crossing reuses"
    " an alert key already in the outbox, so it is dropped as a duplicate",
)
async def test_a_crossing_after_a_takeover_is_alerted_when_the_holder_died_before_saving_state(
    pair: tuple[Instance, Instance], sim: Simulator, fake_telegram: FakeTelegram
) -> None:
    holder, standby = roles(pair)
    for price in ("99000", "100100", "99000", "100150", "99900"):  # two crossings
        await sim.set_price("BTC", price)
    await holder.wait_log("alert.sent", 2, rule="btc-100k")
    await holder.kill()
    await standby.wait_log("role.acquired", timeout=TAKEOVER)
    await stream_ready(standby, sim)
    for price in ("100200", "99000", "100300"):  # inside the band; re-armed; crossed
        await sim.set_price("BTC", price)
    await fake_telegram.wait_for(
        lambda: len(sends_with(fake_telegram, "100,300")) == 1, timeout=SURVIVOR_SENDS
    )
    btc = [parse_html(r["params"].get("text", "")) for r in sends_with(fake_telegram, "BTC")]
    assert [t.split("\n")[1].split(" (")[0] for t in btc] == [
        "Now 100,100",
        "Now 100,150",
        "Now 100,300",
    ]
