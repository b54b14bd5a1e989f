"""Checking what people type: the operator's ticket and the supervisor's silence.

The HTML forms and the JSON API share these functions, so a ticket filed by a Teams bot
is held to the same rules as one typed on a tablet. Each returns a clean value or raises
:class:`web.errors.FormError` with one message per field that is wrong, worded for the
person at the form. Text is stored as typed, NFC-normalized (HTML in it is shown
escaped, never run); what no database or Plex field can hold, or what shows nothing or
reads otherwise than it is, is refused (``web/text.py``).
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.config import Machine, RepsysConfig
from core.config.web import BADGE_PATTERN, CategoryConfig
from core.db.schema import Silence, Ticket
from core.model import Severity
from core.outbox import add_ticket, submit_ref
from web.errors import FormError
from web.text import TextProblem, clean_text

RULE_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
TITLE_TEXT_LEN = 100
REASON_MAX = 512
#: A duration as typed on the form: ASCII digits, an optional decimal part.
HOURS_PATTERN = re.compile(r"[0-9]{1,6}(\.[0-9]{1,6})?")

#: What each text problem means for the person at the form, by field label.
_TEXT_MESSAGES = {
    TextProblem.UNENCODABLE: "The {what} holds a character that cannot be stored; retype it.",
    TextProblem.CONTROL: "The {what} contains a control character; retype it.",
    TextProblem.DIRECTION: "The {what} contains a text-direction control character; retype it.",
}


def _free_text(
    data: Mapping[str, Any], key: str, *, what: str, empty: str, limit: int
) -> tuple[str, str | None]:
    """A free-text field, cleaned, and its error message (``None`` when it is fine)."""
    raw = data.get(key, "")
    text, problem = clean_text(raw if isinstance(raw, str) else "")
    if problem is TextProblem.EMPTY:
        return text, empty
    if problem is not None:
        return text, _TEXT_MESSAGES[problem].format(what=what)
    if len(text) > limit:
        return text, f"The {what} is too long: {len(text)} characters, at most {limit}."
    return text, None


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

    description, problem = _free_text(
        data,
        "description",
        what="description",
        empty="Describe the problem.",
        limit=cfg.web.description_max_chars,
    )
    if problem is not None:
        errors["description"] = problem

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


#: A submit key: the form's one-time token (32 hex digits) or an API Idempotency-Key.
SUBMIT_KEY_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"


def new_submit_token() -> str:
    """A one-time token for a rendered ticket form."""
    return secrets.token_hex(16)


def submit_key(value: str) -> str | None:
    """``value`` when it is a usable submit key, else ``None`` (the ticket gets a fresh ref)."""
    return value if re.fullmatch(SUBMIT_KEY_PATTERN, value or "") else None


def file_ticket(
    session: Session, ticket: TicketInput, *, now: datetime, user: str = "", key: str | None = None
) -> tuple[Ticket, bool]:
    """Put the operator's ticket into the Plex outbox and commit; ``(row, created)``.

    With a submit ``key`` the same user's repeat (a second tap, a retried request) finds the
    first ticket instead of filing another: its reference is derived from the key, and the
    unique constraint on references settles a race between two repeats.
    """
    ref = submit_ref(user, key) if key else None
    if ref is not None:
        first = session.scalar(select(Ticket).where(Ticket.external_ref == ref))
        if first is not None:
            return first, False
    try:
        # add_ticket flushes: a repeat that raced past the check above fails there.
        row = add_ticket(
            session,
            machine=ticket.machine,
            source="operator",
            title=ticket.title,
            description=ticket.description,
            severity=ticket.severity,
            category=ticket.category.id,
            reporter=ticket.badge,
            external_ref=ref,
            now=now,
        )
        session.commit()
    except IntegrityError:
        session.rollback()
        if ref is None:
            raise
        first = session.scalar(select(Ticket).where(Ticket.external_ref == ref))
        if first is None:
            raise
        return first, False
    return row, True


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

    hours = _hours(data.get("hours"))
    low, high = cfg.web.silence_min_minutes / 60, cfg.web.silence_max_hours
    if not low <= hours <= high:  # also false for NaN
        errors["hours"] = (
            f"The duration is at least {cfg.web.silence_min_minutes:g} minutes "
            f"and at most {high} hours."
        )

    reason, problem = _free_text(
        data, "reason", what="reason", empty="Say why (the next shift reads it).", limit=REASON_MAX
    )
    if problem is not None:
        errors["reason"] = problem

    if errors:
        raise FormError(errors)
    return SilenceInput(
        machine_id=machine_id,
        rule=rule,
        reason=reason,
        starts_at=now,
        ends_at=now + timedelta(hours=hours),
    )


def _hours(value: Any) -> float:
    """A duration in hours from a number (API) or from ASCII text (form); NaN otherwise."""
    if isinstance(value, bool):
        return math.nan
    if isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:  # an int past the float range, e.g. 10**400 in JSON
            return math.nan
    # float() alone would take "inf", "1_0" and other scripts' digits.
    text = value.strip() if isinstance(value, str) else ""
    return float(text) if HOURS_PATTERN.fullmatch(text) else math.nan


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
