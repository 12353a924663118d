"""`Ready`: what a sender made ahead for the payload it sends next."""

from __future__ import annotations

from typing import Any

from notifier.deliver.base import Ready


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
    other = {"n": 2}
    assert ready.take(other, make) == "rendered 2"
    assert made[-1] is other


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
