"""The outbox from asyncio: every call runs on one dedicated thread, so fsyncs never block
the event loop and calls stay in order."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from notifier.outbox.store import Outbox

P = ParamSpec("P")
T = TypeVar("T")


class AsyncOutbox:
    def __init__(self, outbox: Outbox) -> None:
        self.sync = outbox
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")

    async def call(self, method: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, functools.partial(method, *args, **kwargs)
        )

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.sync, name)

        async def run(*args: Any, **kwargs: Any) -> Any:
            return await self.call(method, *args, **kwargs)

        return run

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.sync.close()
