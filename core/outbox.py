"""Putting a ticket into the Plex outbox: the one way rules and the web form file tickets.

The caller passes its open session; the ticket row (and, for automatic tickets, the
episode row the caller added to the same session) commit together or not at all. The
``external_ref`` is the ticket's idempotency key in Plex: derived from the episode for
automatic tickets (so a replay computes the same one and hits the unique constraint), from
the submit key for an operator's ticket (the form's one-time token or the API's
``Idempotency-Key``: a second tap or a retried request finds the first ticket), or random.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime

from sqlalchemy.orm import Session

from core.config.machines import Machine
from core.db.schema import Ticket, TicketEvent, utcnow
from core.model import Severity, TicketState

#: Plex-side length limit we keep external references under (a short, searchable token).
EXTERNAL_REF_LEN = 24


def episode_ref(fingerprint: str, occurrence: int) -> str:
    """The external reference of an episode's ticket: stable across replays."""
    digest = hashlib.sha256(f"{fingerprint}#{occurrence}".encode()).hexdigest()
    return f"RS-{digest[: EXTERNAL_REF_LEN - 3]}"


def submit_ref(user: str, key: str) -> str:
    """The external reference of an operator's ticket filed with a submit key.

    Scoped by the user, so one user's key can never name another's ticket.
    """
    digest = hashlib.sha256(f"submit:{user}:{key}".encode()).hexdigest()
    return f"RS-{digest[: EXTERNAL_REF_LEN - 3]}"


def operator_ref() -> str:
    """A fresh external reference for a manually filed ticket."""
    return f"RS-{uuid.uuid4().hex[: EXTERNAL_REF_LEN - 3]}"


def add_ticket(
    session: Session,
    *,
    machine: Machine,
    source: str,
    title: str,
    description: str,
    severity: Severity | str = Severity.MEDIUM,
    kind: str = "maintenance_work_request",
    category: str = "",
    reporter: str = "",
    episode_id: int | None = None,
    external_ref: str | None = None,
    now: datetime | None = None,
) -> Ticket:
    """Add a pending ticket (and its ``created`` event) to ``session``; flushes, no commit.

    Raises ``sqlalchemy.exc.IntegrityError`` on flush when ``external_ref`` exists already:
    for an automatic ticket that means a replay, and the caller rolls back.
    """
    at = now or utcnow()
    ticket = Ticket(
        external_ref=external_ref or operator_ref(),
        source=source,
        kind=kind,
        episode_id=episode_id,
        machine_id=machine.id,
        pcn=machine.pcn,
        workcenter_key=machine.workcenter_key,
        category=category,
        severity=str(severity),
        title=title[:256],
        description=description,
        reporter=reporter,
        state=TicketState.PENDING.value,
        next_attempt_at=at,
        created_at=at,
        updated_at=at,
    )
    session.add(ticket)
    session.flush()
    session.add(TicketEvent(ticket_id=ticket.id, at=at, event="created", detail=source))
    return ticket
