"""Command line: argument parsing and signals; every command's work lives in its stage."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

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
    run.add_argument("--env-file", help="also read NOTIFIER_* and ${VAR}s from this file")

    demo = sub.add_parser("demo", help="a scripted tour against the in-process simulator")
    demo.add_argument(
        "--telegram-chat",
        help="also send the demo alerts to this Telegram chat (needs NOTIFIER_TELEGRAM_TOKEN)",
    )

    send_test = sub.add_parser("send-test", help="send one test alert to a destination")
    send_test.add_argument("destination", help="a destination name of the rules file")
    send_test.add_argument("--rules", help="rules file (default: NOTIFIER_RULES)")
    send_test.add_argument("--env-file", help="also read NOTIFIER_* and ${VAR}s from this file")
    send_test.add_argument(
        "--timeout",
        type=_seconds,
        default=30.0,
        help="give up after this many seconds without an answer (default 30, as a send)",
    )

    outbox = sub.add_parser("outbox", help="list pending and dead alerts; retry or drop one")
    outbox.add_argument("action", nargs="?", choices=("list", "retry", "drop"), default="list")
    outbox.add_argument("key", nargs="?", help="the alert key (for retry and drop)")
    outbox.add_argument("--all", action="store_true", help="list sent and dropped alerts too")

    db = sub.add_parser("db", help="the store's schema: status, or apply migrations")
    db.add_argument("action", nargs="?", choices=("status", "migrate"), default="status")

    telegram = sub.add_parser("telegram", help="the Telegram bot's chats (from its commands)")
    telegram.add_argument("action", choices=("chats",), help="chats: the chats the bot has seen")

    discord_cmd = sub.add_parser("discord", help="the Discord bot's slash commands")
    discord_cmd.add_argument("action", choices=("sync",), help="sync: register /parti")
    discord_cmd.add_argument(
        "--guild", type=int, required=True, help="register in this server only (for testing)"
    )
    discord_cmd.add_argument(
        "--timeout",
        type=_seconds,
        default=30.0,
        help="give up after this many seconds without an answer (default 30)",
    )

    subs = sub.add_parser("subs", help="chat watchlists: list, export (YAML), import")
    subs.add_argument("action", nargs="?", choices=("list", "export", "import"), default="list")
    subs.add_argument("file", nargs="?", help="import: the YAML file from subs export")
    subs.add_argument("--platform", choices=("telegram", "discord"))
    subs.add_argument(
        "--chat", type=_chat_id, help="one chat id (export, list); import: move into this chat"
    )

    check = sub.add_parser("check", help="validate a rules file offline")
    check.add_argument("path", nargs="?", help="rules file (default: NOTIFIER_RULES)")
    check.add_argument("--schema", action="store_true", help="print the JSON Schema and exit")
    check.add_argument(
        "--online",
        action="store_true",
        help="also ask Parti whether the named users and categories exist",
    )
    check.add_argument("--env-file", help="also read ${VAR}s from this file (the service's)")

    replay = sub.add_parser("replay", help="feed recorded frames through the rules; send nothing")
    replay.add_argument("events", help="JSON lines: one raw frame, or {at, frame}, per line")
    replay.add_argument("--rules", help="rules file (default: NOTIFIER_RULES)")
    replay.add_argument("--env-file", help="also read ${VAR}s from this file (the service's)")
    replay.add_argument(
        "--explain", action="store_true", help="also list events that matched nothing, and why"
    )

    sim = sub.add_parser("sim", help="run the local Parti simulator (HTTP + WebSocket)")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=_port, default=8765)

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
    env_file = getattr(args, "env_file", None)
    try:
        # The service's env file (EnvironmentFile=) sets NOTIFIER_* as well as ${VAR}s.
        settings = Settings(_env_file=(".env", env_file) if env_file else ".env")
    except OSError as exc:
        print(f"notifier: cannot read {env_file or '.env'}: {exc.strerror}", file=sys.stderr)
        return 2
    except UnicodeDecodeError:
        print(f"notifier: cannot read {env_file or '.env'}: not UTF-8 text", file=sys.stderr)
        return 2
    except ValidationError as exc:
        # One line per variable; hide_input_in_errors keeps the values out, redact the rest.
        for problem in exc.errors(include_url=False):
            name = "NOTIFIER_" + "_".join(str(part) for part in problem["loc"]).upper()
            message = " ".join(problem["msg"].removeprefix("Value error, ").split())
            print(logsetup.redact(f"notifier: bad setting {name}: {message}"), file=sys.stderr)
        return 2
    logsetup.register_settings_secrets(settings)
    # Commands that print data keep stdout for it; the daemon logs to stdout (journald).
    data_commands = {
        "parti",
        "check",
        "replay",
        "demo",
        "send-test",
        "outbox",
        "db",
        "subs",
        "telegram",
        "discord",
    }
    logsetup.setup(
        settings.log_format, stream=sys.stderr if args.command in data_commands else None
    )
    try:
        if args.command == "sim":
            from notifier.parti.simulator import CannotListen, serve

            try:
                asyncio.run(serve(args.host, args.port))
            except CannotListen as exc:  # the port is taken, the host unknown
                print(f"notifier sim: {exc}", file=sys.stderr)
                return 2
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
        if args.command == "db":
            return _db(args, settings)
        if args.command == "subs":
            return _subs(args, settings)
        if args.command == "telegram":
            return _telegram_chats(settings)
        if args.command == "discord":
            return _discord_sync(args, settings)
        if args.command == "replay":
            return _replay(args, settings)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError as exc:
        if not _output_gone():
            return logsetup.report_crash(exc)  # another pipe than our output: a bug
        # The output's reader went away (`notifier outbox | head -1`).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush
        return 141  # as a process ended by SIGPIPE
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
    from notifier.rules.compile import read_rules
    from notifier.rules.schema import RulesFile
    from notifier.rules.stream import RulesError, compile_rules

    if args.schema:
        print(json.dumps(RulesFile.model_json_schema(), indent=2))
        return 0
    path = args.path or settings.rules
    from notifier.preflight import environment_problems

    # What `run` needs of this machine besides the file (not whether the ops port is free:
    # the running daemon holds it while its next rules are checked).
    machine = environment_problems(settings, port=False)
    data = None
    try:
        data = read_rules(path)  # once: a pipe (`check <(...)`) cannot be read twice
        # The very compile `run` does: what passes here starts there.
        compiled = compile_rules(
            path,
            env_file=args.env_file,
            discord_api_url=settings.discord_api_url,
            keep_rules=args.online,
            data=data,
        )
    except RulesError as exc:
        from notifier.preflight import missing_secrets_in_file

        _problems(exc)
        # also named while the file is broken
        tokens = missing_secrets_in_file(path, settings, data=data)
        for problem in [*tokens, *machine]:
            _error(f"{path}: {problem}")
        count = len(exc.problems) + len(tokens) + len(machine)
        _error(f"{path}: {_count(count, 'error')}")
        return 1
    rules_file = compiled.rules_file
    from notifier.preflight import missing_secrets

    # A token `run` would need and cannot find fails the check too (check OK = run starts).
    secrets = missing_secrets(rules_file, settings) + machine
    for problem in secrets:
        _error(f"{path}: {problem}")
    if secrets:
        count = len(secrets)
        _error(f"{path}: {_count(count, 'error')}")
        return 1
    kinds = compiled.engine.summary()
    dests: dict[str, int] = {}
    for destination in rules_file.destinations.values():
        dests[destination.kind] = dests.get(destination.kind, 0) + 1
    rules_text = ", ".join(f"{n} {k}" for k, n in kinds.items())
    dest_text = ", ".join(f"{n} {k}" for k, n in sorted(dests.items()))
    summary = f"rules {rules_text}; destinations {len(rules_file.destinations)} ({dest_text})"
    print(logsetup.redact(f"{path}: ok: {summary}"))
    if args.online:
        from notifier.rules.online import check_online

        warnings = asyncio.run(check_online(rules_file, settings.parti_api_url))
        for warning in warnings:
            _error(f"{path}: warning: {warning}")
    return 0


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    from notifier.parti import seed
    from notifier.parti.models import Category
    from notifier.rules.engine import category_map
    from notifier.rules.replay import format_table, replay
    from notifier.rules.stream import RulesError, compile_rules

    path = args.rules or settings.rules
    # Offline: category ids map through the documented category list.
    categories = category_map(Category.model_validate(c) for c in seed.CATEGORIES)
    try:
        engine = compile_rules(
            path,
            env_file=args.env_file,
            discord_api_url=settings.discord_api_url,
            categories=categories,
        ).engine
    except RulesError as exc:
        return _problems(exc)
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
    from notifier.app import App, compile_for
    from notifier.preflight import environment_problems, missing_secrets, missing_secrets_in_file
    from notifier.rules.compile import read_rules
    from notifier.rules.loader import RulesError
    from notifier.stages.ops_http import AddressInUse
    from notifier.store import StoreError

    # Every configuration problem at once, one line each, before anything starts.
    problems = environment_problems(settings)
    compiled = None
    path = args.rules or settings.rules
    data = None
    try:
        data = read_rules(path)  # once: a pipe cannot be read twice
        compiled = compile_for(settings, path, env_file=args.env_file, data=data)
    except RulesError as exc:
        problems += [str(p) for p in exc.problems]
        problems += missing_secrets_in_file(path, settings, data=data)
    del data
    if compiled is not None:
        problems += missing_secrets(compiled.rules_file, settings)
    if problems:
        for problem in problems:
            print(f"notifier run: {logsetup.redact(problem)}", file=sys.stderr)
        return 2
    assert compiled is not None

    async def main() -> int:
        app = App(settings, rules_path=args.rules, compiled=compiled, env_file=args.env_file)
        loop = asyncio.get_running_loop()
        logsetup.install_asyncio_handler(loop)
        loop.add_signal_handler(signal.SIGTERM, app.request_stop)
        loop.add_signal_handler(signal.SIGINT, app.request_stop)
        loop.add_signal_handler(signal.SIGHUP, app.request_reload)
        try:
            return await app.run()
        except (AddressInUse, StoreError) as exc:
            print(f"notifier run: {logsetup.redact(str(exc))}", file=sys.stderr)
            return 2

    return asyncio.run(main())


async def _send_test(args: argparse.Namespace, settings: Settings) -> int:
    import time

    from notifier.app import compile_for
    from notifier.deliver.factory import MissingSecret, build_senders
    from notifier.render.fields import test_view
    from notifier.rules.loader import RulesError

    path = args.rules or settings.rules
    try:
        rules_file = compile_for(settings, path, env_file=args.env_file).rules_file
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
    waiting = asyncio.timeout(args.timeout)
    try:
        async with waiting:
            await sender.start()
            message_id = await sender.send(payload)
    except Exception as exc:
        if isinstance(exc, TimeoutError) and waiting.expired():
            print(
                f"notifier send-test: {args.destination}: no answer within {args.timeout:g} s "
                "(or the chat's rate limit still holds it)",
                file=sys.stderr,
            )
            return 1
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


def _count(n: int, noun: str) -> str:
    """`n` and `noun`, plural unless one: "1 error", "3 errors"."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _output_gone() -> bool:
    """Whether nobody reads our standard output any more (its pipe's reader closed)."""
    import select

    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(flags & select.POLLERR for _, flags in poll.poll(0))
    except (OSError, ValueError):
        return False


N = TypeVar("N", int, float)


def _in_range(kind: Callable[[str], N], low: N, high: N, what: str) -> Callable[[str], N]:
    """An argparse type: `kind(text)` from `low` to `high` (NaN is neither), else one line
    saying so."""

    def parse(text: str) -> N:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{what} from {low:g} to {high:g}, not {text!r}")
        return value

    return parse


_seconds = _in_range(float, 0.1, 600.0, "a number of seconds")
_port = _in_range(int, 0, 65535, "a port is a number")


def _missing(path: str) -> bool:
    """No file at `path`. One that cannot be looked at (a folder of another user) is left
    for the store to report as it opens it."""
    try:
        return not Path(path).exists()
    except OSError:
        return False


def _chat_id(text: str) -> str:
    """A chat's id as `notifier subs list` shows it: a number (Telegram, a Discord
    channel), or dm:<user id> (a Discord user's DMs)."""
    from notifier.rules.subscriptions import valid_chat_id

    if not (valid_chat_id("telegram", text) or valid_chat_id("discord", text)):
        raise argparse.ArgumentTypeError(
            f"a chat id is a number (or dm:<user id> for Discord DMs), not {text!r}"
        )
    return text


def _store_target(settings: Settings) -> str:
    url = settings.database_url
    return url.get_secret_value() if url is not None else settings.state_path


async def _open_store(settings: Settings, *, migrate: bool = True) -> Any:
    import socket

    from notifier.store import open_store

    return await open_store(
        _store_target(settings),
        instance=settings.instance or socket.gethostname(),
        migrate=migrate,
    )


def _with_store(
    settings: Settings,
    what: str,
    work: Callable[[Any], Awaitable[int]],
    *,
    migrate: bool = True,
    create: bool = False,
) -> int:
    """Open the store, run `work`, close it; a store problem is one line, exit 2. Unless
    `create`, a SQLite state file that does not exist is one too: a command run in the
    wrong folder, or before the daemon ever ran, would otherwise leave an empty store there
    and show it."""
    from notifier.store import StoreError, is_postgres_url

    target = _store_target(settings)
    if not create and not is_postgres_url(target) and _missing(target):
        print(
            f"notifier {what}: no state file at {logsetup.redact(target)} "
            "(NOTIFIER_STATE_PATH): the daemon has not run with it yet",
            file=sys.stderr,
        )
        return 2

    async def main() -> int:
        try:
            store = await _open_store(settings, migrate=migrate)
        except StoreError as exc:
            print(f"notifier {what}: {logsetup.redact(str(exc))}", file=sys.stderr)
            return 2
        try:
            return await work(store)
        except StoreError as exc:
            print(f"notifier {what}: {logsetup.redact(str(exc))}", file=sys.stderr)
            return 2
        finally:
            await store.close()

    return asyncio.run(main())


def _outbox(args: argparse.Namespace, settings: Settings) -> int:
    import time

    from notifier.store import DEAD, DROPPED, PENDING, SENDING, SENT

    async def work(store: Any) -> int:
        if args.action in ("retry", "drop"):
            if not args.key:
                print(f"notifier outbox {args.action}: needs a KEY", file=sys.stderr)
                return 2
            done = (
                await store.retry(args.key, now=store.clock())
                if args.action == "retry"
                else await store.drop(args.key)
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
        states = [PENDING, SENDING, DEAD] + ([SENT, DROPPED] if args.all else [])
        rows = await store.rows(states=states)
        counts = await store.counts()
        for row in rows:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row.created_at))
            error = f"  {row.last_error}" if row.last_error else ""
            print(
                f"{row.state:<8} {when}  {row.destination:<16} {row.rule:<20} "
                f"attempts={row.attempts}  {row.key}{error}"
            )
        summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "empty"
        print(f"outbox ({store.backend}): {summary}")
        return 0

    return _with_store(settings, "outbox", work)


def _db(args: argparse.Namespace, settings: Settings) -> int:
    async def work(store: Any) -> int:
        if args.action == "migrate":
            applied = await store.migrate()
            status = await store.status()
            done = "applied " + ", ".join(map(str, applied)) if applied else "nothing to apply"
            print(f"{status.backend}: schema version {status.version} ({done})")
            return 0
        status = await store.status()
        pending = ", ".join(status.pending) or "none"
        print(
            f"backend {status.backend}; schema version {status.version} of {status.latest}; "
            f"pending migrations: {pending}"
        )
        if status.pending:
            print("not set up yet: `notifier db migrate` applies them (so does `notifier run`)")
            return 0
        for role in (await store.roles()).values():
            print(f"role {role.role}: generation {role.generation}, held by {role.holder}")
        depth = await store.depth()
        print("outbox: " + ", ".join(f"{n} {state}" for state, n in sorted(depth.items())))
        return 0

    migrating = args.action == "migrate"
    # Opened as it is: `migrate` applies (and reports) the migrations itself.
    return _with_store(settings, "db", work, migrate=False, create=migrating)


def _subs(args: argparse.Namespace, settings: Settings) -> int:
    from notifier.bots.watchlists import dump_watchlists, load_watchlists

    async def work(store: Any) -> int:
        if args.action == "import":
            if not args.file:
                print("notifier subs import: needs a FILE (YAML from subs export)", file=sys.stderr)
                return 2
            try:
                text = await asyncio.to_thread(Path(args.file).read_text, encoding="utf-8")
                entries = load_watchlists(text, chat=args.chat)
            except OSError as exc:
                print(
                    f"notifier subs import: cannot read {args.file}: {exc.strerror}",
                    file=sys.stderr,
                )
                return 1
            except ValueError as exc:
                for problem in getattr(exc, "problems", [exc]):
                    print(f"notifier subs import: {args.file}: {problem}", file=sys.stderr)
                return 1
            added = 0
            for entry in entries:
                new_id = await store.add_subscription(
                    entry.platform,
                    entry.chat_id,
                    kind=entry.kind,
                    target=entry.target,
                    params=entry.params,
                    created_by="import",
                    now=store.clock(),
                )
                added += new_id is not None
            kept = len(entries) - added
            print(f"{_count(added, 'subscription')} imported ({kept} already there)")
            return 0
        subs = await store.list_subscriptions(platform=args.platform, chat_id=args.chat)
        if args.action == "export":
            print(dump_watchlists(subs), end="")
            return 0
        for sub in subs:
            params = " ".join(f"{k}={v}" for k, v in sorted(sub.params.items()))
            where = f"{sub.platform:<8} {sub.chat_id:<16}"
            print(f"{sub.id:>6}  {where} {sub.kind:<5} {sub.target:<12} {params}")
        print(_count(len(subs), "subscription"))
        return 0

    return _with_store(settings, "subs", work, create=args.action == "import")


def _discord_sync(args: argparse.Namespace, settings: Settings) -> int:
    """Register the /parti commands in one server at once (global ones take a while)."""
    from notifier.bots.discord import DiscordBotError, sync_guild

    token = settings.discord_bot_token
    if token is None:
        print("notifier discord sync: needs NOTIFIER_DISCORD_BOT_TOKEN", file=sys.stderr)
        return 2
    try:
        names = asyncio.run(
            sync_guild(
                token.get_secret_value(), settings.discord_api_url, args.guild, timeout=args.timeout
            )
        )
    except DiscordBotError as exc:
        print(f"notifier discord sync: {logsetup.redact(str(exc))}", file=sys.stderr)
        return 1
    print(f"server {args.guild}: registered /{', /'.join(names)}")
    return 0


def _telegram_chats(settings: Settings) -> int:
    """Every chat the bot has seen (a command, a button, a subscription), with its id: the
    chat id a rules file's telegram destination takes."""

    async def work(store: Any) -> int:
        subs = await store.list_subscriptions(platform="telegram")
        counts: dict[str, int] = {}
        for found in subs:
            counts[found.chat_id] = counts.get(found.chat_id, 0) + 1
        chats = await store.list_chats(platform="telegram")
        for chat in chats:
            title = chat.title or "-"
            state = f"paused: {chat.paused_reason}" if chat.paused_reason else "active"
            print(
                f"{chat.chat_id:>16}  {chat.kind:<8} {counts.get(chat.chat_id, 0):>4} subs  "
                f"{state:<24} {title}"
            )
        print(f"{len(chats)} chats")
        return 0

    return _with_store(settings, "telegram chats", work)


def _problems(error: Exception) -> int:
    """Print a rules file's problems (`file:line:col: message`) to stderr; exit code 1."""
    for problem in getattr(error, "problems", [error]):
        _error(str(problem))
    return 1


def _error(line: str) -> None:
    """A line for stderr, redacted as the logs are: a problem may echo a value, and a value
    may be a secret put in the wrong place (`within: ${WEBHOOK_URL}`)."""
    print(logsetup.redact(line), file=sys.stderr)
