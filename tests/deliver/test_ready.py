"""`Ready`: what a sender made ahead for the payload it sends next."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from notifier.deliver.base import Ready
from notifier.deliver.telegram import TelegramSender
from notifier.store import SENT
from tests.deliver.harness import harness, new_alert
from tests.fakes.telegram import FakeTelegram


def counting() -> tuple[list[dict[str, Any]], Any]:
    made: list[dict[str, Any]] = []

    def make(payload: dict[str, Any]) -> str:
        made.append(payload)
        return f"rendered {payload['n']}"

    return made, make


def test_the_send_of_the_prepared_payload_takes_what_was_made_without_making_it_again() -> None:
    made, make = counting()
    ready: Ready[str] = Ready()
    payload = {"n": 1}
    ready.keep(payload, make)
    assert ready.take(payload, make) == "rendered 1"
    assert made == [payload]
    # Taken once: the next send of the same payload (a retry) makes it again.
    assert ready.take(payload, make) == "rendered 1"
    assert made == [payload, payload]


def test_another_payload_even_an_equal_one_is_made_for_itself() -> None:
    made, make = counting()
    ready: Ready[str] = Ready()
    ready.keep({"n": 1}, make)
    other = {"n": 1}  # equal, yet not the payload prepared: a send is of one payload
    assert ready.take(other, make) == "rendered 1"
    assert len(made) == 2 and made[-1] is other


def test_a_failure_while_preparing_is_left_for_the_send_to_meet() -> None:
    calls: list[int] = []

    def broken(payload: dict[str, Any]) -> str:
        calls.append(1)
        raise ValueError("cannot render")

    ready: Ready[str] = Ready()
    payload = {"n": 1}
    ready.keep(payload, broken)  # never raises
    try:
        ready.take(payload, broken)
    except ValueError as exc:
        assert str(exc) == "cannot render"
    else:
        raise AssertionError("the send must meet the failure")
    assert len(calls) == 2


async def test_an_alert_waiting_for_its_chats_window_is_already_rendered(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    # A private chat takes 1 message a second: the second alert waits in the gate for
    # the window, and its rendering is made before that wait, not after it.
    async with harness(
        tmp_path, {"dm": {"telegram": {"chat_id": 4242}}}, telegram=fake_telegram
    ) as h:
        first, second = new_alert("dm"), new_alert("dm")
        await h.enqueue(first, second)
        await h.wait_state(first.key, SENT)
        sender = h.senders.by_name["dm"]
        assert isinstance(sender, TelegramSender)
        window = sender.windows()[-1]
        async with asyncio.timeout(5):
            # The lane's task is in the gate, waiting for the window (a flag of that task).
            while not window.acquiring:  # noqa: ASYNC110
                await asyncio.sleep(0)
        assert sender.ready.kept == second.payload
        await h.wait_state(second.key, SENT)
        assert sender.ready.kept is None  # taken by its send
