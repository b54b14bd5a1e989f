"""Escalation policy: how high an open ticket has climbed, in plant working time.

Pure functions of the ticket's times, the matching policy and the plant calendar
(``core.calendar``); the sweep that writes ``tickets.escalation_level`` is
``notify.sweep``. A level is reached when every age it names is reached, and levels are
reached in order (level 2 needs level 1). Levels only rise: a status change in Plex
restarts the "since status" clock for the levels still to come, never lowers one reached.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from core.calendar import ALWAYS, Pause, Shift, WorkCalendar
from core.config.notify import CalendarConfig, EscalationPolicy


def calendar_from_config(cfg: CalendarConfig, timezone: str) -> WorkCalendar:
    """The plant's :class:`WorkCalendar` from ``notify.calendar`` and ``plant.timezone``."""
    shifts = [
        Shift(s.name, s.start, s.end, tuple(Pause(b.start, b.minutes) for b in s.breaks))
        for s in cfg.shifts
    ]
    return WorkCalendar(shifts, cfg.weekday_numbers(), cfg.holidays, ZoneInfo(timezone))


def policy_for(
    policies: Sequence[EscalationPolicy], category: str, severity: str
) -> EscalationPolicy | None:
    """The first policy whose category and severity lists admit the ticket (empty = any)."""
    for policy in policies:
        if policy.category and category not in policy.category:
            continue
        if policy.severity and severity not in policy.severity:
            continue
        return policy
    return None


@dataclass(frozen=True)
class LevelTimes:
    """When each level is (or would be) reached; ``None``: never on this calendar."""

    reached: tuple[datetime | None, ...]

    def level_at(self, now: datetime) -> int:
        """The level reached at ``now``."""
        level = 0
        for at in self.reached:
            if at is None or at > now:
                break
            level += 1
        return level

    def next_after(self, now: datetime) -> datetime | None:
        """When the next level is reached, or ``None``."""
        for at in self.reached:
            if at is None:
                return None
            if at > now:
                return at
        return None


def level_times(
    policy: EscalationPolicy,
    calendar: WorkCalendar,
    filed_at: datetime,
    status_changed_at: datetime | None,
) -> LevelTimes:
    """When each of the policy's levels is reached by a ticket filed at ``filed_at``.

    Args:
        policy: the ticket's escalation policy.
        calendar: the plant's working time (ignored when ``policy.working_time`` is off).
        filed_at: when the ticket was filed.
        status_changed_at: when Plex last changed its status; ``None``: never since filing.
    """
    cal = calendar if policy.working_time else ALWAYS
    since_status = max(filed_at, status_changed_at) if status_changed_at else filed_at
    out: list[datetime | None] = []
    previous = filed_at
    for spec in policy.levels:
        candidates = [cal.reached_at(filed_at, spec.after_filed_h * 3600)]
        if spec.after_status_h is not None:
            candidates.append(cal.reached_at(since_status, spec.after_status_h * 3600))
        if any(c is None for c in candidates):
            out += [None] * (len(policy.levels) - len(out))
            break
        at = max([previous, *(c for c in candidates if c is not None)])
        out.append(at)
        previous = at
    return LevelTimes(tuple(out))


def level(
    policy: EscalationPolicy,
    calendar: WorkCalendar,
    filed_at: datetime,
    status_changed_at: datetime | None,
    now: datetime,
) -> int:
    """The escalation level a ticket has reached at ``now``."""
    return level_times(policy, calendar, filed_at, status_changed_at).level_at(now)
