"""The calendar poller: reminders for rules that name users (entries carry only ids), and
a poller that wakes when a reload adds the first `scheduled` rule."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from notifier.enrich.profiles import Profiles
from notifier.metrics import Metrics
from notifier.parti.client import PartiClient
from notifier.parti.simulator import Simulator
from notifier.rules.compile import compile_rules
from notifier.stages.context import Core, Health, Rules
from notifier.stages.pollers import CalendarPoller

USER = 777001


def core_for(path: Path, text: str) -> Core:
    path.write_text(text)
    compiled = compile_rules(path)
    return Core(Rules(compiled.rules_file, compiled.engine, compiled.meta), Metrics(), Health())


SCHEDULED = (
    "destinations: {t: {console: {}}}\n"
    "rules: [{name: soon, when: scheduled, users: [Night Owl], before: 1h, notify: [t]}]\n"
)


async def test_a_rule_by_user_name_fires_for_a_calendar_entry_with_only_the_id(
    tmp_path: Path, sim: Simulator
) -> None:
    sim.profiles[USER] = {"user_id": USER, "user_name": "Night Owl"}
    sim.calendar.append(
        {
            "event_id": 5001,
            "user_id": USER,
            "event_title": "Late show",
            "event_start_ts": int(time.time()) + 600,
            "category_id": 7,
        }
    )
    core = core_for(tmp_path / "rules.yaml", SCHEDULED)
    async with PartiClient(sim.api_url) as client:
        poller = CalendarPoller(
            core, client, Profiles(client), every=60.0, rules_changed=asyncio.Event()
        )
        await poller.poll()
    assert core.queue.qsize() == 1
    assert core.queue.get_nowait().match.rule == "soon"


async def test_the_poller_starts_when_a_reload_adds_the_first_scheduled_rule(
    tmp_path: Path, sim: Simulator
) -> None:
    sim.profiles[USER] = {"user_id": USER, "user_name": "Night Owl"}
    sim.calendar.append(
        {
            "event_id": 5002,
            "user_id": USER,
            "event_title": "Late show",
            "event_start_ts": int(time.time()) + 600,
            "category_id": 7,
        }
    )
    core = core_for(tmp_path / "none.yaml", "destinations: {t: {console: {}}}\n")
    changed = asyncio.Event()
    async with PartiClient(sim.api_url) as client:
        poller = CalendarPoller(core, client, Profiles(client), every=60.0, rules_changed=changed)
        task = asyncio.create_task(poller.run())
        before = sim.requests.copy()
        # What a reload does: new rules with a scheduled one, then the signal.
        core.rules = core_for(tmp_path / "rules.yaml", SCHEDULED).rules
        changed.set()
        async with asyncio.timeout(10):
            pending = await core.queue.get()
        task.cancel()
    assert pending.match.rule == "soon"
    assert sum(sim.requests.values()) > sum(before.values())
