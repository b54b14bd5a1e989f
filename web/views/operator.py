"""The operator's ticket form and the ticket's status page.

Why this exists: a broken engraver once ran for days unnoticed and caused a rejection.
The operator at the machine sees such things first; this form lets them file a ticket in
a few taps. The ticket goes into the same Plex outbox as automatic tickets
(``core.outbox.add_ticket``, source ``operator``, reporter = badge), and the status page
follows it from pending to filed with its Plex number, or to failed with why.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from core.logs import get_logger
from core.model import Severity, TicketState
from web.accounts import Principal
from web.auth import require
from web.csrf import check_csrf
from web.errors import FormError
from web.forms import file_ticket, new_submit_token, parse_ticket, submit_key
from web.params import TicketId
from web.queries import get_ticket, ticket_events, ticket_silence, tickets
from web.render import machine_groups, render, url
from web.roles import REPORTERS
from web.services import services

log = get_logger(__name__)
router = APIRouter(dependencies=[Depends(check_csrf)])

#: What each outbox state means to the person who filed the ticket.
STATE_WORDS = {
    TicketState.PENDING.value: "Waiting to be sent to Plex",
    TicketState.SENDING.value: "Sending to Plex",
    TicketState.FILED.value: "Filed in Plex",
    TicketState.DEAD.value: "Failed: Plex did not take it",
    TicketState.CANCELLED.value: "Cancelled",
    TicketState.CLOSED.value: "Closed in Plex",
}
#: A ticket's history in the words of the floor (``TicketEvent.event`` → words).
EVENT_WORDS = {
    "created": "Written down",
    "claimed": "Sending to Plex",
    "filed": "Filed in Plex",
    "retry": "Plex did not take it yet; trying again",
    "dead": "Plex did not take it; a supervisor must look",
    "replayed": "Sent again",
    "cancelled": "Withdrawn",
    "status": "Plex status changed",
    "escalated": "Escalated",
    "closed": "Closed in Plex",
}
_ATTEMPT = re.compile(r"attempt (\d+)")


def event_words(event: str, detail: str) -> tuple[str, str]:
    """(what, detail) of one ticket event as the ticket page shows it.

    A send attempt names the process that made it (``vm:16267 attempt 1``): that is for
    the logs and ``repsys outbox``; the page says which attempt it was, from the second.
    """
    what = EVENT_WORDS.get(event, event.replace("_", " ").capitalize())
    if event == "claimed":
        found = _ATTEMPT.search(detail)
        attempt = int(found.group(1)) if found else 1
        return what, f"attempt {attempt}" if attempt > 1 else ""
    if event == "created":
        return what, {"operator": "from the operator's form", "rule": "by a rule"}.get(
            detail, detail
        )
    return what, detail


def _form_page(
    request: Request,
    principal: Principal,
    *,
    values: dict[str, str],
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    svc = services(request)
    recent: list[Any] = []
    if principal.badge:
        with svc.sessions() as session:
            recent = tickets(session, reporter=principal.badge, limit=10)
    return render(
        request,
        "report.html",
        {
            "machine_groups": machine_groups(svc.cfg.machines),
            "categories": svc.cfg.web.categories,
            "severities": [s.value for s in Severity],
            "max_chars": svc.cfg.web.description_max_chars,
            "values": values,
            "errors": errors or {},
            "recent": recent,
            "machine_names": {m.id: m.display_name for m in svc.cfg.machines},
        },
        status_code=status_code,
    )


@router.get("/report")
def report_form(
    request: Request,
    principal: Annotated[Principal, Depends(require(*REPORTERS))],
    machine: str = "",
) -> Response:
    return _form_page(
        request, principal, values={"machine": machine, "submit_token": new_submit_token()}
    )


@router.post("/report")
def report_submit(
    request: Request,
    *,
    principal: Annotated[Principal, Depends(require(*REPORTERS))],
    machine: Annotated[str, Form()] = "",
    category: Annotated[str, Form()] = "",
    severity: Annotated[str, Form()] = "",
    description: Annotated[str, Form()] = "",
    badge: Annotated[str, Form()] = "",
    submit_token: Annotated[str, Form()] = "",
) -> Response:
    svc = services(request)
    values = {
        "machine": machine,
        "category": category,
        "severity": severity,
        "description": description,
        "badge": badge,
        # Kept through a refused submit: fixing the form and sending it again is one ticket.
        "submit_token": submit_key(submit_token) or new_submit_token(),
    }
    try:
        checked = parse_ticket(svc.cfg, values, badge=principal.badge)
    except FormError as exc:
        first = next(iter(exc.errors))
        svc.metrics.form_rejections.labels(form="ticket", field=first).inc()
        log.info("ticket_form_rejected", user=principal.username, fields=sorted(exc.errors))
        # A 100 kB paste is not sent back into the form: the message says what to fix.
        if len(description) > svc.cfg.web.description_max_chars:
            values["description"] = description[: svc.cfg.web.description_max_chars]
        return _form_page(request, principal, values=values, errors=exc.errors, status_code=422)
    with svc.sessions() as session:
        row, created = file_ticket(
            session,
            checked,
            now=svc.clock(),
            user=principal.username,
            key=submit_key(submit_token),
        )
    if not created:
        # The second tap of a slow network: the first tap's ticket, not a second one.
        log.info("ticket_submit_repeated", ref=row.external_ref, ticket=row.id)
        return RedirectResponse(url(request, f"/tickets/{row.id}"), status_code=303)
    svc.metrics.tickets_filed.labels(category=checked.category.id).inc()
    log.info(
        "ticket_filed",
        ref=row.external_ref,
        ticket=row.id,
        machine=checked.machine.id,
        category=checked.category.id,
        reporter=checked.badge,
        user=principal.username,
    )
    return RedirectResponse(url(request, f"/tickets/{row.id}"), status_code=303)


def _ticket_context(request: Request, ticket_id: int) -> dict[str, Any]:
    svc = services(request)
    with svc.sessions() as session:
        ticket = get_ticket(session, ticket_id)
        events = ticket_events(session, ticket_id)
        muted = ticket_silence(session, ticket, now=svc.clock())
    machine = svc.cfg.machine(ticket.machine_id)
    labels = {c.id: c.label for c in svc.cfg.web.categories}
    return {
        "ticket": ticket,
        "events": events,
        "muted": muted,
        "state_words": STATE_WORDS,
        "event_words": event_words,
        "machine_name": machine.display_name if machine else ticket.machine_id,
        "category_label": labels.get(ticket.category, ticket.category or "—"),
    }


@router.get("/tickets/{ticket_id}")
def ticket_page(
    request: Request,
    ticket_id: TicketId,
    principal: Annotated[Principal, Depends(require(*REPORTERS))],
) -> Response:
    context = _ticket_context(request, ticket_id)
    context["can_report"] = True
    return render(request, "ticket.html", context)


@router.get("/tickets/{ticket_id}/status")
def ticket_status(
    request: Request,
    ticket_id: TicketId,
    principal: Annotated[Principal, Depends(require(*REPORTERS))],
) -> Response:
    """The status block alone; the ticket page's script polls it while the ticket moves."""
    return render(request, "_ticket_status.html", _ticket_context(request, ticket_id))
