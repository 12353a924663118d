"""A SIGHUP reload: the rules compile off the loop while the live engine goes on."""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

from notifier.deliver.factory import Senders
from notifier.metrics import Metrics
from notifier.parti.models import PriceUpdate
from notifier.rules.compile import Compiled, compile_rules
from notifier.stages.context import Core, Health, Rules
from notifier.stages.reload import Reloader


class SwapOnly:
    """The delivery holder, as far as a reload uses it."""

    async def swap(self, senders: Senders) -> None:
        pass


async def test_crossings_made_while_the_new_rules_compile_go_over_to_them(
    tmp_path: Path,
) -> None:
    """The state a reload exported before its compile missed the crossings the live engine
    made meanwhile: the new engine fired the next crossing with a key already written (a
    duplicate the outbox drops: the alert lost), or fired a crossing already alerted."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "destinations: {t: {console: {}}}\n"
        "rules: [{name: btc, when: price, asset: BTC, above: 100000, rearm: 0.5%,"
        " cooldown: 0s, notify: [t]}]\n"
    )
    compiled = compile_rules(rules)
    core = Core(Rules(compiled.rules_file, compiled.engine, compiled.meta), Metrics(), Health())
    loop = asyncio.get_running_loop()
    compiling, go = asyncio.Event(), threading.Event()

    def compile_held(settings: Any, state: dict[str, Any]) -> Compiled:
        loop.call_soon_threadsafe(compiling.set)
        go.wait(30)
        return compile_rules(rules, state=state)

    reloader = Reloader(
        core,
        SwapOnly(),  # type: ignore[arg-type]
        load_settings=lambda: None,  # type: ignore[arg-type,return-value]
        compile_rules=compile_held,
        build_senders=lambda compiled, settings: Senders(),
        rules_changed=asyncio.Event(),
    )
    written: list[str] = []

    async def feed(value: str, at: float) -> None:
        """A price frame through the current engine; its matches' keys are `written`."""
        update = PriceUpdate(display_symbol="BTC", price=Decimal(value))
        await core.evaluate(update, at, caught_up=False)
        while not core.queue.empty():
            written.append(core.queue.get_nowait().match.key)

    for at, value in enumerate(["99000", "100100", "99000"]):  # crossed, armed again
        await feed(value, float(at))
    reload = asyncio.create_task(reloader.reload())
    async with asyncio.timeout(30):
        await compiling.wait()
        await feed("100100", 3.0)  # the live engine: a crossing alerted
        await feed("99000", 4.0)  # and armed again
        go.set()
        assert await reload
    assert core.rules.engine is not compiled.engine
    assert len(written) == 2
    await feed("100200", 5.0)  # a new crossing, on the new rules
    assert len(written) == 3
    assert len(set(written)) == 3, "the new crossing took a key already written"
    await feed("100300", 6.0)
    assert len(written) == 3, "still past the line: nothing new"
