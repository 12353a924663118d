"""Several `notifier run` instances on one PostgreSQL database: one ingest holder, a
takeover after SIGKILL with the next generation, and no alert lost or sent twice."""

from __future__ import annotations

import asyncio
import signal
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
SURVIVOR_SENDS = 8.0  # seconds a survivor may take to send what the dead holder left


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


async def until_db(
    url: str, query: str, done: Callable[[list[tuple[Any, ...]]], bool], timeout: float = 15.0
) -> list[tuple[Any, ...]]:
    """The rows of `query` once `done` holds for them. The writer and the state saver log
    nothing per row, so this polls the shared database."""
    async with (
        asyncio.timeout(timeout),
        await psycopg.AsyncConnection.connect(url, autocommit=True) as conn,
    ):
        while True:
            rows = await (await conn.execute(query)).fetchall()
            if done(rows):
                return rows
            await asyncio.sleep(0.2)  # polling a database: nothing to wait on


OUTBOX = "SELECT rule, state FROM alerts ORDER BY created_at"
CROSSINGS = (
    "SELECT payload->'view'->'fields'->>'price' FROM alerts"
    " WHERE rule = 'btc-100k' ORDER BY created_at"
)


def prices(rows: list[tuple[Any, ...]]) -> list[str]:
    return [str(price) for (price,) in rows]


@pytest.fixture
async def pair(
    tmp_path: Path, pg_url: str, sim: Simulator, fake_telegram: FakeTelegram
) -> AsyncIterator[tuple[Instance, Instance]]:
    """Instance a holding ingest (started first, so it also sends to the one destination),
    and instance b, started once a's stream is subscribed, on standby."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    env = daemon_env(tmp_path, sim, fake_telegram, NOTIFIER_DATABASE_URL=pg_url)
    a, b = Instance("a", env, rules), Instance("b", env, rules)
    try:
        await a.start()
        await a.wait_log("role.acquired", timeout=TAKEOVER)
        await stream_ready(a, sim)
        # The first start's poll records the streams already live (not alerted): a
        # successor would otherwise alert them as caught up.
        await a.wait_log("catch_up.done", skipped_on_first_start=len(sim.live_channels))
        await b.start()
        yield a, b
    finally:
        await asyncio.gather(a.stop(), b.stop())


async def take_over(a: Instance, b: Instance, sim: Simulator) -> dict[str, Any]:
    """SIGKILL a (the holder); b's role.acquired line, once its stream is subscribed."""
    await a.kill()
    taken = await b.wait_log("role.acquired", timeout=TAKEOVER)
    await stream_ready(b, sim)
    return taken


async def test_two_instances_one_ingest_holder_and_one_alert_per_go_live(
    pair: tuple[Instance, Instance], sim: Simulator, fake_telegram: FakeTelegram, pg_url: str
) -> None:
    a, b = pair
    await sim.go_live(700001, user_name="Solo", event_title="only once please")
    await fake_telegram.wait_for(lambda: len(sends_with(fake_telegram, "only once please")) == 1)
    await until_db(pg_url, OUTBOX, lambda rows: rows == [("anyone-live", "sent")])
    assert len(sends_tried(fake_telegram)) == 1
    assert len(a.logged("role.acquired")) == 1
    assert b.logged("role.acquired") == [] and not b.logged("stream.connected")


async def test_sigkill_of_the_holder_hands_ingest_to_the_other_with_the_next_generation(
    pair: tuple[Instance, Instance], sim: Simulator, pg_url: str
) -> None:
    a, b = pair
    await sim.go_live(700002, user_name="Before", event_title="before the kill")
    await until_db(pg_url, OUTBOX, lambda rows: rows == [("anyone-live", "sent")])
    generation = a.generation
    taken = await take_over(a, b, sim)
    assert taken["generation"] == generation + 1
    await b.wait_log("catch_up.done")  # "Before" is still live: not written again
    await sim.go_live(700003, user_name="After", event_title="after the kill")
    rows = await until_db(pg_url, OUTBOX, lambda rows: len(rows) == 2)
    assert rows[0] == ("anyone-live", "sent")


async def test_a_go_live_after_a_takeover_is_sent_by_the_survivor(
    pair: tuple[Instance, Instance], sim: Simulator, fake_telegram: FakeTelegram
) -> None:
    a, b = pair
    await take_over(a, b, sim)
    await sim.go_live(700004, user_name="After", event_title="sent by the survivor")
    await fake_telegram.wait_for(
        lambda: len(sends_with(fake_telegram, "sent by the survivor")) == 1,
        timeout=SURVIVOR_SENDS,
    )


async def test_an_alert_in_flight_when_the_holder_dies_is_sent_by_the_survivor(
    pair: tuple[Instance, Instance], sim: Simulator, fake_telegram: FakeTelegram
) -> None:
    a, b = pair
    # a's send hangs (its answer, a 502, would come far too late): it dies mid-send.
    fake_telegram.fail(502, "Bad Gateway", delay=600, methods=("sendMessage", "sendPhoto"))
    await sim.go_live(700005, user_name="Stuck", event_title="stuck in flight")
    await fake_telegram.wait_for(lambda: len(sends_tried(fake_telegram)) == 1)
    await take_over(a, b, sim)
    await fake_telegram.wait_for(
        lambda: len(sends_with(fake_telegram, "stuck in flight")) == 1, timeout=SURVIVOR_SENDS
    )


async def test_a_price_crossing_stays_crossed_across_a_takeover(
    pair: tuple[Instance, Instance], sim: Simulator, pg_url: str
) -> None:
    a, b = pair
    for price in ("99000", "100100", "99900"):  # crossed; back in the band, not re-armed
        await sim.set_price("BTC", price)
    await until_db(pg_url, CROSSINGS, lambda rows: len(rows) == 1)
    # The state saver's round (every 5 s) has stored the crossed line and the last price.
    await until_db(
        pg_url, "SELECT value FROM kv WHERE name = 'engine_state'", lambda r: "99900" in str(r)
    )
    await take_over(a, b, sim)
    for price in ("100200", "99000", "100300"):  # up inside the band; re-armed; crossed
        await sim.set_price("BTC", price)
    rows = await until_db(pg_url, CROSSINGS, lambda rows: len(rows) == 2)
    assert prices(rows) == ["100,100", "100,300"]


async def test_a_crossing_after_a_takeover_is_written_when_the_holder_died_before_saving(
    pair: tuple[Instance, Instance], sim: Simulator, pg_url: str
) -> None:
    a, b = pair
    for price in ("99000", "100100", "99000", "100150", "99900"):  # two crossings
        await sim.set_price("BTC", price)
    await until_db(pg_url, CROSSINGS, lambda rows: len(rows) == 2, timeout=SURVIVOR_SENDS)
    await take_over(a, b, sim)
    for price in ("100200", "99000", "100300"):  # up inside the band; re-armed; crossed
        await sim.set_price("BTC", price)
    rows = await until_db(pg_url, CROSSINGS, lambda rows: len(rows) == 3, timeout=SURVIVOR_SENDS)
    assert prices(rows) == ["100,100", "100,150", "100,300"]


async def role_backend(url: str, role: str) -> int:
    """The server process whose session holds `role`'s advisory lock."""
    from notifier.store.roles import role_key

    key = role_key(role)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        found = await (
            await conn.execute(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND classid = %s::bigint::oid AND objid = %s::bigint::oid",
                ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF),
            )
        ).fetchone()
        assert found is not None, f"nobody holds {role}"
        return int(found[0])


SLOW_SEND = 8.0  # a's send in flight outlasts b's takeover (TAKEOVER)


async def test_a_holder_cut_off_from_its_role_keeps_its_send_and_nothing_goes_twice(
    pair: tuple[Instance, Instance], sim: Simulator, fake_telegram: FakeTelegram, pg_url: str
) -> None:
    """Only the ingest lock's connection of a is cut (a killed backend, a proxy's idle
    kill) and b takes the role before a stands again (a is frozen meanwhile, so b wins
    that race every time): a is alive and still sending what it leased, so b must not
    release a's leases (it would send them again)."""
    a, b = pair
    fake_telegram.fail(200, "slow", delay=SLOW_SEND / 2, methods=("sendMessage", "sendPhoto"))
    await sim.go_live(700010, user_name="Cut", event_title="cut off but alive")
    await fake_telegram.wait_for(lambda: len(sends_tried(fake_telegram)) == 1)
    a.send(signal.SIGSTOP)
    try:
        async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as admin:
            await admin.execute(
                "SELECT pg_terminate_backend(%s)", (await role_backend(pg_url, "ingest"),)
            )
        await b.wait_log("role.acquired", timeout=TAKEOVER)
        await b.wait_log("role.previous_alive", holder="a", timeout=TAKEOVER)
    finally:
        a.send(signal.SIGCONT)
    await until_db(pg_url, OUTBOX, lambda rows: rows == [("anyone-live", "sent")], timeout=30)
    assert len(sends_with(fake_telegram, "cut off but alive")) == 1
    assert len(sends_tried(fake_telegram)) == 1
    assert not b.logged("role.released_dead")
    assert a.logged("instance.lock_lost") == []  # only its role's session was cut


async def test_a_holder_stopping_mid_send_hands_the_role_over_without_a_second_send(
    pair: tuple[Instance, Instance], sim: Simulator, fake_telegram: FakeTelegram, pg_url: str
) -> None:
    """SIGTERM gives the ingest role back before the drain ends: b takes it while a's
    send is in flight, and releases a's leases only once a has gone."""
    a, b = pair
    fake_telegram.fail(200, "slow", delay=SLOW_SEND / 2, methods=("sendMessage", "sendPhoto"))
    await sim.go_live(700011, user_name="Leaving", event_title="sent while stopping")
    await fake_telegram.wait_for(lambda: len(sends_tried(fake_telegram)) == 1)
    stopping = asyncio.create_task(a.stop())
    await b.wait_log("role.previous_alive", holder="a", timeout=TAKEOVER)
    await stopping
    assert a.logged("app.stopped")
    await b.wait_log("role.released_dead", holder="a", timeout=TAKEOVER)
    await until_db(pg_url, OUTBOX, lambda rows: rows == [("anyone-live", "sent")])
    assert len(sends_tried(fake_telegram)) == 1


async def test_a_second_process_with_a_running_instance_name_leaves_its_leases_alone(
    pair: tuple[Instance, Instance], sim: Simulator, fake_telegram: FakeTelegram, pg_url: str
) -> None:
    """A start releases the leases of its own name (the last run's, orphaned): not while
    another process of that name runs and is sending them."""
    a, _ = pair
    fake_telegram.fail(200, "slow", delay=SLOW_SEND, methods=("sendMessage", "sendPhoto"))
    await sim.go_live(700012, user_name="Twin", event_title="sent by the first a")
    await fake_telegram.wait_for(lambda: len(sends_tried(fake_telegram)) == 1)
    twin = Instance("a", a.env, a.rules)
    try:
        await twin.start()
        await twin.wait_log("instance.name_in_use", instance="a")
        assert not twin.logged("outbox.recovered")
        await until_db(pg_url, OUTBOX, lambda rows: rows == [("anyone-live", "sent")], timeout=30)
        assert len(sends_tried(fake_telegram)) == 1
    finally:
        await twin.stop()


async def test_a_holder_cut_off_from_both_its_locks_sends_nothing_it_no_longer_holds(
    pair: tuple[Instance, Instance], sim: Simulator, fake_telegram: FakeTelegram, pg_url: str
) -> None:
    """A database blip cuts both of a's sessions (its ingest lock's and its instance
    lock's) while a is frozen: b takes over, finds a gone and frees a's leases, and sends
    a's two alerts. a wakes up with the first still in flight (the one send the promise
    allows twice) and the second waiting in its lane: that one it must not send."""
    a, b = pair
    fake_telegram.fail(200, "slow", delay=SLOW_SEND / 2, methods=("sendMessage", "sendPhoto"))
    await sim.go_live(700013, user_name="First", event_title="in flight at the cut")
    await fake_telegram.wait_for(lambda: len(sends_tried(fake_telegram)) == 1)
    await sim.go_live(700014, user_name="Second", event_title="waiting at the cut")
    await until_db(
        pg_url,
        "SELECT lease_owner FROM alerts WHERE payload::text LIKE '%waiting at the cut%'",
        lambda rows: rows == [("a",)],
    )
    a.send(signal.SIGSTOP)
    try:
        async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as admin:
            for role in ("ingest", "instance:a"):
                await admin.execute(
                    "SELECT pg_terminate_backend(%s)", (await role_backend(pg_url, role),)
                )
        await b.wait_log("role.released_dead", holder="a", timeout=TAKEOVER)
        await fake_telegram.wait_for(
            lambda: len(sends_with(fake_telegram, "waiting at the cut")) == 1,
            timeout=SURVIVOR_SENDS,
        )
    finally:
        a.send(signal.SIGCONT)
    await a.wait_log("instance.lock_lost", timeout=TAKEOVER)
    await until_db(pg_url, OUTBOX, lambda rows: rows == [("anyone-live", "sent")] * 2, timeout=30)
    await a.wait_log("alert.record_refused", timeout=TAKEOVER)  # the one in flight
    await a.wait_log("alert.lease_lost", timeout=TAKEOVER)  # the waiting one: not sent
    assert len(sends_with(fake_telegram, "waiting at the cut")) == 1
