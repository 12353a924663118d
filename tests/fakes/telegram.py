"""A fake Telegram Bot API on 127.0.0.1: records requests, validates HTML, reply markup and
command menus the way Telegram does, enforces the rate limits by answering 429, fails on
request, and plays the users' side of a conversation (updates served by long polling)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.common import Recorder, Scripted, Window, stats_of

# tdlib's own HTML parser, ported; other tests import parse_html from here too
from tests.fakes.telegram_html import HtmlError, parse_html

BOT_ID = 123
BOT_USERNAME = "parti_test_bot"
BOT_FIRST_NAME = "Parti Test"
MEMBER_STATUSES = ("creator", "administrator", "member", "restricted", "left", "kicked")
# The update types getUpdates knows (Bot API 9); the default leaves out the three that
# need to be asked for by name.
UPDATE_TYPES = (
    "message",
    "edited_message",
    "channel_post",
    "edited_channel_post",
    "business_connection",
    "business_message",
    "edited_business_message",
    "deleted_business_messages",
    "message_reaction",
    "message_reaction_count",
    "inline_query",
    "chosen_inline_result",
    "callback_query",
    "shipping_query",
    "pre_checkout_query",
    "purchased_paid_media",
    "poll",
    "poll_answer",
    "my_chat_member",
    "chat_member",
    "chat_join_request",
    "chat_boost",
    "removed_chat_boost",
)
DEFAULT_UPDATE_TYPES = frozenset(UPDATE_TYPES) - {
    "chat_member",
    "message_reaction",
    "message_reaction_count",
}
LONG_POLL_MAX = 50  # the server clamps `timeout` to this many seconds
CONFLICT = (
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance "
    "is running"
)
QUERY_INVALID = "Bad Request: query is too old and response timeout expired or query ID is invalid"
ANSWER_LIMIT = 200  # answerCallbackQuery's text: 0-200 characters
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
# Methods that bootstrap and poll: a failure scripted without naming them leaves them be,
# so `fail(...)` aimed at sends is not eaten by a bot's background getUpdates.
_POLLING = frozenset({"getUpdates", "deleteWebhook", "getWebhookInfo", "setWebhook"})
# Methods that send or change a message count against the chat and bot rate limits.
_LIMITED = frozenset(
    {
        "sendMessage",
        "sendPhoto",
        "editMessageText",
        "editMessageCaption",
        "editMessageReplyMarkup",
        "deleteMessage",
    }
)


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units: the unit of every entity offset and length."""
    return len(text.encode("utf-16-le")) // 2


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _is_command_char(ch: str) -> bool:
    return ch.isascii() and (ch.isalnum() or ch == "_")


def _run(text: str, start: int) -> int:
    end = start
    while end < len(text) and _is_command_char(text[end]):
        end += 1
    return end


def bot_commands(text: str) -> list[tuple[int, int]]:
    """(start, end) string indexes of the bot commands Telegram marks in `text`: tdlib's
    `match_bot_commands`, /[A-Za-z0-9_]{1,64}(@[A-Za-z0-9_]{3,32})? not touching a word
    character, '/', '<' or '>' on either side."""
    found: list[tuple[int, int]] = []
    i = text.find("/")
    while i >= 0:
        nxt = i + 1
        if i > 0 and (_is_word(text[i - 1]) or text[i - 1] in "/<>"):
            i = text.find("/", nxt)
            continue
        name_end = _run(text, i + 1)
        nxt = max(name_end, i + 1)
        if 1 <= name_end - (i + 1) <= 64:
            end = name_end
            ok = True
            if end < len(text) and text[end] == "@":
                mention_end = _run(text, end + 1)
                nxt = mention_end
                ok = 3 <= mention_end - (end + 1) <= 32
                end = mention_end
            after = text[end] if end < len(text) else ""
            if ok and not (after and (_is_word(after) or after in "/<>")):
                found.append((i, end))
                nxt = end
        i = text.find("/", nxt)
    return found


def bot_command_entities(text: str) -> list[dict[str, Any]]:
    """The `bot_command` MessageEntity objects for `text`, offsets in UTF-16 code units."""
    return [
        {
            "type": "bot_command",
            "offset": utf16_len(text[:start]),
            "length": utf16_len(text[start:end]),
        }
        for start, end in bot_commands(text)
    ]


_HOST_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?$", re.IGNORECASE)


def url_button_error(url: str) -> str | None:
    """Why Telegram refuses `url` on an inline button (its wording), or None. http, https
    and tg links pass; a host must be a dotted domain name or an IPv4 address."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "http", url
    scheme = scheme.lower()
    if scheme == "tg":
        return None if rest else "Wrong HTTP URL"
    if scheme not in ("http", "https", "ton"):
        return "Unsupported URL protocol"
    host = re.split(r"[/?#]", rest, maxsplit=1)[0].rpartition("@")[2]
    host, colon, port = host.partition(":")
    if colon and not (port.isdigit() and 0 < int(port) < 65536):
        return "Wrong port number specified in the URL"
    labels = host.split(".")
    if len(labels) < 2 or not all(_HOST_LABEL.match(label) for label in labels):
        return "Wrong HTTP URL"
    if not (labels[-1].isalpha() or all(label.isdigit() for label in labels)):
        return "Wrong HTTP URL"
    return None


class MarkupError(ValueError):
    pass


def parse_reply_markup(raw: str | None) -> dict[str, Any] | None:
    """The reply markup a send or edit carries, validated as the Bot API server does
    (InlineKeyboardMarkup in full; reply keyboards are accepted as they come)."""
    if not raw:
        return None
    try:
        markup = json.loads(raw)
    except ValueError:
        raise MarkupError("can't parse reply keyboard markup JSON object") from None
    if not isinstance(markup, dict):
        raise MarkupError("object expected as reply markup")
    keyboard = markup.get("inline_keyboard")
    if keyboard is None:
        return markup
    if not isinstance(keyboard, list):
        raise MarkupError('field "inline_keyboard" of the InlineKeyboardMarkup must be an Array')
    count = 0
    for row in keyboard:
        if not isinstance(row, list):
            raise MarkupError(
                'field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays'
            )
        for button in row:
            _check_inline_button(button)
            count += 1
    if count > 100:
        raise MarkupError("reply markup is too long")
    return markup if count else None


def _check_inline_button(button: Any) -> None:
    prefix = "can't parse inline keyboard button: "
    if not isinstance(button, dict):
        raise MarkupError(prefix + "InlineKeyboardButton must be an Object")
    if not isinstance(button.get("text"), str):
        raise MarkupError(prefix + 'Can\'t find field "text"')
    url = button.get("url")
    if url:
        problem = url_button_error(str(url))
        if problem:
            raise MarkupError(f"inline keyboard button URL '{url}' is invalid: {problem}")
        return
    data = button.get("callback_data")
    if data:
        if len(str(data).encode()) > 64:
            raise MarkupError("BUTTON_DATA_INVALID")
        return
    others = (
        "web_app",
        "login_url",
        "switch_inline_query",
        "switch_inline_query_current_chat",
        "switch_inline_query_chosen_chat",
        "copy_text",
        "callback_game",
        "pay",
    )
    if not any(name in button for name in others):
        raise MarkupError(prefix + "Text buttons are unallowed in the inline keyboard")


def _to_bool(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "yes", "1")


def _int_arg(params: dict[str, str], name: str, default: int) -> int:
    try:
        return int(params.get(name) or default)
    except ValueError:
        return default


@dataclass
class Message:
    """A message the bot sent, as it stands now (edits change it in place)."""

    chat_id: int | str
    message_id: int
    text: str
    photo: str | None
    parse_mode: str | None
    reply_markup: dict[str, Any] | None = None
    thread_id: int | None = None
    date: int = field(default_factory=lambda: int(time.time()))

    @property
    def buttons(self) -> list[dict[str, Any]]:
        """The inline keyboard's buttons, row after row."""
        rows = (self.reply_markup or {}).get("inline_keyboard") or []
        return [button for row in rows for button in row]


@dataclass
class _Poll:
    """A getUpdates the server holds open."""

    terminated: bool = False


class FakeTelegram(Recorder):
    def __init__(self, token: str = f"{BOT_ID}:TEST", *, limits_scale: float | None = None) -> None:
        super().__init__()
        self.token = token
        prefix = token.partition(":")[0]
        # A real token starts with the bot's user id.
        self.bot_id = int(prefix) if prefix.isdigit() else BOT_ID
        self.bot_username = BOT_USERNAME
        self.scripts: list[Scripted] = []
        self.blocked: set[int] = set()
        self.unknown: set[int] = set()
        self.kicked: set[int] = set()
        self.left: set[int] = set()
        self.migrated: dict[int, int] = {}
        self.messages: dict[tuple[str, int], Message] = {}
        self.incoming: dict[tuple[str, int], dict[str, Any]] = {}
        self.deleted: list[tuple[str, int]] = []
        self.chats: dict[int, dict[str, Any]] = {}
        self.users: dict[int, dict[str, Any]] = {}
        self.members: dict[tuple[int, int], str] = {}
        self.updates: list[dict[str, Any]] = []
        self.allowed_updates: frozenset[str] = DEFAULT_UPDATE_TYPES
        self.webhook_url = ""
        self.commands: dict[tuple[str, str], list[dict[str, str]]] = {}
        self.callbacks: dict[str, dict[str, Any]] = {}
        self.answers: list[dict[str, Any]] = []
        self.rate_limited = 0
        self.limits_scale = limits_scale
        self.privacy = True  # can_read_all_group_messages is false, as BotFather sets it
        self._random: tuple[float, Any] | None = None
        self._bot_window = Window(int(30 * (limits_scale or 1)), 1.0)
        # Paid broadcasts (allow_paid_broadcast): up to 1,000 messages a second per bot.
        self._paid_window = Window(int(1000 * (limits_scale or 1)), 1.0)
        self.paid_broadcasts = 0
        self._chat_windows: dict[str, Window] = {}
        self._ids = itertools.count(1)
        self._update_ids = itertools.count(500_000_001)
        self._query_ids = itertools.count(4_000_000_000_000_000_001)
        self._poll: _Poll | None = None
        self._updates_changed = asyncio.Event()
        self._turn = 0
        self._methods: dict[str, Callable[..., Any]] = {
            "getUpdates": self._get_updates,
            "deleteWebhook": self._set_webhook,
            "setWebhook": self._set_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._set_my_commands,
            "answerCallbackQuery": self._answer_callback_query,
            "sendMessage": self._send,
            "sendPhoto": self._send,
            "editMessageText": self._edit,
            "editMessageCaption": self._edit,
            "editMessageReplyMarkup": self._edit,
            "deleteMessage": self._delete,
            "getChatMember": self._get_chat_member,
            "getChat": self._get_chat,
            "sendChatAction": self._send_chat_action,
        }
        self._by_lower = {name.lower(): name for name in [*self._methods, "getMe"]}

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def me(self) -> dict[str, Any]:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": BOT_FIRST_NAME,
            "username": self.bot_username,
        }

    async def start(self) -> FakeTelegram:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._handle)
        app.router.add_get("/bot{token}/{method}", self._handle)
        app.router.add_get("/_fake/stats", self._stats)
        await self.serve(app)
        return self

    # ---- what a test scripts -------------------------------------------------------

    def fail(
        self,
        status: int,
        description: str,
        *,
        count: int = 1,
        retry_after: int | None = None,
        migrate_to: int | None = None,
        delay: float = 0.0,
        methods: tuple[str, ...] = (),
        skip: int = 0,
    ) -> None:
        """The next `count` requests (of `methods`; without it, any but the polling ones)
        are answered with this error, after `delay` seconds."""
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        parameters: dict[str, Any] = {}
        if retry_after is not None:
            parameters["retry_after"] = retry_after
        if migrate_to is not None:
            parameters["migrate_to_chat_id"] = migrate_to
        if parameters:
            body["parameters"] = parameters
        self.scripts.append(Scripted(status, body, count, delay, methods, skip=skip))

    def fail_with_page(self, status: int, page: str, *, count: int = 1) -> None:
        """The next `count` requests get an HTML page, as a proxy in front of the Bot API
        answers (a 502 from nginx, or a 200 login page), not the API's JSON."""
        self.scripts.append(Scripted(status, {"_page": page}, count))

    def random_failures(self, ratio: float, rng: Any) -> None:
        """Answer `ratio` of the sends with 429 (retry_after 1) or 502, half each."""
        self._random = (ratio, rng)

    def block(self, chat_id: int) -> None:
        """The user blocked the bot: sends to their private chat answer 403."""
        self.blocked.add(chat_id)

    def unblock(self, chat_id: int) -> None:
        self.blocked.discard(chat_id)

    def kick(self, chat_id: int) -> None:
        """The bot was removed from the group: everything aimed at it answers 403."""
        self.kicked.add(chat_id)

    def set_member(self, chat_id: int, user_id: int, status: str) -> None:
        """What getChatMember answers for this user in this chat."""
        if status not in MEMBER_STATUSES:
            raise ValueError(f"status must be one of {MEMBER_STATUSES}, not {status!r}")
        self._user(user_id)
        self.members[(chat_id, user_id)] = status

    def add_chat(
        self,
        chat_id: int,
        chat_type: str,
        *,
        title: str | None = None,
        username: str | None = None,
        is_forum: bool = False,
    ) -> dict[str, Any]:
        """Register a chat (push_* register theirs); its type shapes messages and errors."""
        if chat_type not in ("private", "group", "supergroup", "channel"):
            raise ValueError(f"unknown chat type {chat_type!r}")
        chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
        if chat_type == "private":
            user = self._user(chat_id)
            chat["first_name"] = user["first_name"]
            if "username" in user:
                chat["username"] = user["username"]
        else:
            chat["title"] = title or self.chats.get(chat_id, {}).get("title") or f"Chat {chat_id}"
            if username:
                chat["username"] = username
            if is_forum:
                chat["is_forum"] = True
        self.chats[chat_id] = chat
        return chat

    # ---- the users' side: updates ----------------------------------------------------

    def push_message(
        self,
        chat_id: int,
        from_user_id: int,
        text: str,
        *,
        chat_type: str | None = None,
        username: str | None = None,
        first_name: str | None = None,
        chat_title: str | None = None,
        message_thread_id: int | None = None,
    ) -> int | None:
        """A user writes `text` in a chat; returns the update id, or None when Telegram
        would not hand it to the bot (allowed_updates, or privacy mode in a group: only
        commands at the start, bare or addressed to this bot, get through).

        `chat_type` defaults to the registered chat's, else to what the id says
        (positive: private; -100...: supergroup; other negative: group)."""
        kind = chat_type or self._type_of(chat_id)
        if kind == "private" and chat_id != from_user_id:
            raise ValueError("a private chat's id is its user's id")
        user = self._user(from_user_id, username=username, first_name=first_name)
        chat = self.add_chat(chat_id, kind, title=chat_title)
        message: dict[str, Any] = {
            "message_id": next(self._ids),
            "date": int(time.time()),
            "chat": chat,
            "text": text,
        }
        if kind == "channel":
            message["sender_chat"] = chat
        else:
            message["from"] = user
        entities = bot_command_entities(text)
        if entities:
            message["entities"] = entities
        if message_thread_id is not None:
            message["message_thread_id"] = message_thread_id
            message["is_topic_message"] = True
        self.incoming[(str(chat_id), message["message_id"])] = message
        if kind in ("group", "supergroup"):
            self.members.setdefault((chat_id, from_user_id), "member")
            if self.privacy and not self._reaches_private_bot(text):
                self._turn = len(self.requests)
                return None
        return self._push("channel_post" if kind == "channel" else "message", message)

    def push_callback(
        self,
        chat_id: int,
        from_user_id: int,
        data: str,
        *,
        message_id: int,
        chat_type: str | None = None,
        strict: bool = True,
    ) -> str:
        """A user presses the button carrying `data` under the bot's message `message_id`;
        returns the callback query id the bot must answer. With `strict`, pressing a
        button the message does not have is a test error (clients can't)."""
        message = self.messages.get((str(chat_id), message_id))
        if message is None:
            raise ValueError(f"the bot sent no message {message_id} to chat {chat_id}")
        if strict and data not in [b.get("callback_data") for b in message.buttons]:
            raise ValueError(f"message {message_id} has no button with data {data!r}")
        if chat_type is not None and chat_id not in self.chats:
            self.add_chat(chat_id, chat_type)
        user = self._user(from_user_id)
        if self._type_of(chat_id) in ("group", "supergroup"):
            self.members.setdefault((chat_id, from_user_id), "member")
        query_id = str(next(self._query_ids))
        query = {
            "id": query_id,
            "from": user,
            "message": self._message_json(message),
            "chat_instance": str(abs(chat_id) * 1_000_003 % (1 << 62)),
            "data": data,
        }
        self.callbacks[query_id] = query
        self._push("callback_query", query)
        return query_id

    def push_my_chat_member(
        self,
        chat_id: int,
        status: str,
        *,
        from_user_id: int | None = None,
        old_status: str | None = None,
    ) -> int | None:
        """The bot's own membership changed: "kicked" in a private chat is the user blocking
        the bot ("member" again: unblocking); "kicked"/"left" in a group removes the bot.
        The fake's state follows, so sends answer 403 from now on."""
        if status not in MEMBER_STATUSES:
            raise ValueError(f"status must be one of {MEMBER_STATUSES}, not {status!r}")
        kind = self._type_of(chat_id)
        chat = self.add_chat(chat_id, kind)
        actor = from_user_id if from_user_id is not None else chat_id if kind == "private" else 1
        gone = status in ("left", "kicked")
        old = old_status or ("member" if gone else "left")
        if kind == "private":
            (self.blocked.add if status == "kicked" else self.blocked.discard)(chat_id)
        else:
            (self.kicked.add if status == "kicked" else self.kicked.discard)(chat_id)
            (self.left.add if status == "left" else self.left.discard)(chat_id)
            self.members[(chat_id, self.bot_id)] = status
        bot = self.me
        return self._push(
            "my_chat_member",
            {
                "chat": chat,
                "from": self._user(actor),
                "date": int(time.time()),
                "old_chat_member": self._member_json(old, bot, kind),
                "new_chat_member": self._member_json(status, bot, kind),
            },
        )

    def push_migration(self, old_chat_id: int, new_chat_id: int) -> int | None:
        """A group becomes a supergroup: a service message with migrate_to_chat_id in the
        old group, one with migrate_from_chat_id in the new one; sends to the old id answer
        400 with parameters.migrate_to_chat_id from now on. Returns the first update id."""
        old = self.add_chat(old_chat_id, "group")
        new = self.add_chat(new_chat_id, "supergroup", title=old["title"])
        for (chat, user), status in list(self.members.items()):
            if chat == old_chat_id:
                self.members.setdefault((new_chat_id, user), status)
        self.migrated[old_chat_id] = new_chat_id
        actor = self._user(1)
        first = self._push(
            "message",
            {
                "message_id": next(self._ids),
                "from": actor,
                "date": int(time.time()),
                "chat": old,
                "migrate_to_chat_id": new_chat_id,
            },
        )
        self._push(
            "message",
            {
                "message_id": next(self._ids),
                "from": actor,
                "sender_chat": new,
                "date": int(time.time()),
                "chat": new,
                "migrate_from_chat_id": old_chat_id,
            },
        )
        return first

    # ---- waiting, without sleeps -----------------------------------------------------

    async def wait_sent(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        timeout: float = 10.0,
        *,
        since: int | None = None,
    ) -> dict[str, Any]:
        """The first request answered with ok that satisfies `predicate`, among those that
        arrived after the last push_* (or after index `since` of `requests`)."""
        start = self._turn if since is None else since
        found: list[dict[str, Any]] = []

        def match() -> bool:
            for entry in self.requests[start:]:
                if entry["ok"] and predicate(entry):
                    found.append(entry)
                    return True
            return False

        await self.wait_for(match, timeout)
        return found[0]

    async def wait_reply(self, chat_id: int, timeout: float = 10.0) -> Message:
        """The next message the bot sends to `chat_id` after the last push_*."""
        entry = await self.wait_sent(
            lambda r: (
                r["method"] in ("sendMessage", "sendPhoto")
                and r["params"].get("chat_id") == str(chat_id)
            ),
            timeout,
        )
        return self.messages[(str(chat_id), entry["result"]["message_id"])]

    async def wait_polling(self, timeout: float = 10.0) -> None:
        """Until a getUpdates is held open, waiting for an update."""
        await self.wait_for(lambda: self._poll is not None and not self._poll.terminated, timeout)

    def replies_to(self, chat_id: int | str) -> list[Message]:
        """The bot's messages in a chat, oldest first, as they stand now."""
        key = str(chat_id)
        return sorted(
            (m for (chat, _), m in self.messages.items() if chat == key),
            key=lambda m: m.message_id,
        )

    def sent(self, method: str | None = None) -> list[dict[str, Any]]:
        """Requests that the fake answered with ok (optionally of one method)."""
        return [r for r in self.requests if r["ok"] and (method is None or r["method"] == method)]

    # ---- HTTP ------------------------------------------------------------------------

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(stats_of(self.requests, self.rate_limited))

    def _error(self, status: int, description: str, **parameters: Any) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if parameters:
            body["parameters"] = parameters
        return web.json_response(body, status=status)

    def _ok(self, result: Any, description: str | None = None) -> web.Response:
        body: dict[str, Any] = {"ok": True, "result": result}
        if description:
            body["description"] = description
        return web.json_response(body)

    async def _handle(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        given = request.match_info["method"]
        method = self._by_lower.get(given.lower(), given)
        params = {k: str(v) for k, v in request.query.items()}
        if request.content_type == "application/json":  # Apprise posts JSON; PTB posts forms
            body = await request.json()
            params |= {k: v if isinstance(v, str) else json.dumps(v) for k, v in body.items()}
        elif request.method == "POST":
            form = await request.post()
            params |= {k: str(v) for k, v in form.items()}
        entry: dict[str, Any] = {
            "method": method,
            "params": params,
            "at": arrived,
            "ok": False,
            "status": None,
        }
        await self.record(entry)  # on arrival, so a test can see a request still in progress
        response = await self._answer(request, method, params, arrived)
        json_answer = response.content_type == "application/json"
        entry["ok"] = response.status == 200 and json_answer
        entry["status"] = response.status
        if entry["ok"] and isinstance(response, web.Response) and response.text:
            entry["result"] = json.loads(response.text).get("result")
        await self.notify()
        return response

    def _take(self, method: str) -> Scripted | None:
        if method not in _POLLING:
            return self.take_script(self.scripts, method)
        named = [s for s in self.scripts if method in s.methods]
        script = self.take_script(named, method)
        if script is not None and script not in named:
            self.scripts.remove(script)
        return script

    async def _answer(
        self, request: web.Request, method: str, params: dict[str, str], arrived: float
    ) -> web.Response:
        if request.match_info["token"] != self.token:
            return self._error(401, "Unauthorized")
        if method == "getMe":
            return self._ok(
                self.me
                | {
                    "can_join_groups": True,
                    "can_read_all_group_messages": not self.privacy,
                    "supports_inline_queries": False,
                    "can_connect_to_business": False,
                    "has_main_web_app": False,
                }
            )
        script = self._take(method)
        if script is not None:
            if script.delay:
                await self.pause(script.delay)
            if "_page" in script.body:  # not JSON: a proxy's page
                page = str(script.body["_page"])
                return web.Response(text=page, status=script.status, content_type="text/html")
            if script.status != 200:
                return web.json_response(script.body, status=script.status)
        if self._random is not None and method in ("sendMessage", "sendPhoto"):
            ratio, rng = self._random
            roll = rng.random()
            if roll < ratio / 2:
                self.rate_limited += 1
                return self._error(429, "Too Many Requests: retry after 1", retry_after=1)
            if roll < ratio:
                return self._error(502, "Bad Gateway")
        # A public chat may be named by its @username: Telegram counts (and finds) the chat.
        # A name of no public chat it knows (or a user's: bots cannot write to a user by
        # name) is no chat.
        chat_key = self._by_username(params.get("chat_id", ""))
        if chat_key.startswith("@"):
            return self._error(400, "Bad Request: chat not found")
        paid = str(params.get("allow_paid_broadcast", "")).lower() == "true"
        self.paid_broadcasts += paid and method in _LIMITED
        if self.limits_scale is not None and method in _LIMITED:
            wait = (self._paid_window if paid else self._bot_window).admit(arrived)
            if wait is None:
                window = self._chat_windows.get(chat_key)
                if window is None:
                    group = chat_key.startswith("-") or chat_key.startswith("@")
                    count, seconds = (20, 60.0) if group else (1, 1.0)
                    window = Window(max(1, int(count * self.limits_scale)), seconds)
                    self._chat_windows[chat_key] = window
                wait = window.admit(arrived)
            if wait is not None:
                self.rate_limited += 1
                return self._error(
                    429,
                    f"Too Many Requests: retry after {max(1, round(wait))}",
                    retry_after=max(1, round(wait)),
                )
        try:
            chat_id: int | str = int(chat_key)
        except ValueError:
            chat_id = chat_key
        handler = self._methods.get(method)
        if handler is None:
            return self._error(404, "Not Found: method not found")
        if isinstance(chat_id, int):
            refused = self._refusal(chat_id)
            if refused is not None:
                return refused
        if method == "getUpdates":
            return await self._get_updates(request, params)
        result: web.Response = handler(method, chat_key, chat_id, params)
        return result

    def _by_username(self, chat_key: str) -> str:
        """The id of the known chat whose @username `chat_key` is (Telegram's match ignores
        case), else `chat_key` as it came."""
        if chat_key.startswith("@"):
            name = chat_key[1:].lower()
            for chat_id, chat in self.chats.items():
                if str(chat.get("username", "")).lower() == name and chat["type"] != "private":
                    return str(chat_id)
        return chat_key

    def _refusal(self, chat_id: int) -> web.Response | None:
        """How Telegram answers anything aimed at a chat the bot can no longer reach."""
        if chat_id in self.migrated:
            return self._error(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                migrate_to_chat_id=self.migrated[chat_id],
            )
        if chat_id in self.blocked:
            return self._error(403, "Forbidden: bot was blocked by the user")
        kind = self._type_of(chat_id)
        place = {"supergroup": "supergroup chat", "channel": "channel chat"}.get(kind, "group chat")
        if chat_id in self.kicked:
            if kind == "channel":
                return self._error(403, "Forbidden: bot is not a member of the channel chat")
            return self._error(403, f"Forbidden: bot was kicked from the {place}")
        if chat_id in self.left:
            return self._error(403, f"Forbidden: bot is not a member of the {place}")
        if chat_id in self.unknown:
            return self._error(400, "Bad Request: chat not found")
        return None

    # ---- updates ---------------------------------------------------------------------

    def _push(self, kind: str, payload: dict[str, Any]) -> int | None:
        # allowed_updates filters when an update is created, as on the real server: a
        # changed list does not touch what is already queued.
        self._turn = len(self.requests)
        if kind not in self.allowed_updates:
            return None
        update_id = next(self._update_ids)
        self.updates.append({"update_id": update_id, kind: payload})
        self._wake_pollers()
        return update_id

    def _wake_pollers(self) -> None:
        self._updates_changed.set()
        self._updates_changed = asyncio.Event()

    def _confirm(self, offset: int) -> None:
        if offset > 0:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
        elif offset < 0:
            # -N: the last N updates; all earlier ones are forgotten
            self.updates = self.updates[offset:]

    def _allow(self, raw: str | None) -> None:
        # Absent, unparseable or not a list of strings: the previous setting stays; a list
        # naming nothing known (the empty list included): the default.
        if not raw:
            return
        try:
            names = json.loads(raw)
        except ValueError:
            return
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            return
        chosen = frozenset(n.lower() for n in names) & frozenset(UPDATE_TYPES)
        self.allowed_updates = chosen or DEFAULT_UPDATE_TYPES

    async def _get_updates(self, request: web.Request, params: dict[str, str]) -> web.Response:
        if self.webhook_url:
            return self._error(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = _int_arg(params, "offset", 0)
        limit = min(max(_int_arg(params, "limit", 100), 1), 100)
        timeout = min(max(_int_arg(params, "timeout", 0), 0), LONG_POLL_MAX)
        self._allow(params.get("allowed_updates"))
        self._confirm(offset)
        if self.updates or timeout == 0:
            return self._ok(self.updates[:limit])
        # Only one long poll per bot: a newer one ends the older with 409, as the real
        # server does (the older request is the one that fails, not the newer).
        if self._poll is not None:
            self._poll.terminated = True
            self._wake_pollers()
        poll = self._poll = _Poll()
        await self.notify()
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            while True:
                changed = self._updates_changed
                if poll.terminated:
                    return self._error(409, CONFLICT)
                if self.updates:
                    return self._ok(self.updates[:limit])
                remaining = deadline - asyncio.get_running_loop().time()
                gone = request.transport is None or request.transport.is_closing()
                if remaining <= 0 or gone or self.closing.is_set():
                    return self._ok([])
                # short slices, so a client that went away or a stopping fake is noticed
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), min(remaining, 0.05))
        finally:
            if self._poll is poll:
                self._poll = None
                await self.notify()

    def _set_webhook(
        self, method: str, chat_key: str, chat_id: int | str, params: dict[str, str]
    ) -> web.Response:
        url = params.get("url", "") if method == "setWebhook" else ""
        if _to_bool(params.get("drop_pending_updates")):
            self.updates.clear()
        if url:
            if not url.startswith("https://"):
                return self._error(
                    400, "Bad Request: bad webhook: HTTPS url must be provided for webhook"
                )
            if self._poll is not None:
                self._poll.terminated = True
                self._wake_pollers()
            self._allow(params.get("allowed_updates"))
            self.webhook_url = url
            return self._ok(True, "Webhook was set")
        was = bool(self.webhook_url)
        self.webhook_url = ""
        return self._ok(True, "Webhook was deleted" if was else "Webhook is already deleted")

    def _get_webhook_info(
        self, method: str, chat_key: str, chat_id: int | str, params: dict[str, str]
    ) -> web.Response:
        info: dict[str, Any] = {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self.updates),
        }
        if self.webhook_url:
            info["max_connections"] = 40
        if self.allowed_updates != DEFAULT_UPDATE_TYPES:
            info["allowed_updates"] = sorted(self.allowed_updates)
        return self._ok(info)

    # ---- commands menu and buttons ---------------------------------------------------

    def _scope_key(self, raw: str | None) -> str | web.Response:
        if not raw:
            return json.dumps({"type": "default"})
        try:
            scope = json.loads(raw)
        except ValueError:
            return self._error(400, "Bad Request: can't parse BotCommandScope JSON object")
        if not isinstance(scope, dict):
            return self._error(400, "Bad Request: can't parse BotCommandScope JSON object")
        kind = scope.get("type")
        plain = ("default", "all_private_chats", "all_group_chats", "all_chat_administrators")
        if kind in plain:
            return json.dumps({"type": kind})
        if kind not in ("chat", "chat_administrators", "chat_member"):
            return self._error(400, "Bad Request: unsupported bot command scope type specified")
        key: dict[str, Any] = {"type": kind, "chat_id": scope.get("chat_id")}
        if not isinstance(key["chat_id"], int | str) or key["chat_id"] == "":
            return self._error(400, "Bad Request: chat not found")
        if kind == "chat_member":
            if not isinstance(scope.get("user_id"), int):
                return self._error(400, "Bad Request: invalid user_id specified")
            key["user_id"] = scope["user_id"]
        return json.dumps(key, sort_keys=True)

    def _language(self, params: dict[str, str]) -> str | web.Response:
        code = params.get("language_code", "")
        if code and not re.fullmatch(r"[a-z]{2}", code):
            return self._error(400, "Bad Request: invalid language code specified")
        return code

    def _set_my_commands(
        self, method: str, chat_key: str, chat_id: int | str, params: dict[str, str]
    ) -> web.Response:
        scope = self._scope_key(params.get("scope"))
        language = self._language(params)
        if isinstance(scope, web.Response):
            return scope
        if isinstance(language, web.Response):
            return language
        if method == "deleteMyCommands":
            self.commands.pop((scope, language), None)
            return self._ok(True)
        commands = self._parse_commands(params.get("commands"))
        if isinstance(commands, web.Response):
            return commands
        if commands:
            self.commands[(scope, language)] = commands
        else:
            self.commands.pop((scope, language), None)
        return self._ok(True)

    def _parse_commands(self, raw: str | None) -> list[dict[str, str]] | web.Response:
        if not raw:
            return []
        try:
            given = json.loads(raw)
        except ValueError:
            return self._error(400, "Bad Request: can't parse commands JSON object")
        if not isinstance(given, list):
            return self._error(400, "Bad Request: expected an Array of BotCommand")
        commands: list[dict[str, str]] = []
        for item in given:
            if not isinstance(item, dict):
                return self._error(400, "Bad Request: can't parse BotCommand: expected an Object")
            for name in ("command", "description"):
                if not isinstance(item.get(name), str):
                    return self._error(
                        400, f"Bad Request: can't parse BotCommand: Can't find field \"{name}\""
                    )
            # tdlib trims both and drops one leading slash before it checks lengths
            command = item["command"].strip()
            command = command.removeprefix("/")
            description = item["description"].strip()
            if not command:
                return self._error(400, "Bad Request: command must be non-empty")
            if len(command) > 32:
                return self._error(400, "Bad Request: command length must not exceed 32")
            if not description:
                return self._error(400, "Bad Request: command description must be non-empty")
            if len(description) > 256:
                return self._error(
                    400, "Bad Request: command description length must not exceed 256"
                )
            commands.append({"command": command, "description": description})
        if len(commands) > 100:
            return self._error(400, "Bad Request: BOT_COMMANDS_TOO_MUCH")
        if any(not re.fullmatch(r"[a-z0-9_]+", c["command"]) for c in commands):
            return self._error(400, "Bad Request: BOT_COMMAND_INVALID")
        return commands

    def _get_my_commands(
        self, method: str, chat_key: str, chat_id: int | str, params: dict[str, str]
    ) -> web.Response:
        scope = self._scope_key(params.get("scope"))
        language = self._language(params)
        if isinstance(scope, web.Response):
            return scope
        if isinstance(language, web.Response):
            return language
        return self._ok(self.commands.get((scope, language), []))

    def commands_for(
        self, scope: dict[str, Any] | None = None, language_code: str = ""
    ) -> list[dict[str, str]]:
        """The command menu set for a scope (default scope when None), as getMyCommands
        answers it."""
        key = self._scope_key(json.dumps(scope) if scope else None)
        assert isinstance(key, str), "not a valid scope"
        return self.commands.get((key, language_code), [])

    def _answer_callback_query(
        self, method: str, chat_key: str, chat_id: int | str, params: dict[str, str]
    ) -> web.Response:
        query_id = params.get("callback_query_id", "")
        if len(params.get("text") or "") > ANSWER_LIMIT:  # the query stays unanswered
            return self._error(400, "Bad Request: MESSAGE_TOO_LONG")
        # An answered query is spent: a second answer fails like an unknown one.
        if self.callbacks.pop(query_id, None) is None:
            return self._error(400, QUERY_INVALID)
        self.answers.append(
            {
                "callback_query_id": query_id,
                "text": params.get("text"),
                "show_alert": _to_bool(params.get("show_alert")),
                "url": params.get("url"),
                "cache_time": _int_arg(params, "cache_time", 0),
            }
        )
        return self._ok(True)

    # ---- chats and members -----------------------------------------------------------

    def _type_of(self, chat_id: int) -> str:
        if chat_id in self.chats:
            return str(self.chats[chat_id]["type"])
        if chat_id > 0:
            return "private"
        return "supergroup" if chat_id <= -1_000_000_000_000 else "group"

    def _user(
        self, user_id: int, *, username: str | None = None, first_name: str | None = None
    ) -> dict[str, Any]:
        user = self.users.get(user_id)
        if user is None:
            user = {"id": user_id, "is_bot": False, "first_name": f"User {user_id}"}
            self.users[user_id] = user
        if first_name is not None:
            user["first_name"] = first_name
        if username is not None:
            user["username"] = username
        return user

    def _chat_json(self, chat_id: int | str) -> dict[str, Any]:
        if isinstance(chat_id, str):
            return {"id": -100, "type": "channel", "title": chat_id}
        if chat_id in self.chats:
            return self.chats[chat_id]
        return self.add_chat(chat_id, self._type_of(chat_id))

    def _member_json(self, status: str, user: dict[str, Any], chat_type: str) -> dict[str, Any]:
        member: dict[str, Any] = {"status": status, "user": user}
        if status == "creator":
            member["is_anonymous"] = False
        elif status == "administrator":
            member |= {
                "can_be_edited": False,
                "is_anonymous": False,
                "can_manage_chat": True,
                "can_delete_messages": True,
                "can_manage_video_chats": True,
                "can_restrict_members": True,
                "can_promote_members": False,
                "can_change_info": True,
                "can_invite_users": True,
                "can_post_stories": False,
                "can_edit_stories": False,
                "can_delete_stories": False,
            }
            if chat_type == "channel":
                member |= {"can_post_messages": True, "can_edit_messages": True}
            else:
                member["can_pin_messages"] = True
            if chat_type == "supergroup":
                member["can_manage_topics"] = False
        elif status == "restricted":
            member |= {"is_member": True, "until_date": 0} | dict.fromkeys(
                (
                    "can_send_messages",
                    "can_send_audios",
                    "can_send_documents",
                    "can_send_photos",
                    "can_send_videos",
                    "can_send_video_notes",
                    "can_send_voice_notes",
                    "can_send_polls",
                    "can_send_other_messages",
                    "can_add_web_page_previews",
                    "can_change_info",
                    "can_invite_users",
                    "can_pin_messages",
                    "can_manage_topics",
                    "can_edit_tag",
                    "can_react_to_messages",
                ),
                False,
            )
        elif status == "kicked":
            member["until_date"] = 0
        return member

    def _get_chat_member(
        self, method: str, chat_key: str, chat_id: int | str, params: dict[str, str]
    ) -> web.Response:
        try:
            user_id = int(params.get("user_id", ""))
        except ValueError:
            return self._error(400, "Bad Request: invalid user_id specified")
        if not isinstance(chat_id, int):
            return self._error(400, "Bad Request: chat not found")
        kind = self._type_of(chat_id)
        if user_id == self.bot_id:
            user = self.me
            status = self.members.get((chat_id, user_id), "member")
        elif user_id not in self.users:
            return self._error(400, "Bad Request: user not found")
        else:
            user = self.users[user_id]
            if kind == "private":
                status = "member" if user_id == chat_id else "left"
            else:
                status = self.members.get((chat_id, user_id), "left")
        return self._ok(self._member_json(status, user, kind))

    def _get_chat(
        self, method: str, chat_key: str, chat_id: int | str, params: dict[str, str]
    ) -> web.Response:
        if not isinstance(chat_id, int) or chat_id not in self.chats:
            return self._error(400, "Bad Request: chat not found")
        return self._ok(self.chats[chat_id] | {"accent_color_id": 0, "max_reaction_count": 11})

    def _send_chat_action(
        self, method: str, chat_key: str, chat_id: int | str, params: dict[str, str]
    ) -> web.Response:
        return self._ok(True)

    # ---- messages --------------------------------------------------------------------

    def _check_text(self, params: dict[str, str], field: str, limit: int) -> str | web.Response:
        text = params.get(field, "")
        visible = text
        if params.get("parse_mode") == "HTML":
            try:
                visible = parse_html(text)
            except HtmlError as exc:
                # the Bot API lower-cases tdlib's first letter: "can't parse entities: ..."
                message = str(exc)
                return self._error(400, f"Bad Request: {message[:1].lower()}{message[1:]}")
        if "\x00" in visible:
            return self._error(400, "Bad Request: text must be encoded in UTF-8")
        if len(visible) > limit:  # code points of the parsed text, as tdlib counts
            kind = "message caption is too long" if field == "caption" else "message is too long"
            return self._error(400, f"Bad Request: {kind}")
        if field == "text" and not visible.strip():
            return self._error(400, "Bad Request: message text is empty")
        return visible

    def _markup(self, params: dict[str, str]) -> dict[str, Any] | web.Response | None:
        try:
            return parse_reply_markup(params.get("reply_markup"))
        except MarkupError as exc:
            return self._error(400, f"Bad Request: {exc}")

    def _message_json(self, message: Message) -> dict[str, Any]:
        result: dict[str, Any] = {
            "message_id": message.message_id,
            "from": self.me,
            "date": message.date,
            "chat": self._chat_json(message.chat_id),
        }
        if message.thread_id is not None:
            result["message_thread_id"] = message.thread_id
        if message.photo:
            result["photo"] = [{"file_id": "f", "file_unique_id": "u", "width": 1, "height": 1}]
            result["caption"] = message.text
        else:
            result["text"] = message.text
        if message.reply_markup and "inline_keyboard" in message.reply_markup:
            result["reply_markup"] = message.reply_markup
        return result

    def _result(self, message: Message) -> web.Response:
        return self._ok(self._message_json(message))

    def _reply_target_missing(self, chat_key: str, params: dict[str, str]) -> bool:
        raw = params.get("reply_parameters")
        target: int | None = None
        lenient = _to_bool(params.get("allow_sending_without_reply"))
        if raw:
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                parsed = json.loads(raw)
                target = int(parsed["message_id"])
                lenient = lenient or bool(parsed.get("allow_sending_without_reply"))
        elif params.get("reply_to_message_id"):
            target = _int_arg(params, "reply_to_message_id", 0)
        if target is None or lenient:
            return False
        key = (chat_key, target)
        return key not in self.messages and key not in self.incoming

    def _send(
        self, method: str, chat_key: str, chat_id: int | str, params: dict[str, str]
    ) -> web.Response:
        photo = params.get("photo") if method == "sendPhoto" else None
        if method == "sendPhoto" and not (photo or "").startswith("https://"):
            return self._error(400, "Bad Request: wrong file identifier/HTTP URL specified")
        checked = self._check_text(params, "caption" if photo else "text", 1024 if photo else 4096)
        if isinstance(checked, web.Response):
            return checked
        markup = self._markup(params)
        if isinstance(markup, web.Response):
            return markup
        if self._reply_target_missing(chat_key, params):
            return self._error(400, "Bad Request: message to be replied not found")
        thread = params.get("message_thread_id")
        message = Message(
            chat_id,
            next(self._ids),
            checked,
            photo,
            params.get("parse_mode"),
            reply_markup=markup,
            thread_id=int(thread) if thread else None,
        )
        self.messages[(chat_key, message.message_id)] = message
        return self._result(message)

    def _edit(
        self, method: str, chat_key: str, chat_id: int | str, params: dict[str, str]
    ) -> web.Response:
        key = (chat_key, _int_arg(params, "message_id", 0))
        message = self.messages.get(key)
        if message is None:
            if key in self.incoming:
                return self._error(400, "Bad Request: message can't be edited")
            return self._error(400, "Bad Request: message to edit not found")
        markup = self._markup(params)
        if isinstance(markup, web.Response):
            return markup
        # An edit without reply_markup removes the inline keyboard, as on Telegram.
        text = message.text
        if method != "editMessageReplyMarkup":
            field = "caption" if method == "editMessageCaption" else "text"
            if (field == "caption") != bool(message.photo):
                return self._error(400, "Bad Request: there is no text in the message to edit")
            checked = self._check_text(params, field, 1024 if message.photo else 4096)
            if isinstance(checked, web.Response):
                return checked
            text = checked
        if text == message.text and markup == message.reply_markup:
            return self._error(400, NOT_MODIFIED)
        message.text = text
        message.reply_markup = markup
        if method != "editMessageReplyMarkup":
            message.parse_mode = params.get("parse_mode")
        return self._result(message)

    def _delete(
        self, method: str, chat_key: str, chat_id: int | str, params: dict[str, str]
    ) -> web.Response:
        key = (chat_key, _int_arg(params, "message_id", 0))
        if (
            key in self.incoming
            and isinstance(chat_id, int)
            and self._type_of(chat_id) == "private"
        ):
            del self.incoming[key]  # bots may delete what users wrote them in private
            self.deleted.append(key)
            return self._ok(True)
        if self.messages.pop(key, None) is None:
            return self._error(400, "Bad Request: message to delete not found")
        self.deleted.append(key)
        return self._ok(True)

    def _reaches_private_bot(self, text: str) -> bool:
        """Privacy mode: in groups only commands at the start reach the bot, when bare or
        addressed to it (replies to the bot and service messages also do)."""
        commands = bot_commands(text)
        if not commands or commands[0][0] != 0:
            return False
        _, _, mention = text[: commands[0][1]].partition("@")
        return not mention or mention.lower() == self.bot_username.lower()


def visible_texts(fake: FakeTelegram) -> list[str]:
    return [m.text for m in fake.messages.values()]
