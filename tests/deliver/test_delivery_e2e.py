"""Delivery end to end: the real senders and lanes against the fake chat APIs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from notifier.render.fields import AlertView, ended_fields
from notifier.store import DEAD, DROPPED, SENT
from tests.deliver.harness import harness, live_view, new_alert
from tests.fakes.discord import FakeDiscord
from tests.fakes.telegram import FakeTelegram

TG = {"me": {"telegram": {"chat_id": 1001}}}
GROUP = {"group": {"telegram": {"chat_id": -100555, "thread_id": 42, "silent": True}}}


@pytest.fixture
async def limited_discord() -> AsyncIterator[FakeDiscord]:
    """A fake Discord enforcing its limits: 5 requests per 2 s per webhook."""
    fake = await FakeDiscord(limits_scale=1.0).start()
    yield fake
    await fake.stop()


async def test_telegram_text_alert_is_sent_as_html_and_recorded(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    async with harness(tmp_path, TG, telegram=fake_telegram) as h:
        alert = new_alert("me", live_view("<b>hi</b> & @everyone"))
        await h.enqueue(alert)
        row = await h.wait_state(alert.key, SENT)
    (request,) = fake_telegram.sent("sendMessage")
    assert request["params"]["parse_mode"] == "HTML"
    assert request["params"]["chat_id"] == "1001"
    assert "&lt;b&gt;hi&lt;/b&gt; &amp; @everyone" in request["params"]["text"]
    assert row.message_id == "t:1"


async def test_telegram_photo_alert_with_thread_and_silent_options(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    async with harness(tmp_path, GROUP, telegram=fake_telegram) as h:
        alert = new_alert("group", live_view(image="https://assets.parti.com/t.png"))
        await h.enqueue(alert)
        row = await h.wait_state(alert.key, SENT)
    (request,) = fake_telegram.sent("sendPhoto")
    params = request["params"]
    assert params["photo"] == "https://assets.parti.com/t.png"
    assert params["message_thread_id"] == "42"
    assert params["disable_notification"] == "true"
    assert "caption" in params and row.message_id == "p:1"


async def test_stream_end_edits_the_caption_in_place(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    async with harness(tmp_path, TG, telegram=fake_telegram) as h:
        view = live_view(image="https://assets.parti.com/t.png")
        original = new_alert("me", view)
        await h.enqueue(original)
        ended = AlertView(
            "live", "r", ended_fields(view.fields, ended_at=view.fields["at"] + 60, peak_viewers=7)
        )
        edit = new_alert("me", ended, action="edit", ref_key=original.key)
        await h.enqueue(edit)
        await h.wait_state(edit.key, SENT)
    (request,) = fake_telegram.sent("editMessageCaption")
    assert request["params"]["message_id"] == "1"
    (message,) = fake_telegram.messages.values()
    assert "Stream ended" in message.text and "peak 7 viewers" in message.text


async def test_429_retry_after_is_honoured_then_sent(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    fake_telegram.fail(429, "Too Many Requests: retry after 1", retry_after=1)
    async with harness(tmp_path, TG, telegram=fake_telegram) as h:
        alert = new_alert("me")
        await h.enqueue(alert)
        row = await h.wait_state(alert.key, SENT)
    attempts = [r for r in fake_telegram.requests if r["method"] == "sendMessage"]
    assert [r["status"] for r in attempts] == [429, 200]
    assert attempts[1]["at"] - attempts[0]["at"] >= 1.0, "waited retry_after before retrying"
    assert row.attempts == 2


async def test_5xx_and_timeouts_retry_with_backoff(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    fake_telegram.fail(502, "Bad Gateway", count=2)
    fake_telegram.fail(200, "", delay=3.0, methods=("sendMessage",))
    async with harness(tmp_path, TG, telegram=fake_telegram, send_timeout=1.0) as h:
        alert = new_alert("me")
        await h.enqueue(alert)
        row = await h.wait_state(alert.key, SENT)
    assert row.attempts == 4  # 502, 502, timed out, sent


async def test_blocked_bot_goes_to_dead_letter_without_retrying(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    fake_telegram.blocked.add(1001)
    async with harness(tmp_path, TG, telegram=fake_telegram) as h:
        alert = new_alert("me")
        await h.enqueue(alert)
        row = await h.wait_state(alert.key, DEAD)
    assert row.last_error == "forbidden: Forbidden: bot was blocked by the user"
    assert row.attempts == 1
    assert h.delivery.metrics.dead.labels(destination="me")._value.get() == 1


async def test_chat_not_found_goes_to_dead_letter(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    fake_telegram.unknown.add(1001)
    async with harness(tmp_path, TG, telegram=fake_telegram) as h:
        alert = new_alert("me")
        await h.enqueue(alert)
        row = await h.wait_state(alert.key, DEAD)
    assert "chat not found" in (row.last_error or "").lower()


async def test_unparseable_markup_is_retried_once_as_plain_text(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    async with harness(tmp_path, TG, telegram=fake_telegram) as h:
        # A template author wrote a raw "<": Telegram rejects the HTML (tdlib takes a lone
        # "&" as text, but every "<" starts a tag).
        alert = new_alert("me", template="Tom < Jerry: {{ title }}")
        await h.enqueue(alert)
        row = await h.wait_state(alert.key, SENT)
    statuses = [r["status"] for r in fake_telegram.requests if r["method"] == "sendMessage"]
    assert statuses == [400, 200]
    last = fake_telegram.sent("sendMessage")[0]["params"]
    assert "parse_mode" not in last and last["text"] == "Tom < Jerry: Morning stream"
    assert row.payload["plain"] is True


async def test_migrated_chat_updates_its_id_and_retries(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    fake_telegram.migrated[-100555] = -100777
    async with harness(tmp_path, GROUP, telegram=fake_telegram) as h:
        first, second = new_alert("group"), new_alert("group")
        await h.enqueue(first)
        await h.wait_state(first.key, SENT)
        await h.enqueue(second)
        await h.wait_state(second.key, SENT)
    chats = [r["params"]["chat_id"] for r in fake_telegram.sent("sendMessage")]
    assert chats == ["-100777", "-100777"]


async def test_a_failing_destination_never_delays_the_others(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    destinations = {"slow": {"telegram": {"chat_id": 1}}, "fast": {"telegram": {"chat_id": 2}}}
    fake_telegram.fail(200, "", delay=5.0, count=1, methods=("sendMessage",))
    async with harness(tmp_path, destinations, telegram=fake_telegram, send_timeout=8.0) as h:
        slow = new_alert("slow")
        await h.enqueue(slow)
        await fake_telegram.wait_for(lambda: len(fake_telegram.requests) >= 2)  # getMe + slow
        fast = new_alert("fast")
        await h.enqueue(fast)
        await h.wait_state(fast.key, SENT)
        assert (await h.row(slow.key)).state != SENT, "fast was delivered while slow hung"
        await h.wait_state(slow.key, SENT)


async def test_discord_webhook_send_edit_and_mentions(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    url = fake_discord.add_webhook(123456789012345678)
    destinations = {
        "room": {"discord": {"webhook_url": url, "mention_role": 4242, "username": "Alerts"}}
    }
    async with harness(tmp_path, destinations, discord=fake_discord) as h:
        view = live_view("@everyone **free** <@&999>")
        original = new_alert("room", view)
        await h.enqueue(original)
        row = await h.wait_state(original.key, SENT)
        ended = AlertView(
            "live",
            "r",
            ended_fields(view.fields, ended_at=view.fields["at"] + 90, peak_viewers=None),
        )
        edit = new_alert("room", ended, action="edit", ref_key=original.key)
        await h.enqueue(edit)
        await h.wait_state(edit.key, SENT)
    (sent,) = fake_discord.sent()
    assert sent["pinged"] == {"everyone": False, "roles": [4242], "users": []}
    allowed = sent["body"]["allowed_mentions"]
    assert (allowed["parse"], allowed["roles"]) == ([], [4242])
    assert sent["body"]["username"] == "Alerts"
    message = fake_discord.messages[int(row.message_id or 0)]
    assert message["embeds"][0]["color"] == 0x72767D, "edited to the ended colour"
    assert fake_discord.violations == []


async def test_discord_unknown_webhook_goes_to_dead_letter(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    destinations = {
        "room": {"discord": {"webhook_url": "https://discord.com/api/webhooks/1/deleted"}}
    }
    async with harness(tmp_path, destinations, discord=fake_discord) as h:
        alert = new_alert("room")
        await h.enqueue(alert)
        row = await h.wait_state(alert.key, DEAD)
    assert "10015" in (row.last_error or "") and "deleted" not in (row.last_error or "")


async def test_discord_429_is_retried(tmp_path: Path, fake_discord: FakeDiscord) -> None:
    url = fake_discord.add_webhook(55)
    fake_discord.fail(429, "You are being rate limited.", retry_after=0.3)
    async with harness(
        tmp_path, {"room": {"discord": {"webhook_url": url}}}, discord=fake_discord
    ) as h:
        alert = new_alert("room")
        await h.enqueue(alert)
        await h.wait_state(alert.key, SENT)
    assert len(fake_discord.sent()) == 1


async def test_discord_channel_destination_uses_the_bot_token(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    fake_discord.channels.add(987654321098765432)
    destinations = {"mods": {"discord": {"channel_id": 987654321098765432}}}
    async with harness(tmp_path, destinations, discord=fake_discord) as h:
        alert = new_alert("mods", live_view("@here look"))
        await h.enqueue(alert)
        await h.wait_state(alert.key, SENT)
        delete = new_alert("mods", action="delete", ref_key=alert.key)
        await h.enqueue(delete)
        await h.wait_state(delete.key, SENT)
    (sent,) = fake_discord.sent()
    assert sent["where"] == "channel:987654321098765432"
    assert sent["pinged"] == {"everyone": False, "roles": [], "users": []}
    assert len(fake_discord.deleted) == 1


async def test_an_edit_whose_original_died_is_dropped(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    fake_telegram.blocked.add(1001)
    async with harness(tmp_path, TG, telegram=fake_telegram) as h:
        original = new_alert("me")
        edit = new_alert("me", action="edit", ref_key=original.key)
        await h.enqueue(original, edit)
        await h.wait_state(original.key, DEAD)
        await h.wait_state(edit.key, DROPPED)


async def test_a_fan_out_to_more_webhooks_than_a_default_pool_sends_to_all_at_once(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    # aiohttp's default pool (100 connections) would queue the 101st webhook's alert behind
    # the first hundred answers; each webhook has its lane and its connection.
    hooks = 150
    destinations = {
        f"hook{n}": {"discord": {"webhook_url": fake_discord.add_webhook(7000 + n)}}
        for n in range(hooks)
    }
    fake_discord.fail(200, count=hooks, delay=60.0)  # every answer held until the fake stops
    async with harness(tmp_path, destinations, discord=fake_discord, send_timeout=120) as h:
        alerts = [new_alert(name) for name in destinations]
        await h.enqueue(*alerts)
        # All at once (no send times out meanwhile, so none is retried on a freed connection).
        await fake_discord.wait_for(lambda: fake_discord.pausing == hooks, timeout=20)
        fake_discord.closing.set()  # the held answers go out now
        await h.wait_sent(*alerts)


async def test_a_webhook_is_paced_by_discords_bucket_headers_without_a_429(
    tmp_path: Path, limited_discord: FakeDiscord
) -> None:
    # The fake enforces 5 requests per 2 s per webhook and says so in X-RateLimit-*; the
    # sixth and seventh alerts wait for the bucket to reset instead of being refused.
    url = limited_discord.add_webhook(4242)
    async with harness(
        tmp_path, {"room": {"discord": {"webhook_url": url}}}, discord=limited_discord
    ) as h:
        alerts = [new_alert("room") for _ in range(7)]
        await h.enqueue(*alerts)
        await h.wait_sent(*alerts)
    assert limited_discord.rate_limited == 0
    assert len(limited_discord.sent()) == 7


async def test_a_webhook_bucket_reset_longer_than_the_send_timeout_sends_nothing_twice(
    tmp_path: Path, limited_discord: FakeDiscord
) -> None:
    # The fifth answer says the bucket is empty for about 2 s; a send may take 1 s. The
    # fifth alert is delivered at once and recorded (discord.py would sleep the 2 s inside
    # that send: a timeout, a retry, the message twice); the sixth waits for the reset
    # outside its send timeout: sent at its first attempt, without a 429.
    url = limited_discord.add_webhook(4243)
    async with harness(
        tmp_path,
        {"room": {"discord": {"webhook_url": url}}},
        discord=limited_discord,
        send_timeout=1.0,
    ) as h:
        alerts = [new_alert("room") for _ in range(6)]
        await h.enqueue(*alerts)
        rows = [await h.wait_state(alert.key, SENT) for alert in alerts]
    assert limited_discord.rate_limited == 0
    assert len(limited_discord.sent()) == 6
    assert [row.attempts for row in rows] == [1] * 6
    assert all(row.last_error is None for row in rows)


async def test_two_destinations_on_one_webhook_wait_for_its_reset_in_the_gate(
    tmp_path: Path, limited_discord: FakeDiscord
) -> None:
    # Discord counts the webhook, whichever destination names it (another display name
    # here): the one that did not empty the bucket waits for its reset too, before its
    # send timeout starts, and is sent at its first attempt.
    url = limited_discord.add_webhook(4245)
    destinations = {
        "a": {"discord": {"webhook_url": url}},
        "b": {"discord": {"webhook_url": url, "username": "Other name"}},
    }
    async with harness(tmp_path, destinations, discord=limited_discord, send_timeout=1.0) as h:
        first = [new_alert("a") for _ in range(5)]
        await h.enqueue(*first)
        await h.wait_sent(*first)
        late = new_alert("b")
        await h.enqueue(late)
        row = await h.wait_state(late.key, SENT)
    assert row.attempts == 1 and row.last_error is None
    assert limited_discord.rate_limited == 0
    assert len(limited_discord.sent()) == 6


async def test_a_chat_api_failing_mid_run_shows_as_down_until_it_answers(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    reports: list[tuple[str, str | None]] = []
    fake_telegram.fail(502, "Bad Gateway", count=4)
    destinations = {"group": {"telegram": {"chat_id": -100123}}}
    async with harness(
        tmp_path, destinations, telegram=fake_telegram, on_reachability=lambda *r: reports.append(r)
    ) as h:
        alert = new_alert("group")
        await h.enqueue(alert)
        await h.wait_state(alert.key, SENT)
    down = [reason for name, reason in reports if reason is not None]
    # Down from the third failure in a row (the fourth says so again); up at the answer.
    assert len(down) == 2 and all("502" in r or "Bad Gateway" in r for r in down), reports
    assert reports[-1] == ("group", None)
