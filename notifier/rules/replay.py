"""`notifier replay`: recorded frames through the decoder and the engine; sends nothing."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from notifier.parti.decode import DecodeError, decode_frame
from notifier.rules.engine import Decision, Engine, Match, Reason


@dataclass(frozen=True)
class Row:
    line: int
    at: float
    kind: str
    subject: str
    rule: str
    destination: str
    reason: str


@dataclass
class ReplayResult:
    rows: list[Row]
    frames: int = 0
    events: int = 0
    rejected: int = 0
    alerts: int = 0


def read_frames(lines: Iterable[str]) -> Iterator[tuple[int, float | None, str, str | None]]:
    """(line number, time or None, frame text, why the line is refused or None) for each
    non-blank line.

    A line is a raw WebSocket frame, or an envelope `{"at": <unix seconds>, "frame": ...}`
    (the frame as a string or as JSON), which carries the frame's own time: a finite number
    (a time too large for a float, NaN or Infinity refuses the line).
    """
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        at: float | None = None
        refused: str | None = None
        if text.startswith("{") and '"frame"' in text:
            try:
                envelope = json.loads(text)
            except ValueError:
                envelope = None
            if isinstance(envelope, dict) and "frame" in envelope:
                stamp = envelope.get("at", envelope.get("ts"))
                if isinstance(stamp, int | float) and not isinstance(stamp, bool):
                    at = _seconds(stamp)
                    if at is None:
                        refused = "bad_time: the envelope's time is not a finite number"
                frame = envelope["frame"]
                text = frame if isinstance(frame, str) else json.dumps(frame)
        yield number, at, text, refused


def _seconds(stamp: float) -> float | None:
    try:
        seconds = float(stamp)
    except OverflowError:  # an integer beyond a float
        return None
    return seconds if math.isfinite(seconds) else None


def replay(
    engine: Engine, lines: Iterable[str], *, explain: bool = False, start: float = 0.0
) -> ReplayResult:
    """Feed each frame through the engine with the frames' own times (else the previous one)."""
    result = ReplayResult(rows=[])
    clock = start
    for number, at, text, refused in read_frames(lines):
        result.frames += 1
        if refused is not None:
            result.rejected += 1
            if explain:
                result.rows.append(Row(number, clock, "-", "-", "-", "-", f"rejected: {refused}"))
            continue
        if at is not None:
            clock = at
        try:
            events = decode_frame(text)
        except DecodeError as exc:
            result.rejected += 1
            if explain:
                result.rows.append(Row(number, clock, "-", "-", "-", "-", f"rejected: {exc}"))
            continue
        for event in events:
            result.events += 1
            evaluation = engine.evaluate(event, clock, explain=explain)
            result.alerts += len(evaluation.matches)
            if explain:
                result.rows += [
                    _decision_row(number, clock, event.kind, d) for d in evaluation.decisions
                ]
            else:
                result.rows += [_match_row(number, m) for m in evaluation.matches]
    return result


def _match_row(number: int, match: Match) -> Row:
    return Row(
        number,
        match.at,
        match.kind,
        match.subject,
        match.rule,
        match.destination,
        Reason.FIRED.value,
    )


def _decision_row(number: int, at: float, kind: str, decision: Decision) -> Row:
    return Row(
        number,
        at,
        kind,
        decision.subject,
        decision.rule or "-",
        decision.destination or "-",
        decision.reason.value,
    )


def format_table(rows: list[Row]) -> str:
    headers = ("line", "kind", "subject", "rule", "destination", "reason")
    cells = [headers] + [
        (str(r.line), r.kind, r.subject, r.rule, r.destination, r.reason) for r in rows
    ]
    widths = [min(max(len(_safe(c[i])) for c in cells), 40) for i in range(len(headers))]
    out = []
    for row in cells:
        # Every column but the last is cut at 40 characters to keep them aligned; the
        # reason, last, is shown whole (a rejected frame's says what was wrong with it).
        *aligned, reason = row
        columns = [_safe(c)[:40].ljust(w) for c, w in zip(aligned, widths, strict=False)]
        out.append("  ".join([*columns, _safe(reason)]).rstrip())
    return "\n".join(out)


def _safe(text: str) -> str:
    # Names come from strangers: no control characters reach the terminal.
    return "".join(ch if ch.isprintable() else "?" for ch in text)
