"""Runs a stage forever: a crash is logged (with its traceback), counted and restarted; a
store outage is waited out (`Outage`), logged once, not counted as a crash."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable

from notifier.log import event, get_logger, short_error
from notifier.metrics import Metrics
from notifier.stages.context import Health
from notifier.store.errors import FencedOut, StoreError
from notifier.store.outage import Outage, pause

_log = get_logger("supervisor")
# A stage restarted after a store fault that runs this long without another is taken to
# reach the store again (its next call may be minutes away: a poller's).
ANSWERED_AFTER = 5.0


async def supervise(
    name: str,
    stage: Callable[[], Awaitable[None]],
    *,
    health: Health,
    metrics: Metrics,
    restart_delay: float = 1.0,
    answered_after: float = ANSWERED_AFTER,
) -> None:
    """Run `stage` until it returns; restart it after any exception but cancellation."""
    health.stages[name] = True
    outage = Outage(
        name,
        health.store_errors,
        failed_event="stage.store_failed",
        recovered_event="stage.store_recovered",
    )
    try:
        while True:
            answering = None
            if outage.failing:  # the store answers once the stage runs a while again
                answering = asyncio.get_running_loop().call_later(
                    answered_after, functools.partial(outage.answered, wake=False)
                )
            try:
                await stage()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if isinstance(exc, StoreError) and not isinstance(exc, FencedOut):
                    await pause(outage.failed(exc))  # waited out, not a crash
                    continue
                health.stages[name] = False
                metrics.stage_restarts.labels(stage=name).inc()
                event(_log, "stage.crashed", logging.ERROR, stage=name, error=short_error(exc))
                await asyncio.sleep(restart_delay)
                health.stages[name] = True
            finally:
                if answering is not None:
                    answering.cancel()
    finally:
        outage.close()
