"""Typed shapes of Parti's HTTP answers and WebSocket events (tolerant: see realtime-notes.md)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, ClassVar, NewType

from pydantic import BaseModel, ConfigDict, Field

UserId = NewType("UserId", int)
CategoryId = NewType("CategoryId", int)

# Prices are decimals, never floats; NaN and infinities are not prices.
Price = Annotated[Decimal, Field(allow_inf_nan=False)]


class _Model(BaseModel):
    # Unknown fields are kept (so `notifier parti` shows them) and never an error;
    # ids and numbers may arrive as strings, which lax mode converts.
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)


class Category(_Model):
    category_id: int
    name: str = ""
    display_name: str = ""

    @property
    def label(self) -> str:
        """What a person calls it: the display name, else the name."""
        return self.display_name or self.name or str(self.category_id)


class LiveChannel(_Model):
    """One entry of the live route."""

    user_id: int
    user_name: str
    viewers_count: int | None = None
    category_name: str | None = None
    event_title: str | None = None
    event_id: int | None = None
    livestream_id: int | None = None
    avatar_link: str | None = None
    event_file: str | None = None
    social_media: str | None = None
    social_username: str | None = None


class CalendarEvent(_Model):
    event_id: int
    user_id: int
    event_title: str | None = None
    event_start_ts: int
    category_id: int | None = None
    category_name: str | None = None
    user_name: str | None = None


class FeaturedChannel(_Model):
    user_id: int
    user_name: str
    members: int | None = None


class RecentStream(_Model):
    """A recently ended stream (the recent routes have several variants of optional fields)."""

    user_id: int | None = None
    user_name: str | None = None
    event_id: int
    event_title: str | None = None
    event_start_ts: int | None = None
    event_end_ts: int | None = None
    category_name: str | None = None
    total_viewers: int | None = None
    event_file: str | None = None
    livestream_recording: str | None = None


class AssetPrice(_Model):
    asset_type: str | None = None
    display_symbol: str
    ticker: str | None = None
    price: Price
    direction: str | None = None
    price_diff: Price | None = None


class UserProfile(_Model):
    user_id: int
    user_name: str
    user_avatar_id: int | None = None
    channels_joined: int | None = None
    members: int | None = None
    description: str | None = None
    bio: str | None = None
    social_media: str | None = None
    social_username: str | None = None
    avatar_link: str | None = None


class ChannelState(_Model):
    livestream_id: int | None = None
    user_id: int | None = None
    is_live: bool = False
    current_event_id: int | None = None


class StreamState(_Model):
    state: str | None = None
    viewer_count: int | None = None


class ChannelInfoDetail(_Model):
    channel: ChannelState = ChannelState()
    stream: StreamState | None = None


class ChannelInfo(_Model):
    """Answer of `get_livestream_channel_info/{user_id}`: is this user live now."""

    status: str | None = None
    channel_info: ChannelInfoDetail = ChannelInfoDetail()
    is_streaming_live_now: bool = False


# ---- WebSocket events -------------------------------------------------------


class ChannelLive(_Model):
    """`NewChannelLiveNotify`: a channel went live."""

    kind: ClassVar[str] = "live"
    user_id: int
    user_name: str
    livestream_id: int | None = None
    event_id: int | None = None
    event_title: str | None = None
    event_file: str | None = None
    avatar_link: str | None = None
    user_avatar_id: int | None = None
    category_name: str | None = None
    category_id: int | None = None
    viewers_count: int | None = None
    social_media: str | None = None
    social_username: str | None = None
    channel_arn: str | None = None

    @property
    def identity(self) -> tuple[int, str]:
        """Event identity of DESIGN.md: `(user_id, event_id)`, else `(user_id, livestream_id)`."""
        if self.event_id is not None:
            return (self.user_id, f"event:{self.event_id}")
        return (self.user_id, f"livestream:{self.livestream_id}")


class PriceUpdate(_Model):
    """One asset of `AssetPriceRefreshNotify`."""

    kind: ClassVar[str] = "price"
    display_symbol: str
    ticker: str | None = None
    asset_type: str | None = None
    price: Price
    direction: str | None = None
    price_diff: Price | None = None


Event = ChannelLive | PriceUpdate
