"""The simulator's control API (`/_sim/`, what `notifier sim` users script it with)
answers a body it cannot use with 400 and what was wrong, never a 500."""

from __future__ import annotations

import httpx
import pytest

from notifier.parti.simulator import P as PREFIX
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
API_ROUTES = tuple(
    PREFIX + route
    for route in (
        "/livestream_calendar/events",
        "/get_livestream_channel_info/live",
        "/assets_prices/info",
        "/user_profile/463000",
    )
)
HOSTILE = (
    b'{"user_id": "x"}',
    b'{"user_id": null}',
    b'{"user_id": [1]}',
    b'{"status": "x", "count": "y", "retry_after": "z"}',
    b'{"symbol": "BTC", "price": "lots"}',
    b'{"event_start_ts": 1800000000}',
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
        # The simulator still works afterwards, its Parti routes too.
        assert (await http.get("/_sim/state")).status_code == 200
        for path in API_ROUTES if route != "fail" else ():  # (fail queues failures: its job)
            answer = await http.get(path)
            assert answer.status_code == 200, (route, path, answer.status_code)


@pytest.mark.parametrize("timeout", ["soon", "nan", "-1", "inf"])
async def test_a_wait_with_a_timeout_that_is_not_seconds_is_a_400(
    sim: Simulator, timeout: str
) -> None:
    async with httpx.AsyncClient(base_url=sim.api_url, trust_env=False) as http:
        answer = await http.get("/_sim/wait", params={"timeout": timeout})
    assert answer.status_code == 400 and "bad request" in answer.json()["error"]


async def test_a_calendar_event_is_taken_only_as_parti_would_send_it(sim: Simulator) -> None:
    # One event without its streamer would make every later calendar page unreadable.
    async with httpx.AsyncClient(base_url=sim.api_url, trust_env=False) as http:
        refused = await http.post("/_sim/calendar", json={"event_start_ts": 1800000000})
        taken = await http.post(
            "/_sim/calendar", json={"event_start_ts": 1800000000, "user_id": 463000}
        )
        page = await http.get(PREFIX + "/livestream_calendar/events")
    assert refused.status_code == 400 and "user_id" in refused.json()["error"]
    assert taken.status_code == 200
    events = [(e["user_id"], e["event_start_ts"]) for e in page.json()]
    assert (463000, 1800000000) in events and all(isinstance(u, int) for u, _ in events)
