"""An alert's Discord webhook request is exactly what discord.py's own `Webhook.send`
would post for it, for every option a destination or an alert can carry; only the
answer is not turned into a `WebhookMessage`."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import discord
import pytest
from aiohttp import web
from discord.webhook.async_ import async_context

from notifier.deliver.discord import (
    DiscordHub,
    DiscordSender,
    HubClosed,
    InvalidAnswer,
    allowed_mentions,
    classify,
    render_alert,
    rendering_key,
)
from notifier.outbox.policy import Outcome
from notifier.rules.schema import DiscordTarget
from tests.deliver.harness import live_view
from tests.fakes.common import served
from tests.fakes.discord import FakeDiscord

OPTIONS = list(
    itertools.product(
        (None, 4242),  # the one role a message may mention
        (None, "Alerts"),  # the webhook's display name
        ("https://assets.parti.com/t.png", ""),  # a picture in the embed or none
        (None, "{user_name} is live: {title}"),  # a template (content and embed from it)
    )
)


async def reference(sender: DiscordSender, payload: dict[str, Any]) -> None:
    """The same alert through discord.py's public `Webhook.send`, as sent before."""
    message = render_alert((rendering_key(payload), sender.target.mention_role))
    options: dict[str, Any] = {
        "embed": discord.Embed.from_dict(message.embed),
        "allowed_mentions": allowed_mentions(message.mention_role),
        "wait": True,
    }
    if message.content:
        options["content"] = message.content
    if sender.target.username:
        options["username"] = sender.target.username
    assert sender._webhook is not None
    await sender._webhook.send(**options)


@pytest.mark.parametrize(("role", "username", "image", "template"), OPTIONS)
async def test_a_webhook_alerts_request_is_the_one_discord_pys_webhook_send_posts(
    fake_discord: FakeDiscord,
    role: int | None,
    username: str | None,
    image: str,
    template: str | None,
) -> None:
    url = fake_discord.add_webhook(900)
    hub = DiscordHub(fake_discord.api_url, None)
    target = DiscordTarget(webhook_url=url, mention_role=role, username=username)
    sender = DiscordSender("d", target, hub)
    payload: dict[str, Any] = {"view": live_view(image=image).to_json(), "template": template}
    await sender.start()
    try:
        message_id = await sender.send(payload)
        await reference(sender, payload)
    finally:
        await hub.close()
    mine, theirs = fake_discord.sent()[-2:]
    assert mine["where"] == theirs["where"] == "webhook:900"
    assert mine["body"] == theirs["body"]
    assert mine["query"] == theirs["query"]
    assert message_id == str(mine["id"])


@pytest.mark.parametrize("answer", [None, {}, {"id": None}, [{"id": "7"}], "7"])
async def test_an_answer_without_a_message_id_is_retried_not_taken_as_sent(
    fake_discord: FakeDiscord, answer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Answering:
        async def request(self, *args: Any, **kwargs: Any) -> Any:
            return answer

    url = fake_discord.add_webhook(901)
    hub = DiscordHub(fake_discord.api_url, None)
    sender = DiscordSender("d", DiscordTarget(webhook_url=url), hub)
    await sender.start()
    token = async_context.set(Answering())  # type: ignore[arg-type]
    try:
        with pytest.raises(InvalidAnswer) as caught:
            await sender.send({"view": live_view().to_json(), "template": None})
    finally:
        async_context.reset(token)
        await hub.close()
    assert sender.classify(caught.value).outcome is Outcome.BACKOFF
    assert classify(caught.value).outcome is Outcome.BACKOFF


async def test_a_hub_points_discord_py_at_its_api_only_once_it_starts(
    fake_discord: FakeDiscord,
) -> None:
    """A reload builds its senders before it may still fail: until they start, discord.py
    keeps sending (edits, deletes) where the running senders send."""
    from discord.http import Route

    url = fake_discord.add_webhook(902)
    running = DiscordHub(fake_discord.api_url, None)
    sender = DiscordSender("d", DiscordTarget(webhook_url=url), running)
    await sender.start()
    try:
        DiscordHub("http://127.0.0.1:9/api/v10", None)  # built by a reload that then fails
        assert fake_discord.api_url.rstrip("/") == Route.BASE
        Route.BASE = "http://127.0.0.1:9/api/v10"  # and the send goes where its hub says
        await sender.send({"view": live_view().to_json(), "template": None})
    finally:
        Route.BASE = fake_discord.api_url.rstrip("/")
        await running.close()
    assert fake_discord.sent()[-1]["where"] == "webhook:902"


async def test_a_login_that_ends_after_the_hub_closed_is_not_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A reload closes the old senders while one of their lanes may still be logging in:
    that login's client is closed when it ends, not kept open by a closed hub."""
    from discord.http import HTTPClient

    asked, answer = asyncio.Event(), asyncio.Event()

    async def me(request: web.Request) -> web.Response:
        asked.set()
        await answer.wait()
        return web.json_response({"id": "1", "username": "bot", "discriminator": "0"})

    app = web.Application()
    app.router.add_get("/api/v10/users/@me", me)
    async with served(app) as port:
        closed: list[HTTPClient] = []
        close = HTTPClient.close

        async def closing(self: HTTPClient) -> None:
            closed.append(self)
            await close(self)

        monkeypatch.setattr(HTTPClient, "close", closing)
        hub = DiscordHub(f"http://127.0.0.1:{port}/api/v10", "a-token")
        try:
            starting = asyncio.create_task(hub.start(need_bot=True))
            async with asyncio.timeout(10):
                await asyncio.wait(
                    [starting, asyncio.create_task(asked.wait())], return_when="FIRST_COMPLETED"
                )
            assert asked.is_set(), starting
            await hub.close()  # while the login waits for its answer
            answer.set()
            with pytest.raises(HubClosed):
                await starting
            assert hub.http is None
            assert len(closed) == 1  # the late login's client
        finally:
            await hub.close()
