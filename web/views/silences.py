"""Silences: supervisors create and expire maintenance windows per machine or rule.

The rules engine reads the ``silences`` table: while a silence covers an anomaly, no
ticket is opened for it. Expiring a silence ends it now and keeps it for the record,
with who ended it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from core.logs import get_logger
from web.accounts import Principal
from web.auth import require
from web.csrf import check_csrf
from web.errors import FormError
from web.forms import add_silence, parse_silence
from web.params import SilenceId
from web.queries import expire_silence, rule_names, silences
from web.render import flash, local_time, machine_groups, render, url
from web.roles import SUPERVISOR
from web.services import services

log = get_logger(__name__)
router = APIRouter(dependencies=[Depends(check_csrf)])


def _page(
    request: Request,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    svc = services(request)
    now = svc.clock()
    with svc.sessions() as session:
        current = silences(session, now=now)
        recent = silences(session, now=now, include_ended=True, limit=20)
        rules = rule_names(session)
    ended = [s for s in recent if s.ends_at <= now]
    return render(
        request,
        "silences.html",
        {
            "current": current,
            "ended": ended,
            "rule_names": rules,
            "machine_groups": machine_groups(svc.cfg.machines),
            "names": {m.id: m.display_name for m in svc.cfg.machines},
            "values": values or {},
            "errors": errors or {},
        },
        status_code=status_code,
    )


@router.get("/silences")
def silences_page(
    request: Request, principal: Annotated[Principal, Depends(require(*SUPERVISOR))]
) -> Response:
    return _page(request)


@router.post("/silences")
def create_silence(
    request: Request,
    *,
    principal: Annotated[Principal, Depends(require(*SUPERVISOR))],
    machine: Annotated[str, Form()] = "",
    rule: Annotated[str, Form()] = "",
    hours: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> Response:
    svc = services(request)
    values = {"machine": machine, "rule": rule, "hours": hours, "reason": reason}
    try:
        checked = parse_silence(svc.cfg, values, now=svc.clock())
    except FormError as exc:
        svc.metrics.form_rejections.labels(form="silence", field=next(iter(exc.errors))).inc()
        return _page(request, values=values, errors=exc.errors, status_code=422)
    with svc.sessions() as session:
        row = add_silence(session, checked, author=principal.username)
    log.info(
        "silence_created",
        silence=row.id,
        machine=row.machine_id,
        rule=row.rule,
        hours=hours,
        user=principal.username,
    )
    silenced = svc.cfg.machine(row.machine_id) if row.machine_id else None
    name = silenced.display_name if silenced else row.machine_id
    what = " · ".join(p for p in (name, row.rule) if p)
    flash(request, f"Silenced {what or 'everything'} until {local_time(request, row.ends_at)}.")
    return RedirectResponse(url(request, "/silences"), status_code=303)


@router.post("/silences/{silence_id}/expire")
def expire(
    request: Request,
    silence_id: SilenceId,
    principal: Annotated[Principal, Depends(require(*SUPERVISOR))],
) -> Response:
    svc = services(request)
    with svc.sessions() as session:
        expire_silence(session, silence_id, by=principal.username, now=svc.clock())
    log.info("silence_expired", silence=silence_id, user=principal.username)
    flash(request, f"Silence {silence_id} ended: its machines and rules notify again.")
    return RedirectResponse(url(request, "/silences"), status_code=303)
