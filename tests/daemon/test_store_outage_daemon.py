"""The whole daemon across a store outage. A stop while the store refuses to record sends:
what the chat API answered is kept in a file beside the state and recorded by the next
start, so no alert goes out twice. The store answering again: every part waiting it out
tries again at once, and /healthz is 200 again within moments, not after a backoff."""

from __future__ import annotations

import asyncio
import io
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from notifier import app as app_module
from notifier.app import App, Options
from notifier.outbox import unrecorded
from notifier.parti.decode import LIVE
from notifier.parti.simulator import Simulator
from notifier.stages.delivery import DeliveryHolder
from notifier.store import StoreUnavailable, open_store, outage
from notifier.store.sqlite import SqliteStore
from notifier.store.types import SENDING, SENT
from tests.daemon.helpers import inprocess_app_files

TITLE = "Only once please"
REFUSED = "database is locked"


class Refusing:
    """The store's records of sends fail, as a lost database's do, while `down`; with
    `hang`, they never answer at all (a pool waiting for a connection, a lock held)."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, *, hang: bool = False, store: type = SqliteStore
    ) -> None:
        self.down = True
        self.hang = hang
        self.refused = asyncio.Event()
        for name in ("mark_sent", "mark_sent_many"):
            monkeypatch.setattr(store, name, self._refusing(getattr(store, name)))

    def _refusing(self, call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def refusing(store: Any, *args: Any, **kwargs: Any) -> Any:
            if self.down:
                self.refused.set()
                if self.hang:
                    await asyncio.Event().wait()  # until the stop cancels it
                raise StoreUnavailable(REFUSED)
            return await call(store, *args, **kwargs)

        return refusing


def new_app(
    tmp_path: Path,
    sim: Simulator,
    console: io.StringIO,
    *,
    http_addr: str = "",
    drain_deadline: float = 10.0,
    database_url: str | None = None,
) -> App:
    rules, settings = inprocess_app_files(
        tmp_path, sim, http_addr=http_addr, instance="host/one", database_url=database_url
    )
    options = Options(
        reconnect_base=0.05,
        reconnect_cap=0.1,
        console_stream=console,
        drain_deadline=drain_deadline,
    )
    return App(settings, rules_path=str(rules), options=options)


def journal(tmp_path: Path) -> Path:
    return unrecorded.unrecorded_path(str(tmp_path / "s.db"), "host/one")


async def send_then_stop(
    tmp_path: Path,
    sim: Simulator,
    refusing: Refusing,
    *,
    drain_deadline: float = 10.0,
    database_url: str | None = None,
) -> io.StringIO:
    """A daemon sends one alert, cannot record it, and is stopped (SIGTERM's path)."""
    console = io.StringIO()
    first = new_app(
        tmp_path, sim, console, drain_deadline=drain_deadline, database_url=database_url
    )
    task = asyncio.create_task(first.run())
    async with asyncio.timeout(20):
        await first.connected_once.wait()
        await sim.wait_subscribed(LIVE)
        await sim.go_live(463000, event_title=TITLE)
        await refusing.refused.wait()  # sent, and its record refused
    first.request_stop()
    assert await task == 0
    assert console.getvalue().count(TITLE) == 1
    return console


async def states(tmp_path: Path, database_url: str | None = None) -> dict[str, int]:
    target = database_url or str(tmp_path / "s.db")
    store = await open_store(target, instance="looking", durable=False)
    try:
        return await store.counts()
    finally:
        await store.close()


async def start_again(
    tmp_path: Path, sim: Simulator, database_url: str | None = None
) -> tuple[App, asyncio.Task[int], io.StringIO]:
    console = io.StringIO()
    second = new_app(tmp_path, sim, console, database_url=database_url)
    task = asyncio.create_task(second.run())
    async with asyncio.timeout(20):
        await second.ready.wait()  # its leases are released by now
    return second, task, console


@pytest.mark.parametrize("hang", [False, True], ids=["refused", "no-answer-by-the-deadline"])
async def test_a_send_the_store_refused_before_a_stop_is_not_sent_again_after_it(
    tmp_path: Path,
    sim: Simulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    hang: bool,
) -> None:
    """Refused, or still not answered when the stop's drain deadline passes (the record
    is then cancelled): either way it is kept for the next start."""
    refusing = Refusing(monkeypatch, hang=hang)
    monkeypatch.setattr(app_module, "UNRECORDED_LAST_TRY", 0.2)
    with caplog.at_level(logging.INFO, logger="notifier"):
        await send_then_stop(tmp_path, sim, refusing, drain_deadline=0.3 if hang else 10.0)
    (kept,) = [r for r in caplog.records if r.getMessage() == "outbox.unrecorded_kept"]
    assert kept.levelno == logging.WARNING and not kept.exc_info
    assert journal(tmp_path).exists()
    assert await states(tmp_path) == {SENDING: 1}  # still leased to the stopped instance
    refusing.down = False  # the store answers again
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="notifier"):
        second, task, console = await start_again(tmp_path, sim)
        # Recorded before the start released its leases: the row was never due again.
        assert await states(tmp_path) == {SENT: 1}
        second.request_stop()
        assert await task == 0
    assert TITLE not in console.getvalue()
    assert not journal(tmp_path).exists()
    assert "outbox.unrecorded_recorded" in [r.getMessage() for r in caplog.records]


async def test_a_store_that_answers_again_at_the_stop_records_the_sends_there(
    tmp_path: Path, sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    refusing = Refusing(monkeypatch)
    collect = DeliveryHolder.unrecorded

    def store_back(holder: DeliveryHolder) -> list[tuple[str, str | None]]:
        sent = collect(holder)
        assert len(sent) == 1  # the lanes gave up on it
        refusing.down = False
        return sent

    monkeypatch.setattr(DeliveryHolder, "unrecorded", store_back)
    await send_then_stop(tmp_path, sim, refusing)
    assert not journal(tmp_path).exists()
    assert await states(tmp_path) == {SENT: 1}


async def test_a_stop_that_cannot_keep_the_sends_says_so_in_one_line(
    tmp_path: Path,
    sim: Simulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    refusing = Refusing(monkeypatch)
    monkeypatch.setattr(app_module, "UNRECORDED_LAST_TRY", 0.2)
    journal(tmp_path).with_name(journal(tmp_path).name + ".new").mkdir()  # cannot be written
    with caplog.at_level(logging.INFO, logger="notifier"):
        await send_then_stop(tmp_path, sim, refusing)
    (lost,) = [r for r in caplog.records if r.getMessage() == "outbox.unrecorded_lost"]
    assert lost.levelno == logging.ERROR and not lost.exc_info


def test_a_file_that_cannot_be_written_whole_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "x.unrecorded"
    unrecorded.keep(path, [("a", "1")])

    def full(*_: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError):
        unrecorded.keep(path, [("b", "2")])
    assert sorted(os.listdir(tmp_path)) == ["x.unrecorded"]
    assert unrecorded.load(path) == [("a", "1")]  # the last whole file


@pytest.mark.parametrize(
    "content",
    [
        "",
        "not json",
        "[]",
        '{"sent": {}}',
        '{"sent": [["k"]]}',
        '{"sent": [[1, null]]}',
        '{"sent": [["k", 5]]}',
        '{"sent": [["k", null, "x"]]}',
        '{"sent": "k"}',
        "\ud800".encode("utf-8", "surrogatepass").decode("latin-1"),
    ],
)
async def test_a_start_that_cannot_read_the_file_says_so_and_goes_on(
    tmp_path: Path,
    sim: Simulator,
    caplog: pytest.LogCaptureFixture,
    content: str,
) -> None:
    journal(tmp_path).write_text(content, encoding="latin-1")
    with caplog.at_level(logging.INFO, logger="notifier"):
        second, task, _ = await start_again(tmp_path, sim)
        second.request_stop()
        assert await task == 0
    (unreadable,) = [r for r in caplog.records if r.getMessage() == "outbox.unrecorded_unreadable"]
    assert unreadable.levelno == logging.WARNING and not unreadable.exc_info
    assert not journal(tmp_path).exists()  # the next stop writes a new one there
    aside = journal(tmp_path).with_name(journal(tmp_path).name + ".unreadable")
    assert aside.read_text(encoding="latin-1") == content  # kept for a person to look at


def test_a_file_that_is_not_ours_is_moved_aside_not_written_over(tmp_path: Path) -> None:
    path = tmp_path / "x.unrecorded"
    path.write_text("not json")
    unrecorded.keep(path, [("a", "1")])
    assert unrecorded.load(path) == [("a", "1")]
    assert (tmp_path / "x.unrecorded.unreadable").read_text() == "not json"


def test_the_file_keeps_every_send_across_stops_and_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "x.unrecorded"
    unrecorded.keep(path, [("a", "1"), ("b", None)])
    unrecorded.keep(path, [("b", None), ("c", "3")])
    assert unrecorded.load(path) == [("a", "1"), ("b", None), ("c", "3")]
    assert sorted(os.listdir(tmp_path)) == ["x.unrecorded"]


def test_each_instance_has_its_own_file_named_safely() -> None:
    one = unrecorded.unrecorded_path("/var/lib/n/notifier.db", "host/../one")
    two = unrecorded.unrecorded_path("/var/lib/n/notifier.db", "host-two")
    assert one.parent == two.parent == Path("/var/lib/n")
    assert one != two and "/" not in one.name
    # Names that read the same once made safe still get files of their own.
    assert unrecorded.unrecorded_path("s.db", "host/one") != unrecorded.unrecorded_path(
        "s.db", "host_one"
    )
    assert unrecorded.unrecorded_path("s.db", "").name.startswith("s.db.-")


async def test_healthz_is_200_again_as_soon_as_the_store_answers(
    tmp_path: Path, sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each part waits up to a minute between tries here: only the store answering
    another part (the /healthz probe, then the lane's retry) ends the lane's wait."""
    monkeypatch.setattr(outage, "full_jitter", lambda *_, cap, **__: cap)
    monkeypatch.setattr(outage, "RETRY_CAP", 60.0)
    monkeypatch.setattr(outage, "WAKE_EVERY", 0.0)  # the probe at 503 woke it once already
    refusing = Refusing(monkeypatch)
    console = io.StringIO()
    running = new_app(tmp_path, sim, console, http_addr="127.0.0.1:0")
    task = asyncio.create_task(running.run())
    try:
        async with asyncio.timeout(20):
            await running.connected_once.wait()
            await sim.wait_subscribed(LIVE)
            await sim.go_live(463000, event_title=TITLE)
            await refusing.refused.wait()  # sent; the lane waits out the outage
        base = f"http://127.0.0.1:{running.http_port}"
        delivery = running.holder.current
        async with httpx.AsyncClient(base_url=base, trust_env=False) as http:
            answer = await http.get("/healthz")
            assert answer.status_code == 503
            assert answer.json()["reason"] == f"store failing: StoreUnavailable: {REFUSED}"
            refusing.down = False
            async with asyncio.timeout(10), delivery.settled:
                await http.get("/healthz")  # its probe finds the store answering
                await delivery.settled.wait_for(lambda: delivery.store_error is None)
            assert (await http.get("/healthz")).status_code == 200
        assert await states(tmp_path) == {SENT: 1}
    finally:
        running.request_stop()
        assert await task == 0
    assert console.getvalue().count(TITLE) == 1


async def test_with_postgresql_too_a_send_refused_before_a_stop_is_not_sent_again(
    tmp_path: Path, sim: Simulator, monkeypatch: pytest.MonkeyPatch, pg_url: str
) -> None:
    """The same with a real PostgreSQL: the file is beside NOTIFIER_STATE_PATH, and the
    start records the sends while their rows are still leased to this instance."""
    from notifier.store.postgres import PostgresStore

    refusing = Refusing(monkeypatch, store=PostgresStore)
    monkeypatch.setattr(app_module, "UNRECORDED_LAST_TRY", 0.2)
    await send_then_stop(tmp_path, sim, refusing, database_url=pg_url)
    assert journal(tmp_path).exists()
    assert await states(tmp_path, pg_url) == {SENDING: 1}
    refusing.down = False
    second, task, console = await start_again(tmp_path, sim, pg_url)
    assert await states(tmp_path, pg_url) == {SENT: 1}
    second.request_stop()
    assert await task == 0
    assert TITLE not in console.getvalue()
    assert not journal(tmp_path).exists()
