"""The database side of the fencing number: every load checks it in its own transaction.

The mutex lease alone cannot stop a runner that was paused (GC, SIGSTOP, a stalled VM)
after its last lease check: it wakes up believing it still holds the mutex. So every load
opens its transaction with::

    UPDATE fences SET fence = :mine WHERE kind = :kind AND fence <= :mine

and gives up, writing nothing, when no row changed: a newer run (higher fence) has written
since. The update also locks the kind's fence row until the load commits, so two loads of
one kind never interleave.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from core.db.schema import Fence, ReportRequestRow, ReportRun, utcnow
from runner.errors import FenceRejected


def ensure_fence_row(sessions: sessionmaker[Session], kind: str) -> None:
    """Create the kind's fence row (at 0) before its first load; harmless when it exists."""
    with sessions() as session:
        if session.get(Fence, kind) is not None:
            return
    try:
        with sessions.begin() as session:
            session.add(Fence(kind=kind, fence=0))
    except IntegrityError:
        pass  # another runner created it first


def claim_fence(session: Session, kind: str, fence: int) -> None:
    """Record ``fence`` as the kind's latest writer, or raise :class:`FenceRejected`.

    The kind's row must exist (:func:`ensure_fence_row`).
    """
    result = session.execute(
        update(Fence)
        .where(Fence.kind == kind, Fence.fence <= fence)
        .values(fence=fence, updated_at=utcnow())
    )
    if getattr(result, "rowcount", 0) == 1:
        return
    current = session.scalar(select(Fence.fence).where(Fence.kind == kind))
    raise FenceRejected(kind, fence, int(current or 0))


def current_fence(sessions: sessionmaker[Session], kind: str) -> int:
    """The highest fencing number that has written for ``kind`` (0: none yet)."""
    with sessions() as session:
        return int(session.scalar(select(Fence.fence).where(Fence.kind == kind)) or 0)


def highest_fence(sessions: sessionmaker[Session], kind: str) -> int:
    """The highest fencing number the database has seen for ``kind``: loaded or started.

    The mutex re-seeds its Redis counter above this (see ``runner.mutex.ACQUIRE``): a
    number a run has already had must never be handed out again, even one that never
    got to load.
    """
    with sessions() as session:
        loaded = session.scalar(select(Fence.fence).where(Fence.kind == kind)) or 0
        started = (
            session.scalar(
                select(func.max(ReportRun.fence))
                .join(ReportRequestRow, ReportRequestRow.id == ReportRun.request_id)
                .where(ReportRequestRow.kind == kind)
            )
            or 0
        )
    return int(max(loaded, started))


@contextmanager
def fenced(sessions: sessionmaker[Session], kind: str, fence: int) -> Iterator[Session]:
    """A transaction that first claims the fence; commits on success, else rolls back."""
    ensure_fence_row(sessions, kind)
    with sessions.begin() as session:
        claim_fence(session, kind, fence)
        yield session
