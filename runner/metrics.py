"""Prometheus metrics of the runner and the scheduler, built on an injected registry.

Labels are bounded: report kinds and step names come from configuration, outcomes and
reasons from fixed vocabularies; request ids never become labels.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: Seconds buckets from a quick step to an hour-long trial balance.
_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class RunnerMetrics:
    """Queue depth and waiting time, run and step durations, failures, mutex waits."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.queue_depth = Gauge(
            "repsys_runner_queue_depth",
            "Requests pending in the database, by kind.",
            ["kind"],
            registry=registry,
        )
        self.queue_wait = Histogram(
            "repsys_runner_queue_wait_seconds",
            "Time from request to the start of its first run.",
            ["kind"],
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        self.runs = Counter(
            "repsys_runner_runs_total",
            "Pipeline runs by outcome (completed, failed, abandoned, interrupted).",
            ["kind", "outcome"],
            registry=registry,
        )
        self.run_duration = Histogram(
            "repsys_runner_run_duration_seconds",
            "Duration of a pipeline run.",
            ["kind", "outcome"],
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        self.step_duration = Histogram(
            "repsys_runner_step_duration_seconds",
            "Duration of one step.",
            ["kind", "step"],
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        self.step_failures = Counter(
            "repsys_runner_step_failures_total",
            "Steps that failed, by reason.",
            ["kind", "step", "reason"],
            registry=registry,
        )
        self.mutex_wait = Histogram(
            "repsys_runner_mutex_wait_seconds",
            "Time a runner waited for a permit of the kind's mutex.",
            ["kind"],
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800),
            registry=registry,
        )
        self.mutex_held_since = Gauge(
            "repsys_runner_mutex_held_since_seconds",
            "Unix time this runner took the kind's mutex; 0 while it holds none (alerts "
            "on a mutex held too long).",
            ["kind"],
            registry=registry,
        )
        self.lease_lost = Counter(
            "repsys_runner_lease_lost_total",
            "Mutex leases lost while a pipeline ran.",
            ["kind"],
            registry=registry,
        )
        self.fence_rejected = Counter(
            "repsys_runner_fence_rejected_total",
            "Loads refused because a newer run had written.",
            ["kind"],
            registry=registry,
        )
        self.reclaimed = Counter(
            "repsys_runner_reclaimed_total",
            "Queue entries taken over from a runner that stopped answering.",
            registry=registry,
        )
        self.requeued = Counter(
            "repsys_runner_orphans_requeued_total",
            "Unfinished requests queued again because their queue entry was lost.",
            registry=registry,
        )
        self.dead_letters = Counter(
            "repsys_runner_dead_letters_total",
            "Queue entries put aside, by reason.",
            ["reason"],
            registry=registry,
        )
        self.notifications = Counter(
            "repsys_runner_notifications_total",
            "Messages sent, by channel and outcome (sent, failed).",
            ["channel", "outcome"],
            registry=registry,
        )


class SchedulerMetrics:
    """Leadership, fired schedules and misfires of ``repsys scheduler``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.leader = Gauge(
            "repsys_scheduler_leader",
            "1 while this scheduler holds the lease and fires schedules.",
            registry=registry,
        )
        self.fired = Counter(
            "repsys_scheduler_fired_total",
            "Requests enqueued by a schedule.",
            ["schedule"],
            registry=registry,
        )
        self.misfires = Counter(
            "repsys_scheduler_misfires_total",
            "Fire times skipped because they were later than the grace time.",
            ["schedule"],
            registry=registry,
        )
        self.errors = Counter(
            "repsys_scheduler_errors_total",
            "Schedules whose request could not be enqueued, by reason.",
            ["schedule", "reason"],
            registry=registry,
        )
