"""Runs a stage forever: a crash is logged (with its traceback), counted and restarted."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from notifier.log import event, get_logger, short_error
from notifier.metrics import Metrics
from notifier.stages.context import Health

_log = get_logger("supervisor")


async def supervise(
    name: str,
    stage: Callable[[], Awaitable[None]],
    *,
    health: Health,
    metrics: Metrics,
    restart_delay: float = 1.0,
) -> None:
    """Run `stage` until it returns; restart it after any exception but cancellation."""
    health.stages[name] = True
    while True:
        try:
            await stage()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            health.stages[name] = False
            metrics.stage_restarts.labels(stage=name).inc()
            event(_log, "stage.crashed", logging.ERROR, stage=name, error=short_error(exc))
            await asyncio.sleep(restart_delay)
            health.stages[name] = True
