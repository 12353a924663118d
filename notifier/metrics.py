"""Prometheus metrics of the daemon (one registry per process, so tests stay independent)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

# `_created` series double the output and say nothing a scraper needs.
disable_created_metrics()  # type: ignore[no-untyped-call]

EVENT_TYPES = ("live", "price")
RELOAD_RESULTS = ("ok", "error")
RETRY_OUTCOMES = ("retry_after", "backoff", "plain_text", "migrated", "unreachable")


def destination_label(name: str) -> str:
    """Chat subscriptions make one destination per chat: they share their platform's label,
    so the series stay few (`@tg`, `@dc`, `@dcdm`)."""
    return name.split(":", 1)[0] if name.startswith("@") else name


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events = Counter("notifier_events", "WebSocket events by type", ["type"], registry=r)
        self.rejected = Counter(
            "notifier_frames_rejected", "Bad frames skipped, by reason", ["reason"], registry=r
        )
        self.matches = Counter(
            "notifier_matches",
            "Alerts produced (new outbox keys), by destination",
            ["destination"],
            registry=r,
        )
        self.sent = Counter("notifier_alerts_sent", "Alerts delivered", ["destination"], registry=r)
        self.retried = Counter(
            "notifier_alerts_retried",
            "Failed sends rescheduled",
            ["destination", "outcome"],
            registry=r,
        )
        self.dead = Counter(
            "notifier_alerts_dead", "Alerts given up (dead letter)", ["destination"], registry=r
        )
        self.outbox_depth = Gauge(
            "notifier_outbox_depth", "Alerts pending or in flight", registry=r
        )
        self.outbox_oldest = Gauge(
            "notifier_outbox_oldest_age_seconds", "Age of the oldest pending alert", registry=r
        )
        self.reconnects = Counter("notifier_reconnects", "WebSocket reconnects", registry=r)
        self.catch_ups = Counter(
            "notifier_gap_catch_ups", "Alerts found by a gap catch-up", registry=r
        )
        self.reloads = Counter(
            "notifier_rules_reloads", "Rules reloads by result", ["result"], registry=r
        )
        self.connected = Gauge(
            "notifier_stream_connected", "1 while the WebSocket is up", registry=r
        )
        self.latency = Histogram(
            "notifier_event_to_sent_seconds",
            "From event received to chat API answer",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=r,
        )
        self.stage_restarts = Counter(
            "notifier_stage_restarts", "Crashed stages restarted", ["stage"], registry=r
        )

        self.destination_up = Gauge(
            "notifier_destination_up",
            "1 when the destination's chat API accepted us, 0 while it is unreachable",
            ["destination"],
            registry=r,
        )
        self.role_held = Gauge(
            "notifier_role_held", "1 while this instance holds the role", ["role"], registry=r
        )
        self.generation = Gauge(
            "notifier_ingest_generation", "Fencing generation of the ingest role", registry=r
        )
        self.outbox_dead = Gauge(
            "notifier_outbox_dead", "Alerts in the dead letter state", registry=r
        )
        self.pruned = Counter(
            "notifier_outbox_pruned", "Sent rows deleted after retention", registry=r
        )
        self.digests = Counter(
            "notifier_digests",
            "Digest messages that replaced several waiting alerts",
            ["destination"],
            registry=r,
        )
        for kind in EVENT_TYPES:
            self.events.labels(type=kind)
        for result in RELOAD_RESULTS:
            self.reloads.labels(result=result)

    def known(
        self,
        *,
        destinations: Iterable[str] = (),
        stages: Iterable[str] = (),
        reasons: Iterable[str] = (),
    ) -> None:
        """Export the series we know of at 0 from the start, so a rate() sees the first one."""
        for name in destinations:
            label = destination_label(name)
            self.sent.labels(destination=label)
            self.dead.labels(destination=label)
            self.matches.labels(destination=label)
            for outcome in RETRY_OUTCOMES:
                self.retried.labels(destination=label, outcome=outcome)
        for stage in stages:
            self.stage_restarts.labels(stage=stage)
        for reason in reasons:
            self.rejected.labels(reason=reason)

    def render(self) -> bytes:
        return generate_latest(self.registry)
