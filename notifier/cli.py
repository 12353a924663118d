"""Command line: argument parsing and signals; every command's work lives in its stage."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from notifier import __version__
from notifier import log as logsetup
from notifier.settings import Settings

PARTI_ROUTES = (
    "categories",
    "live",
    "events",
    "featured",
    "recent",
    "prices",
    "profile",
    "user",
    "social",
    "channel",
    "ended",
    "watch",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="notifier", description="Parti live and price alerts to Telegram and Discord."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="the daemon: connect, match, deliver, until SIGTERM")
    run.add_argument("--rules", help="rules file (default: NOTIFIER_RULES)")

    demo = sub.add_parser("demo", help="a scripted tour against the in-process simulator")
    demo.add_argument(
        "--telegram-chat",
        help="also send the demo alerts to this Telegram chat (needs NOTIFIER_TELEGRAM_TOKEN)",
    )

    send_test = sub.add_parser("send-test", help="send one test alert to a destination")
    send_test.add_argument("destination", help="a destination name of the rules file")
    send_test.add_argument("--rules", help="rules file (default: NOTIFIER_RULES)")

    outbox = sub.add_parser("outbox", help="list pending and dead alerts; retry or drop one")
    outbox.add_argument("action", nargs="?", choices=("list", "retry", "drop"), default="list")
    outbox.add_argument("key", nargs="?", help="the alert key (for retry and drop)")
    outbox.add_argument("--all", action="store_true", help="list sent alerts too")

    check = sub.add_parser("check", help="validate a rules file offline")
    check.add_argument("path", nargs="?", help="rules file (default: NOTIFIER_RULES)")
    check.add_argument("--schema", action="store_true", help="print the JSON Schema and exit")
    check.add_argument(
        "--online",
        action="store_true",
        help="also ask Parti whether the named users and categories exist",
    )

    replay = sub.add_parser("replay", help="feed recorded frames through the rules; send nothing")
    replay.add_argument("events", help="JSON lines: one raw frame, or {at, frame}, per line")
    replay.add_argument("--rules", help="rules file (default: NOTIFIER_RULES)")
    replay.add_argument(
        "--explain", action="store_true", help="also list events that matched nothing, and why"
    )

    sim = sub.add_parser("sim", help="run the local Parti simulator (HTTP + WebSocket)")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8765)

    parti = sub.add_parser("parti", help="call one Parti route and print its JSON")
    parti.add_argument(
        "route", choices=PARTI_ROUTES, metavar="ROUTE", help="one of: " + ", ".join(PARTI_ROUTES)
    )
    parti.add_argument(
        "args",
        nargs="*",
        help="USER_ID for profile/channel, NAME for user, "
        "PLATFORM NAME for social, EVENT_ID for ended",
    )
    parti.add_argument("--limit", type=int)
    parti.add_argument("--offset", type=int, default=0)
    parti.add_argument("--all", action="store_true", help="follow pagination to the end")
    parti.add_argument("--category", help="recent: category id (or NaN)")
    parti.add_argument("--top-views", action="store_true", help="recent: sort by top views")
    parti.add_argument("--from-ts", type=int)
    parti.add_argument("--to-ts", type=int)
    parti.add_argument("--followed-only", action="store_true")
    parti.add_argument("--count", type=int, help="watch: stop after this many events")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        # One line per variable; hide_input_in_errors keeps the values out, redact the rest.
        for problem in exc.errors(include_url=False):
            name = "NOTIFIER_" + "_".join(str(part) for part in problem["loc"]).upper()
            message = " ".join(problem["msg"].removeprefix("Value error, ").split())
            print(logsetup.redact(f"notifier: bad setting {name}: {message}"), file=sys.stderr)
        return 2
    logsetup.register_settings_secrets(settings)
    # Commands that print data keep stdout for it; the daemon logs to stdout (journald).
    data_commands = {"parti", "check", "replay", "demo", "send-test", "outbox"}
    logsetup.setup(
        settings.log_format, stream=sys.stderr if args.command in data_commands else None
    )
    try:
        if args.command == "sim":
            from notifier.parti.simulator import serve

            asyncio.run(serve(args.host, args.port))
            return 0
        if args.command == "parti":
            return asyncio.run(_parti(args, settings))
        if args.command == "check":
            return _check(args, settings)
        if args.command == "run":
            return _run(args, settings)
        if args.command == "demo":
            from notifier.demo import run_demo

            return asyncio.run(run_demo(settings, telegram_chat=args.telegram_chat))
        if args.command == "send-test":
            return asyncio.run(_send_test(args, settings))
        if args.command == "outbox":
            return _outbox(args, settings)
        if args.command == "replay":
            return _replay(args, settings)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: logged with its traceback, one line for the user
        return logsetup.report_crash(exc)
    return 2


async def _parti(args: argparse.Namespace, settings: Settings) -> int:
    from notifier.parti.client import PartiClient, PartiError

    if args.route == "watch":
        return await _watch(args, settings)
    async with PartiClient(settings.parti_api_url) as client:
        try:
            result = await _call_route(client, args)
        except PartiError as exc:
            print(f"notifier parti: {exc}", file=sys.stderr)
            return 1
        except _UsageError as exc:
            print(f"notifier parti: {exc}", file=sys.stderr)
            return 2
    print(json.dumps(_plain(result), indent=2, ensure_ascii=False))
    return 0


class _UsageError(Exception):
    pass


def _need(args: argparse.Namespace, count: int, what: str) -> list[str]:
    if len(args.args) != count:
        raise _UsageError(f"{args.route} needs {what}")
    return list(args.args)


def _need_int(args: argparse.Namespace, what: str) -> int:
    (text,) = _need(args, 1, what)
    try:
        return int(text)
    except ValueError:
        raise _UsageError(f"{args.route}: {what} must be a number, not {text!r}") from None


async def _call_route(client: Any, args: argparse.Namespace) -> Any:
    route = args.route
    if route == "categories":
        return await client.categories()
    if route == "featured":
        return await client.featured()
    if route == "prices":
        return await client.prices()
    if route == "profile":
        return await client.profile(_need_int(args, "a USER_ID"))
    if route == "channel":
        return await client.channel(_need_int(args, "a USER_ID"))
    if route == "ended":
        return await client.recent_event(_need_int(args, "an EVENT_ID"))
    if route == "user":
        (name,) = _need(args, 1, "a NAME")
        return {"user_id": await client.user_id_from_name(name)}
    if route == "social":
        platform, name = _need(args, 2, "PLATFORM NAME")
        return {"user_id": await client.user_by_social_media(platform, name)}
    if route == "live":
        if args.all:
            return [c async for c in client.iter_live(page_size=args.limit or 100)]
        return await client.live(limit=args.limit or 100, offset=args.offset)
    if route == "events":
        if args.all:
            return [e async for e in client.iter_calendar(page_size=args.limit or 100)]
        return await client.calendar(limit=args.limit or 100, offset=args.offset)
    filters = {
        "categories": args.category,
        "from_ts": args.from_ts,
        "to_ts": args.to_ts,
        "followed_only": args.followed_only,
        "top_views_sort": args.top_views,
    }
    if args.all:
        return [r async for r in client.iter_recent(page_size=args.limit or 15, **filters)]
    return await client.recent(limit=args.limit or 15, offset=args.offset, **filters)


async def _watch(args: argparse.Namespace, settings: Settings) -> int:
    from notifier.parti.stream import Connected, PartiStream

    stream = PartiStream(settings.parti_ws_url)
    seen = 0
    async for item in stream:
        if isinstance(item, Connected):
            gap = f" after a {item.gap.seconds:.1f}s gap" if item.gap else ""
            print(f"# connected to {stream.url}{gap}", file=sys.stderr)
            continue
        payload = {"at": round(item.at, 3), "type": item.event.kind, **_plain(item.event)}
        print(json.dumps(payload, ensure_ascii=False), flush=True)
        seen += 1
        if args.count is not None and seen >= args.count:
            break
    return 0


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_unset=True)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _check(args: argparse.Namespace, settings: Settings) -> int:
    from notifier.rules.loader import RulesError, load_file
    from notifier.rules.schema import RulesFile

    if args.schema:
        print(json.dumps(RulesFile.model_json_schema(), indent=2))
        return 0
    path = args.path or settings.rules
    try:
        rules_file = load_file(path)
    except RulesError as exc:
        _problems(exc)
        count = len(exc.problems)
        print(f"{path}: {count} error{'s' if count != 1 else ''}", file=sys.stderr)
        return 1
    kinds = {"live": 0, "price": 0, "scheduled": 0}
    for rule in rules_file.rules:
        kinds[rule.when] += 1
    dests: dict[str, int] = {}
    for destination in rules_file.destinations.values():
        dests[destination.kind] = dests.get(destination.kind, 0) + 1
    rules_text = ", ".join(f"{n} {k}" for k, n in kinds.items())
    dest_text = ", ".join(f"{n} {k}" for k, n in sorted(dests.items()))
    print(
        f"{path}: ok: rules {rules_text}; destinations {len(rules_file.destinations)} ({dest_text})"
    )
    if args.online:
        from notifier.rules.online import check_online

        warnings = asyncio.run(check_online(rules_file, settings.parti_api_url))
        for warning in warnings:
            print(f"{path}: warning: {warning}", file=sys.stderr)
    return 0


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    from notifier.parti import seed
    from notifier.parti.models import Category
    from notifier.rules.engine import Engine, category_map
    from notifier.rules.loader import RulesError, load_file
    from notifier.rules.replay import format_table, replay

    path = args.rules or settings.rules
    try:
        rules_file = load_file(path)
    except RulesError as exc:
        return _problems(exc)
    # Offline: category ids map through the documented category list.
    categories = category_map(Category.model_validate(c) for c in seed.CATEGORIES)
    engine = Engine(rules_file, categories=categories)
    try:
        with open(args.events, encoding="utf-8", errors="replace") as lines:
            result = replay(engine, lines, explain=args.explain)
    except OSError as exc:
        print(f"notifier replay: cannot read {args.events}: {exc.strerror}", file=sys.stderr)
        return 1
    if result.rows:
        print(format_table(result.rows))
    print(
        f"{result.frames} frames, {result.events} events, {result.rejected} rejected, "
        f"{result.alerts} alerts (nothing sent)"
    )
    return 0


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from notifier.app import App
    from notifier.deliver.factory import MissingSecret
    from notifier.rules.loader import RulesError

    async def main() -> int:
        try:
            app = App(settings, rules_path=args.rules)
        except RulesError as exc:
            return _problems(exc)
        except MissingSecret as exc:
            print(f"notifier run: {exc}", file=sys.stderr)
            return 2
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, app.request_stop)
        loop.add_signal_handler(signal.SIGINT, app.request_stop)
        loop.add_signal_handler(signal.SIGHUP, app.request_reload)
        return await app.run()

    return asyncio.run(main())


async def _send_test(args: argparse.Namespace, settings: Settings) -> int:
    import time

    from notifier.deliver.factory import MissingSecret, build_senders
    from notifier.render.fields import test_view
    from notifier.rules.loader import RulesError, load_file

    path = args.rules or settings.rules
    try:
        rules_file = load_file(path)
        if args.destination not in rules_file.destinations:
            known = ", ".join(sorted(rules_file.destinations))
            print(
                f"notifier send-test: no destination {args.destination!r} in {path} "
                f"(known: {known})",
                file=sys.stderr,
            )
            return 1
        senders = build_senders(rules_file, settings)
    except RulesError as exc:
        return _problems(exc)
    except MissingSecret as exc:
        print(f"notifier send-test: {exc}", file=sys.stderr)
        return 2
    sender = senders.by_name[args.destination]
    payload = {"view": test_view(args.destination, time.time()).to_json(), "template": None}
    try:
        await sender.start()
        message_id = await sender.send(payload)
    except Exception as exc:
        failure = sender.classify(exc)
        print(
            f"notifier send-test: {args.destination}: {failure.outcome.value}: {failure.reason}",
            file=sys.stderr,
        )
        return 1
    finally:
        await senders.close()
    print(f"{args.destination}: sent (message id {message_id})")
    return 0


def _outbox(args: argparse.Namespace, settings: Settings) -> int:
    import time

    from notifier.outbox.store import DEAD, PENDING, SENDING, SENT, Outbox

    outbox = Outbox(settings.state_path)
    try:
        if args.action in ("retry", "drop"):
            if not args.key:
                print(f"notifier outbox {args.action}: needs a KEY", file=sys.stderr)
                return 2
            done = (
                outbox.retry(args.key, now=time.time())
                if args.action == "retry"
                else outbox.drop(args.key)
            )
            verb = "due again" if args.action == "retry" else "dropped"
            if not done:
                print(
                    f"notifier outbox: no {'dead ' if args.action == 'retry' else ''}"
                    f"alert with key {args.key}",
                    file=sys.stderr,
                )
                return 1
            print(f"{args.key}: {verb}")
            return 0
        states = [PENDING, SENDING, DEAD] + ([SENT] if args.all else [])
        rows = outbox.rows(states=states)
        counts = outbox.counts()
    finally:
        outbox.close()
    for row in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row.created_at))
        error = f"  {row.last_error}" if row.last_error else ""
        print(
            f"{row.state:<8} {when}  {row.destination:<16} {row.rule:<20} "
            f"attempts={row.attempts}  {row.key}{error}"
        )
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "empty"
    print(f"outbox {settings.state_path}: {summary}")
    return 0


def _problems(error: Exception) -> int:
    """Print a rules file's problems (`file:line:col: message`) to stderr; exit code 1."""
    for problem in getattr(error, "problems", [error]):
        print(problem, file=sys.stderr)
    return 1
