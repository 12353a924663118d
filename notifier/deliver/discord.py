"""Discord sender through discord.py (webhooks, or a bot token without the gateway)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import re
import time
import weakref
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Final

import aiohttp
import discord
import discord.webhook.async_
import yarl
from discord.http import HTTPClient, Route, handle_message_parameters
from discord.webhook.async_ import async_context

from notifier.deliver.base import Ready
from notifier.deliver.limits import (
    BotWindows,
    KeyedWindows,
    ServerHold,
    SlidingWindow,
    WindowBank,
    bot_windows,
)
from notifier.log import redact, redact_cut, register_secret, short_error
from notifier.outbox.policy import Failure, Outcome
from notifier.render import discord as render
from notifier.render.fields import AlertView
from notifier.render.recent import Recent, without_rule
from notifier.rules.schema import DiscordTarget

# Discord's limits: 5 messages per 2 s per channel (a webhook's bucket headers say its
# own), DMs about 1 a second, 50 requests a second per bot across everything.
CHANNEL_LIMIT: Final = (5, 2.0)
DM_LIMIT: Final = (1, 1.0)
BOT_LIMIT: Final = (50, 1.0)
_WEBHOOK = re.compile(r"/webhooks/(\d+)/([A-Za-z0-9_.\-]+)")


class BadWebhookUrl(ValueError):
    """A webhook URL without `/webhooks/{id}/{token}` (the message never shows the token)."""


def parse_webhook(url: str) -> tuple[int, str]:
    match = _WEBHOOK.search(url)
    if match is None:
        raise BadWebhookUrl("webhook_url does not contain /webhooks/{id}/{token}")
    return int(match.group(1)), match.group(2)


def point_at(api_url: str) -> None:
    """discord.py builds every URL from `Route.BASE`; there is no other way to set it."""
    Route.BASE = api_url.rstrip("/")


WEBHOOK_CONNECTIONS = 1024


# The hold of the webhook a request of this task is for (set around each webhook call).
_HOLD: contextvars.ContextVar[ServerHold | None] = contextvars.ContextVar("hold", default=None)
# One hold per webhook, as discord.py keeps one bucket lock per webhook for the process:
# shared by every destination that names it and by the senders a reload builds. Kept
# while a sender or a pending reset (the timer) refers to it.
_HOLDS: weakref.WeakValueDictionary[int, ServerHold] = weakref.WeakValueDictionary()


def webhook_hold(webhook_id: int) -> ServerHold:
    hold = _HOLDS.get(webhook_id)
    if hold is None:
        hold = _HOLDS[webhook_id] = ServerHold()
    return hold


def _release(lock: asyncio.Lock, hold: ServerHold | None) -> None:
    """The bucket's reset: the lock goes (the hold was kept alive until now)."""
    lock.release()


class _HeldUntilReset:
    """discord.py's webhook bucket lock (in place of its `AsyncDeferredLock`), let go by a
    timer at the bucket's reset instead of slept on. discord.py sleeps the
    X-RateLimit-Reset-After of an answer that says the bucket is empty before it returns
    that answer: the message is delivered, yet its send waits up to the reset (the whole
    lane with it), is recorded that much later, and a reset longer than the send timeout
    turns the delivered message into a timeout, retried: sent twice. Here the answer comes
    back at once; the webhook's next request waits for the lock (before anything is sent),
    and our lane waits for the webhook's `ServerHold` in the gate, outside its timeout."""

    def __init__(self, lock: asyncio.Lock) -> None:
        self.lock = lock
        self.delta: float | None = None

    async def __aenter__(self) -> _HeldUntilReset:
        await self.lock.acquire()
        return self

    def delay_by(self, delta: float) -> None:
        self.delta = delta

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self.delta or self.delta <= 0:
            self.lock.release()
            return
        hold = _HOLD.get()
        if hold is not None:
            hold.hold(time.monotonic() + self.delta)
        asyncio.get_running_loop().call_later(self.delta, _release, self.lock, hold)


discord.webhook.async_.AsyncDeferredLock = _HeldUntilReset  # type: ignore[assignment,misc]


class HubClosed(RuntimeError):
    """The hub was closed while a start was logging in."""


class DiscordHub:
    """The one aiohttp session for webhooks and the one bot HTTP client, shared by senders."""

    def __init__(
        self,
        api_url: str,
        bot_token: str | None,
        *,
        limits_scale: float = 1.0,
        bank: WindowBank | None = None,
    ) -> None:
        self.api_url = api_url
        self.bot_token = bot_token
        if bot_token:
            register_secret(bot_token)  # redacted from every failure's text (send-test too)
        self.limits_scale = limits_scale
        self.session: aiohttp.ClientSession | None = None
        self.http: HTTPClient | None = None
        self._logging_in = asyncio.Lock()
        self._closes = 0
        # The bot's own limits, shared by everything it sends: its configured channels,
        # the chat subscriptions' channels and DMs.

        def new_windows() -> BotWindows:
            count, seconds = BOT_LIMIT
            bot = SlidingWindow(max(1, int(count * limits_scale)), seconds, shared=True)
            return BotWindows(bot, KeyedWindows(functools.partial(_chat_window, limits_scale)))

        windows = bot_windows(bank, "discord", bot_token, api_url, limits_scale, make=new_windows)
        self.bot_window = windows.bot
        self._chat_windows = windows.chats

    def chat_window(self, key: str) -> SlidingWindow:
        """A channel's ("c<id>") or a user's DMs' ("d<id>") window, kept across the lanes
        that open and close for it; asked for at each send (see `KeyedWindows`)."""
        return self._chat_windows.get(key)

    async def start(self, *, need_bot: bool) -> None:
        # Where discord.py sends (a global of its own): set once these senders go into
        # service, not while a reload that may yet fail builds them.
        point_at(self.api_url)
        if self.session is None:
            # One connection per webhook lane sending at once (aiohttp's default of 100
            # would queue a fan-out to 200 webhooks behind itself); the lanes bound it.
            connector = aiohttp.TCPConnector(limit=WEBHOOK_CONNECTIONS, keepalive_timeout=30.0)
            # Every request is inside a lane's send timeout: no second timer of aiohttp's
            # for each (its 5 minute default), only one for a connection being opened.
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=30.0)
            self.session = aiohttp.ClientSession(
                connector=connector, trust_env=False, timeout=timeout
            )
        if need_bot and self.http is None:
            if not self.bot_token:
                raise RuntimeError("NOTIFIER_DISCORD_BOT_TOKEN is not set (needed for channel_id)")
            # The lanes of a fan-out start together: one login (and one client) for all.
            async with self._logging_in:
                if self.http is None:
                    closes = self._closes
                    http = HTTPClient(asyncio.get_running_loop(), max_ratelimit_timeout=60.0)
                    try:
                        await http.static_login(self.bot_token)
                        if self._closes != closes:  # a reload closed these senders meanwhile
                            raise HubClosed("the Discord senders were closed while logging in")
                    except BaseException:
                        await http.close()  # the next start logs in again
                        raise
                    self.http = http

    async def close(self) -> None:
        self._closes += 1  # a login still running is closed when it ends, not kept
        if self.http is not None:
            await self.http.close()
            self.http = None
        if self.session is not None:
            await self.session.close()
            self.session = None


def _chat_window(limits_scale: float, key: str) -> SlidingWindow:
    count, seconds = CHANNEL_LIMIT if key.startswith("c") else DM_LIMIT
    return SlidingWindow(max(1, int(count * limits_scale)), seconds)


def execute_route(api_url: str, webhook_id: int, token: str) -> Route:
    """discord.py's route of `execute_webhook(wait=True)` on `api_url`, its query in its
    URL, made once per webhook: aiohttp takes a ready URL as it is, where the `params`
    execute_webhook passes are parsed and merged into the URL again at every request (a
    quarter of aiohttp's time per send)."""
    route = Route(
        "POST", "/webhooks/{webhook_id}/{webhook_token}", webhook_id=webhook_id, webhook_token=token
    )
    path = route.url.removeprefix(Route.BASE)  # discord.py's own quoting of the token
    url = yarl.URL(api_url.rstrip("/") + path).with_query(wait=1, with_components=0)
    route.url = url  # type: ignore[assignment]  # aiohttp takes a URL wherever a str goes
    return route


class InvalidAnswer(Exception):
    """Discord answered a send without the message it made."""


def allowed_mentions(role: int | None) -> discord.AllowedMentions:
    """Explicit every time (a message without them would ping @everyone in its text): only
    the destination's or subscription's role may ping, never @everyone or users."""
    if role is None:
        return discord.AllowedMentions.none()
    return discord.AllowedMentions(everyone=False, users=False, roles=[discord.Object(id=role)])


class DiscordSender:
    channel = "discord"

    def __init__(self, name: str, target: DiscordTarget, hub: DiscordHub) -> None:
        self.name = name
        self.target = target
        self._hub = hub
        self._webhook: discord.Webhook | None = None
        self._route: Route | None = None
        self._secret = ""
        self._hold: ServerHold | None = None
        self.ready: Ready[dict[str, Any]] = Ready()
        if target.webhook_url is not None:
            self._webhook_id, self._secret = parse_webhook(target.webhook_url)
            # Redacted from every failure's text before it is cut (`classify`).
            register_secret(self._secret)
            self._hold = webhook_hold(self._webhook_id)
        # A webhook's bucket is counted by Discord and announced in its answers: its
        # requests go one at a time (discord.py's lock), and the answer that empties the
        # bucket (X-RateLimit-Remaining: 0) holds the next request until
        # X-RateLimit-Reset-After (`ServerHold`, `_HeldUntilReset`), as the server counts. A
        # window of ours, counted from when answers were read, would wait longer than the
        # server asks. A channel keeps ours: the bot's and the channel's, the same ones a
        # chat subscription to that channel uses.

    async def start(self) -> None:
        await self._hub.start(need_bot=self.target.channel_id is not None)
        if self.target.webhook_url is not None:
            assert self._hub.session is not None
            self._webhook = discord.Webhook.partial(
                self._webhook_id, self._secret, session=self._hub.session
            )
            self._route = execute_route(self._hub.api_url, self._webhook_id, self._secret)

    async def close(self) -> None:
        pass  # the hub is shared; its owner closes it

    def windows(self) -> list[SlidingWindow]:
        if self._hold is not None:
            return [self._hold]
        return [self._hub.bot_window, self._hub.chat_window(f"c{self.target.channel_id}")]

    def _message(self, payload: dict[str, Any]) -> render.DiscordMessage:
        return RENDERED.get((rendering_key(payload), self.target.mention_role), render_alert)

    @contextlib.contextmanager
    def _webhook_call(self) -> Iterator[None]:
        """Around each request to the webhook: its answers set the webhook's hold."""
        token = _HOLD.set(self._hold)
        try:
            yield
        finally:
            _HOLD.reset(token)

    def _body(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The webhook's JSON body for `payload`: the body discord.py's `Webhook.send`
        builds, made once per rendering (tests/deliver/test_discord_lean_send.py)."""
        key = (rendering_key(payload), self.target.mention_role, self.target.username)
        return BODIES.get(key, webhook_body)

    def prepare(self, payload: dict[str, Any]) -> None:
        if self._webhook is not None:
            self.ready.keep(payload, self._body)

    async def send(self, payload: dict[str, Any]) -> str | None:
        if self._webhook is not None:
            # discord.py's own webhook request (its bucket, retries and errors), its
            # answer not turned back into a `WebhookMessage`.
            assert self._route is not None
            body = self.ready.take(payload, self._body)
            with self._webhook_call():
                data = await async_context.get().request(
                    self._route, self._webhook.session, payload=body
                )
            if not isinstance(data, dict) or not isinstance(data.get("id"), str | int):
                raise InvalidAnswer("Discord's answer carries no message id")
            return str(data["id"])
        message = self._message(payload)
        embed = discord.Embed.from_dict(message.embed)
        mentions = allowed_mentions(message.mention_role)
        assert self._hub.http is not None and self.target.channel_id is not None
        with handle_message_parameters(
            content=message.content, embed=embed, allowed_mentions=mentions
        ) as params:
            data = await self._hub.http.send_message(self.target.channel_id, params=params)
        return str(data["id"])

    async def edit(self, message_id: str, payload: dict[str, Any]) -> None:
        message = self._message(payload)
        embed = discord.Embed.from_dict(message.embed)
        mentions = allowed_mentions(message.mention_role)
        if self._webhook is not None:
            with self._webhook_call():
                await self._webhook.edit_message(
                    int(message_id), embed=embed, allowed_mentions=mentions
                )
            return
        assert self._hub.http is not None and self.target.channel_id is not None
        with handle_message_parameters(embed=embed, allowed_mentions=mentions) as params:
            await self._hub.http.edit_message(
                self.target.channel_id, int(message_id), params=params
            )

    async def delete(self, message_id: str) -> None:
        if self._webhook is not None:
            with self._webhook_call():
                await self._webhook.delete_message(int(message_id))
            return
        assert self._hub.http is not None and self.target.channel_id is not None
        await self._hub.http.delete_message(self.target.channel_id, int(message_id))

    def classify(self, error: BaseException) -> Failure:
        return classify(error)  # the webhook's token is registered: redacted there


def classify(error: BaseException) -> Failure:
    """The one place a Discord failure becomes retry-after, backoff, or permanent; its
    reason redacted (registered secrets, secret-shaped text) before anything is cut."""
    failure = _classify(error)
    return dataclasses.replace(failure, reason=redact(failure.reason))


def _classify(error: BaseException) -> Failure:
    if isinstance(error, discord.RateLimited):
        return Failure(
            Outcome.RETRY_AFTER,
            f"rate limited for {error.retry_after:g}s",
            float(error.retry_after),
        )
    if isinstance(error, discord.LoginFailure):
        # Every channel of this bot is affected, and a reload with a fixed token cures it.
        return Failure(Outcome.UNREACHABLE, "the bot token was rejected")
    if isinstance(error, discord.HTTPException):
        status, code = error.status, error.code
        if status == 401 and code != 50027:  # 50027: this webhook's own token is invalid
            return Failure(Outcome.UNREACHABLE, "the bot token was rejected")
        text = f"{status} {code}"
        if error.text:  # redacted before it is cut: a secret split by the cut stays hidden
            text += f": {redact_cut(error.text, 200)}"
        if status == 429:
            retry = _retry_after(error)
            return Failure(Outcome.RETRY_AFTER, f"rate limited: {text}", retry)
        if status >= 500:
            return Failure(Outcome.BACKOFF, f"server error {text}")
        if status in (401, 403, 404):
            # unknown webhook (10015), unknown channel (10003), missing access or
            # permissions (50001, 50013), invalid webhook token (50027)
            return Failure(Outcome.PERMANENT, f"rejected {text}")
        return Failure(Outcome.PERMANENT, f"bad request {text}")
    if isinstance(error, BadWebhookUrl):
        return Failure(Outcome.PERMANENT, str(error))
    if isinstance(error, TimeoutError | aiohttp.ClientError | OSError):
        return Failure(Outcome.BACKOFF, f"{type(error).__name__}")
    return Failure(Outcome.BACKOFF, f"unexpected {short_error(error)}")


def _retry_after(error: discord.HTTPException) -> float:
    header = error.response.headers.get("Retry-After") if error.response is not None else None
    try:
        return max(0.0, float(header)) if header is not None else 5.0
    except ValueError:
        return 5.0


# The same alert to many channels (a fan-out) is rendered once: by payload and role.
RENDERED: Recent[tuple[dict[str, Any], int | None], render.DiscordMessage] = Recent()
SHOWS_RULE: Final = frozenset({"price"})  # the default embeds that name the rule (a footer)


def rendering_key(payload: dict[str, Any]) -> dict[str, Any]:
    """What a Discord rendering depends on besides the role (see `without_rule`)."""
    return without_rule(payload, shown_by=SHOWS_RULE)


def render_alert(key: tuple[dict[str, Any], int | None]) -> render.DiscordMessage:
    payload, role = key
    view = AlertView.from_json(payload["view"])
    return render.render(view, payload.get("template"), mention_role=role)


# A webhook's JSON body by rendering, role and display name: one fan-out, one body.
BODIES: Recent[tuple[dict[str, Any], int | None, str | None], dict[str, Any]] = Recent()


def webhook_body(key: tuple[dict[str, Any], int | None, str | None]) -> dict[str, Any]:
    """The JSON `Webhook.send(embed=..., content=..., username=..., allowed_mentions=...)`
    posts, built by the same `handle_message_parameters`."""
    rendering, role, username = key
    message = RENDERED.get((rendering, role), render_alert)
    options: dict[str, Any] = {
        "embed": discord.Embed.from_dict(message.embed),
        "allowed_mentions": allowed_mentions(message.mention_role),
    }
    if message.content:
        options["content"] = message.content
    if username:
        options["username"] = username
    with handle_message_parameters(**options) as params:
        assert params.payload is not None
        return params.payload
