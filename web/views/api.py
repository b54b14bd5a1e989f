"""The JSON API (``/api/v1``) for other systems, e.g. a Teams bot; documented by OpenAPI.

The same checks and the same outbox as the pages: a ticket posted here goes through
``web.forms.parse_ticket`` and ``core.outbox.add_ticket``. Callers authenticate with an
API token (``Authorization: Bearer rs_...``, made by ``repsys web token add``) or, from
the app's own pages, with the session cookie plus the ``X-CSRF-Token`` header. A bad
field answers 422 with ``{"detail": ..., "errors": {field: message}}``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.logs import get_logger
from runner.errors import BadRequest, QueueUnavailable
from runner.requests import cancel, get_request, list_queue, submit
from web.accounts import Principal
from web.auth import require
from web.csrf import check_csrf
from web.errors import Forbidden, NotFound
from web.forms import add_silence, file_ticket, parse_silence, parse_ticket
from web.live import machine_statuses, upcoming_tool_changes
from web.queries import (
    as_utc,
    episodes,
    expire_silence,
    get_episode,
    get_ticket,
    silences,
    ticket_events,
    tickets,
)
from web.services import services
from web.views.reports import REPORT_ROLES, kind_roles

log = get_logger(__name__)
router = APIRouter(prefix="/api/v1", tags=["v1"], dependencies=[Depends(check_csrf)])

ANY_ROLE = ("operator", "supervisor", "controller")
REPORTERS = ("operator", "supervisor")
SUPERVISOR = ("supervisor",)


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    @field_validator("*")
    @classmethod
    def _utc(cls, value: Any) -> Any:
        # SQLite returns stored UTC times without their zone; put it back.
        return as_utc(value) if isinstance(value, datetime) else value


class TicketOut(_Out):
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
    events: list[TicketEventOut]


class TicketIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    machine: str = Field(description="Configured machine id, e.g. cnc103.")
    category: str = Field(description="A category id from web.categories.")
    severity: str = Field(default="medium", description="low, medium or high.")
    description: str
    badge: str = Field(default="", description="Reporter's badge (a badge login's wins).")


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
    id: int
    machine_id: str | None
    rule: str | None
    author: str
    reason: str
    starts_at: datetime
    ends_at: datetime
    expired_by: str | None


class SilenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    machine: str = Field(default="", description="Machine id; empty = any machine.")
    rule: str = Field(default="", description="Rule name; empty = every rule.")
    hours: float = Field(description="Duration from now, hours.")
    reason: str


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


def _ticket_out(row: Any) -> TicketOut:
    return TicketOut.model_validate(row)


@router.get("/tickets", response_model=list[TicketOut])
def list_tickets(
    request: Request,
    principal: Annotated[Principal, Depends(require(*ANY_ROLE))],
    state: str | None = None,
    machine: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[TicketOut]:
    with services(request).sessions() as session:
        rows = tickets(session, state=state, machine=machine, limit=limit)
        return [_ticket_out(r) for r in rows]


@router.get("/tickets/{ticket_id}", response_model=TicketDetail)
def one_ticket(
    request: Request,
    ticket_id: int,
    principal: Annotated[Principal, Depends(require(*ANY_ROLE))],
) -> TicketDetail:
    with services(request).sessions() as session:
        row = get_ticket(session, ticket_id)
        events = [TicketEventOut.model_validate(e) for e in ticket_events(session, ticket_id)]
        return TicketDetail(**_ticket_out(row).model_dump(), events=events)


@router.post("/tickets", response_model=TicketOut, status_code=201)
def create_ticket(
    request: Request,
    body: TicketIn,
    principal: Annotated[Principal, Depends(require(*REPORTERS))],
) -> TicketOut:
    svc = services(request)
    checked = parse_ticket(svc.cfg, body.model_dump(), badge=principal.badge)
    with svc.sessions() as session:
        row = file_ticket(session, checked, now=svc.clock())
        svc.metrics.tickets_filed.labels(category=checked.category.id).inc()
        log.info("ticket_filed", ticket=row.id, machine=row.machine_id, user=principal.username)
        return _ticket_out(row)


@router.get("/episodes", response_model=list[EpisodeOut])
def list_episodes(
    request: Request,
    principal: Annotated[Principal, Depends(require(*ANY_ROLE))],
    open_only: bool = True,
    machine: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[EpisodeOut]:
    with services(request).sessions() as session:
        rows = episodes(session, open_only=open_only, machine=machine, limit=limit)
        return [EpisodeOut.model_validate(r) for r in rows]


@router.get("/episodes/{episode_id}", response_model=EpisodeOut)
def one_episode(
    request: Request,
    episode_id: int,
    principal: Annotated[Principal, Depends(require(*ANY_ROLE))],
) -> EpisodeOut:
    with services(request).sessions() as session:
        return EpisodeOut.model_validate(get_episode(session, episode_id))


@router.get("/machines", response_model=list[MachineOut])
def list_machines(
    request: Request, principal: Annotated[Principal, Depends(require(*ANY_ROLE))]
) -> list[MachineOut]:
    svc = services(request)
    statuses = machine_statuses(
        svc.redis, svc.cfg.machines, now=svc.clock(), no_data_after_s=svc.cfg.web.no_data_after_s
    )
    return [
        MachineOut(
            id=s.machine.id,
            name=s.machine.display_name,
            pcn=s.machine.pcn,
            workcenter_key=s.machine.workcenter_key,
            workcenter_code=s.machine.workcenter_code,
            building=s.machine.building,
            cell=s.machine.cell,
            state=s.state,
            since=s.since,
            last_seen=s.last_seen,
            signals=dict(s.signals),
        )
        for s in statuses
    ]


@router.get("/tool-changes", response_model=list[ToolChangeOut])
def list_tool_changes(
    request: Request,
    principal: Annotated[Principal, Depends(require(*ANY_ROLE))],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[ToolChangeOut]:
    changes = upcoming_tool_changes(services(request).redis, limit=limit)
    return [
        ToolChangeOut(machine=c.machine, tool=c.tool, minutes_remaining=c.minutes) for c in changes
    ]


@router.get("/silences", response_model=list[SilenceOut])
def list_silences(
    request: Request,
    principal: Annotated[Principal, Depends(require(*ANY_ROLE))],
    include_ended: bool = False,
) -> list[SilenceOut]:
    svc = services(request)
    with svc.sessions() as session:
        rows = silences(session, now=svc.clock(), include_ended=include_ended)
        return [SilenceOut.model_validate(r) for r in rows]


@router.post("/silences", response_model=SilenceOut, status_code=201)
def create_silence(
    request: Request,
    body: SilenceIn,
    principal: Annotated[Principal, Depends(require(*SUPERVISOR))],
) -> SilenceOut:
    svc = services(request)
    data = {**body.model_dump(), "hours": str(body.hours)}
    checked = parse_silence(svc.cfg, data, now=svc.clock())
    with svc.sessions() as session:
        row = add_silence(session, checked, author=principal.username)
        log.info("silence_created", silence=row.id, user=principal.username)
        return SilenceOut.model_validate(row)


@router.post("/silences/{silence_id}/expire", response_model=SilenceOut)
def expire_one_silence(
    request: Request,
    silence_id: int,
    principal: Annotated[Principal, Depends(require(*SUPERVISOR))],
) -> SilenceOut:
    svc = services(request)
    with svc.sessions() as session:
        row = expire_silence(session, silence_id, by=principal.username, now=svc.clock())
        log.info("silence_expired", silence=silence_id, user=principal.username)
        return SilenceOut.model_validate(row)


class ReportOut(_Out):
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
    model_config = ConfigDict(extra="forbid")

    kind: str = Field(description="A runner.pipelines kind: tb, escalation, ...")
    params: dict[str, Any] = Field(
        default_factory=dict, description='tb: {"start": 202401, "end": 202406, "pcns": [...]}'
    )


def _report_out(row: Any) -> ReportOut:
    out = ReportOut.model_validate(row)
    if row.state == "completed" and row.result_path:
        out.download = f"/reports/{row.id}/download"
    return out


@router.get("/reports", response_model=list[ReportOut])
def list_reports(
    request: Request,
    principal: Annotated[Principal, Depends(require(*REPORT_ROLES))],
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[ReportOut]:
    return [_report_out(r) for r in list_queue(services(request).sessions, limit=limit)]


@router.get("/reports/{request_id}", response_model=ReportOut)
def one_report(
    request: Request,
    request_id: str,
    principal: Annotated[Principal, Depends(require(*REPORT_ROLES))],
) -> ReportOut:
    row = get_request(services(request).sessions, request_id)
    if row is None:
        raise NotFound(f"There is no report request {request_id}.")
    return _report_out(row)


@router.post("/reports", response_model=ReportOut, status_code=201)
def create_report(
    request: Request,
    body: ReportIn,
    principal: Annotated[Principal, Depends(require(*REPORT_ROLES))],
) -> Any:
    svc = services(request)
    if not principal.has_any(kind_roles(body.kind)):
        raise Forbidden(f"A {body.kind} report needs the {kind_roles(body.kind)[0]} role.")
    try:
        row = submit(
            svc.sessions,
            svc.redis,
            svc.cfg,
            kind=body.kind,
            params=body.params,
            requester=principal.username,
        )
    except BadRequest as exc:
        return JSONResponse({"detail": str(exc)}, status_code=422)
    except QueueUnavailable as exc:
        return JSONResponse({"detail": str(exc)}, status_code=503)
    return _report_out(row)


@router.post("/reports/{request_id}/cancel")
def cancel_report(
    request: Request,
    request_id: str,
    principal: Annotated[Principal, Depends(require(*REPORT_ROLES))],
) -> dict[str, bool]:
    svc = services(request)
    return {"cancelled": cancel(svc.sessions, svc.redis, request_id, by=principal.username)}
