"""The outbox sender: every ticket reaches Plex exactly once.

Exactly once, here, is "at least once, plus a lookup before every resend": a ticket is
sent without asking only on its very first try. Any later try, after any failure
(a timeout after sending, a 5xx, a crash that left the row ``sending``, an operator's
replay of a dead ticket), first asks Plex for a ticket carrying its external reference
and records that one if it exists. The one window this cannot close is a request still
running inside Plex when the lookup happens; ``sender.ambiguous_delay_s`` (and the claim
TTL for crashed senders) keep the lookup well after any such request has finished.

Failures, classified by plex/errors.py: transient ones go back to pending with jittered,
capped exponential backoff (at least the 429's Retry-After); rejected ones are dead-
lettered with their reason; a ticket that keeps failing transiently is dead after
``sender.max_attempts`` with reason ``out_of_attempts``.
"""

from __future__ import annotations

import os
import random
import socket
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from core.config import RepsysConfig
from core.config.plex import claim_margin_s
from core.db.schema import Ticket, utcnow
from core.lifecycle import Stopper, backoff_delay
from core.logs import get_logger
from plex import outbox
from plex.actions import PlexActions
from plex.errors import PlexError, PlexRateLimitedError, PlexRejectedError
from plex.metrics import PlexMetrics

log = get_logger(__name__)


def sender_name() -> str:
    """``host:pid``: unique among live senders, readable in ``claimed_by``."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Sender:
    """Claims due outbox rows and files them in Plex. ``run_once()`` is one pass."""

    def __init__(
        self,
        cfg: RepsysConfig,
        sessions: sessionmaker[Session],
        actions: PlexActions,
        *,
        metrics: PlexMetrics | None = None,
        name: str | None = None,
        rng: random.Random | None = None,
        stopper: Stopper | None = None,
    ) -> None:
        self.cfg = cfg.plex.sender
        self.timeout_s = cfg.plex.operation_timeout_s
        self.max_wait_s = cfg.plex.rate_limit.max_wait_s
        self.sessions = sessions
        self.actions = actions
        self.metrics = metrics
        self.name = name or sender_name()
        self.rng = rng or random.Random()  # noqa: S311 - retry jitter, not crypto
        self.stopper = stopper or Stopper()

    def run_once(self, *, now: datetime | None = None) -> int:
        """Claim one batch of due rows and process them; the number of rows processed."""
        claimed = outbox.claim(
            self.sessions,
            self.name,
            batch=self.cfg.batch_size,
            ttl_s=self.cfg.claim_ttl_s,
            now=now,
        )
        done = 0
        for item in claimed:
            if self.stopper.stopped or not self._claim_fresh(item.ticket):
                # Too late to start a call safely under this claim: give the row back.
                outbox.release(self.sessions, item.ticket.id, self.name)
                continue
            self.process(item.ticket, recovered=item.recovered)
            done += 1
        return done

    def drain(self) -> int:
        """``run_once`` until no row is due (``repsys plex-sender --once``)."""
        total = 0
        while not self.stopper.stopped:
            n = self.run_once()
            if n == 0:
                break
            total += n
        return total

    def _claim_fresh(self, ticket: Ticket) -> bool:
        """The claim outlives one more call (its rate-limit wait and its timeout)."""
        if ticket.claimed_until is None:
            return False
        needed = timedelta(seconds=claim_margin_s(self.timeout_s, self.max_wait_s))
        return utcnow() + needed < ticket.claimed_until

    def process(self, ticket: Ticket, *, recovered: bool = False) -> str:
        """File one claimed ticket; the outcome (filed, found, retry, dead, lost)."""
        must_look = recovered or ticket.attempts > 1 or ticket.last_error is not None
        try:
            if must_look:
                found = self.actions.lookup(ticket)
                if found is not None:
                    return self._filed(
                        ticket,
                        found.number,
                        found.key,
                        found.instance_no,
                        found.status,
                        via="found by lookup",
                    )
            filed = self.actions.file(ticket)
            return self._filed(ticket, filed.number, filed.key, filed.instance_no, "", via="sent")
        except PlexRejectedError as exc:
            return self._dead(ticket, exc.reason, str(exc))
        except PlexError as exc:
            if ticket.attempts >= self.cfg.max_attempts:
                return self._dead(
                    ticket, "out_of_attempts", f"{ticket.attempts} attempts; last: {exc}"
                )
            delay = backoff_delay(
                ticket.attempts - 1,
                base_s=self.cfg.backoff_base_s,
                cap_s=self.cfg.backoff_cap_s,
                rng=self.rng,
            )
            if exc.ambiguous:
                delay = max(delay, self.cfg.ambiguous_delay_s)
            if isinstance(exc, PlexRateLimitedError):
                delay = max(delay, exc.retry_after_s)
            ok = outbox.mark_retry(
                self.sessions,
                ticket.id,
                self.name,
                error=str(exc),
                reason=exc.reason,
                delay_s=delay,
            )
            return self._count("retry" if ok else "lost", ticket)

    def _filed(
        self, ticket: Ticket, number: str, key: str, instance: str, status: str, *, via: str
    ) -> str:
        ok = outbox.mark_filed(
            self.sessions,
            ticket.id,
            self.name,
            number=number,
            key=key,
            instance_no=instance,
            status=status,
            via=via,
        )
        if ok:
            log.info(
                "plex_ticket_filed",
                ref=ticket.external_ref,
                ticket=ticket.id,
                plex_number=number,
                via=via,
            )
        return self._count(("found" if via != "sent" else "filed") if ok else "lost", ticket)

    def _dead(self, ticket: Ticket, reason: str, error: str) -> str:
        ok = outbox.mark_dead(self.sessions, ticket.id, self.name, error=error, reason=reason)
        if ok:
            log.warning(
                "plex_ticket_dead",
                ref=ticket.external_ref,
                ticket=ticket.id,
                reason=reason,
                error=error,
            )
            if self.metrics is not None:
                self.metrics.dead_letters.labels(reason).inc()
        return self._count("dead" if ok else "lost", ticket)

    def _count(self, outcome: str, ticket: Ticket) -> str:
        if outcome == "lost":
            log.warning(
                "plex_claim_lost", ref=ticket.external_ref, ticket=ticket.id, sender=self.name
            )
        if self.metrics is not None:
            self.metrics.tickets.labels(outcome).inc()
        return outcome

    def update_depth(self) -> None:
        """Refresh the outbox gauges (rows and oldest age per state)."""
        if self.metrics is None:
            return
        with self.sessions() as session:
            depth = outbox.depth(session)
        now = utcnow()
        for state in ("pending", "sending", "filed", "dead", "cancelled", "closed"):
            count, oldest = depth.get(state, (0, None))
            self.metrics.outbox_tickets.labels(state).set(count)
            age = (now - oldest).total_seconds() if oldest is not None else 0.0
            self.metrics.outbox_oldest_age_seconds.labels(state).set(age)


def describe(ticket: Ticket) -> dict[str, Any]:
    """A ticket as JSON-able fields (``repsys outbox show``, logs)."""
    return {c.name: getattr(ticket, c.name) for c in Ticket.__table__.columns}
