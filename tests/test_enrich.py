"""Profile enrichment: cache, one request per user, negative cache, time budget."""

from __future__ import annotations

import asyncio

from notifier.enrich.profiles import Profiles
from notifier.parti.client import PartiClient
from notifier.parti.simulator import Simulator

PROFILE = "/parti_v2/profile/user_profile/463000"


async def test_many_events_for_one_user_cause_one_request_then_hits(sim: Simulator) -> None:
    async with PartiClient(sim.api_url) as client:
        profiles = Profiles(client)
        found = await asyncio.gather(*(profiles.get(463000) for _ in range(20)))
        again = await profiles.get(463000)
    assert {p.members for p in found if p} == {4340} and again is not None
    assert sim.requests[PROFILE] == 1
    assert profiles.stats.hits == 1


async def test_unknown_users_are_cached_as_unknown(sim: Simulator) -> None:
    async with PartiClient(sim.api_url) as client:
        profiles = Profiles(client)
        assert await profiles.get(999) is None
        assert await profiles.get(999) is None
    assert sim.requests["/parti_v2/profile/user_profile/999"] == 1


async def test_the_look_up_over_budget_fills_the_cache_for_next_time(sim: Simulator) -> None:
    sim.fail_next(503, count=1)  # the first attempt fails; the client retries after backoff
    async with PartiClient(sim.api_url, backoff_base=0.3, rand=lambda: 1.0) as client:
        profiles = Profiles(client, budget=0.05)
        assert await profiles.get(463000) is None, "over budget: the alert goes without it"
        assert profiles.stats.over_budget == 1
        in_flight = profiles._inflight[463000]  # still running after the budget ran out
        async with asyncio.timeout(5):
            await in_flight
        cached = await profiles.get(463000)
    assert cached is not None and cached.members == 4340
    assert profiles.stats.hits == 1


async def test_cached_answers_without_a_request_hit_unknown_and_expired_alike(
    sim: Simulator,
) -> None:
    now = [1000.0]
    async with PartiClient(sim.api_url) as client:
        profiles = Profiles(client, ttl=60, negative_ttl=30, clock=lambda: now[0])
        assert profiles.cached(463000) == (False, None)  # a miss asks nobody
        assert sim.requests.get(PROFILE, 0) == 0
        await profiles.get(463000)
        await profiles.get(999)
        hit, profile = profiles.cached(463000)
        assert hit and profile is not None and profile.members == 4340
        assert profiles.cached(999) == (True, None)  # unknown is an answer too
        now[0] += 31
        assert profiles.cached(999) == (False, None)  # the negative answer expired
        now[0] += 30
        assert profiles.cached(463000) == (False, None)
    assert profiles.stats.hits == 2
