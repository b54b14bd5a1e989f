"""The runner process: take the next request, hold its kind's mutex, run its pipeline.

The framework owns the loop (steps stay small): reading and reclaiming queue entries,
waiting for the mutex, renewing the lease, recording runs and steps, resuming after a
crash, publishing progress, and the one outcome message. Outcomes of one request:

* ``completed`` / ``failed``: recorded, the queue entry acknowledged, the outcome sent;
* ``abandoned``: the lease was lost or a load was fenced off; a newer run owns the
  request, so this runner records nothing on it and leaves the entry (not acknowledged);
* ``interrupted``: the process is stopping; after the current step the request goes back
  to the queue, and the next run resumes at the next step;
* ``skipped``: cancelled or already finished; acknowledged.
"""

from __future__ import annotations

import functools
import os
import socket
import time
from enum import StrEnum

import redis
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from core.config import RepsysConfig
from core.db.schema import ReportRequestRow, ReportRun
from core.lifecycle import Backoff, Stopper
from core.logs import get_logger
from core.model import DecodeError, ReportRequest, ReportState
from core.redis import RedisCommands
from runner import history
from runner.errors import FenceRejected, LeaseLost, StepFailed
from runner.fence import highest_fence
from runner.metrics import RunnerMetrics
from runner.mutex import Lease, LeaseKeeper, Mutex
from runner.outcome import notify_outcome
from runner.queue import Entry, ReportQueue
from runner.registry import build_pipelines
from runner.requests import get_request, publish_progress, requeue_orphans
from runner.services import build_tb_sources
from runner.steps import Prefetching, Services, Step, StepContext
from runner.tb.source import TbSources

log = get_logger(__name__)


class Outcome(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    ABANDONED = "abandoned"
    INTERRUPTED = "interrupted"
    SKIPPED = "skipped"


def default_consumer() -> str:
    """This runner's name in the consumer group: host and pid (unique, readable)."""
    return f"{socket.gethostname()}-{os.getpid()}"


class Runner:
    """One runner process's loop. Thread-safe only in the sense that the lease keeper
    thread touches the queue entry; everything else happens on the calling thread."""

    def __init__(
        self,
        cfg: RepsysConfig,
        *,
        sessions: sessionmaker[Session],
        redis_client: RedisCommands,
        services: Services,
        metrics: RunnerMetrics,
        stopper: Stopper,
        consumer: str | None = None,
        pipelines: dict[str, list[Step]] | None = None,
        tb_sources: TbSources | None = None,
    ) -> None:
        """``pipelines`` not given are built from ``cfg``, their Plex-reading steps given
        ``tb_sources`` (by default the configured ones, ``build_tb_sources``)."""
        self.cfg = cfg
        self.sessions = sessions
        self.redis = redis_client
        self.services = services
        self.metrics = metrics
        self.stopper = stopper
        self.consumer = consumer or default_consumer()
        if pipelines is None:
            sources = tb_sources or build_tb_sources(cfg, redis_client)
            pipelines = build_pipelines(cfg.runner, sources)
        self.pipelines = pipelines
        rc = cfg.runner
        self.queue = ReportQueue(
            redis_client, self.consumer, claim_idle_s=rc.claim_idle_s, metrics=metrics
        )
        self.mutexes = {
            kind: Mutex(
                redis_client,
                kind,
                permits=p.permits,
                ttl_s=rc.lease_ttl_s,
                metrics=metrics,
                floor=functools.partial(highest_fence, sessions, kind),
            )
            for kind, p in rc.pipelines.items()
        }
        self.ready = False
        #: When to look next for requests whose queue entry was lost (0: at once).
        self._next_reconcile = 0.0
        # A blocking read must return before the client's socket timeout fires.
        self.block_s = min(rc.block_s, cfg.redis.socket_timeout_s * 0.8)

    # --- the loop ---------------------------------------------------------------------

    def work(self, *, burst: bool = False) -> int:
        """Handle requests until stopped (or, with ``burst``, until none is waiting).

        Returns how many queue entries were handled.
        """
        handled = 0
        backoff = Backoff(base_s=0.5, cap_s=15.0)
        while not self.stopper.stopped:
            try:
                if not self.ready:
                    self.queue.ensure_group()
                    self.ready = True
                self._refresh_depth()
                self._reconcile()
                entry = self.queue.next(0 if burst else self.block_s)
            except (redis.RedisError, OperationalError, InterfaceError) as exc:
                # The queue's Redis or the database (read here for the depth gauge and the
                # reconciler) is away: wait it out; a restarted PostgreSQL must not end the
                # process (the chaos soak found it exiting 1).
                self.ready = False
                if burst:
                    raise
                delay = backoff.next()
                event = (
                    "runner_redis_unavailable"
                    if isinstance(exc, redis.RedisError)
                    else "runner_database_unavailable"
                )
                log.warning(event, error=str(exc).splitlines()[0], retry_in_s=round(delay, 2))
                self.stopper.wait(delay)
                continue
            backoff.reset()
            if entry is None:
                if burst:
                    break
                continue
            self.handle(entry)
            handled += 1
        return handled

    def _reconcile(self) -> None:
        """Every ``claim_idle_s``: queue again the requests whose entry Redis lost."""
        now = time.monotonic()
        if now < self._next_reconcile:
            return
        idle = self.cfg.runner.claim_idle_s
        self._next_reconcile = now + idle
        requeued = requeue_orphans(self.sessions, self.redis, older_than_s=idle)
        self.metrics.requeued.inc(len(requeued))

    def _refresh_depth(self) -> None:
        counts = history.pending_counts(self.sessions)
        for kind in self.cfg.runner.pipelines:
            self.metrics.queue_depth.labels(kind=kind).set(counts.get(kind, 0))

    # --- one request ------------------------------------------------------------------

    def _admit(self, entry: Entry) -> tuple[ReportRequestRow, list[Step]] | Outcome:
        """The request and its steps, or the outcome when it is not to be run."""
        try:
            request = ReportRequest.from_fields(entry.fields)
        except DecodeError as exc:
            self.queue.dead_letter(entry, exc.reason, str(exc))
            return Outcome.SKIPPED
        row = get_request(self.sessions, request.id)
        if row is None:
            self.queue.dead_letter(entry, "unknown_request", f"no request {request.id}")
            return Outcome.SKIPPED
        if row.state not in (ReportState.PENDING.value, ReportState.RUNNING.value):
            log.info("report_entry_skipped", request=row.id, state=row.state)
            self.queue.ack(entry.id)
            return Outcome.SKIPPED
        steps = self.pipelines.get(row.kind)
        if steps is None:
            return self._fail_without_run(entry, row, f"no pipeline for report kind {row.kind!r}")
        if (row.attempts or 0) >= self.cfg.runner.max_attempts:
            return self._fail_without_run(
                entry,
                row,
                f"gave up after {row.attempts} runs that did not finish "
                "(the runner stopped during each)",
            )
        return row, steps

    def handle(self, entry: Entry) -> Outcome:
        """Run one queue entry to its outcome."""
        admitted = self._admit(entry)
        if isinstance(admitted, Outcome):
            return admitted
        row, steps = admitted
        lease = self.mutexes[row.kind].acquire(
            self.stopper, poll_s=1.0, on_wait=lambda: self.queue.touch(entry.id)
        )
        if lease is None:  # stopping while waiting: give the request back untouched
            self.queue.requeue(entry)
            return Outcome.INTERRUPTED
        started = time.monotonic()
        try:
            with LeaseKeeper(
                lease,
                period_s=self.cfg.runner.renew_period_s,
                on_tick=lambda: self.queue.touch(entry.id),
                metrics=self.metrics,
            ) as keeper:
                outcome = self._execute(row, lease, keeper, steps)
        finally:
            try:
                lease.release()
            except redis.RedisError as exc:  # it expires by itself
                log.warning("mutex_release_failed", kind=row.kind, error=str(exc))
        self.metrics.runs.labels(kind=row.kind, outcome=outcome.value).inc()
        self.metrics.run_duration.labels(kind=row.kind, outcome=outcome.value).observe(
            time.monotonic() - started
        )
        if outcome in (Outcome.COMPLETED, Outcome.FAILED, Outcome.SKIPPED):
            self.queue.ack(entry.id)
        elif outcome is Outcome.INTERRUPTED:
            self.queue.requeue(entry)
        log.info("report_run_finished", request=row.id, kind=row.kind, outcome=outcome.value)
        return outcome

    def _fail_without_run(self, entry: Entry, row: ReportRequestRow, error: str) -> Outcome:
        if history.fail_request(self.sessions, row.id, error):
            publish_progress(self.redis, row.id, ReportState.FAILED.value)
            fresh = get_request(self.sessions, row.id) or row
            notify_outcome(
                self.cfg,
                self.sessions,
                services=self.services,
                metrics=self.metrics,
                request=fresh,
                run=None,
                ok=False,
                error=error,
            )
        log.error("report_request_failed", request=row.id, error=error)
        self.queue.ack(entry.id)
        return Outcome.FAILED

    def _execute(
        self, row: ReportRequestRow, lease: Lease, keeper: LeaseKeeper, steps: list[Step]
    ) -> Outcome:
        run = history.start_run(self.sessions, row.id, fence=lease.fence, runner=self.consumer)
        if run is None:
            return Outcome.SKIPPED
        if (row.attempts or 0) == 0:
            waited = (run.started_at - row.created_at).total_seconds()
            self.metrics.queue_wait.labels(kind=row.kind).observe(max(0.0, waited))
        resume = history.resumable_steps(self.sessions, row.id, row.kind, run.id)
        if resume:
            log.info("report_run_resumed", request=row.id, skipping=sorted(resume))
        publish_progress(self.redis, row.id, ReportState.RUNNING.value)
        ctx = StepContext(
            request=row,
            run=run,
            cfg=self.cfg,
            sessions=self.sessions,
            services=self.services,
            lease=keeper,
        )
        try:
            for ordinal, step in enumerate(steps, start=1):
                if step.name in resume:
                    history.step_skipped(self.sessions, run, step.name, ordinal)
                    continue
                try:
                    keeper.check()
                except LeaseLost as exc:
                    history.abandon_run(self.sessions, run, str(exc))
                    return Outcome.ABANDONED
                if self.stopper.stopped:
                    history.finish_run(
                        self.sessions,
                        run,
                        state=ReportState.PENDING,
                        error="interrupted: the runner was stopping",
                    )
                    publish_progress(self.redis, row.id, ReportState.PENDING.value)
                    return Outcome.INTERRUPTED
                self._prefetch(ctx, steps, ordinal, resume)
                outcome = self._step(ctx, run, step, ordinal)
                if outcome is not None:
                    return outcome
        finally:
            ctx.close()
        if not history.finish_run(self.sessions, run, state=ReportState.COMPLETED):
            return Outcome.ABANDONED
        publish_progress(self.redis, row.id, ReportState.COMPLETED.value)
        notify_outcome(
            self.cfg,
            self.sessions,
            services=self.services,
            metrics=self.metrics,
            request=get_request(self.sessions, row.id) or row,
            run=run,
            ok=True,
        )
        return Outcome.COMPLETED

    @staticmethod
    def _prefetch(ctx: StepContext, steps: list[Step], ordinal: int, resume: set[str]) -> None:
        """Let the step after ``ordinal`` start reading while it runs (``Step`` says how)."""
        if ordinal >= len(steps) or steps[ordinal].name in resume:
            return
        step = steps[ordinal]
        if not isinstance(step, Prefetching):
            return
        try:
            step.prefetch(ctx)
        except Exception:  # the step reads what it lacks itself when it runs
            log.exception("report_prefetch_failed", step=steps[ordinal].name)

    def _step(self, ctx: StepContext, run: ReportRun, step: Step, ordinal: int) -> Outcome | None:
        """Run one step; an outcome when the run ends here, ``None`` to go on."""
        row = ctx.request
        step_id = history.step_started(self.sessions, run, step.name, ordinal)
        publish_progress(self.redis, row.id, ReportState.RUNNING.value, step.name)
        log.info("report_step_started", request=row.id, step=step.name, fence=run.fence)
        started = time.monotonic()
        error: StepFailed | None = None
        try:
            result = step.run(ctx)
        except (LeaseLost, FenceRejected) as exc:
            if isinstance(exc, FenceRejected):
                self.metrics.fence_rejected.labels(kind=row.kind).inc()
            log.warning("report_run_abandoned", request=row.id, step=step.name, error=str(exc))
            history.step_finished(self.sessions, step_id, status="aborted", error=str(exc))
            history.abandon_run(self.sessions, run, str(exc))
            return Outcome.ABANDONED
        except StepFailed as exc:
            error = exc
        except Exception as exc:  # a step's bug still fails only its request
            log.exception("report_step_crashed", request=row.id, step=step.name)
            error = StepFailed(f"{type(exc).__name__}: {exc}", reason="crash")
        finally:
            self.metrics.step_duration.labels(kind=row.kind, step=step.name).observe(
                time.monotonic() - started
            )
        if error is not None:
            return self._failed(ctx, run, step, step_id, error)
        history.step_finished(
            self.sessions, step_id, status="completed", rows=result.rows, output=result.output
        )
        return None

    def _failed(
        self, ctx: StepContext, run: ReportRun, step: Step, step_id: int, error: StepFailed
    ) -> Outcome:
        row = ctx.request
        self.metrics.step_failures.labels(kind=row.kind, step=step.name, reason=error.reason).inc()
        history.step_finished(self.sessions, step_id, status="failed", error=str(error))
        message = f"step {step.name!r} failed: {error}"
        log.error("report_step_failed", request=row.id, step=step.name, error=str(error))
        if not history.finish_run(self.sessions, run, state=ReportState.FAILED, error=message):
            return Outcome.ABANDONED
        publish_progress(self.redis, row.id, ReportState.FAILED.value, step.name)
        notify_outcome(
            self.cfg,
            self.sessions,
            services=self.services,
            metrics=self.metrics,
            request=get_request(self.sessions, row.id) or row,
            run=run,
            ok=False,
            failed_step=step.name,
            error=str(error),
        )
        return Outcome.FAILED
