"""A delivery-only worker process for the crash test: drains an outbox until killed.

Usage: python -m tests.deliver.worker_main DB RULES LEASE (tokens and URLs from NOTIFIER_*).
"""

from __future__ import annotations

import asyncio
import sys

from notifier.deliver.factory import build_senders
from notifier.deliver.lanes import Delivery
from notifier.log import setup as setup_logging
from notifier.outbox.policy import RetryPolicy
from notifier.rules.loader import load_file
from notifier.settings import Settings
from notifier.store import open_store


async def main(db: str, rules: str, lease: float) -> None:
    setup_logging("json")
    senders = build_senders(load_file(rules), Settings())
    await senders.start()
    # No release_leases at start: a row the killed worker held is claimed again only
    # once its lease has run out, as a second process sharing the file would.
    outbox = await open_store(db, instance="crash-worker")
    delivery = Delivery(
        outbox, senders.by_name, lease=lease, policy=RetryPolicy(base=0.05, cap=0.2)
    )
    print("worker ready", flush=True)
    await delivery.run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
