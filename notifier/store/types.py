"""The values the store reads and writes: outbox rows, the live set, subscriptions, chats."""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

PENDING: Final = "pending"
SENDING: Final = "sending"
SENT: Final = "sent"
DEAD: Final = "dead"
DROPPED: Final = "dropped"

# The states `depth()` counts: rows still owed a send, or waiting for an operator.
OPEN_STATES: Final = (PENDING, SENDING, DEAD)

JsonObject = dict[str, Any]


@dataclass(frozen=True)
class Row:
    """One outbox row; `lease_owner` is the instance that holds its lease while sending."""

    key: str
    destination: str
    rule: str
    kind: str
    action: str
    ref_key: str | None
    subject: str
    identity: str
    payload: JsonObject
    state: str
    attempts: int
    created_at: float
    event_at: float
    next_attempt_at: float
    lease_until: float | None
    message_id: str | None
    sent_at: float | None
    last_error: str | None
    lease_owner: str | None = None


ROW_FIELDS: Final = tuple(Row.__dataclass_fields__)


@dataclass(frozen=True)
class NewAlert:
    key: str
    destination: str
    rule: str
    kind: str
    subject: str
    identity: str
    payload: JsonObject
    event_at: float
    action: str = "send"
    ref_key: str | None = None


@dataclass(frozen=True)
class LiveEntry:
    """A followed channel that is live, with what the stream-ended edit needs."""

    user_id: int
    identity: str
    started_at: float
    viewers: int | None
    data: JsonObject


@dataclass(frozen=True)
class LiveRecord:
    """A channel of the persisted live set as stored (what `end_live` hands back)."""

    user_id: int
    identity: str
    started_at: float
    peak_viewers: int | None
    data: JsonObject


@dataclass(frozen=True)
class EndedStream:
    """A stream gone from the live set whose "ended" edits are not yet in the outbox."""

    live: LiveRecord
    ended_at: float


@dataclass(frozen=True)
class RoleHolder:
    """Who last took a role, and the fencing generation that take-over was given."""

    role: str
    generation: int
    holder: str | None
    since: float | None


@dataclass(frozen=True)
class SchemaStatus:
    backend: str
    version: int
    latest: int
    pending: tuple[str, ...]

    def as_dict(self) -> dict[str, object]:
        return {
            "backend": self.backend,
            "version": self.version,
            "latest": self.latest,
            "pending": list(self.pending),
        }


class ChatKind(enum.StrEnum):
    PRIVATE = "private"
    GROUP = "group"
    CHANNEL = "channel"
    GUILD_CHANNEL = "guild-channel"


class SubscriptionKind(enum.StrEnum):
    LIVE = "live"
    PRICE = "price"
    MOVE = "move"


@dataclass(frozen=True)
class Chat:
    platform: str
    chat_id: str
    kind: str
    guild_id: str | None
    title: str | None
    paused_reason: str | None
    mute_until: float | None
    quiet: str | None
    created_at: float
    updated_at: float


CHAT_FIELDS: Final = tuple(Chat.__dataclass_fields__)


@dataclass(frozen=True)
class Subscription:
    """A chat's standing request: `target` is a user id (live) or an asset symbol."""

    id: int
    platform: str
    chat_id: str
    kind: str
    target: str
    params: JsonObject
    created_by: str | None
    created_at: float
    updated_at: float


SUBSCRIPTION_FIELDS: Final = tuple(Subscription.__dataclass_fields__)


class SubscriptionChanges(NamedTuple):
    """What changed after a version: the current rows of added or changed subscriptions,
    and the ids of removed ones (apply both, then remember `version`)."""

    version: int
    changed: tuple[Subscription, ...]
    removed: tuple[int, ...]


class DecisionEntry(NamedTuple):
    """A decision to remember: `record_decisions` takes many in one transaction."""

    platform: str
    chat_id: str
    subject: str
    text: str
    at: float


@dataclass(frozen=True)
class Decision:
    """The last thing the engine decided for a chat and subject (for `/why`)."""

    text: str
    at: float


class Unset(enum.Enum):
    """A field left as it is (None would clear it)."""

    UNSET = "unset"


UNSET: Final = Unset.UNSET


def params_hash(params: JsonObject) -> str:
    """Equal parameters (whatever their key order) hash alike: the uniqueness key."""
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def to_json(value: JsonObject) -> str:
    return json.dumps(value, ensure_ascii=False)
