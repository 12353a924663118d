"""Sends a stop could not record, kept in a file until the next start records them.

A stop during a store outage (a lost database, a full disk) leaves sends the chat API
answered that the outbox never heard of. Their rows stay leased to this instance, and
the next start releases its leases: each would go out a second time. The promise allows
that only when the process dies between the answer and the record, so a stop writes them
down beside the state (`NOTIFIER_STATE_PATH.<instance>-<digest>.unrecorded`), and the next
start records them before it releases anything. The file holds outbox keys and message ids, nothing
secret, and is written whole or not at all (a new file renamed over the old one)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

Sent = tuple[str, str | None]  # an outbox key and the message id the chat API gave


def unrecorded_path(state_path: str, instance: str) -> Path:
    """One file per instance (several may share a folder with PostgreSQL): its name made
    safe for a file name, and a digest of it, so that two names never share a file."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", instance)[:100]
    digest = hashlib.sha256(instance.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return Path(f"{state_path}.{name}-{digest}.unrecorded")


def move_aside(path: Path) -> Path | None:
    """A file that cannot be read goes to `<path>.unreadable` (the next stop writes a new
    one where it was); None when it cannot be moved either."""
    aside = path.with_name(path.name + ".unreadable")
    try:
        os.replace(path, aside)
    except OSError:
        return None
    return aside


def load(path: Path) -> list[Sent]:
    """The sends kept in `path`; FileNotFoundError without one, ValueError for a file
    that is not one of ours."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("sent"), list):
        raise ValueError("not a list of unrecorded sends")
    sent: list[Sent] = []
    for item in data["sent"]:
        if (
            not isinstance(item, list)
            or len(item) != 2
            or not isinstance(item[0], str)
            or not (item[1] is None or isinstance(item[1], str))
        ):
            raise ValueError("not a list of unrecorded sends")
        sent.append((item[0], item[1]))
    return sent


def keep(path: Path, sent: Sequence[Sent]) -> None:
    """Add `sent` to the sends kept in `path`, durably (an OSError when it cannot)."""
    kept: list[Sent] = []
    try:
        kept = load(path)
    except FileNotFoundError:
        pass
    except ValueError:
        move_aside(path)  # not ours: kept for a person to look at, not written over
    seen = {key for key, _ in kept}
    kept += [(key, mid) for key, mid in sent if key not in seen]
    temporary = path.with_name(path.name + ".new")
    try:
        with open(temporary, "w", encoding="utf-8") as out:
            json.dump({"sent": [list(s) for s in kept]}, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)  # a full disk keeps no half-written file
        raise
    with contextlib.suppress(OSError):  # the file is in place; this only hardens the rename
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)  # against a power cut
        finally:
            os.close(folder)
