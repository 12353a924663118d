"""SIGHUP: recompile the rules off the event loop and swap them in, or keep the old ones."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable
from typing import Any

from notifier import systemd
from notifier.deliver.factory import Senders
from notifier.log import event, get_logger, short_error
from notifier.rules.loader import RulesError
from notifier.rules.stream import Compiled
from notifier.settings import Settings
from notifier.stages.context import Core, Rules
from notifier.stages.delivery import DeliveryHolder

_log = get_logger("reload")


class Reloader:
    def __init__(
        self,
        core: Core,
        holder: DeliveryHolder,
        *,
        load_settings: Callable[[], Settings],
        compile_rules: Callable[[Settings, dict[str, Any]], Compiled],
        build_senders: Callable[[Compiled, Settings], Senders],
        rules_changed: asyncio.Event,
        adopt_settings: Callable[[Settings], None] | None = None,
    ) -> None:
        self.core = core
        self.holder = holder
        self.load_settings = load_settings
        self.compile_rules = compile_rules
        self.build_senders = build_senders
        self.rules_changed = rules_changed
        # Told the settings of a reload that succeeded, before its senders are swapped in:
        # the senders made later (chat lanes, command bots) use them too.
        self.adopt_settings = adopt_settings
        self.requested = asyncio.Event()

    async def run(self) -> None:
        while True:
            await self.requested.wait()
            self.requested.clear()
            await self.reload()

    async def reload(self) -> bool:
        try:
            # Settings are read again: a token fixed in the env file takes effect.
            settings = self.load_settings()
            state = self.core.rules.engine.export_state()  # on the loop: the engine is live
            # A large file takes seconds to compile: off the loop, so alerts keep flowing.
            compiled = await asyncio.to_thread(self.compile_rules, settings, state)
            senders = self.build_senders(compiled, settings)
        except RulesError as exc:
            for problem in exc.problems:
                event(_log, "rules.error", logging.ERROR, problem=str(problem))
            return self._failed(errors=len(exc.problems))
        except Exception as exc:
            return self._failed(error=short_error(exc))
        # The live engine went on while the new one compiled: its state now (crossings,
        # re-arms, windows, cooldowns of those seconds) goes over too, on the loop with the
        # swap, so nothing it did is undone (a line crossed meanwhile would fire again).
        compiled.engine.take_over(self.core.rules.engine)
        self.core.rules = Rules(compiled.rules_file, compiled.engine, compiled.meta)
        self.core.state_dirty = True
        if self.adopt_settings is not None:
            self.adopt_settings(settings)
        await self.holder.swap(senders)
        # A destination the new rules dropped is nobody's problem any more.
        for name in list(self.core.health.destinations):
            if not name.startswith("@") and name not in senders.by_name:
                del self.core.health.destinations[name]
        gc.unfreeze()  # let the old rules go
        gc.collect()
        gc.freeze()  # the new rules live until the next reload: keep collections off them
        self.rules_changed.set()
        self.core.metrics.reloads.labels(result="ok").inc()
        kinds = compiled.engine.summary()
        event(_log, "rules.reloaded", **kinds, destinations=len(compiled.rules_file.destinations))
        systemd.notify("STATUS=rules reloaded")
        return True

    def _failed(self, **why: object) -> bool:
        self.core.metrics.reloads.labels(result="error").inc()
        event(_log, "rules.reload_failed", logging.ERROR, **why, kept="previous rules")
        return False
