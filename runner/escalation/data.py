"""What the escalation report says, computed from the database.

* open tickets (pending, sending, filed, or dead: not yet closed or withdrawn) by machine,
  with their age against the SLA of their severity and the escalation level reached
  (``runner.escalation.levels``: after X hours the supervisor, after Y the manager), which
  decides who receives the report. The ticket rows are only read: their own
  ``escalation_level`` belongs to the Plex status follow-up (``plex.status``);
* recurring episodes: a fingerprint (machine, rule, subject) with ``recurring_min`` or
  more episodes in the last ``recurring_days`` days;
* tools not reaching tool life: episodes of the tool-life rule types in the shift.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.config.runner import EscalationConfig
from core.db.schema import Episode, Ticket
from runner.escalation.shift import ShiftWindow, Span, merge

OPEN_TICKET_STATES = ("pending", "sending", "filed", "dead")


@dataclass(frozen=True)
class OpenTicket:
    id: int
    machine_id: str
    severity: str
    title: str
    state: str
    plex_number: str
    age_hours: float
    sla_hours: float
    level: int  # 0: none; n: levels[n - 1] reached
    level_name: str

    @property
    def breached(self) -> bool:
        return self.age_hours > self.sla_hours


@dataclass(frozen=True)
class Recurring:
    machine_id: str
    rule: str
    subject: str
    count: int
    last_seen: datetime


@dataclass(frozen=True)
class ToolShort:
    machine_id: str
    count: int
    tools: str
    example: str


def open_tickets(session: Session, cfg: EscalationConfig, now: datetime) -> list[OpenTicket]:
    """Open tickets, oldest first, with SLA and escalation level."""
    levels = sorted(cfg.levels, key=lambda lv: lv.after_hours)
    slas: dict[str, float] = {str(k): v for k, v in cfg.sla_hours.items()}
    out = []
    for t in session.scalars(
        select(Ticket).where(Ticket.state.in_(OPEN_TICKET_STATES)).order_by(Ticket.created_at)
    ):
        age = (now - t.created_at).total_seconds() / 3600
        level = 0
        for i, lv in enumerate(levels, start=1):
            if age >= lv.after_hours:
                level = i
        sla = slas.get(t.severity, slas.get("medium", 24.0))
        out.append(
            OpenTicket(
                id=t.id,
                machine_id=t.machine_id,
                severity=t.severity,
                title=t.title,
                state=t.state,
                plex_number=t.plex_number or "",
                age_hours=round(age, 2),
                sla_hours=sla,
                level=level,
                level_name=levels[level - 1].name if level else "",
            )
        )
    return out


def recurring(session: Session, cfg: EscalationConfig, now: datetime) -> list[Recurring]:
    since = now - timedelta(days=cfg.recurring_days)
    rows = session.execute(
        select(
            Episode.machine_id,
            Episode.rule,
            Episode.subject,
            func.count(),
            func.max(Episode.started_at),
        )
        .where(Episode.started_at >= since)
        .group_by(Episode.fingerprint, Episode.machine_id, Episode.rule, Episode.subject)
        .having(func.count() >= cfg.recurring_min)
        .order_by(func.count().desc(), Episode.machine_id)
    )
    return [Recurring(m, r, s, int(n), last) for m, r, s, n, last in rows]


def tools_short(session: Session, cfg: EscalationConfig, window: ShiftWindow) -> list[ToolShort]:
    by_machine: dict[str, list[Episode]] = {}
    for ep in session.scalars(
        select(Episode)
        .where(
            Episode.rule_type.in_(cfg.tool_life_rule_types),
            Episode.started_at >= window.start,
            Episode.started_at < window.end,
        )
        .order_by(Episode.machine_id, Episode.started_at)
    ):
        by_machine.setdefault(ep.machine_id, []).append(ep)
    return [
        ToolShort(
            machine_id=machine,
            count=len(eps),
            tools=", ".join(sorted({e.subject for e in eps if e.subject})),
            example=eps[-1].summary,
        )
        for machine, eps in sorted(by_machine.items())
    ]


def downtime_spans(
    session: Session, cfg: EscalationConfig, window: ShiftWindow
) -> dict[str, list[Span]]:
    """Per machine, the downtime episodes' time inside the window (UTC, overlaps merged).

    An episode still open counts until the window's end. Bounds are UTC instants, so the
    comparison is the same on SQLite and PostgreSQL.
    """
    spans: dict[str, list[Span]] = {}
    for ep in session.scalars(
        select(Episode).where(
            Episode.rule_type.in_(cfg.downtime_rule_types),
            Episode.started_at < window.end,
        )
    ):
        start = max(ep.started_at, window.start)
        stop = min(ep.resolved_at or window.end, window.end)
        if stop > start:
            spans.setdefault(ep.machine_id, []).append((start, stop))
    return {machine: merge(items) for machine, items in spans.items()}
