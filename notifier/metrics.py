"""Prometheus metrics of the daemon (one registry per process, so tests stay independent)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events = Counter("notifier_events", "WebSocket events by type", ["type"], registry=r)
        self.rejected = Counter(
            "notifier_frames_rejected", "Bad frames skipped, by reason", ["reason"], registry=r
        )
        self.matches = Counter(
            "notifier_matches", "Alerts produced (new outbox keys), by rule", ["rule"], registry=r
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

    def render(self) -> bytes:
        return generate_latest(self.registry)
