"""Self-metrics of a rules worker, built on an injected registry.

Hot-path counts (signals, evaluations) are accumulated in plain integers by the engine and
added here once per batch, so metrics cost nothing per signal. Labels are bounded: rule
names and types come from configuration, partitions from ``streams.partitions``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from rules.engine import Engine


class RulesMetrics:
    """Every metric of ``repsys rules``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.signals = Counter(
            "repsys_rules_signals_total",
            "Stream entries processed (decoded and evaluated).",
            registry=registry,
        )
        self.evaluations = Counter(
            "repsys_rules_evaluations_total",
            "Rule evaluations (a signal or tick handed to a rule).",
            registry=registry,
        )
        self.ignored = Counter(
            "repsys_rules_signals_ignored_total",
            "Signals not evaluated, by reason (unknown_machine, replayed).",
            ["reason"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "repsys_rules_dead_letters_total",
            "Entries put on the rules dead-letter stream, by reason.",
            ["reason"],
            registry=registry,
        )
        self.anomalies = Counter(
            "repsys_rules_anomalies_total",
            "Anomaly transitions by rule and state (pending, firing, resolved, inhibited, "
            "silenced, repeated, escalated).",
            ["rule", "state"],
            registry=registry,
        )
        self.restored = Counter(
            "repsys_rules_episodes_restored_total",
            "Firing episodes taken from the database for machines whose checkpoint was missing.",
            registry=registry,
        )
        self.episodes_open = Gauge(
            "repsys_rules_episodes_open",
            "Episodes firing in the partitions this worker holds.",
            registry=registry,
        )
        self.lag = Gauge(
            "repsys_rules_partition_lag_entries",
            "Entries in a partition not yet delivered to the rules group.",
            ["partition"],
            registry=registry,
        )
        self.pending = Gauge(
            "repsys_rules_pending_entries",
            "Entries delivered but not yet acknowledged, per partition.",
            ["partition"],
            registry=registry,
        )
        self.partitions_owned = Gauge(
            "repsys_rules_partitions_owned",
            "Partitions this worker holds.",
            registry=registry,
        )
        self.partitions_configured = Gauge(
            "repsys_rules_partitions_configured",
            "Signal partitions in the configuration (alerts on partitions nobody holds).",
            registry=registry,
        )
        self.lease_changes = Counter(
            "repsys_rules_lease_changes_total",
            "Partition leases acquired, released (rebalance or stop) or lost.",
            ["change"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "repsys_rules_evaluation_seconds",
            "Time to evaluate one batch of entries.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=registry,
        )
        self.latency = Histogram(
            "repsys_rules_signal_latency_seconds",
            "From a signal's receive time to its evaluation being committed.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=registry,
        )
        self.db_writes = Counter(
            "repsys_rules_db_writes_total",
            "Database transactions of episodes and tickets, by result (ok, retry).",
            ["result"],
            registry=registry,
        )
        self.replays = Counter(
            "repsys_rules_episode_replays_total",
            "Episodes found already written (a replay after a crash or takeover).",
            registry=registry,
        )
        self.cycles_excluded = Counter(
            "repsys_rules_cycles_excluded_total",
            "Derived cycles a statistical rule left out (not cycles), by reason.",
            ["rule", "reason"],
            registry=registry,
        )
        self.checkpoints = Counter(
            "repsys_rules_checkpoints_total",
            "Rule state checkpoints written (with their entries acknowledged).",
            registry=registry,
        )

    def count(self, engine: Engine) -> None:
        """Add what ``engine`` counted since the last call (anomalies, exclusions, evaluations)."""
        for (rule, state), n in engine.stats().items():
            self.anomalies.labels(rule, state).inc(n)
        for (rule, reason), n in engine.ctx.excluded.items():
            self.cycles_excluded.labels(rule, reason).inc(n)
        engine.ctx.excluded.clear()
        if engine.ctx.evaluations:
            self.evaluations.inc(engine.ctx.evaluations)
            engine.ctx.evaluations = 0
        if engine.ignored:
            self.ignored.labels("unknown_machine").inc(engine.ignored)
            engine.ignored = 0
