"""What both command bots share: the per-chat locks that keep a chat's limits."""

from __future__ import annotations

import asyncio

from notifier.bots.common import KeyedLocks


async def test_keyed_locks_run_one_key_at_a_time_and_keep_no_lock_nobody_uses() -> None:
    locks = KeyedLocks()
    order: list[str] = []
    first_in = asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with locks.hold("chat"):
            first_in.set()
            await release.wait()
            order.append("first")

    async def second() -> None:
        async with locks.hold("chat"):
            order.append("second")

    async def other_chat() -> None:
        async with locks.hold("other"):
            order.append("other")

    holder = asyncio.create_task(first())
    await first_in.wait()
    waiter = asyncio.create_task(second())
    await other_chat()  # another key does not wait for "chat"
    assert order == ["other"] and len(locks) == 1
    release.set()
    await asyncio.gather(holder, waiter)
    assert order == ["other", "first", "second"]
    assert len(locks) == 0
