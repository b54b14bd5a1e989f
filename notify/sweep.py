"""The escalation sweep: writes ``tickets.escalation_level`` from the policy, periodically.

Each sweep reads the filed (open in Plex) tickets, finds each one's policy
(``notify.escalation.policies``, by category and severity), the time Plex last changed
its status (the latest ``status`` ticket event the Plex status follow-up wrote) and the
level reached now in plant working time. A higher level is written with a guarded
``UPDATE ... WHERE escalation_level < new`` (levels only rise, whoever else raises them)
and an ``escalated`` ticket event, which the delivery dispatcher routes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from core.calendar import WorkCalendar
from core.config.notify import EscalationConfig
from core.db.schema import Ticket, TicketEvent, utcnow
from core.logs import get_logger
from core.model import TicketState
from notify.escalation import level, policy_for

log = get_logger(__name__)


@dataclass(frozen=True)
class Raised:
    """One ticket raised by a sweep."""

    ticket_id: int
    machine: str
    level: int


class EscalationSweep:
    """``run_once(now)`` raises every open ticket that has climbed since the last sweep."""

    def __init__(
        self, cfg: EscalationConfig, calendar: WorkCalendar, sessions: sessionmaker[Session]
    ) -> None:
        self.cfg = cfg
        self.calendar = calendar
        self.sessions = sessions

    def run_once(self, now: datetime | None = None) -> list[Raised]:
        """One sweep; the tickets raised."""
        at = now or utcnow()
        raised: list[Raised] = []
        last_id = 0
        while True:
            with self.sessions() as session:
                batch = self._batch(session, last_id)
            if not batch:
                return raised
            for ticket, changed in batch:
                last_id = ticket.id
                new = self._level(ticket, changed, at)
                if new > ticket.escalation_level and self._raise(ticket, new, at):
                    raised.append(Raised(ticket.id, ticket.machine_id, new))

    def _batch(self, session: Session, after_id: int) -> list[tuple[Ticket, datetime | None]]:
        changed = (
            select(func.max(TicketEvent.at))
            .where(TicketEvent.ticket_id == Ticket.id, TicketEvent.event == "status")
            .scalar_subquery()
        )
        rows = session.execute(
            select(Ticket, changed)
            .where(Ticket.state == TicketState.FILED.value, Ticket.id > after_id)
            .order_by(Ticket.id)
            .limit(self.cfg.batch_size)
        ).all()
        return [(row[0], row[1]) for row in rows]

    def _level(self, ticket: Ticket, changed: datetime | None, now: datetime) -> int:
        policy = policy_for(self.cfg.policies, ticket.category, ticket.severity)
        if policy is None:
            return 0
        filed = ticket.filed_at or ticket.created_at
        return level(policy, self.calendar, filed, changed, now)

    def _raise(self, ticket: Ticket, new: int, at: datetime) -> bool:
        with self.sessions() as session, session.begin():
            result = session.execute(
                update(Ticket)
                .where(
                    Ticket.id == ticket.id,
                    Ticket.state == TicketState.FILED.value,
                    Ticket.escalation_level < new,
                )
                .values(escalation_level=new, updated_at=at)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]  # CursorResult has it
                return False  # closed or raised meanwhile
            session.add(
                TicketEvent(ticket_id=ticket.id, at=at, event="escalated", detail=f"level {new}")
            )
        log.info("ticket_escalated", ticket=ticket.id, machine=ticket.machine_id, level=new)
        return True
