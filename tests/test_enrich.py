"""Profile enrichment: cache, one request per user, negative cache, time budget."""

from __future__ import annotations

import asyncio
import logging

import pytest

from notifier.enrich.profiles import Profiles
from notifier.parti.client import PartiClient
from notifier.parti.models import UserProfile
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


class FailingClient(PartiClient):
    """A client whose look-up of SNEAKO's profile fails with what no route should raise (a
    bug, an exception of a library the client does not know), once `release` is set."""

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url)
        self.release = asyncio.Event()
        self.asked = 0

    async def profile(self, user_id: int) -> UserProfile:
        if user_id != 463000:
            return await super().profile(user_id)
        self.asked += 1
        await self.release.wait()
        raise RuntimeError(f"no profile for {user_id}")


async def test_any_failure_of_a_look_up_is_no_profile_logged_once(
    sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with FailingClient(sim.api_url) as client:
        client.release.set()
        profiles = Profiles(client)
        assert await profiles.get(463000) is None
        assert await profiles.get(463000) is None, "not cached: asked again"
        failed = [r for r in caplog.records if r.getMessage() == "profile.unavailable"]
        assert len(failed) == 1 and failed[0].exc_info is None
        assert client.asked == 2 and profiles.stats.errors == 2
        assert await profiles.get(348242) is not None  # the real route answers again
        assert await profiles.get(463000) is None
    failed = [r for r in caplog.records if r.getMessage() == "profile.unavailable"]
    assert len(failed) == 2, "logged again after an answer"


async def test_a_look_up_that_fails_after_its_budget_leaves_no_unretrieved_exception(
    sim: Simulator,
) -> None:
    async with FailingClient(sim.api_url) as client:
        profiles = Profiles(client, budget=0.01)
        assert await profiles.get(463000) is None  # over budget: still running
        in_flight = profiles._inflight[463000]
        client.release.set()
        async with asyncio.timeout(5):
            await asyncio.wait([in_flight])
    assert in_flight.exception() is None, "asyncio would log 'exception never retrieved'"
    assert profiles.stats.over_budget == 1 and profiles.stats.errors == 1
