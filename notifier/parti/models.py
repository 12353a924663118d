"""Typed shapes of Parti's HTTP answers and WebSocket events (tolerant: see realtime-notes.md)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, ClassVar, NewType

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, model_validator

from notifier.parti.sanitize import (
    clean_json,
    clean_line,
    clean_text,
    parse_change,
    parse_count,
    parse_id,
    parse_price,
)

UserId = NewType("UserId", int)
CategoryId = NewType("CategoryId", int)


def _optional_id(value: object) -> int | None:
    return None if value is None else parse_id(value)


def _info_id(value: object) -> int | None:
    try:
        return _optional_id(value)
    except ValueError:
        return None


def _name(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # a name made of digits may arrive as a JSON number
    if not isinstance(value, str):
        raise ValueError("not a text")
    return clean_line(value)


def _symbol(value: object) -> str:
    symbol = _name(value).strip()
    if not symbol:
        raise ValueError("empty")
    return symbol


def _info_name(value: object) -> str | None:
    try:
        return _name(value)
    except ValueError:
        return None


def _info_line(value: object) -> str | None:
    return clean_line(value) if isinstance(value, str) else None


# Text of the HTTP answers: accepted as before, cleaned (see sanitize.py).
Line = Annotated[str, AfterValidator(clean_line)]
Text = Annotated[str, AfterValidator(clean_text)]

# Fields of the WebSocket events. What an event needs (ids, price, symbol, name) rejects
# the event when it fails to parse; an informational field becomes None instead.
Id = Annotated[int, BeforeValidator(parse_id)]
OptionalId = Annotated[int | None, BeforeValidator(_optional_id)]
InfoId = Annotated[int | None, BeforeValidator(_info_id)]
Count = Annotated[int | None, BeforeValidator(parse_count)]
Name = Annotated[str, BeforeValidator(_name)]
Symbol = Annotated[str, BeforeValidator(_symbol)]
InfoLine = Annotated[str | None, BeforeValidator(_info_line)]
InfoName = Annotated[str | None, BeforeValidator(_info_name)]
# Prices are decimals, never floats: positive, finite, at most 10**15.
Price = Annotated[Decimal, BeforeValidator(parse_price)]
Change = Annotated[Decimal | None, BeforeValidator(parse_change)]


class _Model(BaseModel):
    # Unknown fields are kept (so `notifier parti` shows them) and never an error;
    # ids and numbers may arrive as strings, which lax mode converts.
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _clean_unknown_fields(cls, data: Any) -> Any:
        # Unknown fields reach logs and terminals (`notifier parti`) and JSON dumps,
        # which a lone surrogate would break: their texts are cleaned like the rest.
        if not isinstance(data, dict):
            return data
        known = cls.model_fields
        return {
            k: v if k in known else clean_json(v)
            for k, v in data.items()
            if isinstance(k, str) and (k in known or clean_line(k) == k)
        }


class Category(_Model):
    category_id: int
    name: Line = ""
    display_name: Line = ""

    @property
    def label(self) -> str:
        """What a person calls it: the display name, else the name."""
        return self.display_name or self.name or str(self.category_id)


class LiveChannel(_Model):
    """One entry of the live route. Only the user id is needed: an entry whose other fields
    do not parse (None) still says the channel is live, so its stream is not taken to have
    ended; an entry without a user id is skipped by the client."""

    user_id: Id
    user_name: InfoName = None
    viewers_count: Count = None
    category_name: InfoLine = None
    event_title: InfoLine = None
    event_id: InfoId = None
    livestream_id: InfoId = None
    avatar_link: InfoLine = None
    event_file: InfoLine = None
    social_media: InfoLine = None
    social_username: InfoLine = None


class CalendarEvent(_Model):
    event_id: int
    user_id: int
    event_title: Line | None = None
    event_start_ts: int
    category_id: int | None = None
    category_name: Line | None = None
    user_name: Line | None = None


class FeaturedChannel(_Model):
    user_id: int
    user_name: Line
    members: int | None = None


class RecentStream(_Model):
    """A recently ended stream (the recent routes have several variants of optional fields)."""

    user_id: int | None = None
    user_name: Line | None = None
    event_id: int
    event_title: Line | None = None
    event_start_ts: int | None = None
    event_end_ts: int | None = None
    category_name: Line | None = None
    total_viewers: int | None = None
    event_file: Line | None = None
    livestream_recording: Line | None = None


class AssetPrice(_Model):
    asset_type: Line | None = None
    display_symbol: Symbol
    ticker: Line | None = None
    price: Price
    direction: InfoLine = None
    price_diff: Change = None

    def update(self) -> PriceUpdate:
        """The asset as a price frame would give it (the start's baselines, a poll)."""
        return PriceUpdate(
            display_symbol=self.display_symbol,
            ticker=self.ticker,
            asset_type=self.asset_type,
            price=self.price,
        )


class UserProfile(_Model):
    user_id: int
    user_name: Line
    user_avatar_id: int | None = None
    channels_joined: int | None = None
    members: int | None = None
    description: Text | None = None
    bio: Text | None = None
    social_media: Line | None = None
    social_username: Line | None = None
    avatar_link: Line | None = None


class ChannelState(_Model):
    livestream_id: int | None = None
    user_id: int | None = None
    is_live: bool = False
    current_event_id: int | None = None


class StreamState(_Model):
    state: Line | None = None
    viewer_count: int | None = None


class ChannelInfoDetail(_Model):
    channel: ChannelState = ChannelState()
    stream: StreamState | None = None


class ChannelInfo(_Model):
    """Answer of `get_livestream_channel_info/{user_id}`: is this user live now."""

    status: Line | None = None
    channel_info: ChannelInfoDetail = ChannelInfoDetail()
    is_streaming_live_now: bool = False


# ---- WebSocket events -------------------------------------------------------


class ChannelLive(_Model):
    """`NewChannelLiveNotify`: a channel went live."""

    kind: ClassVar[str] = "live"
    user_id: Id
    user_name: Name
    livestream_id: OptionalId = None
    event_id: OptionalId = None
    event_title: InfoLine = None
    event_file: InfoLine = None
    avatar_link: InfoLine = None
    user_avatar_id: InfoId = None
    category_name: InfoLine = None
    category_id: InfoId = None
    viewers_count: Count = None
    social_media: InfoLine = None
    social_username: InfoLine = None
    channel_arn: InfoLine = None
    # Which of the channel's streams this is, counted by the ingest stage (never from
    # the wire: any value in the input is ignored; set it with `with_stream_seq`).
    stream_seq: int = 0

    @model_validator(mode="before")
    @classmethod
    def _ignore_wire_stream_seq(cls, data: Any) -> Any:
        if isinstance(data, dict) and "stream_seq" in data:
            return {k: v for k, v in data.items() if k != "stream_seq"}
        return data

    def with_stream_seq(self, seq: int) -> ChannelLive:
        """This event as the channel's stream number `seq`."""
        return self.model_copy(update={"stream_seq": seq})

    @property
    def identity(self) -> tuple[int, str]:
        """Event identity of DESIGN.md: `(user_id, event_id)`, else the channel's stream.

        `livestream_id` is the channel's and repeats across streams: without an event id
        the stream's sequence number tells them apart. The first stream (0) keeps the
        plain `livestream:{id}` marker, so identities stored before numbering still match.
        """
        if self.event_id is not None:
            return (self.user_id, f"event:{self.event_id}")
        if self.stream_seq:
            return (self.user_id, f"livestream:{self.livestream_id}:{self.stream_seq}")
        return (self.user_id, f"livestream:{self.livestream_id}")


class PriceUpdate(_Model):
    """One asset of `AssetPriceRefreshNotify`."""

    kind: ClassVar[str] = "price"
    display_symbol: Symbol
    ticker: InfoLine = None
    asset_type: InfoLine = None
    price: Price
    direction: InfoLine = None
    price_diff: Change = None


Event = ChannelLive | PriceUpdate
