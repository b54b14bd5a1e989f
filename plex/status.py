"""Status follow-up: filed tickets' state read back from Plex, and their escalation.

Maintenance closes tickets in Plex, not in RepSys. On a schedule the sender reads the
status of the filed tickets checked longest ago; a ticket closed in Plex becomes
``closed`` here and resolves its episode, so the board and the escalation stop. The age
of a ticket still open raises its ``escalation_level`` at the configured thresholds
(``plex.status.escalate_after_h``), which the notifications and boards read.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from core.config.plex import StatusFollowUpConfig
from core.db.schema import Episode, Ticket, TicketEvent, utcnow
from core.logs import get_logger
from core.model import EpisodeState, TicketState
from plex.actions import PlexActions
from plex.errors import PlexError
from plex.metrics import PlexMetrics

log = get_logger(__name__)


def escalation_level(age_h: float, thresholds: list[float]) -> int:
    """How many thresholds (hours, ascending) an open ticket of this age has passed."""
    return sum(1 for h in thresholds if age_h >= h)


class StatusFollowUp:
    """``run_once()`` checks one batch of filed tickets against Plex."""

    def __init__(
        self,
        cfg: StatusFollowUpConfig,
        sessions: sessionmaker[Session],
        actions: PlexActions,
        *,
        metrics: PlexMetrics | None = None,
    ) -> None:
        self.cfg = cfg
        self.sessions = sessions
        self.actions = actions
        self.metrics = metrics

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.status_checks.labels(outcome).inc()

    def run_once(self, *, now: datetime | None = None) -> int:
        """Check up to ``batch_size`` filed tickets; the number checked."""
        with self.sessions() as session:
            tickets = list(
                session.scalars(
                    select(Ticket)
                    .where(Ticket.state == TicketState.FILED.value)
                    .order_by(Ticket.status_checked_at.asc().nulls_first(), Ticket.id)
                    .limit(self.cfg.batch_size)
                )
            )
        checked = 0
        for ticket in tickets:
            try:
                status = self.actions.status(ticket)
            except PlexError as exc:
                # One ticket's failure must not stop the sweep; the next sweep retries it.
                log.warning(
                    "plex_status_failed",
                    ref=ticket.external_ref,
                    ticket=ticket.id,
                    reason=exc.reason,
                )
                self._count("error")
                continue
            self._apply(
                ticket,
                status.status if status else None,
                bool(status and status.closed),
                now or utcnow(),
            )
            checked += 1
        return checked

    def _apply(self, ticket: Ticket, status: str | None, closed: bool, at: datetime) -> None:
        with self.sessions() as session, session.begin():
            values: dict[str, object] = {"status_checked_at": at}
            events: list[tuple[str, str]] = []
            if status is None:
                self._count("missing")
                log.warning(
                    "plex_ticket_missing",
                    ref=ticket.external_ref,
                    ticket=ticket.id,
                    plex_number=ticket.plex_number,
                )
            else:
                values["plex_status"] = status
                if status != (ticket.plex_status or ""):
                    events.append(("status", f"Plex status {status}"))
            if closed:
                self._count("closed")
                values.update(state=TicketState.CLOSED.value, closed_at=at)
                events.append(("closed", f"closed in Plex ({status})"))
            else:
                if status is not None:
                    self._count("open")
                since = ticket.filed_at or ticket.created_at
                level = escalation_level(
                    (at - since).total_seconds() / 3600, self.cfg.escalate_after_h
                )
                if level > ticket.escalation_level:
                    values["escalation_level"] = level
                    events.append(("escalated", f"level {level}"))
            result = session.execute(
                update(Ticket)
                .where(Ticket.id == ticket.id, Ticket.state == TicketState.FILED.value)
                .values(updated_at=at, **values)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]  # CursorResult has it
                return  # changed meanwhile (an operator); the next sweep sees it
            for event, detail in events:
                session.add(TicketEvent(ticket_id=ticket.id, at=at, event=event, detail=detail))
            if closed and ticket.episode_id is not None:
                session.execute(
                    update(Episode)
                    .where(
                        Episode.id == ticket.episode_id,
                        Episode.state != EpisodeState.RESOLVED.value,
                    )
                    .values(state=EpisodeState.RESOLVED.value, resolved_at=at)
                    .execution_options(synchronize_session=False)
                )
            if closed:
                log.info(
                    "plex_ticket_closed",
                    ref=ticket.external_ref,
                    ticket=ticket.id,
                    plex_number=ticket.plex_number,
                )
