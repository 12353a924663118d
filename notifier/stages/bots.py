"""The command bots: each on the instance holding its token's role, restarted by a reload."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from notifier.deliver.base import Sender
from notifier.deliver.factory import Senders
from notifier.log import event, get_logger, short_error
from notifier.parti.client import PartiClient
from notifier.settings import Settings
from notifier.stages.context import Core
from notifier.stages.delivery import DeliveryHolder
from notifier.store import Store, StoreError
from notifier.store.outage import Outage, pause

if TYPE_CHECKING:  # psycopg (about 10 MB) is imported only where PostgreSQL is used
    from notifier.store.roles import RoleLock

# The events keep the logger they had when this lived in the composition root.
_log = get_logger("app")


class CommandBots:
    def __init__(
        self,
        core: Core,
        store: Store,
        client: PartiClient,
        holder: DeliveryHolder,
        *,
        settings: Callable[[], Settings],
        chat_sender: Callable[[Senders, str], Sender | None],
        instance: str,
        role_retry: float,
    ) -> None:
        self.core = core
        self.store = store
        self.client = client
        self.holder = holder
        self.settings = settings  # a getter: a reload replaces the settings
        self.chat_sender = chat_sender
        self.instance = instance
        self.role_retry = role_retry  # how often a standby instance tries to take a bot's role
        self._changed = asyncio.Event()  # a reload changed the command bots' makings
        self._serving: tuple[str, ...] = ()

    def settings_adopted(self) -> None:
        """A reload's settings (and rules) are in: the command bots start again when their
        block or token changed."""
        if self._key() != self._serving:
            self._changed.set()

    def _key(self) -> tuple[str, ...]:
        """What the command bots are made of: their block of the rules and the settings
        they use (kept in memory only, to compare)."""
        settings = self.settings()
        tokens = (settings.telegram_token, settings.discord_bot_token)
        return (
            self.core.rules.file.bots.model_dump_json(),
            *(token.get_secret_value() if token is not None else "" for token in tokens),
            settings.telegram_api_url,
            settings.discord_api_url,
            settings.discord_gateway_url,
        )

    async def run(self) -> None:
        """The command bots as the rules and settings have them; a reload that changes
        their block or a token stops them and starts them as they are now."""
        while True:
            self._changed.clear()
            self._serving = self._key()
            serving = asyncio.create_task(self._chat_updates())
            changed = asyncio.create_task(self._changed.wait())
            try:
                await asyncio.wait({serving, changed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                changed.cancel()
                serving.cancel()
                await asyncio.wait({serving})  # they give their roles up (also when stopping)
            if not serving.cancelled() and (error := serving.exception()) is not None:
                raise error  # a failure of the bots' own, as before
            if not self._changed.is_set():  # no bot to serve: until a reload adds one
                await self._changed.wait()
            event(_log, "bots.restarting")

    async def _chat_updates(self) -> None:
        """The command bots, each on the one instance that holds its token's role
        (Telegram allows one getUpdates poller per token; Discord one gateway session)."""
        bots = self.core.rules.file.bots
        settings = self.settings()
        telegram, discord = settings.telegram_token, settings.discord_bot_token
        async with asyncio.TaskGroup() as group:
            if bots.telegram.commands and telegram is not None:
                from notifier.bots.telegram import CommandBotError

                secret = telegram.get_secret_value()
                make = functools.partial(self._telegram_bot, secret)
                group.create_task(self._command_bot("telegram", secret, make, CommandBotError))
            if bots.discord.commands and discord is not None:
                from notifier.bots.discord import DiscordBotError

                secret = discord.get_secret_value()
                make = functools.partial(self._discord_bot, secret)
                group.create_task(self._command_bot("discord", secret, make, DiscordBotError))

    def _telegram_bot(self, token: str) -> Any:
        from notifier.bots.telegram import CommandLimits, TelegramCommands

        limits = self.core.rules.file.bots.telegram
        return TelegramCommands(
            token=token,
            api_url=self.settings().telegram_api_url,
            store=self.store,
            client=self.client,
            limits=CommandLimits(
                max_follows=limits.max_follows, max_price_alerts=limits.max_price_alerts
            ),
            limiter=self._reply_limiter(),
        )

    def _discord_bot(self, token: str) -> Any:
        from notifier.bots.discord import DiscordCommands, DiscordLimits

        settings = self.settings()
        return DiscordCommands(
            token=token,
            api_url=settings.discord_api_url,
            gateway_url=settings.discord_gateway_url,
            store=self.store,
            client=self.client,
            limits=DiscordLimits(max_follows=self.core.rules.file.bots.discord.max_follows),
        )

    async def _command_bot(
        self,
        platform: str,
        token: str,
        make: Callable[[], Any],
        refused: type[Exception],
    ) -> None:
        """Stand for the token's role; while held, serve the bot (a new one after each
        failure to start, with backoff); give the role up when stopping."""
        from notifier.store.roles import RoleLock, chat_updates_role

        lock = RoleLock(self.store, chat_updates_role(token), instance=self.instance)
        outage = Outage(
            f"{platform} bot",
            self.core.health.store_errors,
            failed_event="role.store_failed",
            recovered_event="role.store_recovered",
        )
        attempt = 0
        try:
            while True:
                try:
                    generation = await lock.try_acquire()
                except StoreError as exc:  # a lost database: stand for the role once it answers
                    await pause(outage.failed(exc))
                    continue
                outage.answered()
                if generation is None:
                    await asyncio.sleep(self.role_retry)
                    continue
                try:
                    await _serve_while_held(make().run(), lock)
                    attempt = 0
                except* refused as errors:
                    attempt += 1
                    await _bot_backoff(platform, errors.exceptions[0], attempt)
        finally:
            outage.close()
            await lock.release()

    def _reply_limiter(self) -> Any:
        """The command bot's replies wait for the alerts' windows of the same bot and chat."""
        from notifier.bots.limiter import SharedLimiter

        senders = self.holder.senders
        if senders.bot is None:
            self.chat_sender(senders, "@tg:0")  # makes the shared TelegramBot
        bot = senders.bot
        assert bot is not None
        return SharedLimiter(bot.window, bot.chat_window)


async def _serve_while_held(serving: Coroutine[Any, Any, None], lock: RoleLock) -> None:
    """Run a command bot until it ends or this instance loses the role."""
    async with asyncio.TaskGroup() as group:
        bot = group.create_task(serving)
        lost = group.create_task(lock.hold())
        await asyncio.wait([bot, lost], return_when=asyncio.FIRST_COMPLETED)
        bot.cancel()
        lost.cancel()


async def _bot_backoff(platform: str, error: BaseException, attempt: int) -> None:
    """A command bot that cannot start (token refused, API down) tries again later; the
    alerts do not depend on it."""
    wait = min(300.0, 2.0**attempt)
    event(
        _log,
        "bot.unavailable",
        logging.ERROR,
        platform=platform,
        error=short_error(error),
        retry_in=wait,
    )
    await asyncio.sleep(wait)
