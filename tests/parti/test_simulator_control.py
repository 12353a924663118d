"""The simulator's control API (`/_sim/`, what `notifier sim` users script it with)
answers a body it cannot use with 400 and what was wrong, never a 500."""

from __future__ import annotations

import httpx
import pytest

from notifier.parti.simulator import Simulator

POSTS = (
    "live",
    "offline",
    "price",
    "drop",
    "pings",
    "silent",
    "ws",
    "fail",
    "calendar",
    "profile",
)
HOSTILE = (
    b'{"user_id": "x"}',
    b'{"user_id": null}',
    b'{"user_id": [1]}',
    b'{"status": "x", "count": "y", "retry_after": "z"}',
    b'{"symbol": "BTC", "price": "lots"}',
    b'{"user_id": 1, "no_such_field": 1}',
    b"[]",
    b'"text"',
    b"not json",
    b"{}",
)


@pytest.mark.parametrize("route", POSTS)
async def test_every_control_route_refuses_a_hostile_body_without_a_500(
    sim: Simulator, route: str
) -> None:
    async with httpx.AsyncClient(base_url=sim.api_url, trust_env=False) as http:
        for body in HOSTILE:
            answer = await http.post(
                f"/_sim/{route}", content=body, headers={"Content-Type": "application/json"}
            )
            assert answer.status_code < 500, (route, body, answer.status_code, answer.text)
            if answer.status_code == 400:
                assert answer.json()["error"].startswith("bad request")
        # The simulator still works afterwards.
        assert (await http.get("/_sim/state")).status_code == 200


async def test_a_wait_with_a_timeout_that_is_not_a_number_is_a_400(sim: Simulator) -> None:
    async with httpx.AsyncClient(base_url=sim.api_url, trust_env=False) as http:
        answer = await http.get("/_sim/wait", params={"timeout": "soon"})
    assert answer.status_code == 400 and "bad request" in answer.json()["error"]
