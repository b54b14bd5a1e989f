"""The collector's own metrics, on an injected registry.

Labels are bounded: ``reader`` is ``opcua`` or ``mqtt``, ``source`` a configured source
name, ``machine`` a configured machine id, ``reason`` a fixed word from
:mod:`collector.errors`. Node ids and topics never become labels.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class CollectorMetrics:
    """Every metric of one collector process."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.received = Counter(
            "repsys_collector_signals_received_total",
            "Signals decoded from sources.",
            ["reader", "machine"],
            registry=registry,
        )
        self.written = Counter(
            "repsys_collector_signals_written_total",
            "Signals written to the signal streams.",
            ["reader", "machine"],
            registry=registry,
        )
        self.dropped = Counter(
            "repsys_collector_signals_dropped_total",
            "Signals dropped because the buffer was full while Redis was away.",
            ["reader", "machine"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "repsys_collector_dead_letters_total",
            "Payloads that did not decode, put on the dead-letter stream.",
            ["reader", "reason"],
            registry=registry,
        )
        self.connected = Gauge(
            "repsys_collector_source_connected",
            "1 while the source is connected and subscribed.",
            ["reader", "source"],
            registry=registry,
        )
        self.reconnects = Counter(
            "repsys_collector_reconnects_total",
            "Reconnections to a source after a failure.",
            ["reader", "source", "reason"],
            registry=registry,
        )
        self.watchdog = Counter(
            "repsys_collector_watchdog_actions_total",
            "Watchdog actions on quiet sources (resubscribe, reconnect).",
            ["source", "action"],
            registry=registry,
        )
        self.buffer = Gauge(
            "repsys_collector_buffer_signals",
            "Entries waiting to be written to Redis.",
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "repsys_collector_xadd_batch_seconds",
            "Time to write one pipelined XADD batch.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=registry,
        )
        self.redis_errors = Counter(
            "repsys_collector_redis_errors_total",
            "Failed batch writes (the batch is kept and retried).",
            registry=registry,
        )
        self.trimmed = Counter(
            "repsys_collector_trimmed_entries_total",
            "Stream entries removed by trimming (never ones pending for the rules group).",
            registry=registry,
        )
        self.stream_length = Gauge(
            "repsys_collector_stream_entries",
            "Entries in each signal partition stream (watch it when rules lag).",
            ["partition"],
            registry=registry,
        )
