"""The schema, as numbered migrations written once for each engine.

SQLite counts applied migrations in `PRAGMA user_version` (version 1 is the schema of the
outbox file that came before this package, so an old file upgrades in place);
PostgreSQL records them in `schema_migrations`. Both apply them at open, under a lock.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sqlite: str
    postgres: str

    def statements(self, backend: str) -> list[str]:
        script = self.sqlite if backend == "sqlite" else self.postgres
        return [s.strip() for s in script.split(";") if s.strip()]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "outbox, engine state, live set",
        """
        CREATE TABLE alerts (
            key TEXT PRIMARY KEY,
            destination TEXT NOT NULL,
            rule TEXT NOT NULL,
            kind TEXT NOT NULL,
            action TEXT NOT NULL DEFAULT 'send',
            ref_key TEXT,
            subject TEXT NOT NULL,
            identity TEXT NOT NULL,
            payload TEXT NOT NULL,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            event_at REAL NOT NULL,
            next_attempt_at REAL NOT NULL,
            lease_until REAL,
            message_id TEXT,
            sent_at REAL,
            last_error TEXT
        );
        CREATE INDEX alerts_due ON alerts (destination, state, next_attempt_at);
        CREATE INDEX alerts_identity ON alerts (identity);
        CREATE TABLE kv (name TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE live (
            user_id INTEGER PRIMARY KEY,
            identity TEXT NOT NULL,
            started_at REAL NOT NULL,
            peak_viewers INTEGER,
            data TEXT NOT NULL
        )
        """,
        # JSON, not JSONB: payloads keep their key order (fields render in that order).
        """
        CREATE TABLE alerts (
            key TEXT PRIMARY KEY,
            destination TEXT NOT NULL,
            rule TEXT NOT NULL,
            kind TEXT NOT NULL,
            action TEXT NOT NULL DEFAULT 'send',
            ref_key TEXT,
            subject TEXT NOT NULL,
            identity TEXT NOT NULL,
            payload JSON NOT NULL,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            created_at DOUBLE PRECISION NOT NULL,
            event_at DOUBLE PRECISION NOT NULL,
            next_attempt_at DOUBLE PRECISION NOT NULL,
            lease_until DOUBLE PRECISION,
            message_id TEXT,
            sent_at DOUBLE PRECISION,
            last_error TEXT
        );
        CREATE INDEX alerts_due ON alerts (destination, state, next_attempt_at);
        CREATE INDEX alerts_identity ON alerts (identity);
        CREATE TABLE kv (name TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE live (
            user_id BIGINT PRIMARY KEY,
            identity TEXT NOT NULL,
            started_at DOUBLE PRECISION NOT NULL,
            peak_viewers INTEGER,
            data JSON NOT NULL
        )
        """,
    ),
    Migration(
        2,
        "lease owners, state index, roles, stream numbers, destination leases",
        """
        ALTER TABLE alerts ADD COLUMN lease_owner TEXT;
        CREATE INDEX alerts_state ON alerts (state, created_at);
        CREATE TABLE roles (
            role TEXT PRIMARY KEY,
            generation INTEGER NOT NULL,
            holder TEXT,
            since REAL
        );
        CREATE TABLE stream_seqs (user_id INTEGER PRIMARY KEY, seq INTEGER NOT NULL);
        CREATE TABLE destination_leases (
            destination TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            lease_until REAL NOT NULL
        )
        """,
        """
        ALTER TABLE alerts ADD COLUMN lease_owner TEXT;
        CREATE INDEX alerts_state ON alerts (state, created_at);
        CREATE TABLE roles (
            role TEXT PRIMARY KEY,
            generation BIGINT NOT NULL,
            holder TEXT,
            since DOUBLE PRECISION
        );
        CREATE TABLE stream_seqs (user_id BIGINT PRIMARY KEY, seq BIGINT NOT NULL);
        CREATE TABLE destination_leases (
            destination TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            lease_until DOUBLE PRECISION NOT NULL
        )
        """,
    ),
    Migration(
        3,
        "chats, subscriptions and their change feed, decisions",
        """
        CREATE TABLE chats (
            platform TEXT NOT NULL,
            chat_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            guild_id TEXT,
            title TEXT,
            paused_reason TEXT,
            mute_until REAL,
            quiet TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (platform, chat_id)
        );
        CREATE TABLE subscriptions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            platform TEXT NOT NULL,
            chat_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            target TEXT NOT NULL,
            params TEXT NOT NULL,
            params_hash TEXT NOT NULL,
            created_by TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            UNIQUE (platform, chat_id, kind, target, params_hash)
        );
        CREATE INDEX subscriptions_target ON subscriptions (kind, target);
        CREATE TABLE subscription_changes (
            sub_id INTEGER PRIMARY KEY,
            version INTEGER NOT NULL,
            removed INTEGER NOT NULL
        );
        CREATE INDEX subscription_changes_version ON subscription_changes (version);
        CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
        INSERT INTO counters (name, value) VALUES ('subscriptions', 0);
        CREATE TABLE decisions (
            platform TEXT NOT NULL,
            chat_id TEXT NOT NULL,
            subject TEXT NOT NULL,
            text TEXT NOT NULL,
            at REAL NOT NULL,
            PRIMARY KEY (platform, chat_id, subject)
        )
        """,
        """
        CREATE TABLE chats (
            platform TEXT NOT NULL,
            chat_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            guild_id TEXT,
            title TEXT,
            paused_reason TEXT,
            mute_until DOUBLE PRECISION,
            quiet TEXT,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (platform, chat_id)
        );
        CREATE TABLE subscriptions (
            id BIGSERIAL PRIMARY KEY,
            platform TEXT NOT NULL,
            chat_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            target TEXT NOT NULL,
            params JSONB NOT NULL,
            params_hash TEXT NOT NULL,
            created_by TEXT,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            UNIQUE (platform, chat_id, kind, target, params_hash)
        );
        CREATE INDEX subscriptions_target ON subscriptions (kind, target);
        CREATE TABLE subscription_changes (
            sub_id BIGINT PRIMARY KEY,
            version BIGINT NOT NULL,
            removed BOOLEAN NOT NULL
        );
        CREATE INDEX subscription_changes_version ON subscription_changes (version);
        CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
        INSERT INTO counters (name, value) VALUES ('subscriptions', 0);
        CREATE TABLE decisions (
            platform TEXT NOT NULL,
            chat_id TEXT NOT NULL,
            subject TEXT NOT NULL,
            text TEXT NOT NULL,
            at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (platform, chat_id, subject)
        )
        """,
    ),
    Migration(
        4,
        "streams ended whose edits are owed",
        # Moved here from `live` in the transaction that ends the stream (the poll that
        # missed it, or the channel's next stream replacing it); dropped once its edits
        # are in the outbox, so a fault between the two loses no edit.
        """
        CREATE TABLE live_ended (
            identity TEXT PRIMARY KEY,
            user_id INTEGER NOT NULL,
            started_at REAL NOT NULL,
            peak_viewers INTEGER,
            data TEXT NOT NULL,
            ended_at REAL NOT NULL
        )
        """,
        """
        CREATE TABLE live_ended (
            identity TEXT PRIMARY KEY,
            user_id BIGINT NOT NULL,
            started_at DOUBLE PRECISION NOT NULL,
            peak_viewers INTEGER,
            data JSON NOT NULL,
            ended_at DOUBLE PRECISION NOT NULL
        )
        """,
    ),
)

LATEST = MIGRATIONS[-1].version
