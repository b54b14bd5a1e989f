"""Metrics of the ``plex`` package, built on an injected registry.

Labels stay bounded: data source keys come from configuration, reasons from the error
tree in plex/errors.py, states from core.model.TicketState. Ticket numbers never.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class PlexMetrics:
    """Every Plex metric of one process."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "repsys_plex_requests_total",
            "Plex SOAP calls by data source, outcome (ok, transient, rejected) and reason.",
            ["data_source", "outcome", "reason"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "repsys_plex_request_duration_seconds",
            "Duration of Plex SOAP calls, answered or not.",
            ["data_source"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=registry,
        )
        self.ratelimit_waits = Counter(
            "repsys_plex_ratelimit_waits_total",
            "Calls that had to wait for the shared rate limit (or a 429 Retry-After).",
            registry=registry,
        )
        self.ratelimit_wait_seconds = Counter(
            "repsys_plex_ratelimit_wait_seconds_total",
            "Seconds spent waiting for the shared rate limit.",
            registry=registry,
        )
        self.outbox_tickets = Gauge(
            "repsys_plex_outbox_tickets",
            "Outbox rows by state.",
            ["state"],
            registry=registry,
        )
        self.outbox_oldest_age_seconds = Gauge(
            "repsys_plex_outbox_oldest_age_seconds",
            "Age of the oldest outbox row in each state (pending, sending, filed).",
            ["state"],
            registry=registry,
        )
        self.tickets = Counter(
            "repsys_plex_tickets_total",
            "Sender outcomes per ticket attempt: filed, found (by lookup), retry, dead.",
            ["outcome"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "repsys_plex_dead_letters_total",
            "Tickets dead-lettered, by reason.",
            ["reason"],
            registry=registry,
        )
        self.status_checks = Counter(
            "repsys_plex_status_checks_total",
            "Status follow-up checks by outcome: open, closed, missing, error.",
            ["outcome"],
            registry=registry,
        )
        self.followups = Counter(
            "repsys_plex_followups_total",
            "Plex follow-up deliveries (notes, priority) by outcome: sent, error.",
            ["outcome"],
            registry=registry,
        )
