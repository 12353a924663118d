"""The store interface every backend implements (all durable state: outbox, engine state,
live set, roles, subscriptions), and the outbox wake-up feed they share."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Final, Protocol

from notifier.store.types import (
    UNSET,
    Chat,
    Decision,
    DecisionEntry,
    EndedStream,
    JsonObject,
    LiveEntry,
    LiveRecord,
    NewAlert,
    RoleHolder,
    Row,
    SchemaStatus,
    Subscription,
    SubscriptionChanges,
    Unset,
)

INGEST: Final = "ingest"  # the role whose writes are fenced
NOTIFY_CHANNEL: Final = "notifier_outbox"


class OutboxWatch:
    """Destinations with new work, as an async iterator (repeats coalesce while unread).

    A wake-up can be lost (PostgreSQL forgets LISTEN across a server restart; a SQLite
    store only hears its own process), so a caller must keep polling as well: treat a
    wake-up as "look now", never its absence as "nothing to do". Iteration raises
    `StoreUnavailable` when the feed broke; open a new one (and poll meanwhile)."""

    def __init__(self, closer: Callable[[], Awaitable[None]] | None = None) -> None:
        self._pending: dict[str, None] = {}
        self._event = asyncio.Event()
        self._error: BaseException | None = None
        self._closer = closer
        self._closed = False

    def push(self, destination: str) -> None:
        self._pending[destination] = None
        self._event.set()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._event.set()

    def __aiter__(self) -> OutboxWatch:
        return self

    async def __anext__(self) -> str:
        while not self._pending:
            if self._closed:
                raise StopAsyncIteration
            if self._error is not None:
                raise self._error
            self._event.clear()
            await self._event.wait()
        destination = next(iter(self._pending))
        del self._pending[destination]
        return destination

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._event.set()
        if self._closer is not None:
            await self._closer()

    async def __aenter__(self) -> OutboxWatch:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class Store(Protocol):
    """All durable state. Every method is one short transaction.

    `fence` is the ingest role's generation (from `RoleLock.try_acquire`): a write that
    carries one is refused with `FencedOut`, and writes nothing, once another instance
    has taken the role over. `None` skips the check (delivery and operator edits).
    Lease-holding updates (`mark_sent`, `reschedule`, `mark_dead`) only touch a row
    still leased by this store's `instance` and say whether they did."""

    backend: str  # "sqlite" or "postgres"
    instance: str

    def clock(self) -> float:
        """Now, in epoch seconds, as every instance sharing this store counts it: lease
        ends, due times and ages written by one instance are compared by another
        (PostgreSQL: this host's clock corrected to the database server's; SQLite: this
        host's)."""
        ...

    async def close(self) -> None: ...

    # ---- schema -------------------------------------------------------------------
    async def migrate(self) -> list[int]:
        """Apply pending migrations under a lock; returns the versions applied."""
        ...

    async def status(self) -> SchemaStatus: ...

    # ---- outbox -------------------------------------------------------------------
    async def enqueue(
        self,
        alerts: Sequence[NewAlert],
        *,
        now: float,
        fence: int | None,
        state: Mapping[str, str] | None = None,
        lives: Sequence[LiveEntry] = (),
    ) -> list[str]:
        """Write alerts, engine state and live channels in one transaction; returns the
        new keys (a key already in the outbox is a no-op)."""
        ...

    async def enqueue_leased(
        self,
        alerts: Sequence[NewAlert],
        *,
        now: float,
        lease: float,
        room: Mapping[str, int],
        fence: int | None,
        lives: Sequence[LiveEntry] = (),
        state: Mapping[str, str] | None = None,
    ) -> tuple[list[str], list[Row]]:
        """Like `enqueue`, but up to `room[destination]` new rows per destination come
        back already leased to this instance; returns the new keys and the leased rows."""
        ...

    async def release_leases_of(self, owner: str) -> int | None:
        """An instance that is gone: its rows are due again and its destinations free at
        once, not when their leases run out. PostgreSQL: None, releasing nothing, while
        `owner` is running (a session holds its instance lock, `roles.instance_role`):
        without its ingest role it still sends what it leased."""
        ...

    async def release_leases(self) -> int:
        """At start: make due again the rows this instance can prove orphaned (SQLite:
        every lease, one process owns the file; PostgreSQL: this instance's leases,
        others run out by `lease_until`). Also drops this instance's destination leases."""
        ...

    async def claim(
        self, destination: str, *, now: float, lease: float, limit: int = 1
    ) -> list[Row]:
        """Due rows of one destination (oldest first), leased to this instance until
        now + lease; concurrent claimants never get the same row (SKIP LOCKED)."""
        ...

    async def mark_sent(self, key: str, *, message_id: str | None, now: float) -> bool: ...

    async def mark_sent_many(
        self, sent: Sequence[tuple[str, str | None]], *, now: float
    ) -> list[str]:
        """`mark_sent` for (key, message_id) pairs in one transaction; returns the keys
        that were still leased here (and are now sent)."""
        ...

    async def reschedule(
        self,
        key: str,
        *,
        at: float,
        error: str,
        payload: JsonObject | None = None,
        refund: bool = False,
    ) -> bool:
        """Back to pending until `at`; `refund` gives back the attempt (not the row's fault)."""
        ...

    async def mark_dead(self, key: str, *, reason: str, now: float) -> bool: ...

    async def retry(self, key: str, *, now: float) -> bool:
        """A dead (or dropped) row back to pending, due now (`notifier outbox retry`)."""
        ...

    async def drop(self, key: str) -> bool:
        """Give up on a row that is not sent (whoever holds it)."""
        ...

    async def get(self, key: str) -> Row | None: ...

    async def rows(
        self, *, states: Sequence[str] | None = None, limit: int = 1000
    ) -> list[Row]: ...

    async def by_identity(self, identity: str) -> list[Row]:
        """The sends (not edits) of one event identity."""
        ...

    async def next_due(self, destination: str) -> float | None: ...

    async def waiting_destinations(self) -> dict[str, int]:
        """Every destination with pending or leased rows, and how many it has."""
        ...

    async def dead_letter(
        self, destination: str, *, reason: str, now: float, created_before: float
    ) -> int:
        """Rows of `destination` created before `created_before`, pending or with a lease
        that ran out (none in flight), go to the dead letter with `reason`; returns how
        many."""
        ...

    async def counts(self) -> dict[str, int]:
        """Rows per state, all states (a full count: for operators, not for metrics)."""
        ...

    async def depth(self) -> dict[str, int]:
        """Pending, sending and dead rows, counted on the state index (sent rows are
        never scanned): for health and metrics."""
        ...

    async def oldest_pending_at(self) -> float | None: ...

    async def prune_sent(self, before: float, *, limit: int = 10_000) -> int:
        """Delete up to `limit` sent or dropped rows older than `before`; returns how many."""
        ...

    # ---- delivery across instances: one claimant per destination ---------------------
    async def try_lease_destination(self, destination: str, *, now: float, ttl: float) -> bool:
        """Become (or stay) the one instance sending to `destination` until now + ttl, so
        its sends keep their order and rate limits; False while another holds it."""
        ...

    async def extend_lease(self, key: str, *, now: float, until: float) -> bool:
        """Move a row's lease end to `until` while it is still this instance's (leased
        here and not run out at `now`); False when it is not: another may have it."""
        ...

    async def renew_destination(self, destination: str, *, now: float, ttl: float) -> bool:
        """Extend a destination lease this instance holds; False when it lost it."""
        ...

    async def release_destination(self, destination: str) -> None: ...

    async def watch_outbox(self) -> OutboxWatch:
        """Wake-ups naming destinations with new rows (listening before it returns).
        Not a guarantee: keep polling `next_due` as the fallback."""
        ...

    # ---- engine state and the live set -------------------------------------------
    async def get_state(self, name: str) -> str | None: ...

    async def set_state(self, name: str, value: str, *, fence: int | None) -> None: ...

    async def live_set(self) -> dict[int, LiveRecord]: ...

    async def set_live(
        self,
        user_id: int,
        *,
        identity: str,
        started_at: float,
        viewers: int | None,
        data: JsonObject,
        fence: int | None,
    ) -> bool:
        """Record a live channel; False when this identity was already known."""
        ...

    async def update_peaks(self, viewers: Mapping[int, int], *, fence: int | None) -> None:
        """Raise the peak viewers of live channels seen in a poll."""
        ...

    async def end_live(
        self, user_id: int, *, identity: str, ended_at: float, fence: int | None
    ) -> LiveRecord | None:
        """Remove a channel's stream `identity` from the live set, count it as ended
        (`stream_seqs`) and keep it among the `ended_streams` (one transaction); None
        when that stream is not the channel's live one (not live, or replaced meanwhile).
        A live entry that replaces another identity of its channel ends that one too."""
        ...

    async def ended_streams(self) -> list[EndedStream]:
        """The streams ended whose "ended" edits are not yet in the outbox."""
        ...

    async def forget_ended(self, identities: Sequence[str], *, fence: int | None) -> None:
        """Drop ended streams whose edits are now in the outbox."""
        ...

    async def stream_seqs(self) -> dict[int, int]:
        """How many streams of each channel have ended (kept after the live row goes), so
        a stream without an event id gets a new identity after the previous one ended."""
        ...

    # ---- roles ------------------------------------------------------------------
    async def take_role(self, role: str, *, holder: str, now: float) -> int:
        """Bump a role's generation for a new holder; returns the new generation. Only a
        `RoleLock` that holds the role's lock calls this."""
        ...

    async def roles(self) -> dict[str, RoleHolder]: ...

    # ---- chats and subscriptions ---------------------------------------------------
    async def upsert_chat(
        self,
        platform: str,
        chat_id: str,
        *,
        kind: str,
        now: float,
        title: str | None = None,
        guild_id: str | None = None,
    ) -> Chat:
        """Create a chat or refresh its kind, title and guild; returns it."""
        ...

    async def get_chat(self, platform: str, chat_id: str) -> Chat | None: ...

    async def list_chats(self, *, platform: str | None = None, limit: int = 10_000) -> list[Chat]:
        """Known chats, the most recently active first (`notifier telegram chats`)."""
        ...

    async def set_chat_fields(
        self,
        platform: str,
        chat_id: str,
        *,
        now: float,
        title: str | Unset | None = UNSET,
        paused_reason: str | Unset | None = UNSET,
        mute_until: float | Unset | None = UNSET,
        quiet: str | Unset | None = UNSET,
    ) -> bool:
        """Change the given fields (None clears one); False when the chat is unknown."""
        ...

    async def migrate_chat(self, platform: str, old_id: str, new_id: str, *, now: float) -> int:
        """A chat got a new id (Telegram group to supergroup): move its row, watchlist
        and decisions; returns how many subscriptions moved."""
        ...

    async def add_subscription(
        self,
        platform: str,
        chat_id: str,
        *,
        kind: str,
        target: str,
        params: JsonObject,
        created_by: str | None,
        now: float,
    ) -> int | None:
        """The new subscription's id, or None when the same one exists already."""
        ...

    async def remove_subscription(
        self,
        platform: str,
        chat_id: str,
        *,
        kind: str,
        target: str,
        params: JsonObject | None = None,
    ) -> int:
        """Remove a chat's subscriptions to a target (only the one with these params
        when given); returns how many."""
        ...

    async def remove_subscription_id(self, subscription_id: int) -> bool: ...

    async def update_subscription(
        self, subscription_id: int, *, params: JsonObject, now: float
    ) -> bool:
        """Change a subscription's settings in place (its id, so its rule's cooldown and
        its alerts' keys, stay); False when it is gone or the same one exists already."""
        ...

    async def list_subscriptions(
        self,
        *,
        platform: str | None = None,
        chat_id: str | None = None,
        kind: str | None = None,
    ) -> list[Subscription]: ...

    async def count_subscriptions(
        self, platform: str, chat_id: str, *, kind: str | None = None
    ) -> int: ...

    async def subscriptions_version(self) -> int:
        """A counter bumped by every subscription change (cheap: poll it often)."""
        ...

    async def subscriptions_changed_since(self, version: int) -> SubscriptionChanges:
        """Changes after `version` (0: everything), with the version they bring you to."""
        ...

    async def record_decision(
        self, platform: str, chat_id: str, subject: str, text: str, *, at: float
    ) -> None:
        """Remember the latest decision for a chat and subject (one row each)."""
        ...

    async def record_decisions(self, entries: Sequence[DecisionEntry]) -> None:
        """`record_decision` for many, in one transaction (a go-live decides for
        thousands of chats at once)."""
        ...

    async def last_decision(self, platform: str, chat_id: str, subject: str) -> Decision | None: ...
