"""Start-up checks of `notifier run`: every configuration problem at once, one line each,
before anything starts (rules, secrets, the state path, the HTTP address)."""

from __future__ import annotations

import io
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from notifier.rules.compile import MAX_BYTES, RulesError, read_rules
from notifier.rules.schema import RulesFile
from notifier.settings import Settings

# What a rules file needs tokens for: destinations as (name, Telegram, a Discord channel
# through the bot), and whether the Telegram and Discord command bots are on.
Needs = tuple[list[tuple[str, bool, bool]], tuple[bool, bool]]


def missing_secrets(rules_file: RulesFile, settings: Settings) -> list[str]:
    """One line per destination (or bot) whose token is not set (names the variable, never
    a value)."""
    return _token_lines(_needs(rules_file), settings)


def missing_destination_secrets(rules_file: RulesFile, settings: Settings) -> list[str]:
    """The destinations whose token is not set (`build_senders` refuses them too)."""
    destinations, _ = _needs(rules_file)
    return _token_lines((destinations, (False, False)), settings)


def missing_secrets_in_file(
    path: str | Path, settings: Settings, *, data: bytes | None = None
) -> list[str]:
    """The same lines for a rules file that does not compile, so that a check of a broken
    file names the missing tokens too. Read as a stream of YAML events, its ${VAR}s left as
    they are, keeping only the shape of `destinations` and `bots`: the memory of a few
    destinations, whatever the size of the file. At most what the compiled file would
    name, never more: a destination or setting written through an alias, a merge key or a
    ${VAR} is left out. Nothing for a file YAML cannot read (its problems say why) or one
    larger than the compiler takes. `data`: the file's bytes as the compile read them (a
    pipe cannot be read twice)."""
    try:
        if data is None:
            data = read_rules(path)
        if len(data) > MAX_BYTES:
            return []
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        root = _shape(iter(yaml.parse(io.BytesIO(data), Loader=loader)), depth=4)
    except (RulesError, UnicodeDecodeError, yaml.YAMLError, RecursionError, StopIteration):
        return []
    destinations: list[tuple[str, bool, bool]] = []
    for name, destination in _mapping(_get(root, "destinations")).items():
        fields = _mapping(destination)
        if not fields or "<<" in fields:
            continue  # an alias or a merge: not known here
        telegram, discord = fields.get("telegram", _NULL), fields.get("discord", _NULL)
        if _UNKNOWN in (telegram, discord):
            continue
        channel = _get(discord, "channel_id")
        destinations.append((name, telegram is not _NULL, channel not in (_NULL, _UNKNOWN)))
    bots = _get(root, "bots")
    commands = [_true(_get(_get(bots, p), "commands")) for p in ("telegram", "discord")]
    return _token_lines((destinations, (commands[0], commands[1])), settings)


_NULL = object()  # a YAML null, or no value at all
_UNKNOWN = object()  # an alias, a sequence, or deeper than kept
_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})  # pydantic's true strings


def _shape(events: Iterator[yaml.Event], depth: int) -> Any:
    """The next node: a scalar's text (`_NULL` for null), a mapping as a dict of its scalar
    keys (while `depth` lasts), else `_UNKNOWN` with its events consumed."""
    event = next(events)
    while isinstance(event, (yaml.StreamStartEvent, yaml.DocumentStartEvent)):
        event = next(events)
    if isinstance(event, yaml.ScalarEvent):
        tag = event.tag
        plain_null = event.implicit[0] and event.value in ("", "~", "null", "Null", "NULL")
        null = tag in ("tag:yaml.org,2002:null", "!!null") or (tag is None and plain_null)
        return _NULL if null else event.value
    if isinstance(event, yaml.MappingStartEvent) and depth > 0:
        found: dict[str, Any] = {}
        while True:
            key = _shape(events, 0)
            if key is _END:
                return found
            value = _shape(events, depth - 1)
            if isinstance(key, str):
                found[key] = value
    if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
        return _END
    if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
        nested = 1
        while nested:
            inner = next(events)
            if isinstance(inner, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                nested += 1
            elif isinstance(inner, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                nested -= 1
    return _UNKNOWN


_END = object()  # the end of the mapping being read


def _get(node: Any, key: str) -> Any:
    return node.get(key, _NULL) if isinstance(node, dict) else _UNKNOWN


def _mapping(node: Any) -> dict[str, Any]:
    return node if isinstance(node, dict) else {}


def _true(node: Any) -> bool:
    return isinstance(node, str) and node.lower() in _TRUE


def _needs(rules_file: RulesFile) -> Needs:
    destinations = [
        (
            name,
            destination.telegram is not None,
            destination.discord is not None and destination.discord.channel_id is not None,
        )
        for name, destination in rules_file.destinations.items()
    ]
    bots = getattr(rules_file, "bots", None)
    if bots is None:
        return destinations, (False, False)
    return destinations, (bots.telegram.commands, bots.discord.commands)


def _token_lines(needs: Needs, settings: Settings) -> list[str]:
    destinations, (telegram_bot, discord_bot) = needs
    no_telegram = settings.telegram_token is None
    no_discord = settings.discord_bot_token is None
    problems: list[str] = []
    for name, telegram, channel in destinations:
        if telegram and no_telegram:
            problems.append(f"destination {name!r} needs NOTIFIER_TELEGRAM_TOKEN")
        if channel and no_discord:
            problems.append(f"destination {name!r} needs NOTIFIER_DISCORD_BOT_TOKEN")
    if telegram_bot and no_telegram:
        problems.append("bots.telegram.commands needs NOTIFIER_TELEGRAM_TOKEN")
    if discord_bot and no_discord:
        problems.append("bots.discord.commands needs NOTIFIER_DISCORD_BOT_TOKEN")
    return problems


def state_path_problem(settings: Settings) -> str | None:
    """The SQLite file must be creatable and writable (with its -wal and -shm beside it)."""
    if settings.database_url is not None:
        return None
    path = Path(settings.state_path)
    folder = path.parent if str(path.parent) else Path(".")
    if path.exists():
        if path.is_dir():
            return f"NOTIFIER_STATE_PATH {path}: is a folder, not a file"
        if not os.access(path, os.R_OK | os.W_OK):
            return f"NOTIFIER_STATE_PATH {path}: not writable by this user"
    if folder.exists() and not folder.is_dir():
        return f"NOTIFIER_STATE_PATH {path}: {folder} is a file, not a folder"
    if not folder.is_dir():
        parent = folder.parent
        if not parent.is_dir():
            return f"NOTIFIER_STATE_PATH {path}: the folder {folder} does not exist"
        if not os.access(parent, os.W_OK | os.X_OK):  # else it is made at the start
            return (
                f"NOTIFIER_STATE_PATH {path}: the folder {folder} does not exist and "
                f"{parent} is not writable by this user"
            )
        return None
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"NOTIFIER_STATE_PATH {path}: the folder {folder} is not writable by this user"
    return None


def http_addr_problem(settings: Settings, *, port: bool = True) -> str | None:
    """The ops address must be free to listen on (checked by binding it for a moment).
    `port=False`: only the host (bound on a port of the system's choosing), for `check`,
    which runs beside the daemon that holds the port."""
    if not settings.http_addr:
        return None
    host, _, port_text = settings.http_addr.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        infos = socket.getaddrinfo(host, int(port_text), type=socket.SOCK_STREAM)
    except UnicodeError:  # the IDNA codec: a label over 63 characters, an empty one
        return f"NOTIFIER_HTTP_ADDR {settings.http_addr}: {host} is not a valid host name"
    except OSError as exc:
        return f"NOTIFIER_HTTP_ADDR {settings.http_addr}: cannot resolve {host}: {exc.strerror}"
    family, kind, proto, _, address = infos[0]
    if not port:
        address = (address[0], 0, *address[2:])
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return f"NOTIFIER_HTTP_ADDR {settings.http_addr}: cannot listen: {exc.strerror}"
    return None


def environment_problems(settings: Settings, *, port: bool = True) -> list[str]:
    """What `run` needs of the machine: the state path, the ops address (`port=False`: not
    whether its port is free, see http_addr_problem)."""
    found = (state_path_problem(settings), http_addr_problem(settings, port=port))
    return [p for p in found if p]
