"""The delivery outbox: rows in ``notify_deliveries``, claimed, sent, retried, dead-lettered.

In ``core`` because two packages send from it: ``notify`` (e-mail, Teams) and ``plex``
(follow-up notes on Plex tickets); the dispatcher in ``notify`` writes it.

Like the ticket outbox (``plex/outbox.py``), the database is the truth. ``enqueue`` writes a
delivery and its items (one per ticket event carried) in the caller's transaction; the
items' unique ``(item_key, receiver, integration)`` refuses a second message with the same
event for the same receiver. A sender ``claim``s due rows (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL), sends, and records the outcome only while it still holds the claim. A row
left ``sending`` by a killed sender is due again once its claim expires; it is resent with
the same key (the e-mail's Message-ID, the webhook's ``Idempotency-Key``), so a receiver
that keeps keys shows it once (docs/decisions/0321-delivery-outbox.md).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from core.config.notify import OutboxConfig
from core.db.schema import NotifyDelivery, NotifyDeliveryItem, utcnow
from core.lifecycle import backoff_delay

PENDING, SENDING, SENT, DEAD = "pending", "sending", "sent", "dead"


@dataclass(frozen=True)
class Item:
    """One ticket event a delivery carries."""

    key: str
    ticket_id: int | None = None


def enqueue(
    session: Session,
    *,
    key: str,
    receiver: str,
    integration: str,
    items: Sequence[Item],
    payload: dict[str, Any],
    route: str = "",
    group_key: str = "",
    repeat: bool = False,
    now: datetime | None = None,
) -> NotifyDelivery:
    """Add a delivery and its items to ``session`` (flushed, not committed).

    Raises:
        sqlalchemy.exc.IntegrityError: on flush, when the key or an item was enqueued
            before (the caller's transaction must roll back: nothing is sent twice).
    """
    at = now or utcnow()
    row = NotifyDelivery(
        key=key,
        receiver=receiver,
        integration=integration,
        route=route,
        group_key=group_key,
        repeat=repeat,
        state=PENDING,
        attempts=0,
        next_attempt_at=at,
        payload=payload,
        created_at=at,
        updated_at=at,
    )
    session.add(row)
    session.flush()
    for item in items:
        session.add(
            NotifyDeliveryItem(
                delivery_id=row.id,
                item_key=item.key,
                receiver=receiver,
                integration=integration,
                ticket_id=item.ticket_id,
            )
        )
    session.flush()
    return row


def claim(
    sessions: sessionmaker[Session],
    cfg: OutboxConfig,
    worker: str,
    *,
    now: datetime | None = None,
    integrations: Sequence[str] | None = None,
) -> list[NotifyDelivery]:
    """Claim up to ``batch_size`` due deliveries for ``worker`` (attempts counted here)."""
    at = now or utcnow()
    due = or_(
        and_(NotifyDelivery.state == PENDING, NotifyDelivery.next_attempt_at <= at),
        and_(NotifyDelivery.state == SENDING, NotifyDelivery.claimed_until < at),
    )
    query = select(NotifyDelivery.id).where(due)
    if integrations is not None:
        query = query.where(NotifyDelivery.integration.in_(list(integrations)))
    query = query.order_by(NotifyDelivery.next_attempt_at, NotifyDelivery.id).limit(cfg.batch_size)
    with sessions() as session, session.begin():
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        ids = list(session.scalars(query))
        if not ids:
            return []
        session.execute(
            update(NotifyDelivery)
            .where(NotifyDelivery.id.in_(ids), due)
            .values(
                state=SENDING,
                claimed_by=worker,
                claimed_until=at + timedelta(seconds=cfg.claim_ttl_s),
                attempts=NotifyDelivery.attempts + 1,
                updated_at=at,
            )
            .execution_options(synchronize_session=False)
        )
        rows = session.scalars(
            select(NotifyDelivery)
            .where(NotifyDelivery.id.in_(ids), NotifyDelivery.claimed_by == worker)
            .order_by(NotifyDelivery.id)
        )
        return list(rows)


def _finish(
    sessions: sessionmaker[Session], row: NotifyDelivery, worker: str, **values: Any
) -> bool:
    with sessions() as session, session.begin():
        result = session.execute(
            update(NotifyDelivery)
            .where(
                NotifyDelivery.id == row.id,
                NotifyDelivery.state == SENDING,
                NotifyDelivery.claimed_by == worker,
            )
            .values(claimed_by=None, claimed_until=None, **values)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]  # CursorResult has it


def mark_sent(
    sessions: sessionmaker[Session], row: NotifyDelivery, worker: str, now: datetime
) -> bool:
    """Record a delivery as sent; False when the claim was lost meanwhile."""
    return _finish(sessions, row, worker, state=SENT, sent_at=now, updated_at=now, last_error=None)


def mark_failed(
    sessions: sessionmaker[Session],
    cfg: OutboxConfig,
    row: NotifyDelivery,
    worker: str,
    *,
    error: str,
    reason: str,
    transient: bool,
    now: datetime,
    rng: random.Random | None = None,
) -> str:
    """Retry later (with backoff and jitter) or dead-letter; the new state."""
    if transient and row.attempts < cfg.max_attempts:
        delay = backoff_delay(
            row.attempts - 1,
            base_s=cfg.backoff_s,
            cap_s=cfg.backoff_max_s,
            rng=rng or random.Random(),  # noqa: S311 - retry jitter, not a secret
        )
        state = PENDING
        values: dict[str, Any] = {"next_attempt_at": now + timedelta(seconds=delay)}
    else:
        state = DEAD
        values = {}
        if transient:
            reason = f"attempts_exhausted:{reason}"[:64]
    _finish(
        sessions,
        row,
        worker,
        state=state,
        last_error=error[:2000],
        last_error_reason=reason,
        updated_at=now,
        **values,
    )
    return state


def replay(sessions: sessionmaker[Session], ids: Sequence[int] | None, now: datetime) -> int:
    """Dead deliveries (these ids, or all) back to pending with fresh attempts."""
    query = update(NotifyDelivery).where(NotifyDelivery.state == DEAD)
    if ids is not None:
        query = query.where(NotifyDelivery.id.in_(list(ids)))
    with sessions() as session, session.begin():
        result = session.execute(
            query.values(
                state=PENDING, attempts=0, next_attempt_at=now, updated_at=now
            ).execution_options(synchronize_session=False)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]  # CursorResult has it


@dataclass(frozen=True)
class Depth:
    """Outbox depth and the age of its oldest due row, per receiver."""

    receiver: str
    integration: str
    due: int
    oldest_s: float
    dead: int


def depth(sessions: sessionmaker[Session], now: datetime) -> list[Depth]:
    """Unsent and dead deliveries per receiver and integration."""
    out: dict[tuple[str, str], list[Any]] = {}
    with sessions() as session:
        rows = session.execute(
            select(
                NotifyDelivery.receiver,
                NotifyDelivery.integration,
                NotifyDelivery.state,
                NotifyDelivery.created_at,
            ).where(NotifyDelivery.state.in_([PENDING, SENDING, DEAD]))
        ).all()
    for receiver, integration, state, created in rows:
        entry = out.setdefault((receiver, integration), [0, 0.0, 0])
        if state == DEAD:
            entry[2] += 1
        else:
            entry[0] += 1
            entry[1] = max(entry[1], (now - created).total_seconds())
    return [Depth(r, i, e[0], e[1], e[2]) for (r, i), e in sorted(out.items())]
