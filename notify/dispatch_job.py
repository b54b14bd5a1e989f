"""The live dispatcher: ticket events from the database → routed, grouped deliveries.

Each ``run_once(now)`` locks the checkpoint row (``notify_state``, one dispatcher at a
time: a second one waits on the row lock), reads the ticket events written since its
cursor, turns the ones people care about into routed notices, cuts the deliveries due at
``now`` (``rules.routing.dispatch``) and enqueues one per receiver integration, all in one
transaction with the new checkpoint. A crash loses nothing and cuts nothing twice.

Which ticket events are routed, and as what (``event`` label):

| ticket event | routed as |
|---|---|
| ``filed`` (Plex has it) | ``filed`` |
| ``escalated`` with detail ``level N`` (the sweep, the Plex status follow-up) | ``escalated`` |
| ``escalated`` with detail ``level N: ...`` (the rules: it repeats while open) | ``recurred`` |
| ``episode_added`` (another episode grouped onto the open ticket) | ``recurred`` |
| ``episode_resolved`` (the rules saw it clear), ``closed`` (closed in Plex) | ``cleared`` |
| ``dead`` (Plex refused the ticket) | ``ops``, ``alertname=ticket_dead``, to ``admin_receiver`` |
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core import deliveries as outbox
from core.calendar import WorkCalendar
from core.config import RepsysConfig
from core.db.schema import Episode, NotifyState, Ticket, TicketEvent, utcnow
from core.logs import get_logger
from rules.routing.dispatch import Delivery, Dispatcher, Inhibitor, Notice, dump, load
from rules.routing.tree import build_tree

log = get_logger(__name__)

STATE_NAME = "dispatcher"
_LEVEL = re.compile(r"^level (\d+)")


def routed_event(event: str, detail: str) -> tuple[str, int | None] | None:
    """``(routed event, level)`` of a ticket event, or ``None`` when it is not routed."""
    if event == "filed":
        return "filed", None
    if event == "escalated":
        m = _LEVEL.match(detail)
        level = int(m.group(1)) if m else None
        recurred = m is not None and detail[m.end() : m.end() + 1] == ":"
        return ("recurred" if recurred else "escalated"), level
    if event == "episode_added":
        return "recurred", None
    if event in ("episode_resolved", "closed"):
        return "cleared", None
    if event == "dead":
        return "ops", None
    return None


def shift_at(calendar: WorkCalendar, at: datetime) -> str:
    """The name of the worked shift running at ``at`` ("" outside working time)."""
    day = at.astimezone(calendar.tz).date()
    for offset in (0, -1):
        d = day.fromordinal(day.toordinal() + offset)
        if not calendar.worked(d):
            continue
        for shift in calendar.shifts:
            one = type(calendar)([shift], calendar.workdays, calendar.holidays, calendar.tz)
            if any(s <= at < e for s, e in one.day_spans(d)):
                return shift.name
    return ""


def _facts(evidence: Any, limit: int = 6) -> str:
    """The latest evidence's scalar facts, ``k=v`` (one level of nesting flattened)."""
    if not isinstance(evidence, dict):
        return ""
    out: list[str] = []
    for key, value in evidence.items():
        inner = value.items() if isinstance(value, dict) else [("", value)]
        for sub, v in inner:
            if isinstance(v, str | int | float) and not isinstance(v, bool):
                out.append(f"{key}.{sub}={v}" if sub else f"{key}={v}")
    return ", ".join(out[:limit])


@dataclass(frozen=True)
class Cut:
    """What one ``run_once`` did."""

    routed: int
    deliveries: int
    enqueued: int


class DispatchJob:
    """Routes new ticket events and enqueues due deliveries."""

    def __init__(
        self, cfg: RepsysConfig, calendar: WorkCalendar, sessions: sessionmaker[Session]
    ) -> None:
        self.cfg = cfg
        self.calendar = calendar
        self.sessions = sessions
        self.tree = build_tree(cfg.notify)
        self.inhibitors = [Inhibitor.from_config(r) for r in cfg.notify.inhibit_rules]

    def run_once(self, now: datetime | None = None, *, batch: int = 1000) -> Cut:
        """One pass; commits the deliveries cut and the checkpoint together."""
        at = now or utcnow()
        with self.sessions() as session, session.begin():
            state = self._lock_state(session)
            dispatcher = Dispatcher(self.tree, self.inhibitors)
            load(dispatcher, state.state or {})
            rows = session.execute(
                select(TicketEvent, Ticket)
                .join(Ticket, Ticket.id == TicketEvent.ticket_id)
                .where(TicketEvent.id > state.cursor)
                .order_by(TicketEvent.id)
                .limit(batch)
            ).all()
            routed = 0
            for event, ticket in rows:
                state.cursor = event.id
                notice = self._notice(session, event, ticket, at)
                if notice is None:
                    continue
                # Events older than a due group's beat still join it (a late reader).
                dispatcher.receive(notice)
                routed += 1
            deliveries = dispatcher.flush(at)
            enqueued = sum(self._enqueue(session, d, at) for d in deliveries)
            state.state = dump(dispatcher)
            state.updated_at = at
        if routed or deliveries:
            log.info(
                "notify_dispatched", routed=routed, deliveries=len(deliveries), enqueued=enqueued
            )
        return Cut(routed, len(deliveries), enqueued)

    def _lock_state(self, session: Session) -> NotifyState:
        query = select(NotifyState).where(NotifyState.name == STATE_NAME).with_for_update()
        state = session.scalar(query)
        if state is None:
            session.add(NotifyState(name=STATE_NAME, cursor=0, state={}))
            session.flush()
            state = session.scalar(query)
            assert state is not None
        return state

    def _notice(
        self, session: Session, event: TicketEvent, ticket: Ticket, now: datetime
    ) -> Notice | None:
        kind = routed_event(event.event, event.detail)
        if kind is None:
            return None
        name, level = kind
        if name == "ops" and self.cfg.notify.admin_receiver is None:
            return None
        episode = session.get(Episode, ticket.episode_id) if ticket.episode_id else None
        machine = self.cfg.machine(ticket.machine_id)
        labels = {
            "machine": ticket.machine_id,
            "cell": machine.cell if machine else "",
            "building": machine.building if machine else "",
            "workcenter": machine.workcenter_code if machine else "",
            "rule": episode.rule if episode else "",
            "rule_type": episode.rule_type if episode else "",
            "category": ticket.category,
            "severity": ticket.severity,
            "level": str(
                level if level is not None and name == "escalated" else ticket.escalation_level
            ),
            "shift": shift_at(self.calendar, event.at),
            "event": name,
            "kind": ticket.kind,
            "source": ticket.source,
        }
        if name == "ops":
            labels["alertname"] = "ticket_dead"
        return Notice(
            key=f"{ticket.id}:{name}:{level if name == 'escalated' else event.id}",
            ticket=str(ticket.id),
            event=name,
            labels=labels,
            # The rules stamp events with the signals' time, which may run ahead of this
            # clock: the cursor is by id, so such an event is taken now, never skipped.
            at=min(event.at, now),
        )

    def _payload(self, session: Session, delivery: Delivery) -> dict[str, Any]:
        notices: list[dict[str, Any]] = []
        evidence: Any = None
        for item_key, n in zip(delivery.item_keys(), delivery.notices, strict=True):
            ticket = session.get(Ticket, int(n.ticket))
            if ticket is None:
                continue
            episode = session.get(Episode, ticket.episode_id) if ticket.episode_id else None
            if episode is not None and isinstance(episode.evidence, dict):
                evidence = episode.evidence
            notices.append(
                {
                    "key": item_key,
                    "ticket": ticket.id,
                    "event": n.event,
                    "level": int(n.labels.get("level") or 0),
                    "machine": ticket.machine_id,
                    "title": ticket.title,
                    "severity": ticket.severity,
                    "plex_number": ticket.plex_number,
                    "recurrences": episode.repeat_count if episode and n.event == "recurred" else 0,
                    "evidence_text": _facts(episode.evidence) if episode else "",
                    "detail": ticket.last_error if n.event == "ops" else "",
                    "at": n.at.isoformat(),
                }
            )
        group = ", ".join(f"{k}={v}" for k, v in delivery.group)
        return {
            "notices": notices,
            "group": group,
            "repeat": delivery.repeat,
            "evidence": evidence,
            "chart": evidence is not None,
        }

    def _enqueue(self, session: Session, delivery: Delivery, at: datetime) -> int:
        receiver = self.cfg.notify.receiver(delivery.receiver)
        if receiver is None or not receiver.integrations():
            return 0
        payload = self._payload(session, delivery)
        items = [
            outbox.Item(k, int(n.ticket))
            for k, n in zip(delivery.item_keys(), delivery.notices, strict=True)
        ]
        group = ", ".join(f"{k}={v}" for k, v in delivery.group)
        count = 0
        for integration in receiver.integrations():
            digest = hashlib.sha256(
                "|".join([delivery.receiver, integration, *sorted(i.key for i in items)]).encode()
            ).hexdigest()[:32]
            outbox.enqueue(
                session,
                key=f"{delivery.receiver}.{integration}.{digest}",
                receiver=delivery.receiver,
                integration=integration,
                items=items,
                payload=payload,
                route=delivery.route,
                group_key=group[:512],
                repeat=delivery.repeat,
                now=at,
            )
            count += 1
        return count
