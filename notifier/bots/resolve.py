"""Streamer look-up for chat commands: a Parti name, a parti.com creator URL or a user id ->
the user id and name, through Parti's look-up routes, with a short cache."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeVar
from urllib.parse import unquote, urlsplit

from notifier.parti.client import NotFound, PartiClient

PLATFORMS: Final = frozenset({"parti", "twitter", "discord", "telegram"})
_HOSTS: Final = frozenset({"parti.com", "www.parti.com"})
_INT64: Final = 2**63
CACHE_TTL: Final = 300.0
CACHE_SIZE: Final = 2048

K = TypeVar("K", str, int)


@dataclass(frozen=True, slots=True)
class Streamer:
    user_id: int
    user_name: str


class StreamerNotFound(LookupError):
    """No Parti user answers to the text (the message is safe to show, unescaped)."""


# ---- what the text names (pure) ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ById:
    user_id: int


@dataclass(frozen=True, slots=True)
class BySocial:
    platform: str
    name: str


@dataclass(frozen=True, slots=True)
class ByName:
    name: str


Reference = ById | BySocial | ByName


def parse_reference(text: str) -> Reference | None:
    """What a /follow argument names: `12345`, `https://parti.com/creator/<platform>/<name>
    [/0]`, `https://parti.com/<slug>` (also without the scheme), `@name` or `name`; None
    for a link elsewhere or an empty text."""
    given = text.strip()
    if not given:
        return None
    if given.isascii() and given.isdigit():
        value = int(given) if len(given) <= 19 else 0
        return ById(value) if 0 < value < _INT64 else ByName(given)
    lowered = given.lower()
    if lowered.startswith(("http://", "https://")) or lowered.startswith(
        tuple(f"{host}/" for host in _HOSTS)
    ):
        return _from_url(given)
    return ByName(given.removeprefix("@"))


def _from_url(text: str) -> Reference | None:
    url = text if "://" in text else f"https://{text}"
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if (parts.hostname or "").lower() not in _HOSTS:
        return None
    segments = [unquote(s) for s in parts.path.split("/") if s]
    if len(segments) in (3, 4) and segments[0].lower() == "creator":
        platform, name = segments[1].lower(), segments[2]
        if platform in PLATFORMS and name and (len(segments) == 3 or segments[3] == "0"):
            return BySocial(platform, name)
        return None
    if len(segments) == 1 and segments[0].lower() not in ("creator", "video"):
        return ByName(segments[0].removeprefix("@"))
    return None


# ---- the look-up ------------------------------------------------------------------------


class Resolver:
    """Looks streamers up through the client and remembers the answers for `ttl` seconds
    (a /list page names ten streamers; a flood of /follow asks the same name)."""

    def __init__(
        self,
        client: PartiClient,
        *,
        ttl: float = CACHE_TTL,
        size: int = CACHE_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._ttl = ttl
        self._size = size
        self._clock = clock
        self._names: OrderedDict[str, tuple[float, Streamer | None]] = OrderedDict()
        self._ids: OrderedDict[int, tuple[float, Streamer | None]] = OrderedDict()

    async def resolve(self, text: str) -> Streamer:
        """The streamer `text` names; raises StreamerNotFound, or the client's Unavailable
        when Parti cannot answer now."""
        reference = parse_reference(text)
        if reference is None:
            raise StreamerNotFound("that is not a Parti name, a parti.com link or a user id")
        key = _key(reference)
        cached = self._get(self._names, key)
        if not isinstance(cached, _Missing):
            found = cached
        else:
            found = await self._look_up(reference)
            self._put(self._names, key, found)
        if found is None:
            raise StreamerNotFound("no Parti streamer by that name, link or id")
        return found

    async def by_id(self, user_id: int) -> Streamer | None:
        """The streamer with this id (name from the profile), None when Parti has no such user."""
        cached = self._get(self._ids, user_id)
        if not isinstance(cached, _Missing):
            return cached
        try:
            profile = await self._client.profile(user_id)
        except NotFound:
            found: Streamer | None = None
        else:
            found = Streamer(profile.user_id, profile.user_name or f"user {profile.user_id}")
        self._put(self._ids, user_id, found)
        return found

    async def name_of(self, user_id: int) -> str:
        """A name to show for a followed id, even when Parti cannot say (`user 123`)."""
        try:
            found = await self.by_id(user_id)
        except Exception:  # a list still shows, with ids, while Parti is down
            return f"user {user_id}"
        return found.user_name if found is not None else f"user {user_id}"

    async def _look_up(self, reference: Reference) -> Streamer | None:
        if isinstance(reference, ById):
            found = await self.by_id(reference.user_id)
            if found is not None:
                return found
            return await self._by_name(str(reference.user_id))
        if isinstance(reference, BySocial):
            try:
                user_id = await self._client.user_by_social_media(
                    reference.platform, reference.name
                )
            except NotFound:
                return None
            return await self._with_name(user_id, reference.name)
        return await self._by_name(reference.name)

    async def _by_name(self, name: str) -> Streamer | None:
        try:
            user_id = await self._client.user_id_from_name(name)
        except NotFound:
            try:  # a Parti account's own handle, where no slug was set
                user_id = await self._client.user_by_social_media("parti", name)
            except NotFound:
                return None
        return await self._with_name(user_id, name)

    async def _with_name(self, user_id: int, fallback: str) -> Streamer | None:
        if not 0 < user_id < _INT64:
            return None
        found = await self.by_id(user_id)
        return found if found is not None else Streamer(user_id, fallback)

    def _get(
        self, cache: OrderedDict[K, tuple[float, Streamer | None]], key: K
    ) -> Streamer | _Missing | None:
        entry = cache.get(key)
        if entry is None:
            return _MISSING
        expires, value = entry
        if expires <= self._clock():
            del cache[key]
            return _MISSING
        cache.move_to_end(key)
        return value

    def _put(
        self, cache: OrderedDict[K, tuple[float, Streamer | None]], key: K, value: Streamer | None
    ) -> None:
        cache[key] = (self._clock() + self._ttl, value)
        cache.move_to_end(key)
        while len(cache) > self._size:
            cache.popitem(last=False)


class _Missing:
    pass


_MISSING: Final = _Missing()


def _key(reference: Reference) -> str:
    if isinstance(reference, ById):
        return f"id:{reference.user_id}"
    if isinstance(reference, BySocial):
        return f"social:{reference.platform}:{reference.name.lower()}"
    return f"name:{reference.name.lower()}"


async def resolve_streamer(client: PartiClient, text: str) -> Streamer | None:
    """The streamer `text` names, or None (no cache: for one-off look-ups)."""
    try:
        return await Resolver(client).resolve(text)
    except StreamerNotFound:
        return None
