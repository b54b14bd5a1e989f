"""Plex follow-up: notes on filed tickets when they escalate, recur or clear; priority.

The ``notify`` dispatcher routes ticket events; a receiver with a ``plex:`` integration
gets deliveries in the shared delivery outbox (``core.deliveries``, integration ``plex``).
This sender, run by ``repsys plex-sender`` beside the ticket sender (it shares the Plex
client and its rate limit), claims them and calls ``plex.actions.follow_up``:

- a note per ticket event: "escalated to level 2", "recurred while open (3 repeats):
  <latest evidence>", "RepSys saw the condition clear";
- the priority raised to ``follow_up.raised_priority`` when the event's level reaches the
  receiver's ``raise_priority_at``.

Exactly once per note, as for tickets: every try but the first looks the ticket's notes
up and skips a note whose reference (``<receiver>/<ticket>:<event>:<n>``) is there.
A recurrence only ever adds a note: the rules escalate the open ticket, never file another.
"""

from __future__ import annotations

import random
import time
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from core import deliveries
from core.config import RepsysConfig
from core.config.plex import StatusFollowUpConfig
from core.db.schema import NotifyDelivery, Ticket, utcnow
from core.logs import get_logger
from plex.actions import PlexActions
from plex.errors import PlexError, PlexTransientError
from plex.metrics import PlexMetrics

log = get_logger(__name__)


def status_config(cfg: RepsysConfig) -> StatusFollowUpConfig:
    """The status follow-up's settings, without its wall-clock escalation when ``notify``
    escalates in working time (two writers would let the wall clock win on a weekend)."""
    if cfg.notify.escalation.enabled:
        return cfg.plex.status.model_copy(update={"escalate_after_h": []})
    return cfg.plex.status


def note_text(notice: dict[str, Any]) -> str:
    """The note for one routed ticket event (what a planner reads in Plex)."""
    event = notice.get("event", "")
    at = str(notice.get("at", ""))[:16].replace("T", " ") + " UTC"
    if event == "escalated":
        return f"RepSys {at}: open too long, escalated to level {notice.get('level', '?')}."
    if event == "recurred":
        count = int(notice.get("recurrences") or 0)
        evidence = str(notice.get("evidence_text") or notice.get("title") or "")
        return (
            f"RepSys {at}: the problem recurred while this ticket is open "
            f"({count} repeats). Latest: {evidence}"
        )[:2000]
    if event == "cleared":
        return f"RepSys {at}: the condition cleared (no longer seen on the machine)."
    if event == "filed":
        return f"RepSys {at}: filed by RepSys."
    return f"RepSys {at}: {event}."


class FollowUpSender:
    """Sends the ``plex`` deliveries of the delivery outbox."""

    def __init__(
        self,
        cfg: RepsysConfig,
        sessions: sessionmaker[Session],
        actions: PlexActions,
        *,
        name: str,
        metrics: PlexMetrics | None = None,
    ) -> None:
        self.cfg = cfg
        self.sessions = sessions
        self.actions = actions
        self.name = name
        self.metrics = metrics
        self.outbox = cfg.notify.outbox.model_copy(
            update={"batch_size": cfg.plex.actions.follow_up.batch_size}
        )
        self.rng = random.Random()  # noqa: S311 - retry jitter, not a secret

    def run_once(self, now: datetime | None = None) -> int:
        """Claim and send one batch; how many deliveries were attempted."""
        rows = deliveries.claim(
            self.sessions, self.outbox, self.name, now=now, integrations=["plex"]
        )
        for row in rows:
            started = time.monotonic()
            try:
                self._send(row)
            except PlexError as exc:
                state = deliveries.mark_failed(
                    self.sessions,
                    self.outbox,
                    row,
                    self.name,
                    error=str(exc),
                    reason=exc.reason,
                    transient=isinstance(exc, PlexTransientError),
                    now=utcnow(),
                    rng=self.rng,
                )
                log.warning("plex_followup_failed", reason=exc.reason, state=state, id=row.id)
                self._count("error")
                continue
            deliveries.mark_sent(self.sessions, row, self.name, utcnow())
            self._count("sent")
            log.info(
                "plex_followup_sent",
                receiver=row.receiver,
                id=row.id,
                seconds=round(time.monotonic() - started, 3),
            )
        return len(rows)

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.followups.labels(outcome).inc()

    def _send(self, row: NotifyDelivery) -> None:
        receiver = self.cfg.notify.receiver(row.receiver)
        spec = receiver.plex if receiver is not None else None
        if spec is None:
            return  # the receiver lost its plex integration since: nothing to do
        for notice in row.payload.get("notices", []):
            with self.sessions() as session:
                ticket = session.get(Ticket, int(notice.get("ticket", 0)))
            if ticket is None or not ticket.plex_key:
                continue  # not filed (dead or pending): no Plex ticket to follow up
            if spec.note:
                # One reference per (ticket event, receiver), as the outbox's items.
                ref = f"{row.receiver}/{notice.get('key') or row.key}"[:120]
                # A try after the first may follow a crash after Plex took the note.
                if row.attempts <= 1 or ref not in self.actions.note_refs(ticket):
                    self.actions.add_note(ticket, note_text(notice), ref)
            level = int(notice.get("level") or 0)
            if spec.raise_priority_at is not None and level >= spec.raise_priority_at:
                self.actions.set_priority(ticket, self.cfg.plex.actions.follow_up.raised_priority)
