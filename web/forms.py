"""Checking what people type: the operator's ticket and the supervisor's silence.

The HTML forms and the JSON API share these functions, so a ticket filed by a Teams bot
is held to the same rules as one typed on a tablet. Each returns a clean value or raises
:class:`web.errors.FormError` with one message per field that is wrong, worded for the
person at the form. Text is stored as typed (HTML in it is shown escaped, never run);
only what no database or Plex field can hold, control characters, is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from core.config import Machine, RepsysConfig
from core.config.web import BADGE_PATTERN, CategoryConfig
from core.db.schema import Silence, Ticket
from core.model import Severity
from core.outbox import add_ticket
from web.errors import FormError

#: Characters refused in free text: C0 controls except tab and newlines, and DEL.
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
RULE_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
TITLE_TEXT_LEN = 100
REASON_MAX = 512


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key, "")
    return value.strip() if isinstance(value, str) else ""


@dataclass(frozen=True)
class TicketInput:
    """An operator's ticket, checked."""

    machine: Machine
    category: CategoryConfig
    severity: Severity
    description: str
    badge: str

    @property
    def title(self) -> str:
        first = self.description.splitlines()[0] if self.description else ""
        if len(first) > TITLE_TEXT_LEN:
            first = first[: TITLE_TEXT_LEN - 1] + "…"
        return f"{self.category.label} on {self.machine.display_name}: {first}"


def parse_ticket(
    cfg: RepsysConfig, data: Mapping[str, Any], *, badge: str | None = None
) -> TicketInput:
    """Check an operator's ticket. ``badge``: the logged-in operator's, which wins.

    Raises :class:`FormError` with a message for each field that is wrong.
    """
    errors: dict[str, str] = {}
    machine_id = _text(data, "machine")
    machine = cfg.machine(machine_id) if machine_id else None
    if not machine_id:
        errors["machine"] = "Pick the machine."
    elif machine is None:
        errors["machine"] = f"Unknown machine {machine_id[:64]!r}: pick one from the list."

    categories = {c.id: c for c in cfg.web.categories}
    category_id = _text(data, "category")
    category = categories.get(category_id)
    if category is None:
        errors["category"] = (
            "Pick a category." if not category_id else f"Unknown category {category_id[:32]!r}."
        )

    severity_text = _text(data, "severity") or Severity.MEDIUM.value
    try:
        severity = Severity(severity_text)
    except ValueError:
        errors["severity"] = "Severity is low, medium or high."
        severity = Severity.MEDIUM

    raw = data.get("description", "")
    description = raw.strip().replace("\r\n", "\n") if isinstance(raw, str) else ""
    limit = cfg.web.description_max_chars
    if not description:
        errors["description"] = "Describe the problem."
    elif len(description) > limit:
        errors["description"] = (
            f"The description is too long: {len(description)} characters, at most {limit}."
        )
    elif CONTROL_CHARS.search(description):
        errors["description"] = "The description contains a control character; retype it."

    who = badge or _text(data, "badge")
    if not who:
        errors["badge"] = "Enter your badge number."
    elif not re.fullmatch(BADGE_PATTERN, who):
        errors["badge"] = "A badge number is letters, digits and dashes, at most 32."

    if errors:
        raise FormError(errors)
    assert machine is not None and category is not None  # every other case raised above
    return TicketInput(
        machine=machine,
        category=category,
        severity=severity,
        description=description,
        badge=who,
    )


def file_ticket(session: Session, ticket: TicketInput, *, now: datetime) -> Ticket:
    """Put the operator's ticket into the Plex outbox and commit."""
    row = add_ticket(
        session,
        machine=ticket.machine,
        source="operator",
        title=ticket.title,
        description=ticket.description,
        severity=ticket.severity,
        category=ticket.category.id,
        reporter=ticket.badge,
        now=now,
    )
    session.commit()
    return row


@dataclass(frozen=True)
class SilenceInput:
    """A maintenance window, checked."""

    machine_id: str | None
    rule: str | None
    reason: str
    starts_at: datetime
    ends_at: datetime


def parse_silence(cfg: RepsysConfig, data: Mapping[str, Any], *, now: datetime) -> SilenceInput:
    """Check a silence: a machine or a rule (or both), a duration in hours, a reason."""
    errors: dict[str, str] = {}
    machine_id = _text(data, "machine") or None
    if machine_id is not None and cfg.machine(machine_id) is None:
        errors["machine"] = f"Unknown machine {machine_id[:64]!r}: pick one from the list."
    rule = _text(data, "rule") or None
    if rule is not None and not re.fullmatch(RULE_PATTERN, rule):
        errors["rule"] = "A rule name is letters, digits and _ . - (at most 64)."
    if machine_id is None and rule is None and "machine" not in errors:
        errors["machine"] = "Pick a machine or a rule: a silence never covers everything."

    max_hours = cfg.web.silence_max_hours
    hours_text = _text(data, "hours")
    try:
        hours = float(hours_text)
    except ValueError:
        hours = float("nan")
    if not 0 < hours <= max_hours:  # also false for NaN
        errors["hours"] = f"The duration is a number of hours above 0, at most {max_hours}."

    reason = _text(data, "reason")
    if not reason:
        errors["reason"] = "Say why (the next shift reads it)."
    elif len(reason) > REASON_MAX:
        errors["reason"] = (
            f"The reason is too long: {len(reason)} characters, at most {REASON_MAX}."
        )
    elif CONTROL_CHARS.search(reason):
        errors["reason"] = "The reason contains a control character; retype it."

    if errors:
        raise FormError(errors)
    return SilenceInput(
        machine_id=machine_id,
        rule=rule,
        reason=reason,
        starts_at=now,
        ends_at=now + timedelta(hours=hours),
    )


def add_silence(session: Session, silence: SilenceInput, *, author: str) -> Silence:
    """Store a silence and commit; the rules engine reads it from the database."""
    row = Silence(
        machine_id=silence.machine_id,
        rule=silence.rule,
        author=author,
        reason=silence.reason,
        starts_at=silence.starts_at,
        ends_at=silence.ends_at,
        created_at=silence.starts_at,
    )
    session.add(row)
    session.commit()
    return row
