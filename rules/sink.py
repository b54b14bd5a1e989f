"""Writing episodes and their tickets: one database transaction per batch, idempotent.

An episode row and its ticket row (the Plex outbox, ``core.outbox.add_ticket``) are
written in the same transaction; the worker acknowledges the stream entries only after it
commits. A worker that replays entries after a crash or a takeover computes the same
``(fingerprint, occurrence)`` from the checkpointed state and finds the row already there:

- same ``started_at`` → it is this very episode: a replay, nothing is written again;
- another ``started_at`` → the database holds an episode of a history the checkpoint
  never saw (a worker died between its commit and its checkpoint, and the replay took
  another path, e.g. a timer fired at another moment): the occurrence moves on, and the
  engine is told (:class:`Remap`) so its state agrees.

Escalations and resolutions are conditional updates (``WHERE repeat_count < n``,
``WHERE state <> 'resolved'``) and add their ticket event only when they changed a row,
so replaying them changes nothing. A unique-constraint error (another worker wrote the
same episode concurrently) rolls back and retries once; the retry sees the rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from core.config.machines import Machine
from core.db.schema import Episode, Silence, Ticket, TicketEvent
from core.logs import get_logger
from core.model import EpisodeState, TicketState
from core.outbox import add_ticket, episode_ref
from rules.actions import (
    Action,
    EpisodeDraft,
    Escalate,
    OpenEpisode,
    OpenEpisodes,
    Resolve,
)
from rules.alerts import ActiveSilence
from rules.errors import RulesTransientError

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Remap:
    """An occurrence that had to move on because the database had it from another history."""

    machine: str
    fingerprint: str
    old: int
    new: int


@dataclass
class WriteResult:
    """What one transaction did."""

    remaps: list[Remap]
    #: (machine, fingerprint, occurrence) of episodes whose ticket was closed in Plex (or
    #: cancelled): the engine ends them, so a recurrence files a new ticket.
    closed: list[tuple[str, str, int]] = field(default_factory=list)
    episodes: int = 0
    tickets: int = 0
    replays: int = 0
    #: Log lines of what was written, by ticket ref, emitted once the transaction is in:
    #: ``grep RS-...`` then follows a ticket from its episode to Plex and back.
    story: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class EpisodeSink:
    """Applies engine actions to the database."""

    def __init__(self, sessions: sessionmaker[Session], machines: dict[str, Machine]) -> None:
        self.sessions = sessions
        self.machines = machines

    def write(self, actions: Sequence[Action]) -> WriteResult:
        """Apply ``actions`` in one transaction. Raises :class:`RulesTransientError`."""
        try:
            try:
                result = self._write(actions)
            except IntegrityError:
                # Another worker (one that lost its lease but had not noticed yet) wrote
                # the same rows a moment ago; the second pass finds them.
                result = self._write(actions)
        except DBAPIError as exc:
            raise RulesTransientError(f"database write failed: {exc.orig}", reason="db") from exc
        for event, fields in result.story:
            log.info(event, **fields)
        return result

    def _write(self, actions: Sequence[Action]) -> WriteResult:
        result = WriteResult(remaps=[])
        moved: dict[tuple[str, int], int] = {}
        with self.sessions() as session, session.begin():
            for action in actions:
                if isinstance(action, OpenEpisodes):
                    self._open(session, action, moved, result)
                elif isinstance(action, Escalate):
                    self._escalate(session, action, moved, result)
                else:
                    self._resolve(session, action, moved, result)
        return result

    # --- actions -----------------------------------------------------------------------

    def _place(
        self, session: Session, draft: EpisodeDraft, result: WriteResult
    ) -> tuple[int, int | None]:
        """The occurrence this episode takes, and its row id when already written."""
        occurrence = draft.occurrence
        rows = {
            occ: (started, row_id)
            for occ, started, row_id in session.execute(
                select(Episode.occurrence, Episode.started_at, Episode.id).where(
                    Episode.fingerprint == draft.fingerprint,
                    Episode.occurrence >= occurrence,
                )
            )
        }
        while occurrence in rows:
            started, row_id = rows[occurrence]
            if abs(started.timestamp() - draft.started) < 0.001:
                result.replays += 1
                return occurrence, row_id
            occurrence += 1
        return occurrence, None

    def _open(
        self,
        session: Session,
        action: OpenEpisodes,
        moved: dict[tuple[str, int], int],
        result: WriteResult,
    ) -> None:
        ids: list[int] = []
        fresh = False
        for draft in action.episodes:
            occurrence, row_id = self._place(session, draft, result)
            if occurrence != draft.occurrence:
                moved[draft.fingerprint, draft.occurrence] = occurrence
                result.remaps.append(
                    Remap(draft.machine, draft.fingerprint, draft.occurrence, occurrence)
                )
            if row_id is None:
                fresh = True
                row = Episode(
                    fingerprint=draft.fingerprint,
                    occurrence=occurrence,
                    machine_id=draft.machine,
                    rule=draft.rule,
                    rule_type=draft.rule_type,
                    subject=draft.subject[:128],
                    severity=draft.severity,
                    state=EpisodeState.FIRING.value,
                    summary=draft.summary,
                    evidence=draft.evidence,
                    started_at=_dt(draft.started),
                    last_seen_at=_dt(draft.last_seen),
                    created_at=_dt(action.at),
                )
                session.add(row)
                session.flush()
                row_id = row.id
                result.episodes += 1
            ids.append(row_id)
        first = action.episodes[0]
        first_occurrence = moved.get((first.fingerprint, first.occurrence), first.occurrence)
        ref = episode_ref(first.fingerprint, first_occurrence)
        ticket_id = session.scalar(select(Ticket.id).where(Ticket.external_ref == ref))
        if ticket_id is None:
            add_ticket(
                session,
                machine=self.machines[action.machine],
                source="rule",
                title=action.title,
                description=action.description,
                severity=action.severity,
                kind=action.kind,
                category=action.category,
                reporter=action.reporter,
                episode_id=ids[0],
                external_ref=ref,
                now=_dt(action.at),
            )
            result.tickets += 1
            result.story.append(
                (
                    "ticket_queued",
                    {
                        "ref": ref,
                        "machine": action.machine,
                        "rule": first.rule,
                        "subject": first.subject,
                        "episodes": ids,
                        "severity": action.severity,
                    },
                )
            )
        elif fresh:
            # A replay grouped an episode the first pass had not: note it on the ticket.
            session.add(
                TicketEvent(
                    ticket_id=ticket_id,
                    at=_dt(action.at),
                    event="episode_added",
                    detail=action.description[:2000],
                )
            )

    def _ticket_id(self, session: Session, ref: str) -> int | None:
        return session.scalar(select(Ticket.id).where(Ticket.external_ref == ref))

    def _escalate(
        self,
        session: Session,
        action: Escalate,
        moved: dict[tuple[str, int], int],
        result: WriteResult,
    ) -> None:
        occurrence = moved.get((action.fingerprint, action.occurrence), action.occurrence)
        ref = action.ticket_ref
        if occurrence != action.occurrence:
            ref = episode_ref(action.fingerprint, occurrence)
        state = session.scalar(select(Ticket.state).where(Ticket.external_ref == ref))
        if state in (TicketState.CLOSED.value, TicketState.CANCELLED.value):
            # Maintenance closed it (plex.status resolved the episode): a recurrence from
            # now on is a new problem with a new ticket, not an escalation of a closed one.
            result.closed.append((action.machine, action.fingerprint, occurrence))
            return
        session.execute(
            update(Episode)
            .where(
                Episode.fingerprint == action.fingerprint,
                Episode.occurrence == occurrence,
                Episode.repeat_count <= action.repeats,
            )
            .values(repeat_count=action.repeats, last_seen_at=_dt(action.last_seen))
        )
        changed = session.execute(
            update(Ticket)
            .where(Ticket.external_ref == ref, Ticket.escalation_level < action.level)
            .values(escalation_level=action.level, updated_at=_dt(action.at))
        )
        if getattr(changed, "rowcount", 0):
            result.story.append(
                ("ticket_escalated", {"ref": ref, "level": action.level, "repeats": action.repeats})
            )
            ticket_id = self._ticket_id(session, ref)
            if ticket_id is not None:
                session.add(
                    TicketEvent(
                        ticket_id=ticket_id,
                        at=_dt(action.at),
                        event="escalated",
                        detail=f"level {action.level}: {action.detail}"[:2000],
                    )
                )

    def _resolve(
        self,
        session: Session,
        action: Resolve,
        moved: dict[tuple[str, int], int],
        result: WriteResult,
    ) -> None:
        occurrence = moved.get((action.fingerprint, action.occurrence), action.occurrence)
        changed = session.execute(
            update(Episode)
            .where(
                Episode.fingerprint == action.fingerprint,
                Episode.occurrence == occurrence,
                Episode.state != EpisodeState.RESOLVED.value,
            )
            .values(
                state=EpisodeState.RESOLVED.value,
                resolved_at=_dt(action.at),
                repeat_count=action.repeats,
                last_seen_at=_dt(action.last_seen),
            )
        )
        if getattr(changed, "rowcount", 0):
            result.story.append(
                (
                    "episode_resolved",
                    {"ref": action.ticket_ref, "episode": f"{action.fingerprint}#{occurrence}"},
                )
            )
            ticket_id = self._ticket_id(session, action.ticket_ref)
            if ticket_id is not None:
                session.add(
                    TicketEvent(
                        ticket_id=ticket_id,
                        at=_dt(action.at),
                        event="episode_resolved",
                        detail=f"episode {action.fingerprint}#{occurrence} resolved after "
                        f"{action.repeats} repeats",
                    )
                )


def load_episodes(sessions: sessionmaker[Session], machine_ids: list[str]) -> list[OpenEpisode]:
    """The firing episodes of machines whose rule state is missing.

    A checkpoint can be lost (Redis restarted without persistence, a failover before
    replication); the database then is the truth about what is open, so an ongoing
    condition goes on as the same episode instead of filing a second ticket.
    Raises :class:`RulesTransientError`.
    """
    out: list[OpenEpisode] = []
    if not machine_ids:
        return out
    try:
        with sessions() as session:
            rows = session.execute(
                select(Episode, Ticket.external_ref, Ticket.escalation_level)
                .outerjoin(Ticket, Ticket.episode_id == Episode.id)
                .where(
                    Episode.state == EpisodeState.FIRING.value,
                    Episode.machine_id.in_(machine_ids),
                )
                .order_by(Episode.started_at, Episode.id)
            ).all()
            for ep, ref, level in rows:
                values = ep.evidence.get("values") if isinstance(ep.evidence, dict) else None
                out.append(
                    OpenEpisode(
                        machine=ep.machine_id,
                        fingerprint=ep.fingerprint,
                        occurrence=ep.occurrence,
                        rule=ep.rule,
                        subject=ep.subject,
                        summary=ep.summary,
                        values=values if isinstance(values, dict) else {},
                        started=ep.started_at.timestamp(),
                        last_seen=ep.last_seen_at.timestamp(),
                        repeats=ep.repeat_count,
                        level=level or 0,
                        # An episode grouped into another's ticket has no ticket of its
                        # own: its escalations then change the episode row only.
                        ticket_ref=ref or episode_ref(ep.fingerprint, ep.occurrence),
                    )
                )
    except DBAPIError as exc:
        raise RulesTransientError(f"cannot read open episodes: {exc.orig}", reason="db") from exc
    return out


def load_silences(sessions: sessionmaker[Session], now: float) -> list[ActiveSilence]:
    """Silences not yet over and not expired by hand. Raises :class:`RulesTransientError`."""
    try:
        with sessions() as session:
            rows = session.execute(
                select(Silence.machine_id, Silence.rule, Silence.starts_at, Silence.ends_at).where(
                    Silence.ends_at > _dt(now), Silence.expired_by.is_(None)
                )
            ).all()
    except DBAPIError as exc:
        raise RulesTransientError(f"cannot read silences: {exc.orig}", reason="db") from exc
    return [ActiveSilence(m, r, s.timestamp(), e.timestamp()) for m, r, s, e in rows]
