"""The Telegram command bot: a python-telegram-bot Application (long polling) that lets chat
users manage their chat's watchlist in the store, and the buttons alerts carry."""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, TypeVar

# RetryAfter.retry_after as a timedelta, without PTB's deprecation warning.
os.environ.setdefault("PTB_TIMEDELTA", "1")

from telegram import (
    BotCommand,
    CallbackQuery,
    Chat,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Message,
    ReplyParameters,
    Update,
)
from telegram.constants import ChatMemberStatus, ChatType, ParseMode
from telegram.error import BadRequest, InvalidToken, TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    BaseRateLimiter,
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)
from telegram.helpers import create_deep_linked_url

from notifier.bots.commands import (
    AlertsPage,
    Callback,
    Cancel,
    CommandError,
    Flood,
    FloodGate,
    ListPage,
    Mute,
    Unfollow,
    check_argument,
    cut,
    describe_price,
    echo,
    encode_callback,
    follow_payload,
    format_duration,
    format_price,
    pages_of,
    parse_callback,
    parse_follow_payload,
    parse_move,
    parse_mute,
    parse_price,
    plain_number,
    plural,
)
from notifier.bots.common import (
    SLOW_DOWN,
    KeyedLocks,
    asset_named,
    failure_text,
    known_assets,
    live_now,
    subscription_problem,
)
from notifier.bots.quiet import QuietError, chat_quiet, chat_zone, parse_quiet, quiet_end
from notifier.bots.resolve import Resolver, Streamer, StreamerNotFound
from notifier.log import event, get_logger, register_secret, short_error
from notifier.parti.client import PartiClient, PartiError
from notifier.parti.models import AssetPrice
from notifier.rules.subscriptions import telegram_destination
from notifier.store.base import Store
from notifier.store.errors import StoreUnavailable
from notifier.store.types import Chat as StoredChat
from notifier.store.types import ChatKind, SubscriptionKind

PLATFORM: Final = "telegram"
PAGE_SIZE: Final = 10
MUTE_BUTTON_SECONDS: Final = 3600
# Telegram's GroupAnonymousBot: the sender of an anonymous admin's messages.
ANONYMOUS_ADMIN: Final = 1087968824
UPDATES: Final = ("message", "channel_post", "callback_query", "my_chat_member")
BUTTON_NAME_LIMIT: Final = 28
ANSWER_LIMIT: Final = 200  # a button press's answer (answerCallbackQuery text)
# Reasons this bot writes to a chat's paused_reason (delivery may write others).
PAUSED_BLOCKED: Final = "blocked"
PAUSED_REMOVED: Final = "removed"

log = get_logger("bots.telegram")

AnyApplication = Application[Any, Any, Any, Any, Any, Any]


class CommandBotError(Exception):
    """The command bot cannot start: one line, without the token."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandLimits:
    max_follows: int = 200  # live subscriptions per chat
    max_price_alerts: int = 50  # price and move subscriptions per chat
    commands_per_minute: int = 20  # per user; beyond it one "slow down", then silence


COMMANDS: Final = (
    ("start", "Welcome and help"),
    ("help", "What this bot can do"),
    ("follow", "Follow a streamer: /follow NAME, link or id"),
    ("unfollow", "Stop following a streamer"),
    ("list", "The streamers this chat follows"),
    ("price", "Price alert: /price BTC above 100000"),
    ("move", "Move alert: /move ETH 5% 1h"),
    ("alerts", "This chat's price alerts"),
    ("mute", "Hold alerts for a while: /mute 2h"),
    ("unmute", "Send alerts again"),
    ("quiet", "Quiet hours: /quiet 23:00-07:00 Europe/Berlin"),
    ("why", "Why an alert came or not: /why NAME"),
)

HELP: Final = (
    "<b>Parti alerts</b>: I tell this chat when streamers go live and when prices cross a line.\n"
    "\n"
    "/follow NAME: follow a streamer (a Parti name, a parti.com link or a user id)\n"
    "/unfollow NAME: stop following\n"
    "/list: who this chat follows\n"
    "/price ASSET above|below LINE [rearm X%]: a price alert, e.g. /price BTC above 100000\n"
    "/move ASSET X% WINDOW: a move alert, e.g. /move ETH 5% 1h\n"
    "/alerts: this chat's price alerts\n"
    "/mute DURATION, /unmute: hold alerts for a while (e.g. /mute 2h)\n"
    "/quiet HH:MM-HH:MM TZ: quiet hours, e.g. /quiet 23:00-07:00 Europe/Berlin; /quiet off\n"
    "/why NAME: why an alert about a streamer came or not\n"
    "\n"
    "Alerts held by /mute or quiet hours come as one digest when they end."
)
GROUP_NOTE: Final = "\nIn groups and channels only admins change what the chat follows."
REFUSAL: Final = "Only this chat's admins can change what it follows."


# ---- what the lead calls when sending alerts (pure) -----------------------------------------


def alert_keyboard(
    *, chat_is_private: bool, user_id: int, bot_username: str
) -> dict[str, Any] | None:
    """The reply_markup JSON for a live alert: in a private chat "Unfollow" and "Mute 1h"
    buttons; in a group or channel a "Follow in DM" link that opens the bot's private chat
    and follows the streamer there (None when the bot's username is not known)."""
    if chat_is_private:
        row = [
            {"text": "Unfollow", "callback_data": encode_callback(Unfollow(int(user_id)))},
            {"text": "Mute 1h", "callback_data": encode_callback(Mute(MUTE_BUTTON_SECONDS))},
        ]
        return {"inline_keyboard": [row]}
    if len(bot_username) <= 3:
        return None
    url = create_deep_linked_url(bot_username, follow_payload(int(user_id)))
    return {"inline_keyboard": [[{"text": "Follow in DM", "url": url}]]}


# ---- one command or button press ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    html: str
    markup: InlineKeyboardMarkup | None = None


@dataclass(slots=True)
class _Turn:
    """A command as the actions see it."""

    chat: Chat
    chat_key: str
    stored: StoredChat
    message: Message
    args: str
    may_change: Callable[[], Awaitable[bool]]
    sender: int

    @property
    def is_private(self) -> bool:
        return self.chat.type == ChatType.PRIVATE

    async def require_admin(self) -> None:
        if not await self.may_change():
            raise CommandError(REFUSAL)


Action = Callable[[_Turn], Awaitable[Reply]]
T = TypeVar("T")
_OUTAGE_TRIES: Final = 6  # waits of 0.25, 0.5, 1, 2 and 4 s: about 8 s, then given up
_OUTAGE_WAIT = 0.25  # the first of them


class TelegramCommands:
    """The command bot: `await start()` (getMe, setMyCommands, long polling), `await stop()`;
    or `await run()` until cancelled. State lives in the store, so a restart (or a button on
    an old message) carries on where it was."""

    def __init__(
        self,
        *,
        token: str,
        api_url: str,
        store: Store,
        client: PartiClient,
        limits: CommandLimits | None = None,
        clock: Callable[[], float] | None = None,
        poll_timeout: float = 30.0,
        limiter: BaseRateLimiter[Any] | None = None,
    ) -> None:
        register_secret(token)
        # Replies share the alerts' rate windows when the daemon passes its limiter.
        self._limiter = limiter
        self._token = token
        self._api_url = api_url.rstrip("/")
        self._store = store
        self._client = client
        # A chat's membership changes are recorded in the order they came, also while each
        # waits out a store outage.
        self._member_changes = KeyedLocks()
        # A chat's limit is counted and a subscription added under its lock.
        self._additions = KeyedLocks()
        self._limits = limits or CommandLimits()
        # Mutes, pauses and the other times the chats table keeps count in the store's
        # clock (the database server's on PostgreSQL), the one delivery compares them with.
        self._clock = clock or store.clock
        self._poll_timeout = poll_timeout
        self._flood = FloodGate(limit=self._limits.commands_per_minute, window=60.0)
        self._resolver = Resolver(client)
        self._app: AnyApplication | None = None
        self.bot_username = ""

    # ---- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> TelegramCommands:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Check the token (getMe), set the command menu, start long polling. Raises
        CommandBotError (one line, no token) when the bot cannot start."""
        if self._app is not None:
            return
        app = self._build()
        try:
            await app.initialize()
            self.bot_username = app.bot.username or ""
            await self._set_menu(app)
            await app.start()
            assert app.updater is not None
            await app.updater.start_polling(
                poll_interval=0.0,
                timeout=dt.timedelta(seconds=self._poll_timeout),
                allowed_updates=list(UPDATES),
                error_callback=self._polling_failed,
            )
        except BaseException as exc:
            await self._shut(app)
            await app.bot.shutdown()  # its connection pool, when getMe failed
            if isinstance(exc, InvalidToken):
                # PTB's message quotes the token
                raise CommandBotError("Telegram refused the bot token (getMe)") from None
            if isinstance(exc, TelegramError):
                raise CommandBotError(
                    f"the Telegram bot cannot start: {short_error(exc)}"
                ) from None
            raise
        self._app = app
        event(log, "bot.started", platform=PLATFORM, bot=self.bot_username)

    async def stop(self) -> None:
        """Stop polling, let running handlers finish, close the connection pool."""
        app, self._app = self._app, None
        if app is not None:
            await self._shut(app)
            event(log, "bot.stopped", platform=PLATFORM, bot=self.bot_username)

    async def run(self) -> None:
        """Serve commands until cancelled, then stop cleanly."""
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.shield(self.stop())

    @staticmethod
    async def _shut(app: AnyApplication) -> None:
        if app.updater is not None and app.updater.running:
            await app.updater.stop()
        if app.running:
            await app.stop()
        await app.shutdown()

    def _build(self) -> AnyApplication:
        builder = (
            Application.builder()
            .token(self._token)
            .base_url(f"{self._api_url}/bot")
            .job_queue(None)
            # handlers wait on Parti, the store and rate limits: one slow chat must not
            # hold up the others
            .concurrent_updates(32)
            # 30 messages/s per bot and 20/min per group, shared by every reply
            .rate_limiter(self._limiter or AIORateLimiter(max_retries=1))
        )
        app: AnyApplication = builder.build()
        for name, action in self._actions().items():
            app.add_handler(CommandHandler(name, self._command_callback(name, action), _MESSAGES))
        app.add_handler(MessageHandler(filters.StatusUpdate.MIGRATE, self._on_migration))
        app.add_handler(
            MessageHandler(
                filters.COMMAND & filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE,
                self._on_unknown,
            )
        )
        app.add_handler(CallbackQueryHandler(self._on_button))
        app.add_handler(ChatMemberHandler(self._on_my_member, ChatMemberHandler.MY_CHAT_MEMBER))
        app.add_error_handler(self._on_error)
        return app

    async def _set_menu(self, app: AnyApplication) -> None:
        try:
            await app.bot.set_my_commands([BotCommand(name, text) for name, text in COMMANDS])
        except TelegramError as exc:  # the commands work without the menu
            event(log, "bot.menu_failed", logging.WARNING, error=short_error(exc))

    def _polling_failed(self, error: TelegramError) -> None:
        event(log, "bot.polling_failed", logging.WARNING, error=short_error(error))

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        error = context.error
        if error is not None:
            event(log, "bot.command_failed", logging.ERROR, error=short_error(error))

    # ---- commands ----------------------------------------------------------------------------

    def _actions(self) -> dict[str, Action]:
        return {
            "start": self._start,
            "help": self._help,
            "follow": self._follow,
            "unfollow": self._unfollow,
            "list": self._list,
            "price": self._price,
            "move": self._move,
            "alerts": self._alerts,
            "mute": self._mute,
            "unmute": self._unmute,
            "quiet": self._quiet,
            "why": self._why,
        }

    def _command_callback(
        self, name: str, action: Action
    ) -> Callable[[Update, ContextTypes.DEFAULT_TYPE], Coroutine[Any, Any, None]]:
        async def callback(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
            await self._run_command(name, action, update)

        return callback

    async def _run_command(self, name: str, action: Action, update: Update) -> None:
        message = update.effective_message
        chat = update.effective_chat
        if message is None or chat is None:
            return
        sender = _sender_id(update)
        # Decided before anything awaits, so commands are counted in the order they came.
        verdict = self._flood.check(sender, self._clock())
        if verdict is Flood.DROP:
            return
        try:
            if verdict is Flood.WARN:
                event(log, "bot.flood", logging.WARNING, chat=chat.id, user=sender)
                await self._reply(message, SLOW_DOWN)
                return
            stored = await self._remember_chat(chat)
            raw = _arguments(message)
            turn = _Turn(
                chat=chat,
                chat_key=str(chat.id),
                stored=stored,
                message=message,
                args=check_argument(raw) if raw else "",
                may_change=lambda: self._may_change(chat, message, sender),
                sender=sender,
            )
            reply = await action(turn)
        except CommandError as exc:
            reply = Reply(exc.html)
        except Exception as exc:
            reply = Reply(failure_text(log, exc, what=name))
        await self._reply(message, reply.html, reply.markup)

    async def _start(self, turn: _Turn) -> Reply:
        # Resuming delivery changes the chat: in a group only an admin's /start does it.
        if turn.stored.paused_reason is not None and await turn.may_change():
            await self._store.set_chat_fields(
                PLATFORM, turn.chat_key, now=self._clock(), paused_reason=None
            )
        payload = turn.args.split()[0] if turn.args else ""
        user_id = parse_follow_payload(payload) if payload else None
        welcome = HELP if turn.is_private else HELP + GROUP_NOTE
        if user_id is None:
            return Reply(welcome)
        await turn.require_admin()
        streamer = await self._resolver.by_id(user_id)
        if streamer is None:
            return Reply(f"That streamer is no longer on Parti.\n\n{welcome}")
        followed = await self._add_follow(turn, streamer)
        return Reply(f"{followed}\n\n/help lists what else I can do.")

    async def _help(self, turn: _Turn) -> Reply:
        return Reply(HELP if turn.is_private else HELP + GROUP_NOTE)

    async def _follow(self, turn: _Turn) -> Reply:
        if not turn.args:
            raise CommandError("Usage: /follow NAME, a parti.com link or a user id.")
        await turn.require_admin()
        streamer = await self._resolve(turn.args)
        return Reply(await self._add_follow(turn, streamer))

    async def _add_follow(self, turn: _Turn, streamer: Streamer) -> str:
        name = f"<b>{echo(streamer.user_name)}</b>"
        target = str(streamer.user_id)
        params: dict[str, Any] = {}
        self._validate(turn.chat_key, SubscriptionKind.LIVE, target, params)
        async with self._additions.hold(turn.chat_key):
            count = await self._store.count_subscriptions(
                PLATFORM, turn.chat_key, kind=SubscriptionKind.LIVE
            )
            if count >= self._limits.max_follows:
                if await self._follows(turn.chat_key, target):
                    return f"This chat already follows {name}."
                raise CommandError(
                    f"This chat follows {count} streamers, the most it may; /unfollow one first."
                )
            added = await self._store.add_subscription(
                PLATFORM,
                turn.chat_key,
                kind=SubscriptionKind.LIVE,
                target=target,
                params=params,
                created_by=str(turn.sender),
                now=self._clock(),
            )
        if added is None:
            return f"This chat already follows {name}."
        live = await live_now(self._client, streamer.user_id)
        state = {True: "They are live now!", False: "They are not live right now.", None: ""}[live]
        where = "here" if turn.is_private else "in this chat"
        return f"Following {name}: I'll post {where} when they go live. {state}".rstrip()

    async def _unfollow(self, turn: _Turn) -> Reply:
        if not turn.args:
            raise CommandError("Usage: /unfollow NAME (see /list).")
        await turn.require_admin()
        try:
            streamer = await self._resolve(turn.args)
        except (CommandError, PartiError):
            # an id needs no look-up: unfollowing works for a deleted user, or with Parti down
            if not (turn.args.isascii() and turn.args.isdigit() and len(turn.args) <= 19):
                raise
            streamer = Streamer(int(turn.args), f"user {turn.args}")
        removed = await self._store.remove_subscription(
            PLATFORM, turn.chat_key, kind=SubscriptionKind.LIVE, target=str(streamer.user_id)
        )
        name = f"<b>{echo(streamer.user_name)}</b>"
        if not removed:
            return Reply(f"This chat doesn't follow {name}.")
        return Reply(f"Unfollowed {name}.")

    async def _list(self, turn: _Turn) -> Reply:
        return await self._list_page(turn.chat_key, 0)

    async def _price(self, turn: _Turn) -> Reply:
        request = parse_price(turn.args)
        await turn.require_admin()
        asset = await self._asset(request.asset)
        symbol = asset.display_symbol.upper()
        params: dict[str, Any] = {
            "direction": request.direction.value,
            "line": plain_number(request.line),
        }
        if request.rearm is not None:
            params["rearm"] = request.rearm
        label, added = await self._add_alert(turn, SubscriptionKind.PRICE, symbol, params)
        if not added:
            return Reply(f"This chat already has that alert: <b>{label}</b>.")
        now_text = f" Now {format_price(asset.price)}."
        text = f"Alert set: <b>{label}</b>.{now_text}"
        past = (
            asset.price >= request.line
            if request.direction.value == "above"
            else asset.price <= request.line
        )
        if past:
            back = "below" if request.direction.value == "above" else "above"
            text += (
                f"\n{html.escape(symbol, quote=False)} is already {request.direction.value} the"
                f" line, so the alert fires the next time it crosses it, after it is back {back}."
            )
        return Reply(text)

    async def _move(self, turn: _Turn) -> Reply:
        request = parse_move(turn.args)
        await turn.require_admin()
        asset = await self._asset(request.asset)
        symbol = asset.display_symbol.upper()
        params: dict[str, Any] = {
            "percent": f"{plain_number(request.percent)}%",
            "window": int(request.window),
        }
        label, added = await self._add_alert(turn, SubscriptionKind.MOVE, symbol, params)
        if not added:
            return Reply(f"This chat already has that alert: <b>{label}</b>.")
        return Reply(f"Alert set: <b>{label}</b>. Now {format_price(asset.price)}.")

    async def _add_alert(
        self, turn: _Turn, kind: SubscriptionKind, symbol: str, params: dict[str, Any]
    ) -> tuple[str, bool]:
        """Saves a price or move alert once the chat has room for it and the rules take it.
        Returns its label (HTML) and whether it is new (False: the chat already has it)."""
        self._validate(turn.chat_key, kind, symbol, params)
        label = html.escape(describe_price(kind, symbol, params), quote=False)
        async with self._additions.hold(turn.chat_key):
            await self._check_alert_room(turn.chat_key)
            added = await self._store.add_subscription(
                PLATFORM,
                turn.chat_key,
                kind=kind,
                target=symbol,
                params=params,
                created_by=str(turn.sender),
                now=self._clock(),
            )
        return label, added is not None

    async def _alerts(self, turn: _Turn) -> Reply:
        return await self._alerts_page(turn.chat_key, 0)

    async def _mute(self, turn: _Turn) -> Reply:
        if not turn.args:
            raise CommandError("Usage: /mute DURATION, e.g. /mute 30m, /mute 2h, /mute 1d.")
        seconds = parse_mute(turn.args)
        await turn.require_admin()
        return Reply(await self._set_mute(turn.chat_key, turn.stored, seconds))

    async def _set_mute(self, chat_key: str, stored: StoredChat, seconds: float) -> str:
        now = self._clock()
        until = now + seconds
        await self._store.set_chat_fields(PLATFORM, chat_key, now=now, mute_until=until)
        when = _when(until, chat_zone(stored), now)
        return (
            f"Muted for {format_duration(seconds)}, until {when}. Alerts that come meanwhile"
            " wait and arrive as one digest; /unmute ends it now."
        )

    async def _mute_button(self, chat_key: str, stored: StoredChat, seconds: float) -> str:
        """An alert's "Mute 1h": a longer mute already set (/mute 7d) stays as it is."""
        now = self._clock()
        if stored.mute_until is not None and stored.mute_until > now + seconds:
            when = _when(stored.mute_until, chat_zone(stored), now)
            return f"Already muted until {when}; /unmute ends it now."
        return await self._set_mute(chat_key, stored, seconds)

    async def _unmute(self, turn: _Turn) -> Reply:
        await turn.require_admin()
        now = self._clock()
        await self._store.set_chat_fields(PLATFORM, turn.chat_key, now=now, mute_until=None)
        text = "Unmuted: alerts come as they happen."
        quiet = chat_quiet(turn.stored)
        if quiet is not None:
            end = quiet_end(quiet, now)
            if end is not None:
                when = _when(end, quiet.zone, now)
                text = f"Unmuted; quiet hours still hold alerts until {when}."
        return Reply(text)

    async def _quiet(self, turn: _Turn) -> Reply:
        if not turn.args:
            quiet = chat_quiet(turn.stored)
            if quiet is None:
                return Reply(
                    "No quiet hours. Set them with /quiet HH:MM-HH:MM TZ,"
                    " e.g. /quiet 23:00-07:00 Europe/Berlin."
                )
            return Reply(f"Quiet hours: {html.escape(quiet.text)}. /quiet off removes them.")
        await turn.require_admin()
        now = self._clock()
        if turn.args.lower() == "off":
            await self._store.set_chat_fields(PLATFORM, turn.chat_key, now=now, quiet=None)
            return Reply("Quiet hours removed.")
        try:
            quiet = parse_quiet(turn.args)
        except QuietError as exc:
            raise CommandError(f"Can't read that: {html.escape(str(exc), quote=False)}.") from None
        await self._store.set_chat_fields(PLATFORM, turn.chat_key, now=now, quiet=quiet.text)
        return Reply(
            f"Quiet hours: {html.escape(quiet.text, quote=False)}. Alerts in those hours wait"
            " and arrive as one digest when they end."
        )

    async def _why(self, turn: _Turn) -> Reply:
        if not turn.args:
            raise CommandError("Usage: /why NAME")
        streamer = await self._resolve(turn.args)
        name = f"<b>{echo(streamer.user_name)}</b>"
        subject = str(streamer.user_id)
        decision = await self._store.last_decision(PLATFORM, turn.chat_key, subject)
        follows = await self._follows(turn.chat_key, subject)
        lead = "" if follows else f"This chat doesn't follow {name}. "
        if decision is None:
            return Reply(f"{lead}About {name}: no decision yet (no live event since).".lstrip())
        when = _when(decision.at, chat_zone(turn.stored), self._clock())
        text = html.escape(decision.text, quote=False)
        return Reply(f"{lead}Last decision about {name} ({when}): {text}.")

    async def _on_unknown(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None:
            return
        if self._flood.check(_sender_id(update), self._clock()) is not Flood.ALLOW:
            return
        await self._reply(message, "I don't know that command; /help lists mine.")

    # ---- buttons -----------------------------------------------------------------------------

    async def _on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None:
            return
        answered = False
        try:
            if self._flood.check(query.from_user.id, self._clock()) is not Flood.ALLOW:
                await query.answer(SLOW_DOWN)
                answered = True
                return
            action = parse_callback(query.data or "")
            if action is None or query.message is None:
                await query.answer("This button no longer works.")
                answered = True
                return
            text, alert = await self._press(query, action)
            # Telegram refuses a longer one (a streamer's name can be long).
            await query.answer(cut(text, ANSWER_LIMIT), show_alert=alert)
            answered = True
        except Exception as exc:
            text = _plain(failure_text(log, exc, what="button"))
            if not answered:
                try:
                    await query.answer(text, show_alert=True)
                except Exception as again:  # the query may be too old to answer
                    event(log, "bot.answer_failed", logging.WARNING, error=short_error(again))

    async def _press(self, query: CallbackQuery, action: Callback) -> tuple[str, bool]:
        """Does what the button says; returns the answer for the query (text, as an alert)."""
        message = query.message
        assert message is not None
        chat = message.chat
        chat_key = str(chat.id)
        stored = await self._remember_chat(chat)
        if isinstance(action, ListPage):
            await self._redraw(message, await self._list_page(chat_key, action.page))
            return "", False
        if isinstance(action, AlertsPage):
            await self._redraw(message, await self._alerts_page(chat_key, action.page))
            return "", False
        if not await self._may_change_by(chat, query.from_user.id):
            return REFUSAL, True
        if isinstance(action, Mute):
            return _plain(await self._mute_button(chat_key, stored, action.seconds)), False
        if isinstance(action, Cancel):
            return await self._cancel(message, chat_key, action)
        return await self._unfollow_button(query, chat_key, action)

    async def _unfollow_button(
        self, query: CallbackQuery, chat_key: str, action: Unfollow
    ) -> tuple[str, bool]:
        message = query.message
        assert message is not None
        removed = await self._store.remove_subscription(
            PLATFORM, chat_key, kind=SubscriptionKind.LIVE, target=str(action.user_id)
        )
        name = await self._resolver.name_of(action.user_id)
        if action.page is not None:
            await self._redraw(message, await self._list_page(chat_key, action.page))
        elif isinstance(message, Message) and message.reply_markup is not None:
            # An alert's buttons: the Unfollow one goes, the others stay.
            await self._set_markup(message, _without(message.reply_markup, query.data or ""))
        if not removed:
            return f"This chat doesn't follow {name}.", False
        return f"Unfollowed {name}.", False

    async def _cancel(self, message: Any, chat_key: str, action: Cancel) -> tuple[str, bool]:
        mine = {
            sub.id: sub
            for sub in await self._store.list_subscriptions(platform=PLATFORM, chat_id=chat_key)
            if sub.kind in (SubscriptionKind.PRICE, SubscriptionKind.MOVE)
        }
        sub = mine.get(action.sub_id)
        # Only this chat's alerts: button data is the client's to forge.
        removed = sub is not None and await self._store.remove_subscription_id(action.sub_id)
        await self._redraw(message, await self._alerts_page(chat_key, action.page))
        if sub is None or not removed:
            return "That alert is already gone.", False
        return f"Cancelled {describe_price(sub.kind, sub.target, sub.params)}.", False

    async def _redraw(self, message: Any, reply: Reply) -> None:
        try:
            await message.get_bot().edit_message_text(
                chat_id=message.chat.id,
                message_id=message.message_id,
                text=reply.html,
                parse_mode=ParseMode.HTML,
                reply_markup=reply.markup,
                link_preview_options=LinkPreviewOptions(is_disabled=True),
            )
        except BadRequest as exc:
            if not _not_modified(exc):
                raise

    async def _set_markup(self, message: Message, markup: InlineKeyboardMarkup | None) -> None:
        try:
            await message.get_bot().edit_message_reply_markup(
                chat_id=message.chat.id, message_id=message.message_id, reply_markup=markup
            )
        except BadRequest as exc:
            if not _not_modified(exc):
                raise

    # ---- chat membership and migration ---------------------------------------------------

    async def _on_my_member(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        change = update.my_chat_member
        if change is None:
            return
        chat = change.chat
        status = change.new_chat_member.status

        async def record() -> None:
            if status in (ChatMemberStatus.BANNED, ChatMemberStatus.LEFT):
                reason = PAUSED_BLOCKED if chat.type == ChatType.PRIVATE else PAUSED_REMOVED
                await self._remember_chat(chat)
                await self._store.set_chat_fields(
                    PLATFORM, str(chat.id), now=self._clock(), paused_reason=reason
                )
                event(log, "bot.chat_paused", chat=chat.id, reason=reason)
            elif status in (ChatMemberStatus.MEMBER, ChatMemberStatus.ADMINISTRATOR):
                stored = await self._remember_chat(chat)
                if stored.paused_reason in (PAUSED_BLOCKED, PAUSED_REMOVED):
                    await self._store.set_chat_fields(
                        PLATFORM, str(chat.id), now=self._clock(), paused_reason=None
                    )
                    event(log, "bot.chat_resumed", chat=chat.id)

        try:
            async with self._member_changes.hold(chat.id):
                await _through_outage(record)
        except Exception as exc:
            event(
                log,
                "bot.command_failed",
                logging.ERROR,
                command="my_chat_member",
                error=short_error(exc),
            )

    async def _on_migration(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None:
            return
        if message.migrate_to_chat_id is not None:
            old, new = message.chat.id, message.migrate_to_chat_id
        elif message.migrate_from_chat_id is not None:
            old, new = message.migrate_from_chat_id, message.chat.id
        else:
            return
        try:
            moved = await _through_outage(
                lambda: self._store.migrate_chat(PLATFORM, str(old), str(new), now=self._clock())
            )
        except Exception as exc:
            event(
                log, "bot.command_failed", logging.ERROR, command="migrate", error=short_error(exc)
            )
            return
        if moved:
            event(log, "bot.chat_migrated", old=old, new=new, subscriptions=moved)

    # ---- helpers -----------------------------------------------------------------------------

    async def _remember_chat(self, chat: Chat) -> StoredChat:
        return await self._store.upsert_chat(
            PLATFORM,
            str(chat.id),
            kind=_chat_kind(chat),
            now=self._clock(),
            title=_title(chat),
        )

    async def _may_change(self, chat: Chat, message: Message, sender: int) -> bool:
        if chat.type == ChatType.PRIVATE:
            return True
        # An anonymous admin writes as the group itself (from: GroupAnonymousBot); a
        # channel post comes from the channel, and only its admins can post.
        if message.sender_chat is not None and message.sender_chat.id == chat.id:
            return True
        if message.from_user is None or message.from_user.id == ANONYMOUS_ADMIN:
            return False
        return await self._may_change_by(chat, message.from_user.id)

    async def _may_change_by(self, chat: Chat, user_id: int) -> bool:
        if chat.type == ChatType.PRIVATE:
            return True
        try:
            member = await chat.get_bot().get_chat_member(chat.id, user_id)
        except TelegramError as exc:
            event(
                log, "bot.admin_check_failed", logging.WARNING, chat=chat.id, error=short_error(exc)
            )
            return False
        return member.status in (ChatMemberStatus.OWNER, ChatMemberStatus.ADMINISTRATOR)

    async def _reply(
        self, message: Message, text: str, markup: InlineKeyboardMarkup | None = None
    ) -> None:
        chat = message.chat
        quote = None
        if chat.type in (ChatType.GROUP, ChatType.SUPERGROUP):
            quote = ReplyParameters(message.message_id, allow_sending_without_reply=True)
        try:
            await message.get_bot().send_message(
                chat.id,
                text,
                parse_mode=ParseMode.HTML,
                reply_markup=markup,
                reply_parameters=quote,
                message_thread_id=message.message_thread_id if message.is_topic_message else None,
                link_preview_options=LinkPreviewOptions(is_disabled=True),
            )
        except Exception as exc:
            event(log, "bot.reply_failed", logging.WARNING, chat=chat.id, error=short_error(exc))

    async def _resolve(self, text: str) -> Streamer:
        try:
            return await self._resolver.resolve(text)
        except StreamerNotFound:
            raise CommandError(
                f"I can't find {echo(text)} on Parti. Try their Parti name, the link to their"
                " page (https://parti.com/creator/...) or their user id."
            ) from None

    async def _follows(self, chat_key: str, target: str) -> bool:
        subs = await self._store.list_subscriptions(
            platform=PLATFORM, chat_id=chat_key, kind=SubscriptionKind.LIVE
        )
        return any(sub.target == target for sub in subs)

    async def _asset(self, text: str) -> AssetPrice:
        prices = await self._client.prices()
        asset = asset_named(prices, text)
        if asset is not None:
            return asset
        known = known_assets(prices)
        raise CommandError(
            f"I don't know the asset {echo(text)}."
            + (f" Known: {html.escape(known, quote=False)}." if known else "")
        )

    async def _check_alert_room(self, chat_key: str) -> None:
        count = await self._store.count_subscriptions(
            PLATFORM, chat_key, kind=SubscriptionKind.PRICE
        ) + await self._store.count_subscriptions(PLATFORM, chat_key, kind=SubscriptionKind.MOVE)
        if count >= self._limits.max_price_alerts:
            raise CommandError(
                f"This chat has {count} price alerts, the most it may; cancel one in /alerts first."
            )

    def _validate(self, chat_key: str, kind: str, target: str, params: dict[str, Any]) -> None:
        detail = subscription_problem(
            platform=PLATFORM,
            chat_id=chat_key,
            kind=kind,
            target=target,
            destination=telegram_destination(chat_key),
            params=params,
        )
        if detail is not None:
            raise CommandError(f"Can't set that: {echo(detail, 160)}.")

    async def _list_page(self, chat_key: str, page: int) -> Reply:
        subs = sorted(
            await self._store.list_subscriptions(
                platform=PLATFORM, chat_id=chat_key, kind=SubscriptionKind.LIVE
            ),
            key=lambda sub: sub.id,
        )
        if not subs:
            return Reply("This chat follows nobody yet. Try /follow NAME.")
        pages, page = pages_of(len(subs), page, size=PAGE_SIZE)
        chunk = subs[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]
        names = await asyncio.gather(*(self._resolver.name_of(int(s.target)) for s in chunk))
        count = len(subs)
        header = f"<b>Following {plural(count, 'streamer')}</b>"
        if pages > 1:
            header += f" (page {page + 1} of {pages})"
        lines = [f"{page * PAGE_SIZE + i + 1}. {echo(name)}" for i, name in enumerate(names)]
        rows = [
            [
                InlineKeyboardButton(
                    f"Unfollow {_button_name(name)}",
                    callback_data=encode_callback(Unfollow(int(sub.target), page)),
                )
            ]
            for sub, name in zip(chunk, names, strict=True)
        ]
        rows += _nav(page, pages, ListPage)
        return Reply("\n".join([header, *lines]), InlineKeyboardMarkup(rows))

    async def _alerts_page(self, chat_key: str, page: int) -> Reply:
        subs = sorted(
            (
                sub
                for sub in await self._store.list_subscriptions(platform=PLATFORM, chat_id=chat_key)
                if sub.kind in (SubscriptionKind.PRICE, SubscriptionKind.MOVE)
            ),
            key=lambda sub: sub.id,
        )
        if not subs:
            return Reply(
                "This chat has no price alerts. Try /price BTC above 100000 or /move ETH 5% 1h."
            )
        pages, page = pages_of(len(subs), page, size=PAGE_SIZE)
        chunk = subs[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]
        count = len(subs)
        header = f"<b>{plural(count, 'price alert')}</b>"
        if pages > 1:
            header += f" (page {page + 1} of {pages})"
        labels = [describe_price(sub.kind, sub.target, sub.params) for sub in chunk]
        lines = [f"• {html.escape(label, quote=False)}" for label in labels]
        rows = [
            [
                InlineKeyboardButton(
                    f"Cancel {label}"[:60],
                    callback_data=encode_callback(Cancel(sub.id, page)),
                )
            ]
            for sub, label in zip(chunk, labels, strict=True)
        ]
        rows += _nav(page, pages, AlertsPage)
        return Reply("\n".join([header, *lines]), InlineKeyboardMarkup(rows))


# ---- small pure helpers ---------------------------------------------------------------------

_MESSAGES: Final = filters.UpdateType.MESSAGE | filters.UpdateType.CHANNEL_POST


def _sender_id(update: Update) -> int:
    """Who a flood limit counts: the user, or the chat a message was sent as."""
    message = update.effective_message
    if message is not None and message.sender_chat is not None:
        return message.sender_chat.id
    if update.effective_user is not None:
        return update.effective_user.id
    chat = update.effective_chat
    return chat.id if chat is not None else 0


def _arguments(message: Message) -> str:
    """The text after the command (`/follow@bot NAME` -> `NAME`)."""
    text = message.text or ""
    entity = (message.entities or (None,))[0]
    if entity is None or entity.offset != 0:
        return ""
    # The command itself is ASCII, so its UTF-16 length is its length in characters.
    return text[entity.length :].strip()


def _chat_kind(chat: Chat) -> str:
    if chat.type == ChatType.PRIVATE:
        return ChatKind.PRIVATE.value
    if chat.type == ChatType.CHANNEL:
        return ChatKind.CHANNEL.value
    return ChatKind.GROUP.value


def _title(chat: Chat) -> str | None:
    if chat.type == ChatType.PRIVATE:
        return f"@{chat.username}" if chat.username else chat.full_name
    return chat.title


def _nav(
    page: int, pages: int, kind: type[ListPage] | type[AlertsPage]
) -> list[list[InlineKeyboardButton]]:
    if pages <= 1:
        return []
    row: list[InlineKeyboardButton] = []
    if page > 0:
        row.append(InlineKeyboardButton("« Prev", callback_data=encode_callback(kind(page - 1))))
    if page < pages - 1:
        row.append(InlineKeyboardButton("Next »", callback_data=encode_callback(kind(page + 1))))
    return [row]


def _button_name(name: str) -> str:
    return cut(" ".join(name.split()), BUTTON_NAME_LIMIT)


def _not_modified(exc: BadRequest) -> bool:
    """Telegram refuses an edit that changes nothing ("message is not modified"): a press
    that redraws the page already shown, not a fault."""
    return "not modified" in str(exc).lower()


def _without(markup: InlineKeyboardMarkup, data: str) -> InlineKeyboardMarkup | None:
    rows: list[list[InlineKeyboardButton]] = []
    for row in markup.inline_keyboard:
        kept = [button for button in row if button.callback_data != data]
        if kept:
            rows.append(kept)
    return InlineKeyboardMarkup(rows) if rows else None


def _when(at: float, zone: dt.tzinfo, now: float) -> str:
    local = dt.datetime.fromtimestamp(at, zone)
    today = dt.datetime.fromtimestamp(now, zone).date()
    name = getattr(zone, "key", None) or "UTC"
    text = local.strftime("%H:%M")
    if local.date() != today:
        text = local.strftime("%a %d %b %H:%M")
    return f"{text} {name}"


def _plain(html_text: str) -> str:
    """A reply's HTML as plain text for a callback answer (at most 200 characters)."""
    text = html.unescape(html_text.replace("<b>", "").replace("</b>", ""))
    return cut(text, ANSWER_LIMIT)


__all__ = [
    "COMMANDS",
    "CommandBotError",
    "CommandLimits",
    "Reply",
    "TelegramCommands",
    "alert_keyboard",
]


async def _through_outage(work: Callable[[], Awaitable[T]]) -> T:
    """A membership change or a migration comes once: a short store outage must not lose
    it (a chat that let the bot back in would stay paused). Tried for about 8 s."""
    for attempt in range(_OUTAGE_TRIES):
        try:
            return await work()
        except StoreUnavailable:
            if attempt == _OUTAGE_TRIES - 1:
                raise
            await asyncio.sleep(min(16 * _OUTAGE_WAIT, _OUTAGE_WAIT * 2**attempt))
    raise AssertionError("unreachable")
