"""Making, cancelling and listing report requests: the requester's side of the queue.

Used by ``repsys request`` / ``repsys queue``, the scheduler and the web app (the one
module of the runner it may import). A request is first a row in ``report_requests`` (the
state the requester sees, like a print queue), then an entry on the durable queue stream
:data:`core.keys.REPORT_QUEUE`; if the stream refuses it the row is removed again and
:class:`~runner.errors.QueueUnavailable` is raised, so no request is left that no runner
will ever see.

Live progress goes to the Pub/Sub channel :data:`core.keys.REPORT_PROGRESS` as JSON::

    {"v": 1, "id": "<request id>", "state": "running", "step": "closed_balances",
     "at": "2024-07-07T10:15:02.123456+00:00"}

``state`` is a :class:`core.model.ReportState` value and ``step`` the current step's name
(``null`` when none). Pub/Sub carries nothing that is not also in the database: a page
that misses a message reads the row.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import redis
from sqlalchemy import case, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from core import keys
from core.config import RepsysConfig
from core.db.schema import ReportRequestRow, utcnow
from core.db.warehouse import TBPeriod
from core.logs import get_logger
from core.model import DecodeError, ReportRequest, ReportState
from core.redis import RedisCommands
from runner.errors import QueueUnavailable
from runner.params import CalendarLookup, normalize

log = get_logger(__name__)

PROGRESS_VERSION = 1
ACTIVE_STATES = (ReportState.PENDING.value, ReportState.RUNNING.value)
#: States in which an earlier identical request stands for a new one inside the window:
#: not failed or cancelled, whose repeat is a deliberate retry.
SAME_REQUEST_STATES = (*ACTIVE_STATES, ReportState.COMPLETED.value)


@dataclass(frozen=True)
class Submitted:
    """What :func:`submit_request` did: the request's row, and whether it is a new one."""

    row: ReportRequestRow
    created: bool


@dataclass(frozen=True)
class Progress:
    """One message of the progress channel."""

    id: str
    state: str
    step: str | None
    at: datetime

    def to_json(self) -> str:
        return json.dumps(
            {
                "v": PROGRESS_VERSION,
                "id": self.id,
                "state": self.state,
                "step": self.step,
                "at": self.at.isoformat(),
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Progress | None:
        """Decode a message; ``None`` for anything that is not a v1 progress message."""
        try:
            data = json.loads(text)
            if data.get("v") != PROGRESS_VERSION:
                return None
            return cls(
                str(data["id"]),
                str(data["state"]),
                data.get("step"),
                datetime.fromisoformat(data["at"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


def publish_progress(
    client: RedisCommands, request_id: str, state: str, step: str | None = None
) -> None:
    """Publish one progress message; best effort (the database holds the truth)."""
    message = Progress(request_id, state, step, utcnow()).to_json()
    try:
        client.publish(keys.REPORT_PROGRESS, message)
    except redis.RedisError as exc:
        log.warning("report_progress_not_published", request=request_id, error=str(exc))


def calendar_lookup(session: Session) -> CalendarLookup:
    """The fiscal calendars the trial balance has loaded into the warehouse."""

    def periods(pcn: int) -> set[int] | None:
        found = set(
            session.scalars(
                select(TBPeriod.period).where(TBPeriod.pcn == pcn, TBPeriod.ordinal == 1)
            )
        )
        return found or None

    return periods


def submit(
    sessions: sessionmaker[Session],
    redis_client: RedisCommands,
    cfg: RepsysConfig,
    *,
    kind: str,
    params: dict[str, Any],
    requester: str,
    request_id: str | None = None,
) -> ReportRequestRow:
    """Check, record and queue a report request; return its row.

    An identical request (same kind and normalized parameters) still pending is returned
    instead of queueing a second one. With ``request_id`` (the scheduler's ids, one per
    schedule and fire time) an existing row of that id is returned as is.

    Raises:
        BadRequest: unknown kind, malformed or unknown period, start after end, unknown
            PCN, unknown parameter; ``str()`` is the message for the requester.
        QueueUnavailable: Redis did not take the entry (nothing is left queued).
    """
    return submit_request(
        sessions,
        redis_client,
        cfg,
        kind=kind,
        params=params,
        requester=requester,
        request_id=request_id,
    ).row


def submit_request(
    sessions: sessionmaker[Session],
    redis_client: RedisCommands,
    cfg: RepsysConfig,
    *,
    kind: str,
    params: dict[str, Any],
    requester: str,
    request_id: str | None = None,
    same_request_window_s: float = 0.0,
    admit: Callable[[], None] | None = None,
) -> Submitted:
    """:func:`submit`, telling whether the request is new, for requesters with limits.

    Args:
        same_request_window_s: an identical request made this many seconds ago or less
            that is running or completed is returned too (a pending one always is).
        admit: called once, before a new request is recorded (never for one that returns
            an existing request); it may raise to refuse it, e.g. over a quota.

    Raises:
        BadRequest, QueueUnavailable: as :func:`submit`; and whatever ``admit`` raises.
    """
    with sessions() as session:
        norm = normalize(cfg, kind, params, calendar_lookup(session))
    dedupe = norm.dedupe_key(kind)
    now = utcnow()
    try:
        row, created = _insert(
            sessions,
            kind=kind,
            name=norm.name,
            params=norm.params,
            dedupe=dedupe,
            requester=requester,
            request_id=request_id,
            now=now,
            window=timedelta(seconds=same_request_window_s),
            admit=admit,
        )
    except IntegrityError:
        # Another scheduler queued the same scheduled request at the same moment.
        with sessions() as session:
            again = session.get(ReportRequestRow, request_id) if request_id else None
        if again is None:
            raise
        return Submitted(again, created=False)
    if not created:
        if row.state == ReportState.PENDING.value and row.id not in queued_request_ids(
            redis_client
        ):
            # Coalesced into a request whose queue entry Redis lost: queue it again, or
            # this request and every identical one after it would wait forever.
            _queue(redis_client, row, reason="coalesced")
        return Submitted(row, created=False)
    entry = ReportRequest(
        id=row.id, kind=kind, params=norm.params, requester=row.requester, requested_at=now
    )
    try:
        # Copied so mypy types it as redis-py's dict[FieldT, EncodableT] (dict is invariant).
        redis_client.xadd(keys.REPORT_QUEUE, dict(entry.to_fields().items()))
    except redis.RedisError as exc:
        with sessions.begin() as session:
            doomed = session.get(ReportRequestRow, row.id)
            if doomed is not None:
                session.delete(doomed)
        raise QueueUnavailable(f"the report queue is unavailable: {exc}") from exc
    log.info("report_requested", request=row.id, kind=kind, name=row.name, requester=requester)
    publish_progress(redis_client, row.id, ReportState.PENDING.value)
    return Submitted(row, created=True)


def queued_request_ids(redis_client: RedisCommands) -> set[str]:
    """Ids of the requests the queue stream holds (it holds only unfinished work)."""
    ids = set()
    for _entry_id, fields in redis_client.xrange(keys.REPORT_QUEUE):
        try:
            ids.add(ReportRequest.from_fields(fields).id)
        except DecodeError:
            continue  # a runner dead-letters it when it reads it
    return ids


def _queue(redis_client: RedisCommands, row: ReportRequestRow, *, reason: str) -> None:
    created = row.created_at
    entry = ReportRequest(
        id=row.id,
        kind=row.kind,
        params=row.params,
        requester=row.requester,
        requested_at=created,
    )
    # Copied for mypy, as in submit_request.
    redis_client.xadd(keys.REPORT_QUEUE, dict(entry.to_fields().items()))
    log.warning(
        "report_request_requeued", request=row.id, kind=row.kind, state=row.state, reason=reason
    )


def requeue_orphans(
    sessions: sessionmaker[Session], redis_client: RedisCommands, *, older_than_s: float
) -> list[str]:
    """Queue again the unfinished requests whose queue entry is gone; their ids.

    The database is the truth about what was asked for; the stream can lose entries (a
    Redis restart without persistence, a failover before replication). A request pending
    or running for more than ``older_than_s`` (so not one being submitted right now) with
    no entry in the stream gets a new one. Two reconcilers at once may both add one: the
    second entry finds the request finished (or running under the mutex) and is skipped.
    """
    cutoff = utcnow() - timedelta(seconds=older_than_s)
    with sessions() as session:
        rows = list(
            session.scalars(
                select(ReportRequestRow)
                .where(
                    ReportRequestRow.state.in_(ACTIVE_STATES),
                    ReportRequestRow.created_at <= cutoff,
                )
                .order_by(ReportRequestRow.created_at)
            )
        )
    if not rows:
        return []
    queued = queued_request_ids(redis_client)
    requeued = []
    for row in rows:
        if row.id not in queued:
            _queue(redis_client, row, reason="lost_entry")
            requeued.append(row.id)
    return requeued


def _insert(
    sessions: sessionmaker[Session],
    *,
    kind: str,
    name: str,
    params: dict[str, Any],
    dedupe: str,
    requester: str,
    request_id: str | None,
    now: datetime,
    window: timedelta = timedelta(0),
    admit: Callable[[], None] | None = None,
) -> tuple[ReportRequestRow, bool]:
    """The new row, or an existing one (same id, or identical: pending, or running or
    completed within ``window``) and False."""
    with sessions.begin() as session:
        if request_id is not None:
            existing = session.get(ReportRequestRow, request_id)
            if existing is not None:
                return existing, False
        same = ReportRequestRow.state == ReportState.PENDING.value
        if window > timedelta(0):
            same = same | (
                ReportRequestRow.state.in_(SAME_REQUEST_STATES)
                & (ReportRequestRow.created_at >= now - window)
            )
        existing = session.scalars(
            select(ReportRequestRow)
            .where(ReportRequestRow.dedupe_key == dedupe, same)
            .order_by(ReportRequestRow.created_at.desc())
            .limit(1)
        ).first()
        if existing is not None:
            log.info("report_request_coalesced", request=existing.id, kind=kind)
            return existing, False
        if admit is not None:
            admit()
        row = ReportRequestRow(
            id=request_id or uuid.uuid4().hex,
            kind=kind,
            name=name,
            params=params,
            dedupe_key=dedupe,
            requester=requester[:128],
            state=ReportState.PENDING.value,
            created_at=now,
        )
        session.add(row)
    return row, True


def cancel(
    sessions: sessionmaker[Session], redis_client: RedisCommands, request_id: str, *, by: str
) -> bool:
    """Cancel a request that is still pending; ``False`` when it is not (any more).

    The queue entry stays; the runner that reads it sees the state and skips it.
    """
    with sessions.begin() as session:
        result = session.execute(
            update(ReportRequestRow)
            .where(
                ReportRequestRow.id == request_id,
                ReportRequestRow.state == ReportState.PENDING.value,
            )
            .values(
                state=ReportState.CANCELLED.value,
                error=f"cancelled by {by}"[:512],
                finished_at=utcnow(),
            )
        )
        changed = bool(getattr(result, "rowcount", 0))
    if changed:
        log.info("report_request_cancelled", request=request_id, by=by)
        publish_progress(redis_client, request_id, ReportState.CANCELLED.value)
    return changed


def get_request(sessions: sessionmaker[Session], request_id: str) -> ReportRequestRow | None:
    """One request's row, or ``None``."""
    with sessions() as session:
        return session.get(ReportRequestRow, request_id)


def list_queue(sessions: sessionmaker[Session], *, limit: int = 50) -> list[ReportRequestRow]:
    """The queue like a print queue: running, then pending oldest first, then finished.

    Finished requests (completed, failed, cancelled) follow, newest first, up to ``limit``
    rows in all.
    """
    active_first = case(
        (ReportRequestRow.state == ReportState.RUNNING.value, 0),
        (ReportRequestRow.state == ReportState.PENDING.value, 1),
        else_=2,
    )
    with sessions() as session:
        active = list(
            session.scalars(
                select(ReportRequestRow)
                .where(ReportRequestRow.state.in_(ACTIVE_STATES))
                .order_by(active_first, ReportRequestRow.created_at)
                .limit(limit)
            )
        )
        finished = list(
            session.scalars(
                select(ReportRequestRow)
                .where(ReportRequestRow.state.not_in(ACTIVE_STATES))
                .order_by(ReportRequestRow.finished_at.desc(), ReportRequestRow.created_at.desc())
                .limit(max(0, limit - len(active)))
            )
        )
    return active + finished


__all__ = [
    "Progress",
    "cancel",
    "get_request",
    "list_queue",
    "publish_progress",
    "queued_request_ids",
    "requeue_orphans",
    "submit",
    "submit_request",
]
