"""Start-up checks of `notifier run`: every configuration problem at once, one line each,
before anything starts (rules, secrets, the state path, the HTTP address)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from notifier.rules.schema import RulesFile
from notifier.settings import Settings


def missing_secrets(rules_file: RulesFile, settings: Settings) -> list[str]:
    """One line per destination (or bot) whose token is not set (names the variable, never
    a value)."""
    return missing_destination_secrets(rules_file, settings) + _bot_secrets(rules_file, settings)


def missing_destination_secrets(rules_file: RulesFile, settings: Settings) -> list[str]:
    """The destinations whose token is not set (`build_senders` refuses them too)."""
    problems: list[str] = []
    for name, destination in rules_file.destinations.items():
        if destination.telegram is not None and settings.telegram_token is None:
            problems.append(f"destination {name!r} needs NOTIFIER_TELEGRAM_TOKEN")
        if (
            destination.discord is not None
            and destination.discord.channel_id is not None
            and settings.discord_bot_token is None
        ):
            problems.append(f"destination {name!r} needs NOTIFIER_DISCORD_BOT_TOKEN")
    return problems


def _bot_secrets(rules_file: RulesFile, settings: Settings) -> list[str]:
    problems: list[str] = []
    bots = getattr(rules_file, "bots", None)
    if bots is not None:
        if bots.telegram.commands and settings.telegram_token is None:
            problems.append("bots.telegram.commands needs NOTIFIER_TELEGRAM_TOKEN")
        if bots.discord.commands and settings.discord_bot_token is None:
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
