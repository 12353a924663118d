"""Shared fixtures: real servers on 127.0.0.1, started per test on port 0."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from notifier.parti.simulator import Simulator


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(host="127.0.0.1", port=0) as simulator:
        yield simulator
