"""Start-up checks of `notifier run`: every configuration problem at once, one line each,
before anything starts (rules, secrets, the state path, the HTTP address)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import yaml

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


def missing_secrets_in_file(path: str | Path, settings: Settings) -> list[str]:
    """The same lines for a rules file that does not compile, read as plain YAML with its
    ${VAR}s left as they are, so that a check of a broken file names the missing tokens
    too. Nothing when YAML cannot read it (its compile problems say why). Aliases are not
    expanded: the node graph is walked two levels deep."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        root = yaml.compose(text, Loader=loader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
        return []
    destinations: list[tuple[str, bool, bool]] = []
    for name, destination in _entries(_value(root, "destinations")):
        discord = _value(destination, "discord")
        channel = (
            isinstance(discord, yaml.MappingNode) and _value(discord, "channel_id") is not None
        )
        destinations.append((name, _value(destination, "telegram") is not None, channel))
    bots = _value(root, "bots")
    commands = tuple(
        _true(_value(_value(bots, platform), "commands")) for platform in ("telegram", "discord")
    )
    return _token_lines((destinations, (commands[0], commands[1])), settings)


def _value(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key and isinstance(v, yaml.Node):
            return v
    return None


def _entries(node: yaml.Node | None) -> list[tuple[str, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        return []
    return [(k.value, v) for k, v in node.value if isinstance(k, yaml.ScalarNode)]


def _true(node: yaml.Node | None) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.value.lower() in ("true", "yes", "on")


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
        return f"NOTIFIER_STATE_PATH {path}: the folder {folder} does not exist"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"NOTIFIER_STATE_PATH {path}: the folder {folder} is not writable by this user"
    return None


def http_addr_problem(settings: Settings) -> str | None:
    """The ops address must be free to listen on (checked by binding it for a moment)."""
    if not settings.http_addr:
        return None
    host, _, port = settings.http_addr.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except OSError as exc:
        return f"NOTIFIER_HTTP_ADDR {settings.http_addr}: cannot resolve {host}: {exc.strerror}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return f"NOTIFIER_HTTP_ADDR {settings.http_addr}: cannot listen: {exc.strerror}"
    return None


def environment_problems(settings: Settings) -> list[str]:
    return [p for p in (state_path_problem(settings), http_addr_problem(settings)) if p]
