"""Telegram sender through python-telegram-bot, and its failure classifier."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
import os
from collections.abc import Callable
from typing import Any

# RetryAfter.retry_after as a timedelta, without PTB's deprecation warning.
os.environ.setdefault("PTB_TIMEDELTA", "1")

from telegram import Bot, InlineKeyboardMarkup, LinkPreviewOptions
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)

from notifier.deliver.base import NotModified, Ready
from notifier.deliver.limits import (
    BotWindows,
    KeyedWindows,
    SlidingWindow,
    WindowBank,
    bot_windows,
)
from notifier.deliver.tg_request import AiohttpRequest
from notifier.log import redact, register_secret, short_error
from notifier.outbox.policy import Failure, Outcome
from notifier.render import telegram as render
from notifier.render.fields import AlertView
from notifier.render.recent import Recent, without_rule
from notifier.rules.schema import TelegramTarget

# Telegram's limits: 30 messages/s per bot, 1/s per private chat, 20/min per group.
BOT_LIMIT = (30, 1.0)
LOOKUP_TIMEOUT = 5.0  # seconds for getChat of an @username (well inside a start's)
PAID_BROADCAST_LIMIT = (1000, 1.0)  # with allow_paid_broadcast (Telegram Stars per message)
PRIVATE_LIMIT = (1, 1.0)
GROUP_LIMIT = (20, 60.0)
# The same alert to many chats (a fan-out) is rendered once.
_RENDERED: Recent[dict[str, Any], tuple[render.TelegramMessage, bool]] = Recent()
_NO_PREVIEW = LinkPreviewOptions(is_disabled=True)  # immutable: built once, sent with every text


class TelegramBot:
    """One python-telegram-bot `Bot` per token, shared by every destination that uses it."""

    def __init__(
        self,
        token: str,
        api_url: str,
        *,
        limits_scale: float = 1.0,
        timeout: float = 15.0,
        paid_broadcast: bool = False,
        bank: WindowBank | None = None,
    ) -> None:
        # Paid broadcasts lift the bot-wide limit from 30 to 1,000 messages a second (the
        # per-chat limits stay): one go-live to 20,000 followers takes 20 s, not 11 min.
        self.paid_broadcast = paid_broadcast
        register_secret(token)  # redacted from every failure's text (send-test too)
        bot_limit = PAID_BROADCAST_LIMIT if paid_broadcast else BOT_LIMIT
        # A connection for every message a second allows, so none waits for the pool.
        request = AiohttpRequest(
            slim_messages=True,  # only `message_id` is read back
            connection_pool_size=max(64, min(512, int(2 * bot_limit[0] * limits_scale))),
            read_timeout=timeout,
            write_timeout=timeout,
            connect_timeout=min(timeout, 10.0),
            pool_timeout=timeout,
        )
        # This bot only sends: the request PTB keeps for getUpdates is never used, so it
        # gets a small one of ours rather than an httpx client of its own.
        self.bot = Bot(
            token,
            base_url=f"{api_url.rstrip('/')}/bot",
            request=request,
            get_updates_request=(updates := AiohttpRequest(connection_pool_size=1)),
        )
        self._requests = (request, updates)
        self.limits_scale = limits_scale

        def new_windows() -> BotWindows:
            bot = SlidingWindow(int(bot_limit[0] * limits_scale), bot_limit[1], shared=True)
            return BotWindows(bot, KeyedWindows(functools.partial(_chat_window, limits_scale)))

        windows = bot_windows(
            bank, "telegram", token, api_url, limits_scale, paid_broadcast, make=new_windows
        )
        self.window = windows.bot
        # A chat's limit is the same with paid broadcasts or without: a reload that turns
        # them on or off changes the bot's window, and keeps every chat's.
        chats = bot_windows(
            bank, "telegram chats", token, api_url, limits_scale, make=lambda: windows
        )
        self._chat_windows = chats.chats
        self._started = False
        self._starting = asyncio.Lock()
        self._chat_ids: dict[str, str] = {}  # "@username" (lower case) -> the chat's id
        self._looking_up = asyncio.Lock()

    async def chat_key(self, chat_id: int | str) -> str:
        """The key of the chat's window: a public chat named by its @username is counted
        under its id, as Telegram counts it (a rules file's "@channel" and a subscription
        of the same channel share one window). Looked up once per name (getChat, one
        lookup at a time, at most `LOOKUP_TIMEOUT`); a chat the lookup does not find, or
        a lookup that fails, leaves the name as the key: it only picks a window, and
        must never keep a sender from starting."""
        key = str(chat_id)
        if not key.startswith("@"):
            return key
        async with self._looking_up:
            found = self._chat_ids.get(key.lower())
            if found is not None:
                return found
            try:
                async with asyncio.timeout(LOOKUP_TIMEOUT):
                    chat = await self.bot.get_chat(key)
                found = str(int(chat.id))
            except Exception:  # not found, no access, an odd answer, a timeout
                return key
            self._chat_ids[key.lower()] = found
            return found

    def chat_window(self, chat_id: int | str) -> SlidingWindow:
        """Telegram's limit for one chat (1 a second private, 20 a minute in a group), one
        window per chat for everything this bot sends there: alerts and command replies.
        Asked for at each send (see `KeyedWindows`)."""
        return self._chat_windows.get(str(chat_id))

    async def start(self) -> None:
        if self._started:
            return
        # The lanes of a fan-out start together: one getMe for all of them, not one each.
        async with self._starting:
            if not self._started:
                await self.bot.initialize()  # getMe: a wrong token fails here, before any alert
                self._started = True

    async def close(self) -> None:
        if self._started:
            await self.bot.shutdown()
            self._started = False
        for request in self._requests:  # also after a start that failed half-way
            await request.shutdown()


class TelegramSender:
    channel = "telegram"

    def __init__(
        self,
        name: str,
        target: TelegramTarget,
        bot: TelegramBot,
        *,
        keyboard: Callable[[dict[str, Any], str], dict[str, Any] | None] | None = None,
    ) -> None:
        self.name = name
        self.target = target
        # Buttons under an alert (chat subscriptions): payload, bot username -> markup JSON.
        self._keyboard = keyboard
        self.chat_id: int | str = target.chat_id
        self._window_key = str(target.chat_id)  # the chat's id once `start` looked it up
        self._bot = bot
        self.ready: Ready[tuple[render.TelegramMessage, bool]] = Ready()

    async def start(self) -> None:
        await self._bot.start()
        self._window_key = await self._bot.chat_key(self.chat_id)

    async def close(self) -> None:
        pass  # the bot is shared; its owner closes it

    def windows(self) -> list[SlidingWindow]:
        return [self._bot.window, self._bot.chat_window(self._window_key)]

    def prepare(self, payload: dict[str, Any]) -> None:
        self.ready.keep(payload, _message)

    def _common(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "chat_id": self.chat_id,
            "disable_notification": self.target.silent,
        }
        if self.target.thread_id is not None:
            options["message_thread_id"] = self.target.thread_id
        if self._bot.paid_broadcast:
            options["allow_paid_broadcast"] = True
        return options

    def _markup(self, payload: dict[str, Any]) -> dict[str, Any]:
        if self._keyboard is None:
            return {}
        markup = self._keyboard(payload, self._bot.bot.username or "")
        if markup is None:
            return {}
        return {"reply_markup": InlineKeyboardMarkup.de_json(markup, self._bot.bot)}

    async def send(self, payload: dict[str, Any]) -> str | None:
        message, plain = self.ready.take(payload, _message)
        bot = self._bot.bot
        parse_mode = None if plain else ParseMode.HTML
        markup = self._markup(payload)
        if message.photo:
            try:
                number = await _post(
                    bot,
                    "sendPhoto",
                    photo=message.photo,
                    caption=message.html,
                    parse_mode=parse_mode,
                    **self._common(),
                    **markup,
                )
                return f"p:{number}"
            except BadRequest as exc:
                if not _photo_problem(exc):
                    raise
                # The picture could not be fetched: the alert still goes out, as text.
                message = render.TelegramMessage(message.html, None)
        number = await _post(
            bot,
            "sendMessage",
            text=message.html,
            parse_mode=parse_mode,
            link_preview_options=_NO_PREVIEW,
            **self._common(),
            **markup,
        )
        return f"t:{number}"

    async def edit(self, message_id: str, payload: dict[str, Any]) -> None:
        message, plain = _message(payload)
        kind, _, number = message_id.partition(":")
        parse_mode = None if plain else ParseMode.HTML
        try:
            if kind == "p":
                await self._bot.bot.edit_message_caption(
                    chat_id=self.chat_id,
                    message_id=int(number),
                    caption=message.html,
                    parse_mode=parse_mode,
                )
            else:
                await self._bot.bot.edit_message_text(
                    chat_id=self.chat_id,
                    message_id=int(number),
                    text=message.html,
                    parse_mode=parse_mode,
                    link_preview_options=_NO_PREVIEW,
                )
        except BadRequest as exc:
            if "not modified" in exc.message.lower():
                raise NotModified(exc.message) from None
            raise

    async def delete(self, message_id: str) -> None:
        _, _, number = message_id.partition(":")
        await self._bot.bot.delete_message(chat_id=self.chat_id, message_id=int(number))

    def classify(self, error: BaseException) -> Failure:
        failure = classify(error)  # the bot's token is registered: redacted there
        if failure.outcome is Outcome.MIGRATED and failure.new_chat_id is not None:
            self.chat_id = failure.new_chat_id
            self._window_key = str(failure.new_chat_id)
        return failure


async def _post(bot: Bot, method: str, **parameters: Any) -> int:
    """`bot.send_photo` / `bot.send_message` with the same parameters, less what an alert
    does not need: PTB's own request path (its parameter encoding, its errors), without
    turning the answer into a `Message` (the outbox keeps only the id) or asking the disk
    whether the photo's URL names a local file (it is always an https URL). Those two were
    0.18 ms of a request's 0.27 ms of CPU, cold, in a micro-benchmark. That the requests
    are the same is tested against PTB's own methods."""
    answer = await bot._post(method, parameters)
    number = answer.get("message_id") if isinstance(answer, dict) else None
    if not isinstance(number, int) or isinstance(number, bool):
        raise TelegramError("Invalid server response")
    return number


def _chat_window(limits_scale: float, key: str) -> SlidingWindow:
    # A user's id is positive; groups, supergroups and channels are negative or @name.
    count, seconds = PRIVATE_LIMIT if key.isdigit() else GROUP_LIMIT
    return SlidingWindow(max(1, int(count * limits_scale)), seconds)


def _message(payload: dict[str, Any]) -> tuple[render.TelegramMessage, bool]:
    # No default Telegram message shows the rule's name.
    return _RENDERED.get(without_rule(payload), _render)


def _render(payload: dict[str, Any]) -> tuple[render.TelegramMessage, bool]:
    if "html" in payload:  # made whole elsewhere (a digest of held alerts)
        return render.TelegramMessage(str(payload["html"]), None), False
    view = AlertView.from_json(payload["view"])
    message = render.render(view, payload.get("template"))
    if payload.get("plain"):
        return render.TelegramMessage(render.as_plain(message), message.photo), True
    return message, False


def _photo_problem(error: BadRequest) -> bool:
    text = error.message.lower()
    return any(
        s in text for s in ("http url", "wrong file", "photo", "web page content", "failed to get")
    )


def classify(error: BaseException) -> Failure:
    """The one place a Telegram failure becomes retry-after, backoff, or permanent; its
    reason redacted (registered secrets, secret-shaped text) before anything cuts it."""
    failure = _classify(error)
    return dataclasses.replace(failure, reason=redact(failure.reason))


def _classify(error: BaseException) -> Failure:
    if isinstance(error, RetryAfter):
        wait = error.retry_after
        seconds = wait.total_seconds() if isinstance(wait, dt.timedelta) else float(wait)
        return Failure(Outcome.RETRY_AFTER, f"flood control: retry after {seconds:g}s", seconds)
    if isinstance(error, ChatMigrated):
        return Failure(
            Outcome.MIGRATED,
            f"chat migrated to {error.new_chat_id}",
            new_chat_id=int(error.new_chat_id),
        )
    if isinstance(error, Forbidden):
        return Failure(Outcome.PERMANENT, f"forbidden: {error.message}")
    if isinstance(error, InvalidToken):
        # Every chat of this bot is affected, and a reload with a fixed token cures it.
        return Failure(Outcome.UNREACHABLE, "the bot token was rejected")
    if isinstance(error, BadRequest):
        text = error.message.lower()
        if "can't parse entities" in text or "can't find end" in text:
            return Failure(Outcome.PLAIN_TEXT, f"markup rejected: {error.message}")
        return Failure(Outcome.PERMANENT, f"bad request: {error.message}")
    if isinstance(error, TimedOut):
        return Failure(Outcome.BACKOFF, "timed out")
    if isinstance(error, NetworkError):
        return Failure(Outcome.BACKOFF, f"network: {error.message}")
    if isinstance(error, TelegramError):
        return Failure(Outcome.BACKOFF, f"telegram: {error.message}")
    if isinstance(error, TimeoutError | OSError):
        return Failure(Outcome.BACKOFF, f"{type(error).__name__}")
    return Failure(Outcome.BACKOFF, f"unexpected {short_error(error)}")
