"""Async HTTP client for Parti's routes: one method a route, retries, typed errors, pagination."""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from notifier.backoff import full_jitter
from notifier.log import event, get_logger
from notifier.parti.models import (
    AssetPrice,
    CalendarEvent,
    Category,
    ChannelInfo,
    FeaturedChannel,
    LiveChannel,
    RecentStream,
    UserProfile,
)
from notifier.parti.sanitize import clean_line
from notifier.redact import short_error

_log = get_logger("parti")
PREFIX = "/parti_v2/profile"
BROWSER_HEADERS = {
    "Accept": "application/json, text/plain, */*",
    "Origin": "https://parti.com",
    "Referer": "https://parti.com/",
    "User-Agent": (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/136.0.0.0 Safari/537.36"
    ),
}
# Bounds `Retry-After` so that a hostile or broken answer cannot park us for hours.
MAX_RETRY_AFTER = 60.0
MAX_PAGES = 1_000
# An answer's body (decompressed) larger than this is refused unread: Parti's largest
# page is some kilobytes, and a hostile or broken one must not fill the memory.
MAX_BODY_BYTES = 8 * 1024 * 1024
# A warning about skipped entries of a route's answers at most this often (seconds).
SKIP_LOG_INTERVAL = 60.0

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class PartiError(Exception):
    """Base of the client's errors; the message names the route and the status."""

    def __init__(self, route: str, status: int | None, detail: str) -> None:
        where = f"{route} -> {status}" if status is not None else route
        super().__init__(f"{where}: {detail}")
        self.route = route
        self.status = status


class NotFound(PartiError):
    """The route answered 404: no such user, event or route."""


class Unavailable(PartiError):
    """Parti could not be reached or kept failing (connect errors, 5xx, 429) after retries."""


class BadAnswer(PartiError):
    """Parti answered something that is not the documented JSON (or another 4xx)."""


class PartiClient:
    """One pooled httpx client for every route of api-routes.md and realtime-notes.md."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff_base: float = 0.5,
        backoff_cap: float = 8.0,
        transport: httpx.AsyncBaseTransport | None = None,
        rand: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=BROWSER_HEADERS,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
            transport=transport,
            follow_redirects=True,
        )
        self._retries = retries
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._rand = rand
        self._sleep = sleep
        # Malformed entries of list answers skipped, by route (and their warnings' pace).
        self.skipped: Counter[str] = Counter()
        self._skip_logged: dict[str, float] = {}
        self._skip_suppressed: Counter[str] = Counter()

    async def __aenter__(self) -> PartiClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ---- the routes ---------------------------------------------------------

    async def categories(self) -> list[Category]:
        return await self._list("/livestream_calendar/events/categories", Category)

    async def live(self, *, limit: int = 100, offset: int = 0) -> list[LiveChannel]:
        params = {"limit": limit, "offset": offset}
        return await self._list("/get_livestream_channel_info/live", LiveChannel, params)

    async def calendar(self, *, limit: int = 100, offset: int = 0) -> list[CalendarEvent]:
        params = {"offset": offset, "limit": limit}
        return await self._list("/livestream_calendar/events", CalendarEvent, params)

    async def featured(self) -> list[FeaturedChannel]:
        return await self._list("/featured_channels", FeaturedChannel)

    async def recent(
        self,
        *,
        limit: int = 15,
        offset: int = 0,
        categories: int | str | None = None,
        from_ts: int | None = None,
        to_ts: int | None = None,
        followed_only: bool = False,
        sort_by_date_desc: bool = True,
        top_views_sort: bool = False,
    ) -> list[RecentStream]:
        """Recently ended streams; `categories` is a category id, or "NaN" for none."""
        params: dict[str, Any] = {"sort_by_date_desc": _flag(sort_by_date_desc)}
        if from_ts is not None:
            params["from_ts"] = from_ts
        if to_ts is not None:
            params["to_ts"] = to_ts
        params["followed_only"] = _flag(followed_only)
        if categories is not None:
            params["categories"] = categories
        params |= {"offset": offset, "limit": limit, "top_views_sort": _flag(top_views_sort)}
        return await self._list("/get_livestream_channel_info/recent", RecentStream, params)

    async def recent_event(self, event_id: int) -> RecentStream:
        route = f"/get_livestream_channel_info/recent/{int(event_id)}"
        return await self._one(route, RecentStream)

    async def prices(self) -> list[AssetPrice]:
        return await self._list("/assets_prices/info", AssetPrice)

    async def profile(self, user_id: int) -> UserProfile:
        return await self._one(f"/user_profile/{int(user_id)}", UserProfile)

    async def user_by_social_media(self, platform: str, name: str) -> int:
        route = f"/get_user_by_social_media/{_segment(platform)}/{_segment(name)}"
        return await self._get(route, None, TypeAdapter(int))

    async def user_id_from_name(self, slug: str) -> int:
        route = f"/user_id_from_name/{_segment(slug)}"
        answer = await self._get(route, None, TypeAdapter(dict[str, int]))
        if "user_id" not in answer:
            raise BadAnswer(route, 200, "no user_id in the answer")
        return answer["user_id"]

    async def channel(self, user_id: int) -> ChannelInfo:
        return await self._one(f"/get_livestream_channel_info/{int(user_id)}", ChannelInfo)

    # ---- pagination ---------------------------------------------------------

    async def iter_live(self, *, page_size: int = 100) -> AsyncIterator[LiveChannel]:
        async for item in self._paginate(
            lambda limit, offset: self.live(limit=limit, offset=offset), page_size
        ):
            yield item

    async def iter_calendar(self, *, page_size: int = 100) -> AsyncIterator[CalendarEvent]:
        async for item in self._paginate(
            lambda limit, offset: self.calendar(limit=limit, offset=offset), page_size
        ):
            yield item

    async def iter_recent(
        self, *, page_size: int = 15, **filters: Any
    ) -> AsyncIterator[RecentStream]:
        async for item in self._paginate(
            lambda limit, offset: self.recent(limit=limit, offset=offset, **filters), page_size
        ):
            yield item

    async def _paginate(
        self, fetch: Callable[[int, int], Awaitable[list[T]]], page_size: int
    ) -> AsyncIterator[T]:
        offset = 0
        for _ in range(MAX_PAGES):
            page = await fetch(page_size, offset)
            for item in page:
                yield item
            # counted as Parti sent it: a page with a skipped entry is not the last
            received = page.received if isinstance(page, Page) else len(page)
            if received < page_size:
                return
            offset += received

    # ---- transport ----------------------------------------------------------

    async def _list(
        self, route: str, model: type[M], params: Mapping[str, Any] | None = None
    ) -> Page[M]:
        """The entries of a list route, each validated on its own: a malformed one is
        skipped (counted in `skipped`, a warning at most once a minute a route), never the
        whole answer."""
        entries = await self._get(route, params, _ENTRIES)
        page: Page[M] = Page()
        page.received = len(entries)
        for index, entry in enumerate(entries):
            try:
                page.append(model.model_validate(entry))
            except ValidationError as exc:
                error = exc.errors(include_url=False, include_input=False)[0]
                where = ".".join(str(p) for p in error["loc"]) or "entry"
                self._skip(route, index, f"{where}: {error['msg']}")
            except Exception as exc:  # a validator's bug: contained to its entry
                self._skip(route, index, short_error(exc))
        return page

    def _skip(self, route: str, index: int, detail: str) -> None:
        self.skipped[route] += 1
        now = time.monotonic()
        if now - self._skip_logged.get(route, -math.inf) < SKIP_LOG_INTERVAL:
            self._skip_suppressed[route] += 1
            return
        self._skip_logged[route] = now
        event(
            _log,
            "parti.entry_skipped",
            logging.WARNING,
            route=route,
            index=index,
            detail=clean_line(detail)[:200],
            suppressed=self._skip_suppressed.pop(route, 0),
        )

    async def _one(self, route: str, model: type[M]) -> M:
        return await self._get(route, None, TypeAdapter(model))

    async def _get(
        self, route: str, params: Mapping[str, Any] | None, adapter: TypeAdapter[T]
    ) -> T:
        answer = await self._request(route, params)
        media = answer.content_type.split(";", 1)[0].strip().lower()
        if media and media != "application/json" and not media.endswith("+json"):
            # an HTML page of a proxy or a login wall, say (no Content-Type: read as JSON)
            raise BadAnswer(route, answer.status, f"not JSON ({clean_line(media[:60])})")
        try:
            return adapter.validate_json(answer.body)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(p) for p in error["loc"]) or "body"
            raise BadAnswer(route, answer.status, f"{where}: {error['msg']}") from None

    async def _request(self, route: str, params: Mapping[str, Any] | None) -> _Answer:
        """A 2xx answer read whole; any other outcome is one of the client's errors: a
        transport fault or a 5xx/429 retried, then Unavailable; anything else httpx
        refuses (a body that does not decompress, a redirect loop, an oversized body)
        and other 4xx: BadAnswer at once."""
        path = PREFIX + route
        attempt = 0
        while True:
            delay: float
            try:
                answer = await self._fetch(route, path, params)
            except httpx.TransportError as exc:
                if attempt >= self._retries:
                    raise Unavailable(route, None, short_error(exc, 200)) from None
                delay = self._backoff(attempt)
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise BadAnswer(route, None, short_error(exc, 200)) from None
            else:
                status = answer.status
                if status < 300:
                    return answer
                if status == 404:
                    raise NotFound(route, status, answer.excerpt())
                if status != 429 and status < 500:
                    raise BadAnswer(route, status, answer.excerpt())
                if attempt >= self._retries:
                    raise Unavailable(route, status, answer.excerpt())
                delay = self._backoff(attempt)
                if status == 429:
                    delay = _retry_after(answer.retry_after, default=delay)
            await self._sleep(delay)
            attempt += 1

    async def _fetch(self, route: str, path: str, params: Mapping[str, Any] | None) -> _Answer:
        async with self._http.stream("GET", path, params=params) as response:
            status = response.status_code
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
                raise BadAnswer(route, status, f"body of {declared} bytes is too large")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_BODY_BYTES:
                    raise BadAnswer(route, status, f"body over {MAX_BODY_BYTES} bytes")
            return _Answer(
                status=status,
                body=bytes(body),
                content_type=response.headers.get("Content-Type", ""),
                retry_after=response.headers.get("Retry-After", ""),
            )

    def _backoff(self, attempt: int) -> float:
        return full_jitter(attempt, base=self._backoff_base, cap=self._backoff_cap, rand=self._rand)


class Page(list[M]):
    """A page of a list route: its valid entries, and how many entries Parti sent."""

    received: int = 0


_ENTRIES: TypeAdapter[list[Any]] = TypeAdapter(list[Any])


@dataclass(frozen=True)
class _Answer:
    """What `_request` keeps of a response: read whole, within `MAX_BODY_BYTES`."""

    status: int
    body: bytes
    content_type: str
    retry_after: str

    def excerpt(self) -> str:
        text = self.body[:120].decode("utf-8", "replace").replace("\n", " ")
        return clean_line(text) or httpx.codes.get_reason_phrase(self.status) or "no body"


def _retry_after(header: str, *, default: float) -> float:
    try:
        seconds = float(header)
    except ValueError:
        return default
    if not math.isfinite(seconds):
        return default
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _segment(text: str) -> str:
    return quote(text, safe="")
