"""Operations alerts for RepSys itself, delivered to ``notify.admin_receiver``.

A metric alone reaches nobody when no Prometheus watches (the embedded default). Each
pass looks for:

- ``delivery_dead``: a delivery dead-lettered (not the admin's own: no alert loops);
- ``outbox_stuck``: a delivery still unsent after ``notify.outbox.max_age_s``;
- ``plex_refusing``: tickets waiting on Plex after 3 or more failed calls (401, 5xx,
  timeouts: Plex refuses or cannot be reached).

A dead-lettered *ticket* is routed by the dispatcher (its ``dead`` event, ``event=ops``).
Each alert is one delivery to each integration of the admin receiver, keyed so that it
is sent once per subject (the dead delivery) or once an hour (a condition still true):
the outbox's unique items do the deduplication.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from core import deliveries
from core.config.notify import NotifyConfig
from core.db.schema import NotifyDelivery, Ticket, utcnow
from core.logs import get_logger
from core.model import TicketState

log = get_logger(__name__)

#: Failed calls after which a waiting ticket counts as Plex refusing.
PLEX_FAILED_ATTEMPTS = 3


@dataclass(frozen=True)
class OpsAlert:
    """One operations alert: ``key`` is its once-only identity."""

    name: str
    key: str
    title: str
    detail: str


class OpsCheck:
    """Finds operations problems and enqueues alerts for the admin receiver."""

    def __init__(self, cfg: NotifyConfig, sessions: sessionmaker[Session]) -> None:
        self.cfg = cfg
        self.sessions = sessions

    def find(self, now: datetime) -> list[OpsAlert]:
        """The alerts true at ``now`` (pure reads)."""
        admin = self.cfg.admin_receiver
        hour = now.strftime("%Y%m%d%H")
        out: list[OpsAlert] = []
        with self.sessions() as session:
            dead = session.scalars(
                select(NotifyDelivery).where(
                    NotifyDelivery.state == deliveries.DEAD, NotifyDelivery.receiver != admin
                )
            )
            for row in dead:
                out.append(
                    OpsAlert(
                        "delivery_dead",
                        f"ops:delivery_dead:{row.id}:{row.updated_at.isoformat()}",
                        f"a {row.integration} delivery to {row.receiver} was dead-lettered",
                        f"{row.last_error_reason}: {row.last_error}",
                    )
                )
            limit = now - timedelta(seconds=self.cfg.outbox.max_age_s)
            stuck = session.execute(
                select(NotifyDelivery.receiver, NotifyDelivery.integration, func.count())
                .where(
                    NotifyDelivery.state.in_([deliveries.PENDING, deliveries.SENDING]),
                    NotifyDelivery.created_at < limit,
                    NotifyDelivery.receiver != admin,
                )
                .group_by(NotifyDelivery.receiver, NotifyDelivery.integration)
            ).all()
            for receiver, integration, count in stuck:
                out.append(
                    OpsAlert(
                        "outbox_stuck",
                        f"ops:outbox_stuck:{receiver}:{integration}:{hour}",
                        f"{count} {integration} deliveries to {receiver} older than "
                        f"{self.cfg.outbox.max_age_s:g} s",
                        "The receiver refuses or cannot be reached: see repsys notify outbox list.",
                    )
                )
            refusing = session.execute(
                select(Ticket.last_error_reason, func.count())
                .where(
                    Ticket.state == TicketState.PENDING.value,
                    Ticket.attempts >= PLEX_FAILED_ATTEMPTS,
                    Ticket.last_error_reason.is_not(None),
                )
                .group_by(Ticket.last_error_reason)
            ).all()
            if refusing:
                reasons = ", ".join(f"{reason} x{n}" for reason, n in sorted(refusing))
                out.append(
                    OpsAlert(
                        "plex_refusing",
                        f"ops:plex_refusing:{hour}",
                        "Plex refuses calls: tickets are waiting",
                        f"Tickets retried {PLEX_FAILED_ATTEMPTS}+ times, by reason: {reasons}",
                    )
                )
        return out

    def run_once(self, now: datetime | None = None) -> list[OpsAlert]:
        """Enqueue the alerts not sent before; the ones enqueued now."""
        at = now or utcnow()
        admin = self.cfg.receiver(self.cfg.admin_receiver) if self.cfg.admin_receiver else None
        if admin is None or not admin.integrations():
            return []
        sent: list[OpsAlert] = []
        for alert in self.find(at):
            try:
                with self.sessions() as session, session.begin():
                    for integration in admin.integrations():
                        digest = hashlib.sha256(f"{integration}|{alert.key}".encode()).hexdigest()
                        deliveries.enqueue(
                            session,
                            key=f"{admin.name}.{integration}.{digest[:32]}",
                            receiver=admin.name,
                            integration=integration,
                            items=[deliveries.Item(alert.key)],
                            payload={
                                "notices": [
                                    {
                                        "event": "ops",
                                        "alertname": alert.name,
                                        "title": alert.title,
                                        "detail": alert.detail,
                                        "at": at.isoformat(),
                                    }
                                ],
                                "group": f"alertname={alert.name}",
                            },
                            route="ops",
                            group_key=f"alertname={alert.name}",
                            now=at,
                        )
            except IntegrityError:
                continue  # sent before: once per subject or per hour
            sent.append(alert)
            log.warning("ops_alert", alertname=alert.name, title=alert.title)
        return sent
