"""The JSON API (``/api/v1``) for other systems, e.g. a Teams bot; documented by OpenAPI.

The same checks and the same outbox as the pages: a ticket posted here goes through
``web.forms.parse_ticket`` and ``core.outbox.add_ticket``, a report request through
``web.views.reports.submit_report`` (quota, same-request window). Callers authenticate
with an API token (``Authorization: Bearer rs_...``, made by ``repsys web token add``) or,
from the app's own pages, with the session cookie plus the ``X-CSRF-Token`` header. Every
error answers ``web.openapi.ErrorOut``; each route lists the statuses it can answer.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from core.logs import get_logger
from core.model import TicketState
from runner.requests import cancel, get_request, list_queue
from web.accounts import Principal
from web.auth import require
from web.csrf import check_csrf
from web.errors import FormError, NotFound
from web.forms import (
    REASON_MAX,
    SUBMIT_KEY_PATTERN,
    add_silence,
    file_ticket,
    parse_silence,
    parse_ticket,
)
from web.live import machine_statuses, upcoming_tool_changes
from web.models import (
    CancelOut,
    EpisodeOut,
    MachineOut,
    ReportIn,
    ReportOut,
    SilenceIn,
    SilenceOut,
    TicketDetail,
    TicketEventOut,
    TicketIn,
    TicketOut,
    ToolChangeOut,
)
from web.openapi import ALWAYS, WITH_BODY, WITH_PARAMS, responses
from web.params import (
    EpisodeId,
    MachineFilter,
    RequestId,
    SilenceId,
    TicketId,
    single_valued,
)
from web.queries import (
    episodes,
    expire_silence,
    get_episode,
    get_ticket,
    silences,
    ticket_events,
    tickets,
)
from web.roles import FLOOR, REPORT_ROLES, REPORTERS, SUPERVISOR
from web.services import services
from web.views.reports import check_may_cancel, submit_report

log = get_logger(__name__)
router = APIRouter(
    prefix="/api/v1", tags=["v1"], dependencies=[Depends(check_csrf), Depends(single_valued)]
)


def _check_length(field: str, text: str, limit: int) -> None:
    """Refuse free text longer than the document's maxLength, counted as sent.

    The forms count a text once cleaned (a textarea's CRLF as one character); a client
    generated from the document is held to what the document says.
    """
    if len(text) > limit:
        raise FormError(
            {field: f"The {field} is too long: {len(text)} characters, at most {limit}."}
        )


def _ticket_out(row: Any) -> TicketOut:
    return TicketOut.model_validate(row)


@router.get("/tickets", response_model=list[TicketOut], responses=responses(*WITH_PARAMS))
def list_tickets(
    request: Request,
    principal: Annotated[Principal, Depends(require(*SUPERVISOR))],
    state: TicketState | None = None,
    machine: MachineFilter = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[TicketOut]:
    with services(request).sessions() as session:
        rows = tickets(session, state=state, machine=machine, limit=limit)
        return [_ticket_out(r) for r in rows]


@router.get(
    "/tickets/{ticket_id}", response_model=TicketDetail, responses=responses(*WITH_PARAMS, 404)
)
def one_ticket(
    request: Request,
    ticket_id: TicketId,
    principal: Annotated[Principal, Depends(require(*REPORTERS))],
) -> TicketDetail:
    with services(request).sessions() as session:
        row = get_ticket(session, ticket_id)
        events = [TicketEventOut.model_validate(e) for e in ticket_events(session, ticket_id)]
        return TicketDetail(**_ticket_out(row).model_dump(), events=events)


@router.post(
    "/tickets",
    response_model=TicketOut,
    status_code=201,
    responses={
        200: {
            "model": TicketOut,
            "description": "A repeat of an Idempotency-Key: the first ticket.",
        },
        **responses(*WITH_BODY),
    },
)
def create_ticket(
    request: Request,
    response: Response,
    body: TicketIn,
    principal: Annotated[Principal, Depends(require(*REPORTERS))],
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            pattern=SUBMIT_KEY_PATTERN,
            description="Send the same key again (a retry after a timeout) and get the first "
            "ticket back (200) instead of a second one.",
        ),
    ] = None,
) -> TicketOut:
    svc = services(request)
    _check_length("description", body.description, svc.cfg.web.description_max_chars)
    checked = parse_ticket(svc.cfg, body.model_dump(mode="json"), badge=principal.badge)
    with svc.sessions() as session:
        row, created = file_ticket(
            session, checked, now=svc.clock(), user=principal.username, key=idempotency_key
        )
        if not created:
            response.status_code = 200
            log.info("ticket_submit_repeated", ref=row.external_ref, ticket=row.id)
            return _ticket_out(row)
        svc.metrics.tickets_filed.labels(category=checked.category.id).inc()
        log.info(
            "ticket_filed",
            ref=row.external_ref,
            ticket=row.id,
            machine=row.machine_id,
            user=principal.username,
        )
        return _ticket_out(row)


@router.get("/episodes", response_model=list[EpisodeOut], responses=responses(*WITH_PARAMS))
def list_episodes(
    request: Request,
    principal: Annotated[Principal, Depends(require(*SUPERVISOR))],
    open_only: bool = True,
    machine: MachineFilter = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[EpisodeOut]:
    with services(request).sessions() as session:
        rows = episodes(session, open_only=open_only, machine=machine, limit=limit)
        return [EpisodeOut.model_validate(r) for r in rows]


@router.get(
    "/episodes/{episode_id}", response_model=EpisodeOut, responses=responses(*WITH_PARAMS, 404)
)
def one_episode(
    request: Request,
    episode_id: EpisodeId,
    principal: Annotated[Principal, Depends(require(*SUPERVISOR))],
) -> EpisodeOut:
    with services(request).sessions() as session:
        return EpisodeOut.model_validate(get_episode(session, episode_id))


@router.get("/machines", response_model=list[MachineOut], responses=responses(*ALWAYS))
def list_machines(
    request: Request, principal: Annotated[Principal, Depends(require(*FLOOR))]
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


@router.get("/tool-changes", response_model=list[ToolChangeOut], responses=responses(*WITH_PARAMS))
def list_tool_changes(
    request: Request,
    principal: Annotated[Principal, Depends(require(*FLOOR))],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[ToolChangeOut]:
    changes = upcoming_tool_changes(services(request).redis, limit=limit)
    return [
        ToolChangeOut(machine=c.machine, tool=c.tool, minutes_remaining=c.minutes) for c in changes
    ]


@router.get("/silences", response_model=list[SilenceOut], responses=responses(*WITH_PARAMS))
def list_silences(
    request: Request,
    principal: Annotated[Principal, Depends(require(*SUPERVISOR))],
    include_ended: bool = False,
) -> list[SilenceOut]:
    svc = services(request)
    with svc.sessions() as session:
        rows = silences(session, now=svc.clock(), include_ended=include_ended)
        return [SilenceOut.model_validate(r) for r in rows]


@router.post(
    "/silences", response_model=SilenceOut, status_code=201, responses=responses(*WITH_BODY)
)
def create_silence(
    request: Request,
    body: SilenceIn,
    principal: Annotated[Principal, Depends(require(*SUPERVISOR))],
) -> SilenceOut:
    svc = services(request)
    _check_length("reason", body.reason, REASON_MAX)
    checked = parse_silence(svc.cfg, body.model_dump(mode="json"), now=svc.clock())
    with svc.sessions() as session:
        row = add_silence(session, checked, author=principal.username)
        log.info("silence_created", silence=row.id, user=principal.username)
        return SilenceOut.model_validate(row)


@router.post(
    "/silences/{silence_id}/expire",
    response_model=SilenceOut,
    responses=responses(*WITH_PARAMS, 404),
)
def expire_one_silence(
    request: Request,
    silence_id: SilenceId,
    principal: Annotated[Principal, Depends(require(*SUPERVISOR))],
) -> SilenceOut:
    svc = services(request)
    with svc.sessions() as session:
        row = expire_silence(session, silence_id, by=principal.username, now=svc.clock())
        log.info("silence_expired", silence=silence_id, user=principal.username)
        return SilenceOut.model_validate(row)


def _report_out(row: Any) -> ReportOut:
    out = ReportOut.model_validate(row)
    if row.state == "completed" and row.result_path:
        out.download = f"/reports/{row.id}/download"
    return out


@router.get("/reports", response_model=list[ReportOut], responses=responses(*WITH_PARAMS))
def list_reports(
    request: Request,
    principal: Annotated[Principal, Depends(require(*REPORT_ROLES))],
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[ReportOut]:
    return [_report_out(r) for r in list_queue(services(request).sessions, limit=limit)]


@router.get(
    "/reports/{request_id}", response_model=ReportOut, responses=responses(*WITH_PARAMS, 404)
)
def one_report(
    request: Request,
    request_id: RequestId,
    principal: Annotated[Principal, Depends(require(*REPORT_ROLES))],
) -> ReportOut:
    row = get_request(services(request).sessions, request_id)
    if row is None:
        raise NotFound(f"There is no report request {request_id}.")
    return _report_out(row)


@router.post(
    "/reports",
    response_model=ReportOut,
    status_code=201,
    responses={
        **responses(*WITH_BODY, 429, 503),
        200: {"model": ReportOut, "description": "An identical request made shortly before."},
    },
)
def create_report(
    request: Request,
    body: ReportIn,
    principal: Annotated[Principal, Depends(require(*REPORT_ROLES))],
) -> Any:
    done = submit_report(services(request), principal, kind=body.kind, params=body.params)
    out = _report_out(done.row)
    if done.created:
        return out
    # The same request made shortly before: that one, and no new resource.
    return JSONResponse(out.model_dump(mode="json"), status_code=200)


@router.post(
    "/reports/{request_id}/cancel",
    response_model=CancelOut,
    responses=responses(*WITH_PARAMS, 404),
)
def cancel_report(
    request: Request,
    request_id: RequestId,
    principal: Annotated[Principal, Depends(require(*REPORT_ROLES))],
) -> CancelOut:
    svc = services(request)
    check_may_cancel(svc, principal, request_id)
    return CancelOut(cancelled=cancel(svc.sessions, svc.redis, request_id, by=principal.username))
