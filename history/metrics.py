"""Self-metrics of ``repsys history``, built on an injected registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class HistoryMetrics:
    """Every metric of ``repsys history``; labels are partitions (bounded by config)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.signals = Counter(
            "repsys_history_signals_total",
            "Signals written to Parquet files and acknowledged.",
            registry=registry,
        )
        self.files = Counter(
            "repsys_history_files_total", "Parquet files written.", registry=registry
        )
        self.bytes = Counter(
            "repsys_history_bytes_total", "Bytes of Parquet written.", registry=registry
        )
        self.skipped = Counter(
            "repsys_history_entries_skipped_total",
            "Entries not written, by reason (decode: a bad entry; stored: already in a file "
            "after a crash, acknowledged only).",
            ["reason"],
            registry=registry,
        )
        self.failures = Counter(
            "repsys_history_failures_total",
            "Failed writes or reads, by reason; the entries stay pending.",
            ["reason"],
            registry=registry,
        )
        self.pruned = Counter(
            "repsys_history_files_pruned_total",
            "Files deleted by retention.",
            registry=registry,
        )
