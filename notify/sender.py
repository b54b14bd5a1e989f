"""The delivery sender: claims due deliveries and sends them by e-mail or to Teams.

``run_once()`` sends one claimed batch; a process loops it (``repsys notify``). Plex
follow-up deliveries (integration ``plex``) are left to the Plex sender, which owns the
Plex client and its rate limit. Each outcome is recorded only while the claim is held
(``notify.outbox``); a failure is retried with backoff or dead-lettered with its reason.
"""

from __future__ import annotations

import random
import time
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from core import deliveries as outbox
from core.config.notify import NotifyConfig
from core.db.schema import NotifyDelivery, utcnow
from core.logs import get_logger
from notify.channels import EmailChannel, TeamsChannel, build_mail
from notify.chart import evidence_png
from notify.errors import NotifyError
from notify.metrics import NotifyMetrics
from notify.render import render

log = get_logger(__name__)

#: Integrations this sender sends; ``plex`` goes through the Plex sender.
INTEGRATIONS = ("email", "teams")


class DeliverySender:
    """Sends claimed deliveries of ``notify_deliveries``."""

    def __init__(
        self,
        cfg: NotifyConfig,
        sessions: sessionmaker[Session],
        *,
        name: str,
        metrics: NotifyMetrics | None = None,
        teams: TeamsChannel | None = None,
    ) -> None:
        self.cfg = cfg
        self.sessions = sessions
        self.name = name
        self.metrics = metrics
        self.email = EmailChannel(cfg.smtp)
        self.teams = teams or TeamsChannel()
        self.rng = random.Random()  # noqa: S311 - retry jitter, not a secret

    def run_once(self, now: datetime | None = None) -> int:
        """Claim and send one batch; the number of deliveries attempted."""
        rows = outbox.claim(
            self.sessions, self.cfg.outbox, self.name, now=now, integrations=INTEGRATIONS
        )
        for row in rows:
            self._send(row)
        return len(rows)

    def _send(self, row: NotifyDelivery) -> None:
        started = time.monotonic()
        try:
            self._deliver(row)
        except NotifyError as exc:
            self._failed(row, exc)
            return
        finally:
            if self.metrics is not None:
                self.metrics.latency.labels(row.integration).observe(time.monotonic() - started)
        if outbox.mark_sent(self.sessions, row, self.name, utcnow()):
            if self.metrics is not None:
                self.metrics.sent.labels(row.receiver, row.integration).inc()
            log.info("delivery_sent", receiver=row.receiver, integration=row.integration, id=row.id)

    def _deliver(self, row: NotifyDelivery) -> None:
        receiver = self.cfg.receiver(row.receiver)
        if receiver is None:
            raise NotifyError(
                f"receiver {row.receiver!r} is not configured",
                reason="unknown_receiver",
                transient=False,
            )
        message = render(row.payload)
        if row.integration == "email" and receiver.email is not None:
            chart = evidence_png(row.payload.get("evidence")) if row.payload.get("chart") else None
            mail = build_mail(self.cfg.smtp, row.key, receiver.email.to, message, chart)
            self.email.send(mail)
        elif row.integration == "teams" and receiver.teams is not None:
            secret = receiver.teams.webhook_url
            url = secret.get_secret_value() if secret is not None else receiver.teams.url
            self.teams.send(url, row.key, message)
        else:
            raise NotifyError(
                f"receiver {row.receiver!r} has no {row.integration} integration",
                reason="unknown_integration",
                transient=False,
            )

    def _failed(self, row: NotifyDelivery, exc: NotifyError) -> None:
        state = outbox.mark_failed(
            self.sessions,
            self.cfg.outbox,
            row,
            self.name,
            error=str(exc),
            reason=exc.reason,
            transient=exc.transient,
            now=utcnow(),
            rng=self.rng,
        )
        if self.metrics is not None:
            self.metrics.failed.labels(row.receiver, row.integration, exc.reason).inc()
            if state == outbox.DEAD:
                self.metrics.dead.labels(row.receiver, row.integration, exc.reason).inc()
        log.warning(
            "delivery_failed",
            receiver=row.receiver,
            integration=row.integration,
            reason=exc.reason,
            state=state,
            id=row.id,
        )

    def close(self) -> None:
        self.teams.close()
