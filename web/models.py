"""The JSON API's bodies: what ``/api/v1`` takes and gives, as the OpenAPI document shows it.

Inputs refuse unknown keys and carry static bounds (lengths, finite numbers); what only
the configuration knows (machine ids, categories, report kinds, silence lengths) is
checked by the same functions as the pages (``web/forms.py``, ``runner.params``) and
written into the document by ``web/openapi.py``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.config.machines import MACHINE_ID_PATTERN
from core.config.web import BADGE_PATTERN, CATEGORY_ID_PATTERN
from core.model import Severity
from web.forms import REASON_MAX, RULE_PATTERN

#: The API takes identifiers exactly as the configuration spells them: a space around
#: one, which the pages forgive, is refused here, so the document's patterns are the truth.
OPTIONAL_MACHINE = f"^({MACHINE_ID_PATTERN.strip('^$')})?$"
OPTIONAL_RULE = f"^({RULE_PATTERN.strip('^$')})?$"
OPTIONAL_BADGE = f"^({BADGE_PATTERN.strip('^$')})?$"


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


#: One ticket as the API shows it (the documents' example).
TICKET_EXAMPLE: dict[str, Any] = {
    "id": 42,
    "external_ref": "RS-5f0c6a1e9b7d4c3a8e2f1",
    "source": "operator",
    "machine_id": "cnc103",
    "category": "tool",
    "severity": "high",
    "title": "Tool on cnc103: Tool T12 chipped, parts show chatter marks.",
    "description": "Tool T12 chipped, parts show chatter marks.",
    "reporter": "1001",
    "state": "filed",
    "attempts": 1,
    "plex_number": "WR-118204",
    "last_error": None,
    "episode_id": None,
    "created_at": "2026-04-02T06:14:09Z",
    "filed_at": "2026-04-02T06:14:11Z",
}


class TicketOut(_Out):
    model_config = ConfigDict(json_schema_extra={"examples": [TICKET_EXAMPLE]})

    id: int
    external_ref: str
    source: str = Field(description="operator or rule")
    machine_id: str
    category: str
    severity: str
    title: str
    description: str
    reporter: str
    state: str = Field(description="pending, sending, filed, dead, cancelled or closed")
    attempts: int
    plex_number: str | None
    last_error: str | None
    episode_id: int | None
    created_at: datetime
    filed_at: datetime | None


class TicketEventOut(_Out):
    at: datetime
    event: str
    detail: str


class TicketDetail(TicketOut):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **TICKET_EXAMPLE,
                    "events": [
                        {"at": "2026-04-02T06:14:09Z", "event": "created", "detail": ""},
                        {"at": "2026-04-02T06:14:11Z", "event": "filed", "detail": "WR-118204"},
                    ],
                }
            ]
        }
    )

    events: list[TicketEventOut]


class TicketIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "machine": "cnc103",
                    "category": "tool",
                    "severity": "high",
                    "description": "Tool T12 chipped, parts show chatter marks.",
                    "badge": "1001",
                }
            ]
        },
    )

    machine: str = Field(
        pattern=MACHINE_ID_PATTERN, description="Configured machine id, e.g. cnc103."
    )
    category: str = Field(
        pattern=CATEGORY_ID_PATTERN, description="A category id from web.categories."
    )
    severity: Severity = Field(default=Severity.MEDIUM, description="low, medium or high.")
    description: str = Field(
        # Only the document's: an empty description gets the form's own message, and the
        # longest one (web.description_max_chars) is checked by the route on the raw text.
        json_schema_extra={"minLength": 1},
        description="What is wrong. Stored NFC-normalized; refused when nothing visible is "
        "left without spaces and invisible characters, or with control or text-direction "
        "characters.",
    )
    badge: str = Field(
        default="",
        pattern=OPTIONAL_BADGE,
        description="Reporter's badge (a badge login's wins); needed otherwise.",
    )


class EpisodeOut(_Out):
    id: int
    machine_id: str
    rule: str
    rule_type: str
    subject: str
    severity: str
    state: str
    summary: str
    evidence: dict[str, Any]
    started_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None


class SilenceOut(_Out):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 7,
                    "machine_id": "cnc103",
                    "rule": None,
                    "author": "sam",
                    "reason": "Spindle probe swap.",
                    "starts_at": "2026-04-02T06:00:00Z",
                    "ends_at": "2026-04-02T08:00:00Z",
                    "expired_by": None,
                }
            ]
        }
    )

    id: int
    machine_id: str | None
    rule: str | None
    author: str
    reason: str
    starts_at: datetime
    ends_at: datetime
    expired_by: str | None


class SilenceIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"machine": "cnc103", "hours": 2, "reason": "Spindle probe swap."}]
        },
    )

    machine: str = Field(
        default="", pattern=OPTIONAL_MACHINE, description="Machine id; empty = any machine."
    )
    rule: str = Field(
        default="",
        pattern=OPTIONAL_RULE,
        description="Rule name (letters, digits and _ . -); empty = every rule.",
    )
    hours: float = Field(
        allow_inf_nan=False,
        description="Duration from now, hours: web.silence_min_minutes to web.silence_max_hours.",
    )
    reason: str = Field(
        # Only the document's, like a ticket's description: the route checks the length
        # as sent, the form's checks say what is missing or wrong.
        json_schema_extra={"minLength": 1, "maxLength": REASON_MAX},
        description="Why; the next shift reads it. Cleaned like a ticket's description.",
    )


class MachineOut(BaseModel):
    id: str
    name: str
    pcn: int
    workcenter_key: int
    workcenter_code: str
    building: str
    cell: str
    state: str = Field(description="running, idle, down, no_data, or the engine's word")
    since: datetime | None
    last_seen: datetime | None
    signals: dict[str, str]


class ToolChangeOut(BaseModel):
    machine: str
    tool: str
    minutes_remaining: float


class ReportOut(_Out):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "5f0c6a1e9b7d4c3a8e2f1d0b9a8c7e6f",
                    "kind": "tb",
                    "name": "TB_202401_to_202406",
                    "params": {"start": 202401, "end": 202406, "pcns": [123681]},
                    "requester": "dan",
                    "state": "completed",
                    "current_step": None,
                    "error": None,
                    "created_at": "2026-07-01T07:00:00Z",
                    "started_at": "2026-07-01T07:00:01Z",
                    "finished_at": "2026-07-01T07:03:40Z",
                    "download": "/reports/5f0c6a1e9b7d4c3a8e2f1d0b9a8c7e6f/download",
                }
            ]
        }
    )

    id: str
    kind: str
    name: str = Field(description="e.g. TB_202404_to_202404")
    params: dict[str, Any]
    requester: str
    state: str = Field(description="pending, running, completed, failed or cancelled")
    current_step: str | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    download: str | None = Field(default=None, description="Path of the finished file.")


class ReportIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"kind": "tb", "params": {"start": 202401, "end": 202406, "pcns": [123681]}},
                {"kind": "tool_check", "params": {"window_minutes": 30}},
            ]
        },
    )

    kind: str = Field(max_length=32, description="A runner.pipelines kind: tb, escalation, ...")
    params: dict[str, Any] = Field(
        default_factory=dict,
        description='tb: {"start": 202401, "end": 202406, "pcns": [...]}; '
        'tool_check: {"window_minutes": 15}; escalation: {"shift": "first"}. '
        "Periods and numbers are ASCII digits.",
    )


class CancelOut(BaseModel):
    cancelled: bool = Field(description="False when the request was no longer pending.")
