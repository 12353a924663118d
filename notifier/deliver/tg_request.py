"""python-telegram-bot's HTTP transport over aiohttp: pre-encoded bodies, an O(1) pool."""

from __future__ import annotations

import json
from typing import Any, Final
from urllib.parse import quote

import aiohttp
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import JSONDict, ODVInput
from telegram.error import NetworkError, TelegramError, TimedOut
from telegram.request import BaseRequest, RequestData
from yarl import URL

from notifier.redact import redact_cut

_JSON: Final = {"Content-Type": "application/json"}
_MAX_URLS: Final = 256  # parsed URLs kept (one per API method in practice)


class AiohttpRequest(BaseRequest):
    """A `telegram.request.BaseRequest` for `Bot(token, request=AiohttpRequest(...))`.

    PTB's default (httpx) spends about half of a send in pool bookkeeping that walks
    every pooled connection on each request; aiohttp takes an idle connection off a
    queue. A body is PTB's own `RequestData.json_payload`, posted as the Bot API's
    `application/json` (one C-encoded `json.dumps`; a form is encoded value by value in
    Python); uploads go as multipart. Proxies from the environment are not read.
    PTB itself turns the status and body into results and errors (429 -> `RetryAfter`,
    ...); this class only turns transport failures into `TimedOut` and `NetworkError`,
    with messages that never contain the URL (it holds the token).

    `slim_messages=True` (a bot that only sends alerts and reads back their `message_id`)
    keeps of a returned message only what `Message` requires: id, date and chat. PTB
    otherwise builds the whole echo of what was sent (photo sizes, entities, the sender)
    as objects, a tenth of a send's CPU at 1,000 messages a second."""

    def __init__(
        self,
        *,
        slim_messages: bool = False,
        connection_pool_size: int = 64,
        read_timeout: float | None = 15.0,
        write_timeout: float | None = 15.0,
        connect_timeout: float | None = 10.0,
        pool_timeout: float | None = 15.0,
        media_write_timeout: float | None = 20.0,
    ) -> None:
        self._slim = slim_messages
        self._pool_size = connection_pool_size
        self._read = read_timeout
        self._write = write_timeout
        self._connect = connect_timeout
        self._pool = pool_timeout
        self._media_write = media_write_timeout
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, URL] = {}
        self._timeouts: dict[tuple[float | None, ...], aiohttp.ClientTimeout] = {}

    @property
    def read_timeout(self) -> float | None:
        return self._read

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._pool_size,
                limit_per_host=0,
                keepalive_timeout=30.0,
                ttl_dns_cache=300,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                headers={"User-Agent": self.USER_AGENT},
                # A timeout is given with every request.
                timeout=aiohttp.ClientTimeout(total=None),
            )

    async def shutdown(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        session = self._session
        if session is None or session.closed:
            raise RuntimeError("this AiohttpRequest is not initialized")
        files = request_data is not None and request_data.contains_files
        timeout = self._timeout(
            _given(read_timeout, self._read),
            _given(write_timeout, self._media_write if files else self._write),
            _given(connect_timeout, self._connect),
            _given(pool_timeout, self._pool),
        )
        data: bytes | aiohttp.FormData | None = None
        headers: dict[str, str] | None = None
        if request_data is not None:
            if files:
                data = _multipart(request_data)
            else:
                data = request_data.json_payload
                headers = _JSON
        try:
            async with session.request(
                method, self._url(url), data=data, headers=headers, timeout=timeout
            ) as response:
                status, body = response.status, await response.read()
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise TimedOut(_describe(exc, url)) from None
        except aiohttp.ClientError as exc:
            raise NetworkError(_describe(exc, url)) from None
        except OSError as exc:
            raise NetworkError(_describe(exc, url)) from None
        if not 200 <= status <= 299 and body and not _is_json(body):
            # A proxy's error page: PTB would quote all of it in the error's message (and
            # from there the log and the outbox). Its status says enough.
            body = b""
        return status, body

    def parse_json_payload(self, payload: bytes) -> JSONDict:  # type: ignore[override]
        try:
            answer: JSONDict = json.loads(payload.decode("utf-8", "replace"))
        except ValueError:
            # PTB's own words, without the payload (PTB logs it whole at ERROR).
            raise TelegramError("Invalid server response") from None
        if self._slim and isinstance(answer, dict):
            answer["result"] = _slim(answer.get("result"))
        return answer

    def _url(self, url: str) -> URL:
        # Parsing a URL is a measurable part of a request: each method's URL is parsed once.
        found = self._urls.get(url)
        if found is None:
            if len(self._urls) >= _MAX_URLS:
                self._urls.clear()
            found = self._urls[url] = URL(url, encoded=True)
        return found

    def _timeout(
        self, read: float | None, write: float | None, connect: float | None, pool: float | None
    ) -> aiohttp.ClientTimeout:
        key = (read, write, connect, pool)
        found = self._timeouts.get(key)
        if found is None:
            # aiohttp's `connect` covers the wait for a pooled connection and the connect
            # itself; `sock_read` bounds each wait for the answer. A request body is a few
            # kilobytes, so the write timeout bounds the whole request when one is given.
            waits = [t for t in (connect, pool) if t is not None]
            found = aiohttp.ClientTimeout(
                total=None if write is None or read is None else write + read,
                connect=sum(waits) if waits else None,
                sock_connect=connect,
                sock_read=read,
            )
            self._timeouts[key] = found
        return found


def _is_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:  # UnicodeDecodeError included
        return False
    return True


def _slim(result: Any) -> Any:
    """A message as `Message.de_json` needs it at least; anything else as it came."""
    if not isinstance(result, dict) or "message_id" not in result:
        return result
    chat = result.get("chat")
    if not isinstance(chat, dict) or "date" not in result:
        return result
    return {
        "message_id": result["message_id"],
        "date": result["date"],
        "chat": {"id": chat.get("id"), "type": chat.get("type")},
    }


def _given(value: ODVInput[float], default: float | None) -> float | None:
    return default if isinstance(value, DefaultValue) else value


def _multipart(request_data: RequestData) -> aiohttp.FormData:
    """Uploads (never sent by the alert path, which passes photos by URL)."""
    form = aiohttp.FormData(quote_fields=False)
    for name, value in request_data.json_parameters.items():
        form.add_field(name, value)
    for name, part in request_data.multipart_data.items():
        filename, content, mimetype = part[0], part[1], part[2] if len(part) > 2 else None
        form.add_field(name, content, filename=filename, content_type=mimetype)
    return form


def _describe(error: BaseException, url: str) -> str:
    """One line about a transport failure; the bot token (in the URL) never appears."""
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    for secret in (url, *_token_parts(url)):
        if secret:
            text = text.replace(secret, "***")
    return redact_cut(text, 300)  # redacted before it is cut


def _token_parts(url: str) -> list[str]:
    # ".../bot<token>/<method>": the token, and its URL-quoted form.
    _, _, rest = url.partition("/bot")
    token = rest.split("/", 1)[0]
    return [token, quote(token, safe="")] if token else []
