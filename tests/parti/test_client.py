"""The HTTP client against the simulator on a real socket: every route, filters, pages, failures."""

from __future__ import annotations

import logging
from decimal import Decimal

import httpx
import pytest
from aiohttp import web

from notifier.parti import client as client_module
from notifier.parti.client import BadAnswer, NotFound, PartiClient, Unavailable
from notifier.parti.simulator import Simulator
from tests.fakes.common import served


class SleepRecorder:
    """Stands in for asyncio.sleep so retry delays are observed, not waited."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def client_for(sim: Simulator, **options: object) -> PartiClient:
    return PartiClient(sim.api_url, **options)  # type: ignore[arg-type]


async def test_categories_route_returns_the_demo_categories(sim: Simulator) -> None:
    async with client_for(sim) as client:
        categories = await client.categories()
    by_id = {c.category_id: c for c in categories}
    assert len(categories) == 21
    assert by_id[7].name == "Gaming"
    assert by_id[16].label == "Valorant", "a category with an empty name shows its display name"


async def test_live_route_honours_limit_and_offset(sim: Simulator) -> None:
    async with client_for(sim) as client:
        first = await client.live(limit=3)
        second = await client.live(limit=3, offset=3)
    assert [c.user_name for c in first] == ["DBR", "BalthierGR", "Sourfarmer"]
    assert [c.user_name for c in second] == ["TrueBarrz"]
    assert first[0].viewers_count == 200


async def test_iter_live_follows_pages_to_the_end(sim: Simulator) -> None:
    for n in range(250):
        sim.live_channels[1_000_000 + n] = {
            "user_id": 1_000_000 + n,
            "user_name": f"u{n}",
            "viewers_count": 1,
        }
    async with client_for(sim) as client:
        ids = [c.user_id async for c in client.iter_live(page_size=100)]
    assert len(ids) == 254
    assert len(set(ids)) == 254
    assert sim.requests["/parti_v2/profile/get_livestream_channel_info/live"] == 3


async def test_calendar_route_and_its_pagination(sim: Simulator) -> None:
    async with client_for(sim) as client:
        page = await client.calendar(limit=2)
        every = [e.event_id async for e in client.iter_calendar(page_size=2)]
    assert [e.event_id for e in page] == [80292, 63403]
    assert every == [80292, 63403, 15207]


async def test_featured_route(sim: Simulator) -> None:
    async with client_for(sim) as client:
        featured = await client.featured()
    assert [(f.user_name, f.members) for f in featured][:2] == [
        ("SNEAKO", 4340),
        ("Jack Doherty", 3846),
    ]


@pytest.mark.parametrize(
    ("filters", "expected_first", "all_in_category"),
    [
        ({}, "ElementalMJ", None),
        ({"categories": 10}, "Sourfarmer", "Music"),
        ({"categories": 7}, "Genxgaming0_1", "Gaming"),
        ({"categories": "NaN"}, "ElementalMJ", None),
        ({"top_views_sort": True}, "Jack Doherty", None),
    ],
    ids=["default", "category-10", "category-7", "no-category", "top-views"],
)
async def test_recent_route_filters_like_parti(
    sim: Simulator, filters: dict[str, object], expected_first: str, all_in_category: str | None
) -> None:
    async with client_for(sim) as client:
        recent = await client.recent(
            from_ts=1627948800,
            to_ts=2229292800,
            limit=15,
            **filters,  # type: ignore[arg-type]
        )
    assert recent[0].user_name == expected_first
    if all_in_category:
        assert {r.category_name for r in recent} == {all_in_category}


async def test_recent_time_range_and_followed_only(sim: Simulator) -> None:
    async with client_for(sim) as client:
        window = await client.recent(from_ts=1747400000, to_ts=1747430000)
        followed = await client.recent(followed_only=True)
    assert {r.event_id for r in window} == {80642, 80628, 80608, 80553}
    assert followed == []


async def test_iter_recent_pages_with_filters(sim: Simulator) -> None:
    async with client_for(sim) as client:
        ids = [r.event_id async for r in client.iter_recent(page_size=4, top_views_sort=True)]
    assert len(ids) == 11
    assert ids[0] == 73640


async def test_prices_are_decimals(sim: Simulator) -> None:
    async with client_for(sim) as client:
        prices = {p.display_symbol: p for p in await client.prices()}
    assert prices["BTC"].price == Decimal("103510")
    assert prices["TSLA"].direction == "down"


async def test_profile_route_and_unknown_user(sim: Simulator) -> None:
    async with client_for(sim) as client:
        profile = await client.profile(123456)
        with pytest.raises(NotFound, match=r"/user_profile/999 -> 404"):
            await client.profile(999)
    assert profile.user_name == "Inquisitive Mink"
    assert profile.social_username == "bmw_cmbk"


async def test_lookup_routes(sim: Simulator) -> None:
    async with client_for(sim) as client:
        by_name = await client.user_id_from_name("jack doherty")
        by_social = await client.user_by_social_media("telegram", "bmw_cmbk")
        live = await client.channel(353044)
        offline = await client.channel(463000)
        ended = await client.recent_event(80553)
    assert by_name == 348242
    assert by_social == 123456
    assert live.is_streaming_live_now and live.channel_info.channel.is_live
    assert live.channel_info.channel.livestream_id == 7862
    assert not offline.is_streaming_live_now
    assert ended.event_title == "Games and Music"


async def test_client_sends_browser_origin_and_user_agent(sim: Simulator) -> None:
    seen: dict[str, str] = {}

    async def record(request: httpx.Request) -> None:
        seen.update(request.headers)

    async with client_for(sim) as client:
        client._http.event_hooks["request"].append(record)
        await client.featured()
    assert seen["origin"] == "https://parti.com"
    assert "Mozilla/5.0" in seen["user-agent"]


async def test_client_retries_5xx_with_growing_jittered_backoff(sim: Simulator) -> None:
    sim.fail_next(503, count=2)
    sleep = SleepRecorder()
    async with client_for(sim, sleep=sleep, rand=lambda: 1.0, backoff_base=0.5) as client:
        featured = await client.featured()
    assert len(featured) == 3
    assert sleep.delays == [0.5, 1.0]
    assert sim.requests["/parti_v2/profile/featured_channels"] == 3


async def test_client_gives_up_after_retries_with_unavailable(sim: Simulator) -> None:
    sim.fail_next(502, count=10)
    async with client_for(sim, sleep=SleepRecorder(), retries=2) as client:
        with pytest.raises(Unavailable, match=r"/featured_channels -> 502"):
            await client.featured()
    assert sim.requests["/parti_v2/profile/featured_channels"] == 3


async def test_client_honours_retry_after_on_429(sim: Simulator) -> None:
    sim.fail_next(429, count=1, retry_after=7)
    sleep = SleepRecorder()
    async with client_for(sim, sleep=sleep, rand=lambda: 0.0) as client:
        await client.prices()
    assert sleep.delays == [7.0]


async def test_client_caps_an_absurd_retry_after(sim: Simulator) -> None:
    sim.fail_next(429, count=1, retry_after=86400)
    sleep = SleepRecorder()
    async with client_for(sim, sleep=sleep) as client:
        await client.prices()
    assert sleep.delays == [60.0]


async def test_client_does_not_retry_other_4xx(sim: Simulator) -> None:
    sim.fail_next(400, count=1)
    sleep = SleepRecorder()
    async with client_for(sim, sleep=sleep) as client:
        with pytest.raises(BadAnswer, match="400"):
            await client.prices()
    assert sleep.delays == []


async def test_client_retries_refused_connections_then_reports_unavailable() -> None:
    sim = Simulator()
    await sim.start()
    url = sim.api_url
    await sim.stop()  # nothing listens on that port now
    sleep = SleepRecorder()
    async with PartiClient(url, sleep=sleep, retries=2) as client:
        with pytest.raises(Unavailable, match="ConnectError"):
            await client.featured()
    assert len(sleep.delays) == 2


async def test_client_reports_a_wrong_shape_as_bad_answer(sim: Simulator) -> None:
    sim.profiles[5] = {"user_name": "no id"}
    async with client_for(sim) as client:
        with pytest.raises(BadAnswer, match=r"/user_profile/5 -> 200: user_id"):
            await client.profile(5)


# ---- a Parti that answers what httpx or the JSON parser refuses -------------------------


def hostile(kind: str) -> web.Application:
    """Every route answers the way `kind` names: each must be one of the client's errors."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if kind == "redirect loop":
            raise web.HTTPFound(request.path)
        if kind == "not gzip":
            headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
            return web.Response(body=b"not gzip at all", headers=headers)
        if kind == "html page":
            return web.Response(text="<html>[1, 2]</html>", content_type="text/html")
        if kind == "invalid json":
            return web.Response(text="[{]", content_type="application/json")
        if kind == "oversized":
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            for _ in range(20):
                await response.write(b" " * 1000)
            await response.write_eof()
            return response
        assert kind == "oversized, declared"
        return web.json_response([{"category_id": 1, "name": "x" * 5000}])

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    return app


EVERY_ROUTE = {
    "categories": lambda c: c.categories(),
    "live": lambda c: c.live(),
    "calendar": lambda c: c.calendar(),
    "featured": lambda c: c.featured(),
    "recent": lambda c: c.recent(),
    "recent_event": lambda c: c.recent_event(1),
    "prices": lambda c: c.prices(),
    "profile": lambda c: c.profile(1),
    "user_by_social_media": lambda c: c.user_by_social_media("x", "y"),
    "user_id_from_name": lambda c: c.user_id_from_name("y"),
    "channel": lambda c: c.channel(1),
}


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("redirect loop", "TooManyRedirects"),
        ("not gzip", "DecodingError"),
        ("html page", "not JSON (text/html)"),
        ("invalid json", "body: Invalid JSON"),
        ("oversized", "body over 4000 bytes"),
        ("oversized, declared", "bytes is too large"),
    ],
)
async def test_every_route_reports_an_answer_httpx_refuses_as_a_bad_answer(
    kind: str, says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "MAX_BODY_BYTES", 4000)
    sleep = SleepRecorder()
    async with served(hostile(kind)) as port:
        client = PartiClient(f"http://127.0.0.1:{port}", sleep=sleep)
        async with client:
            for name, call in EVERY_ROUTE.items():
                with pytest.raises(BadAnswer) as caught:
                    await call(client)
                message = str(caught.value)
                assert says in message, name
                assert "\n" not in message and len(message) < 300, name
    assert sleep.delays == [], "a refused answer is not asked again"


# ---- list answers: each entry on its own ------------------------------------------------


async def test_a_malformed_live_entry_costs_its_odd_fields_or_itself_never_the_list(
    sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    odd = {
        2001: {"user_id": 2001, "user_name": None, "viewers_count": 1},
        2002: {"user_id": 2002, "user_name": "b", "viewers_count": 1.5, "event_title": 123},
        2003: {"user_id": 2003, "user_name": 42, "event_id": "", "category_name": []},
        2004: {"user_id": "no id", "user_name": "d", "viewers_count": 2},
    }
    sim.live_channels.update(odd)
    async with client_for(sim) as client:
        live = {c.user_id: c for c in await client.live()}
        assert client.skipped == {"/get_livestream_channel_info/live": 1}
        await client.live()  # skipped again, counted, not logged again so soon
        assert client.skipped == {"/get_livestream_channel_info/live": 2}
    assert {567503, 2001, 2002, 2003} <= set(live), "still live, whatever else they carry"
    assert live[2001].user_name is None and live[2002].viewers_count is None
    assert live[2002].event_title is None and live[2003].user_name == "42"
    assert live[2003].event_id is None and live[2003].category_name is None
    warned = [r for r in caplog.records if r.getMessage() == "parti.entry_skipped"]
    assert len(warned) == 1 and warned[0].exc_info is None


async def test_a_malformed_price_or_calendar_entry_is_skipped_alone(sim: Simulator) -> None:
    sim.prices["ZERO"] = {"display_symbol": "ZERO", "price": "0"}
    sim.calendar.append({"event_id": 1, "user_id": "x", "event_start_ts": 1747603500})
    async with client_for(sim) as client:
        prices = {p.display_symbol for p in await client.prices()}
        calendar = [e.event_id async for e in client.iter_calendar(page_size=2)]
        assert client.skipped == {"/assets_prices/info": 1, "/livestream_calendar/events": 1}
    assert "BTC" in prices and "ZERO" not in prices
    assert calendar == [80292, 63403, 15207], "a page with a skipped entry is not the last"


async def test_an_answer_that_is_not_a_list_is_still_a_bad_answer(sim: Simulator) -> None:
    sim.featured = {"user_id": 1}  # type: ignore[assignment]
    async with client_for(sim) as client:
        with pytest.raises(BadAnswer, match=r"/featured_channels -> 200: body: "):
            await client.featured()
