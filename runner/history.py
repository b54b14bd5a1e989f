"""Run and step records (the design's script history) and the request's state changes.

Every pipeline attempt is a ``report_runs`` row under one fencing number; each step gets
a ``step_runs`` row with its start, end, status, rows and error. A request's state is
changed only by its *latest* run: a runner that lost its lease and wakes up later finds a
newer run of the request and changes nothing (the same idea as the data fence, per
request).

Step statuses: ``running``, ``completed``, ``failed``, ``aborted`` (lease lost or fence
rejected mid-step), ``skipped`` (done by an earlier run of the same request and still
valid, see :func:`resumable_steps`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, exists, func, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from core.db.schema import Fence, ReportRequestRow, ReportRun, StepRun, utcnow
from core.model import ReportState

DONE_STEP_STATES = ("completed", "skipped")


def _is_latest(run_id: int, request_id: str) -> Any:
    later = aliased(ReportRun)
    return ~exists().where(later.request_id == request_id, later.id > run_id)


def start_run(
    sessions: sessionmaker[Session], request_id: str, *, fence: int, runner: str
) -> ReportRun | None:
    """Record a new run and mark the request running; ``None`` if it may not run.

    A request may run while it is pending or running (a rerun after a crash); a
    cancelled, completed or failed request is left alone.
    """
    now = utcnow()
    with sessions.begin() as session:
        row = session.get(ReportRequestRow, request_id, with_for_update=True)
        if row is None or row.state not in (ReportState.PENDING.value, ReportState.RUNNING.value):
            return None
        run = ReportRun(request_id=request_id, fence=fence, runner=runner, started_at=now)
        session.add(run)
        row.state = ReportState.RUNNING.value
        row.attempts = (row.attempts or 0) + 1
        row.started_at = row.started_at or now
        row.current_step = None
        row.error = None
        session.flush()
        return run


def resumable_steps(
    sessions: sessionmaker[Session], request_id: str, kind: str, run_id: int
) -> set[str]:
    """Steps an earlier run of this request finished that this run may skip.

    Only the latest earlier run counts, and only if no other run has written the kind's
    data since (the database fence is not above that run's fence); otherwise another
    request's run may have replaced what those steps loaded, and everything runs again.
    """
    with sessions() as session:
        previous = session.scalars(
            select(ReportRun)
            .where(ReportRun.request_id == request_id, ReportRun.id < run_id)
            .order_by(ReportRun.id.desc())
            .limit(1)
        ).first()
        if previous is None:
            return set()
        db_fence = session.scalar(select(Fence.fence).where(Fence.kind == kind)) or 0
        if db_fence > previous.fence:
            return set()
        return set(
            session.scalars(
                select(StepRun.step).where(
                    StepRun.run_id == previous.id, StepRun.status.in_(DONE_STEP_STATES)
                )
            )
        )


def step_started(sessions: sessionmaker[Session], run: ReportRun, step: str, ordinal: int) -> int:
    """Record a step's start (and show it on the request); returns the step record's id."""
    with sessions.begin() as session:
        record = StepRun(
            run_id=run.id,
            request_id=run.request_id,
            step=step,
            ordinal=ordinal,
            fence=run.fence,
            status="running",
            started_at=utcnow(),
        )
        session.add(record)
        session.execute(
            update(ReportRequestRow)
            .where(ReportRequestRow.id == run.request_id, _is_latest(run.id, run.request_id))
            .values(current_step=step)
        )
        session.flush()
        return record.id


def step_skipped(sessions: sessionmaker[Session], run: ReportRun, step: str, ordinal: int) -> None:
    """Record a step that an earlier run already did."""
    now = utcnow()
    with sessions.begin() as session:
        session.add(
            StepRun(
                run_id=run.id,
                request_id=run.request_id,
                step=step,
                ordinal=ordinal,
                fence=run.fence,
                status="skipped",
                output="done by an earlier run of this request",
                started_at=now,
                finished_at=now,
            )
        )


def step_finished(
    sessions: sessionmaker[Session],
    step_id: int,
    *,
    status: str,
    rows: int | None = None,
    output: str | None = None,
    error: str | None = None,
) -> None:
    with sessions.begin() as session:
        session.execute(
            update(StepRun)
            .where(StepRun.id == step_id)
            .values(
                status=status,
                rows=rows,
                output=output[-4000:] if output else output,
                error=error[-4000:] if error else error,
                finished_at=utcnow(),
            )
        )


def finish_run(
    sessions: sessionmaker[Session],
    run: ReportRun,
    *,
    state: ReportState,
    error: str | None = None,
) -> bool:
    """Close the run and set the request's final state; ``False`` if a newer run exists.

    ``state`` is completed or failed for a final outcome, pending for a run interrupted
    by a stop (its request goes back to the queue).
    """
    now = utcnow()
    run_status = {"completed": "completed", "failed": "failed"}.get(state.value, "interrupted")
    with sessions.begin() as session:
        session.execute(
            update(ReportRun)
            .where(ReportRun.id == run.id)
            .values(status=run_status, finished_at=now, error=error)
        )
        values: dict[str, Any] = {"state": state.value, "error": error}
        if state in (ReportState.COMPLETED, ReportState.FAILED):
            values.update(finished_at=now, current_step=None)
        result = session.execute(
            update(ReportRequestRow)
            .where(
                ReportRequestRow.id == run.request_id,
                ReportRequestRow.state == ReportState.RUNNING.value,
                _is_latest(run.id, run.request_id),
            )
            .values(**values)
        )
        return bool(getattr(result, "rowcount", 0))


def abandon_run(sessions: sessionmaker[Session], run: ReportRun, why: str) -> None:
    """Close a run that lost its lease or fence; the request is left to its new owner."""
    with sessions.begin() as session:
        session.execute(
            update(ReportRun)
            .where(ReportRun.id == run.id)
            .values(status="aborted", finished_at=utcnow(), error=why[:4000])
        )


def fail_request(sessions: sessionmaker[Session], request_id: str, error: str) -> bool:
    """Fail a request without a run (poison pill, no pipeline for its kind)."""
    with sessions.begin() as session:
        result = session.execute(
            update(ReportRequestRow)
            .where(
                ReportRequestRow.id == request_id,
                ReportRequestRow.state.in_((ReportState.PENDING.value, ReportState.RUNNING.value)),
            )
            .values(state=ReportState.FAILED.value, error=error, finished_at=utcnow())
        )
        return bool(getattr(result, "rowcount", 0))


def set_result_path(sessions: sessionmaker[Session], run: ReportRun, path: str) -> None:
    with sessions.begin() as session:
        session.execute(
            update(ReportRequestRow)
            .where(ReportRequestRow.id == run.request_id, _is_latest(run.id, run.request_id))
            .values(result_path=path[:512])
        )


def claim_notification(sessions: sessionmaker[Session], request_id: str) -> bool:
    """Take the right to send the request's one outcome message (at most once)."""
    with sessions.begin() as session:
        result = session.execute(
            update(ReportRequestRow)
            .where(ReportRequestRow.id == request_id, ReportRequestRow.notified_at.is_(None))
            .values(notified_at=utcnow())
        )
        return bool(getattr(result, "rowcount", 0))


def step_records(sessions: sessionmaker[Session], run_id: int) -> list[StepRun]:
    with sessions() as session:
        return list(
            session.scalars(select(StepRun).where(StepRun.run_id == run_id).order_by(StepRun.id))
        )


def pending_counts(sessions: sessionmaker[Session]) -> dict[str, int]:
    """Pending requests per kind (the queue-depth gauge)."""
    with sessions() as session:
        rows = session.execute(
            select(ReportRequestRow.kind, func.count())
            .where(ReportRequestRow.state == ReportState.PENDING.value)
            .group_by(ReportRequestRow.kind)
        )
        return {kind: int(n) for kind, n in rows}


def prune(sessions: sessionmaker[Session], *, keep_days: int, now: datetime | None = None) -> int:
    """Delete finished requests (with their runs and steps) older than ``keep_days``."""
    cutoff = (now or utcnow()) - timedelta(days=keep_days)
    with sessions.begin() as session:
        old = select(ReportRequestRow.id).where(
            and_(
                ReportRequestRow.state.not_in(
                    (ReportState.PENDING.value, ReportState.RUNNING.value)
                ),
                ReportRequestRow.finished_at < cutoff,
            )
        )
        ids = list(session.scalars(old))
        if not ids:
            return 0
        session.execute(delete(StepRun).where(StepRun.request_id.in_(ids)))
        session.execute(delete(ReportRun).where(ReportRun.request_id.in_(ids)))
        session.execute(delete(ReportRequestRow).where(ReportRequestRow.id.in_(ids)))
        return len(ids)
