"""All durable state behind one interface: `open_store` picks SQLite (a path, the default)
or PostgreSQL (a postgresql:// URL)."""

from __future__ import annotations

from notifier.store.base import INGEST, OutboxWatch, Store
from notifier.store.errors import FencedOut, SchemaTooNew, StoreError, StoreUnavailable
from notifier.store.types import (
    DEAD,
    DROPPED,
    PENDING,
    SENDING,
    SENT,
    Chat,
    Decision,
    EndedStream,
    LiveEntry,
    LiveRecord,
    NewAlert,
    RoleHolder,
    Row,
    SchemaStatus,
    Subscription,
    SubscriptionChanges,
)

__all__ = [
    "DEAD",
    "DROPPED",
    "INGEST",
    "PENDING",
    "SENDING",
    "SENT",
    "Chat",
    "Decision",
    "EndedStream",
    "FencedOut",
    "LiveEntry",
    "LiveRecord",
    "NewAlert",
    "OutboxWatch",
    "RoleHolder",
    "Row",
    "SchemaStatus",
    "SchemaTooNew",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "Subscription",
    "SubscriptionChanges",
    "is_postgres_url",
    "open_store",
]


def is_postgres_url(url_or_path: str) -> bool:
    return url_or_path.startswith(("postgresql://", "postgres://"))


async def open_store(
    url_or_path: str, *, durable: bool = True, instance: str, migrate: bool = True
) -> Store:
    """Open (and unless `migrate=False`, migrate) the store. `instance` names this process
    among those sharing a database: keep it stable across restarts (host name and
    service), so a restarted instance can take back its own leases at once.
    Raises StoreUnavailable when the database cannot be reached, StoreError otherwise."""
    if is_postgres_url(url_or_path):
        from notifier.store.postgres import PostgresStore  # psycopg only when used

        return await PostgresStore.open(url_or_path, instance=instance, migrate=migrate)
    from notifier.store.sqlite import SqliteStore

    return await SqliteStore.open(url_or_path, durable=durable, instance=instance, migrate=migrate)
