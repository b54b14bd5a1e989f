"""Database reads (and the few small writes) behind the boards, the pages and the API.

Plain SQLAlchemy 2 queries on the system-of-record tables defined in ``core.db.schema``,
written to run the same on SQLite and PostgreSQL. Every datetime column is
``core.db.schema.UtcDateTime``: rows come back with UTC attached on every database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.db.schema import Episode, ReportRequestRow, Silence, Ticket, TicketEvent
from core.model import EpisodeState
from web.errors import NotFound

OPEN_EPISODE_STATES = (EpisodeState.PENDING.value, EpisodeState.FIRING.value)


def episodes(
    session: Session,
    *,
    open_only: bool = False,
    state: str | None = None,
    machine: str | None = None,
    limit: int = 100,
) -> list[Episode]:
    """Episodes, newest first; ``open_only`` keeps pending and firing ones."""
    query = select(Episode)
    if open_only:
        query = query.where(Episode.state.in_(OPEN_EPISODE_STATES))
    if state:
        query = query.where(Episode.state == state)
    if machine:
        query = query.where(Episode.machine_id == machine)
    query = query.order_by(Episode.started_at.desc(), Episode.id.desc()).limit(limit)
    return list(session.scalars(query))


def get_episode(session: Session, episode_id: int) -> Episode:
    episode = session.get(Episode, episode_id)
    if episode is None:
        raise NotFound(f"There is no episode {episode_id}.")
    return episode


def tickets(
    session: Session,
    *,
    state: str | None = None,
    machine: str | None = None,
    reporter: str | None = None,
    episode_id: int | None = None,
    open_only: bool = False,
    limit: int = 100,
) -> list[Ticket]:
    """Tickets, newest first, filtered by state, machine, reporter (badge) or episode."""
    query = select(Ticket)
    if episode_id is not None:
        query = query.where(Ticket.episode_id == episode_id)
    if state:
        query = query.where(Ticket.state == state)
    if open_only:
        query = query.where(Ticket.state.not_in(("closed", "cancelled")))
    if machine:
        query = query.where(Ticket.machine_id == machine)
    if reporter:
        query = query.where(Ticket.reporter == reporter)
    query = query.order_by(Ticket.created_at.desc(), Ticket.id.desc()).limit(limit)
    return list(session.scalars(query))


def get_ticket(session: Session, ticket_id: int) -> Ticket:
    ticket = session.get(Ticket, ticket_id)
    if ticket is None:
        raise NotFound(f"There is no ticket {ticket_id}.")
    return ticket


def ticket_events(session: Session, ticket_id: int) -> list[TicketEvent]:
    """A ticket's history, oldest first."""
    query = (
        select(TicketEvent)
        .where(TicketEvent.ticket_id == ticket_id)
        .order_by(TicketEvent.at, TicketEvent.id)
    )
    return list(session.scalars(query))


def silences(
    session: Session, *, now: datetime, include_ended: bool = False, limit: int = 100
) -> list[Silence]:
    """Silences that have not ended (or all, newest first with ``include_ended``)."""
    query = select(Silence)
    if not include_ended:
        query = query.where(Silence.ends_at > now)
    query = query.order_by(Silence.ends_at.desc(), Silence.id.desc()).limit(limit)
    return list(session.scalars(query))


@dataclass(frozen=True)
class MachineWork:
    """What is open on a machine, for its tile: episodes, tickets, the highest level."""

    episodes: int = 0
    tickets: int = 0
    level: int = 0


def machine_work(session: Session) -> dict[str, MachineWork]:
    """Machine id -> its open episodes, open tickets and their highest escalation level.

    Two grouped queries, whatever the number of machines (the board shows them all).
    """
    open_episodes = dict(
        session.execute(
            select(Episode.machine_id, func.count())
            .where(Episode.state.in_(OPEN_EPISODE_STATES))
            .group_by(Episode.machine_id)
        ).all()
    )
    ticket_rows = session.execute(
        select(Ticket.machine_id, func.count(), func.max(Ticket.escalation_level))
        .where(Ticket.state.not_in(("closed", "cancelled")))
        .group_by(Ticket.machine_id)
    ).all()
    open_tickets = {m: (n, level or 0) for m, n, level in ticket_rows}
    out: dict[str, MachineWork] = {}
    for machine in set(open_episodes) | set(open_tickets):
        n_tickets, level = open_tickets.get(machine, (0, 0))
        out[str(machine)] = MachineWork(
            episodes=int(open_episodes.get(machine, 0)), tickets=int(n_tickets), level=int(level)
        )
    return out


def active_silences(session: Session, *, now: datetime) -> list[Silence]:
    """The silences in force now (started, not ended)."""
    query = select(Silence).where(Silence.starts_at <= now, Silence.ends_at > now)
    return list(session.scalars(query.order_by(Silence.ends_at.desc())))


def covering_silence(active: list[Silence], machine: str, rule: str) -> Silence | None:
    """The silence that mutes ``rule`` on ``machine`` (the longest), as the rules engine
    matches them: an empty machine or rule in a silence matches any."""
    for row in active:  # longest first
        if row.machine_id in (None, machine) and row.rule in (None, rule):
            return row
    return None


def ticket_silence(session: Session, ticket: Ticket, *, now: datetime) -> Silence | None:
    """The silence holding back the ticket's episode now (its repeats and escalations),
    or None: a manual ticket, a closed episode, or no silence matching it."""
    if ticket.episode_id is None:
        return None
    episode = session.get(Episode, ticket.episode_id)
    if episode is None or episode.state not in OPEN_EPISODE_STATES:
        return None
    return covering_silence(active_silences(session, now=now), episode.machine_id, episode.rule)


def silenced_machines(session: Session, *, now: datetime) -> dict[str, datetime]:
    """Machine id -> when its current machine-wide silence ends (for the board)."""
    query = select(Silence).where(
        Silence.starts_at <= now, Silence.ends_at > now, Silence.machine_id.is_not(None)
    )
    out: dict[str, datetime] = {}
    for row in session.scalars(query):
        ends = row.ends_at
        assert row.machine_id is not None  # filtered in the query
        if row.rule is None and (row.machine_id not in out or ends > out[row.machine_id]):
            out[row.machine_id] = ends
    return out


def expire_silence(session: Session, silence_id: int, *, by: str, now: datetime) -> Silence:
    """End a silence now (kept for the record, with who ended it); commits."""
    row = session.get(Silence, silence_id)
    if row is None:
        raise NotFound(f"There is no silence {silence_id}.")
    if row.ends_at > now:
        row.ends_at = now
        row.expired_by = by
        session.commit()
    return row


def rule_names(session: Session, limit: int = 200) -> list[str]:
    """Rule names seen in episodes, for the silence form's suggestions."""
    query = select(Episode.rule).distinct().order_by(Episode.rule).limit(limit)
    return [r for r in session.scalars(query) if r]


def report_requests(session: Session, *, limit: int = 50) -> list[ReportRequestRow]:
    """The report queue, newest first (the print-queue view)."""
    query = (
        select(ReportRequestRow)
        .order_by(ReportRequestRow.created_at.desc(), ReportRequestRow.id.desc())
        .limit(limit)
    )
    return list(session.scalars(query))


def get_report_request(session: Session, request_id: str) -> ReportRequestRow:
    row = session.get(ReportRequestRow, request_id)
    if row is None:
        raise NotFound(f"There is no report request {request_id}.")
    return row
