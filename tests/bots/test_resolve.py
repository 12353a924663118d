"""Streamer look-up: what a /follow argument names (pure), and the look-up through the
simulator's routes with its cache."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifier.bots.resolve import (
    ById,
    ByName,
    BySocial,
    Reference,
    Resolver,
    Streamer,
    StreamerNotFound,
    parse_reference,
    resolve_streamer,
)
from notifier.parti.client import PartiClient, Unavailable
from notifier.parti.simulator import Simulator


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("463000", ById(463000)),
        ("SNEAKO", ByName("SNEAKO")),
        ("@SNEAKO", ByName("SNEAKO")),
        ("Jack Doherty", ByName("Jack Doherty")),
        ("https://parti.com/creator/twitter/jackdoherty", BySocial("twitter", "jackdoherty")),
        ("https://parti.com/creator/discord/someone/0", BySocial("discord", "someone")),
        ("https://www.parti.com/creator/Parti/SNEAKO/", BySocial("parti", "SNEAKO")),
        ("https://parti.com/SNEAKO", ByName("SNEAKO")),
        ("https://parti.com/SNEAKO?ref=tg#top", ByName("SNEAKO")),
        ("parti.com/sneako", ByName("sneako")),
        ("https://parti.com/creator/a%20b/x", None),
        ("https://parti.com/creator/myspace/x", None),
        ("https://parti.com/creator/parti/x/1", None),
        ("https://parti.com/video/123", None),
        ("https://evil.example/creator/parti/x", None),
        ("https://parti.com.evil.example/x", None),
        ("99999999999999999999", ByName("99999999999999999999")),
        ("0", ByName("0")),
        ("   ", None),
    ],
)
def test_parse_reference(text: str, expected: Reference | None) -> None:
    assert parse_reference(text) == expected


@given(st.text(max_size=200))
def test_parse_reference_never_raises(text: str) -> None:
    parse_reference(text)


@pytest.fixture
async def client(sim: Simulator) -> PartiClient:
    return PartiClient(sim.api_url, retries=0, timeout=5.0)


async def test_a_name_resolves_to_the_id_and_the_profile_name(client: PartiClient) -> None:
    async with client:
        assert await Resolver(client).resolve("sneako") == Streamer(463000, "SNEAKO")


async def test_an_unknown_name_raises_streamer_not_found(client: PartiClient) -> None:
    async with client:
        with pytest.raises(StreamerNotFound):
            await Resolver(client).resolve("nobody_here")
        assert await resolve_streamer(client, "nobody_here") is None


async def test_a_second_look_up_of_the_same_name_is_answered_from_the_cache(
    client: PartiClient, sim: Simulator
) -> None:
    async with client:
        resolver = Resolver(client)
        await resolver.resolve("SNEAKO")
        asked = sum(sim.requests.values())
        assert await resolver.resolve("sneako") == Streamer(463000, "SNEAKO")
        assert sum(sim.requests.values()) == asked


async def test_cached_answers_expire(client: PartiClient, sim: Simulator) -> None:
    now = [0.0]
    async with client:
        resolver = Resolver(client, ttl=60.0, clock=lambda: now[0])
        await resolver.resolve("SNEAKO")
        asked = sum(sim.requests.values())
        now[0] = 61.0
        await resolver.resolve("SNEAKO")
        assert sum(sim.requests.values()) > asked


async def test_parti_failing_is_not_mistaken_for_an_unknown_streamer(
    client: PartiClient, sim: Simulator
) -> None:
    sim.fail_next(503, count=5)
    async with client:
        with pytest.raises(Unavailable):
            await Resolver(client).resolve("SNEAKO")
