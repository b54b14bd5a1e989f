"""Metrics of the ``notify`` package, built on an injected registry.

Labels stay bounded: receivers and integrations come from configuration, reasons from
``notify/errors.py``; ticket ids never.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class NotifyMetrics:
    """Every notify metric of one process."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.sent = Counter(
            "repsys_notify_sent_total",
            "Deliveries sent, by receiver and integration (email, teams, plex).",
            ["receiver", "integration"],
            registry=registry,
        )
        self.failed = Counter(
            "repsys_notify_failed_total",
            "Failed delivery attempts by receiver, integration and reason.",
            ["receiver", "integration", "reason"],
            registry=registry,
        )
        self.dead = Counter(
            "repsys_notify_dead_total",
            "Deliveries dead-lettered, by receiver, integration and reason.",
            ["receiver", "integration", "reason"],
            registry=registry,
        )
        self.latency = Histogram(
            "repsys_notify_send_duration_seconds",
            "Duration of one delivery attempt.",
            ["integration"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        self.outbox_depth = Gauge(
            "repsys_notify_outbox_deliveries",
            "Deliveries not yet sent, by receiver and integration.",
            ["receiver", "integration"],
            registry=registry,
        )
        self.outbox_age = Gauge(
            "repsys_notify_outbox_oldest_seconds",
            "Age of the oldest unsent delivery, by receiver and integration.",
            ["receiver", "integration"],
            registry=registry,
        )
        self.escalations = Counter(
            "repsys_notify_escalations_total",
            "Tickets raised to an escalation level by the sweep.",
            ["level"],
            registry=registry,
        )
