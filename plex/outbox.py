"""The outbox table as the sender and operations staff change it.

Claiming is safe with any number of senders: candidate rows are selected with
``FOR UPDATE SKIP LOCKED`` where the database has it (PostgreSQL, MySQL), so two senders
skip each other's rows instead of waiting; then each row is taken with a compare-and-set
``UPDATE`` (its state and attempt count unchanged since the select), which also makes two
senders on SQLite safe, if slower. Every later change (filed, retry, dead) is again a
compare-and-set on ``claimed_by``: a sender that lost its claim (paused past
``claimed_until``) cannot overwrite the row another sender now owns.

Every change writes a ``ticket_events`` row in the same transaction: the ticket's history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from core.db.schema import Ticket, TicketEvent, utcnow
from core.model import TicketState

#: Databases whose SELECT ... FOR UPDATE SKIP LOCKED SQLAlchemy renders.
SKIP_LOCKED_DIALECTS = frozenset({"postgresql", "mysql", "mariadb", "oracle"})


class OutboxError(ValueError):
    """An operator asked for something the row's state does not allow."""


@dataclass(frozen=True)
class Claimed:
    """A claimed row: what the sender needs, detached from any session."""

    ticket: Ticket
    recovered: bool  # it was ``sending`` under a dead sender's expired claim


def _event(session: Session, ticket_id: int, event: str, detail: str, at: datetime) -> None:
    session.add(TicketEvent(ticket_id=ticket_id, at=at, event=event, detail=detail[:4000]))


def claim(
    sessions: sessionmaker[Session],
    sender: str,
    *,
    batch: int,
    ttl_s: float,
    now: datetime | None = None,
) -> list[Claimed]:
    """Take up to ``batch`` due rows for ``sender`` (state ``sending``, attempts + 1)."""
    at = now or utcnow()
    due = or_(
        and_(Ticket.state == TicketState.PENDING.value, Ticket.next_attempt_at <= at),
        and_(Ticket.state == TicketState.SENDING.value, Ticket.claimed_until < at),
    )
    claimed: list[Claimed] = []
    with sessions() as session, session.begin():
        stmt = select(Ticket).where(due).order_by(Ticket.next_attempt_at, Ticket.id).limit(batch)
        if session.get_bind().dialect.name in SKIP_LOCKED_DIALECTS:
            stmt = stmt.with_for_update(skip_locked=True)
        for row in session.scalars(stmt).all():
            was, attempts, holder = row.state, row.attempts, row.claimed_by
            result = session.execute(
                update(Ticket)
                .where(Ticket.id == row.id, Ticket.state == was, Ticket.attempts == attempts)
                .values(
                    state=TicketState.SENDING.value,
                    claimed_by=sender,
                    claimed_until=at + timedelta(seconds=ttl_s),
                    attempts=attempts + 1,
                    updated_at=at,
                )
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]  # CursorResult has it
                continue  # another sender took it between our select and update
            recovered = was == TicketState.SENDING.value
            detail = f"{sender} attempt {attempts + 1}"
            if recovered:
                detail += f", recovered from {holder} whose claim expired"
            _event(session, row.id, "claimed", detail, at)
            session.refresh(row)
            claimed.append(Claimed(row, recovered))
    return claimed


def _owned(ticket_id: int, sender: str) -> list[object]:
    return [
        Ticket.id == ticket_id,
        Ticket.state == TicketState.SENDING.value,
        Ticket.claimed_by == sender,
    ]


def _finish(
    sessions: sessionmaker[Session],
    ticket_id: int,
    sender: str,
    *,
    event: str,
    detail: str,
    values: dict[str, object],
    at: datetime,
) -> bool:
    with sessions() as session, session.begin():
        result = session.execute(
            update(Ticket)
            .where(*_owned(ticket_id, sender))  # type: ignore[arg-type]  # SQL expressions
            .values(claimed_by=None, claimed_until=None, updated_at=at, **values)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]  # CursorResult has it
            return False
        _event(session, ticket_id, event, detail, at)
    return True


def mark_filed(
    sessions: sessionmaker[Session],
    ticket_id: int,
    sender: str,
    *,
    number: str,
    key: str,
    instance_no: str,
    status: str = "",
    via: str = "sent",
    now: datetime | None = None,
) -> bool:
    """Plex has the ticket. False when the claim was lost (someone else owns the row)."""
    at = now or utcnow()
    values: dict[str, object] = {
        "state": TicketState.FILED.value,
        "plex_number": number,
        "plex_key": key,
        "plex_instance": instance_no or None,
        "plex_status": status or "Open",
        "filed_at": at,
        "status_checked_at": at,
    }
    detail = f"{via}: Plex {number} (key {key}, instance {instance_no or '-'})"
    return _finish(sessions, ticket_id, sender, event="filed", detail=detail, values=values, at=at)


def mark_retry(
    sessions: sessionmaker[Session],
    ticket_id: int,
    sender: str,
    *,
    error: str,
    reason: str,
    delay_s: float,
    now: datetime | None = None,
) -> bool:
    """A transient failure: back to pending, due again after ``delay_s``."""
    at = now or utcnow()
    values: dict[str, object] = {
        "state": TicketState.PENDING.value,
        "next_attempt_at": at + timedelta(seconds=delay_s),
        "last_error": error,
        "last_error_reason": reason,
    }
    detail = f"{reason}: {error} (retry in {delay_s:.1f} s)"
    return _finish(sessions, ticket_id, sender, event="retry", detail=detail, values=values, at=at)


def mark_dead(
    sessions: sessionmaker[Session],
    ticket_id: int,
    sender: str,
    *,
    error: str,
    reason: str,
    now: datetime | None = None,
) -> bool:
    """Rejected (or out of attempts): dead-lettered with the reason, replayable."""
    at = now or utcnow()
    values: dict[str, object] = {
        "state": TicketState.DEAD.value,
        "last_error": error,
        "last_error_reason": reason,
    }
    detail = f"{reason}: {error}"
    return _finish(sessions, ticket_id, sender, event="dead", detail=detail, values=values, at=at)


def release(
    sessions: sessionmaker[Session], ticket_id: int, sender: str, *, now: datetime | None = None
) -> bool:
    """Give a claimed row back untried (the claim is too old to start a call safely)."""
    at = now or utcnow()
    with sessions() as session, session.begin():
        result = session.execute(
            update(Ticket)
            .where(*_owned(ticket_id, sender))  # type: ignore[arg-type]  # SQL expressions
            .values(
                state=TicketState.PENDING.value,
                claimed_by=None,
                claimed_until=None,
                attempts=Ticket.attempts - 1,
                updated_at=at,
            )
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]  # CursorResult


# --- operations staff (repsys outbox ...) ---------------------------------------------


def find(session: Session, ident: str) -> Ticket | None:
    """A ticket by id or by external reference."""
    if ident.isdigit():
        return session.get(Ticket, int(ident))
    return session.scalars(select(Ticket).where(Ticket.external_ref == ident)).first()


def replay(session: Session, ticket: Ticket, *, who: str, now: datetime | None = None) -> None:
    """A dead ticket goes back to pending with a fresh attempt budget.

    ``last_error`` stays: the sender then looks the ticket up in Plex before sending it,
    in case the failure that killed it came after Plex had committed it.
    """
    if ticket.state != TicketState.DEAD.value:
        raise OutboxError(f"ticket {ticket.id} is {ticket.state}; only dead tickets replay")
    at = now or utcnow()
    ticket.state = TicketState.PENDING.value
    ticket.attempts = 0
    ticket.next_attempt_at = at
    ticket.updated_at = at
    _event(session, ticket.id, "replayed", f"by {who}", at)


def cancel(session: Session, ticket: Ticket, *, who: str, now: datetime | None = None) -> None:
    """Withdraw a ticket that is not in Plex yet (pending or dead)."""
    if ticket.state not in (TicketState.PENDING.value, TicketState.DEAD.value):
        raise OutboxError(
            f"ticket {ticket.id} is {ticket.state}; only pending or dead tickets can be cancelled"
        )
    at = now or utcnow()
    ticket.state = TicketState.CANCELLED.value
    ticket.updated_at = at
    _event(session, ticket.id, "cancelled", f"by {who}", at)


def depth(session: Session) -> dict[str, tuple[int, datetime | None]]:
    """State -> (rows, oldest created_at) for the outbox metrics."""
    rows = session.execute(
        select(Ticket.state, func.count(), func.min(Ticket.created_at)).group_by(Ticket.state)
    ).all()
    return {state: (int(count), oldest) for state, count, oldest in rows}
