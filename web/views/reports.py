"""Report requests: ask for a trial balance or an escalation report, watch the queue, download.

Requests go through ``runner.requests.submit`` (the one runner module web may import), so
a period typed here is checked in the same words as one given to ``repsys request``. The
queue is shown like a print queue (running, pending, then finished) and follows the
runner's progress channel live: the page's script listens to ``/reports/events``
(server-sent events relayed from Redis Pub/Sub) and reloads the queue block on each
message. Pub/Sub only says "something moved"; the rows come from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import mimetypes
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from redis.exceptions import RedisError

from core import keys
from core.config import RepsysConfig
from core.config.storage import StorageConfig
from core.logs import get_logger
from core.model import ReportState
from core.storage import StorageError, Store, open_store, safe_key
from runner.errors import BadRequest, QueueUnavailable
from runner.requests import Submitted, cancel, get_request, list_queue, submit_request
from web.accounts import Principal
from web.auth import require
from web.csrf import check_csrf
from web.errors import Forbidden, NotFound, RateLimited
from web.params import RequestId
from web.render import flash, render, url
from web.roles import REPORT_ROLES
from web.services import Services, services

log = get_logger(__name__)
router = APIRouter(dependencies=[Depends(check_csrf)])
#: Who may request (and download) each kind; a kind not listed is the controller's.
KIND_ROLES = {
    "tb": ("controller",),
    "escalation": ("supervisor", "controller"),
    "tool_check": ("supervisor", "controller"),
}
KIND_LABELS = {"tb": "Trial balance", "escalation": "Escalation report", "tool_check": "Tool check"}
HEARTBEAT_S = 15.0


def kind_roles(kind: str) -> tuple[str, ...]:
    return KIND_ROLES.get(kind, ("controller",))


def submit_report(
    svc: Services, principal: Principal, *, kind: str, params: dict[str, Any]
) -> Submitted:
    """Request a report for ``principal``, from the page or the API, within the limits.

    An identical request made within ``web.reports.same_request_window_s`` is returned
    instead of a new one (and costs no quota); a new one counts against the user's hourly
    quota for the kind.

    Raises:
        Forbidden: the kind needs a role the principal lacks.
        BadRequest: unknown kind or parameters (the runner's message).
        RateLimited: over ``web.reports`` for this user and kind.
        QueueUnavailable: Redis did not take the request; nothing is queued.
    """
    if kind in svc.cfg.runner.pipelines and not principal.has_any(kind_roles(kind)):
        raise Forbidden(f"A {KIND_LABELS.get(kind, kind)} needs the {kind_roles(kind)[0]} role.")
    try:
        done = submit_request(
            svc.sessions,
            svc.redis,
            svc.cfg,
            kind=kind,
            params=params,
            requester=principal.username,
            same_request_window_s=svc.cfg.web.reports.same_request_window_s,
            admit=lambda: _take_quota(svc, principal, kind),
        )
    except RateLimited:
        svc.metrics.report_requests.labels(kind=kind, result="rate_limited").inc()
        log.info("report_request_rate_limited", kind=kind, user=principal.username)
        raise
    result = "created" if done.created else "same"
    svc.metrics.report_requests.labels(kind=kind, result=result).inc()
    return done


def _take_quota(svc: Services, principal: Principal, kind: str) -> None:
    # The quota lives in the queue's Redis: when it does not answer, nothing could be
    # queued either, and the requester hears that (503), not an unexpected error.
    try:
        svc.quota.take(principal.username, kind)
    except RedisError as exc:
        raise QueueUnavailable(f"the report queue is unavailable: {exc}") from exc


def check_may_cancel(svc: Services, principal: Principal, request_id: str) -> None:
    """Raise unless the request exists and ``principal`` requested it or is a controller."""
    row = get_request(svc.sessions, request_id)
    if row is None:
        raise NotFound(f"There is no report request {request_id}.")
    if row.requester != principal.username and not principal.has_any(("controller",)):
        raise Forbidden("Only the requester or a controller may cancel this request.")


def known_pcns(cfg: RepsysConfig) -> list[int]:
    """The PCNs a trial balance may name (the runner checks the same rule on submit)."""
    return sorted(set(cfg.runner.tb.pcns) or {m.pcn for m in cfg.machines})


def _queue_context(svc: Services, principal: Principal) -> dict[str, Any]:
    rows = list_queue(svc.sessions, limit=50)
    return {
        "queue": rows,
        "kind_labels": KIND_LABELS,
        "may_download": {r.id: principal.has_any(kind_roles(r.kind)) for r in rows},
    }


def _page(
    request: Request,
    principal: Principal,
    *,
    values: dict[str, str] | None = None,
    error: str = "",
    error_form: str = "",
    status_code: int = 200,
) -> Response:
    svc = services(request)
    cfg = svc.cfg
    kinds = [k for k in cfg.runner.pipelines if principal.has_any(kind_roles(k))]
    return render(
        request,
        "reports.html",
        {
            **_queue_context(svc, principal),
            "kinds": kinds,
            "pcns": known_pcns(cfg),
            "shifts": [s.name for s in cfg.runner.escalation.shifts],
            "values": values or {},
            "error": error,
            "error_form": error_form,
        },
        status_code=status_code,
    )


@router.get("/reports")
def reports_page(
    request: Request, principal: Annotated[Principal, Depends(require(*REPORT_ROLES))]
) -> Response:
    return _page(request, principal)


@router.get("/reports/queue")
def queue_fragment(
    request: Request, principal: Annotated[Principal, Depends(require(*REPORT_ROLES))]
) -> Response:
    """The queue table alone; the page reloads it on each progress message."""
    return render(request, "_report_queue.html", _queue_context(services(request), principal))


def report_params(kind: str, form: dict[str, str]) -> dict[str, Any]:
    """The runner's parameters from the form's fields (the runner checks them)."""
    if kind == "tb":
        params: dict[str, Any] = {}
        if form.get("start") or form.get("end"):
            params["start"] = form.get("start", "")
            params["end"] = form.get("end", "")
        if form.get("pcn"):
            params["pcns"] = form["pcn"]
        return params
    if kind == "escalation" and form.get("shift"):
        return {"shift": form["shift"]}
    return {}


@router.post("/reports")
def request_report(
    request: Request,
    principal: Annotated[Principal, Depends(require(*REPORT_ROLES))],
    *,
    kind: Annotated[str, Form()] = "",
    start: Annotated[str, Form()] = "",
    end: Annotated[str, Form()] = "",
    pcn: Annotated[str, Form()] = "",
    shift: Annotated[str, Form()] = "",
) -> Response:
    svc = services(request)
    form = {"kind": kind, "start": start.strip(), "end": end.strip(), "pcn": pcn, "shift": shift}
    try:
        row = submit_report(svc, principal, kind=kind, params=report_params(kind, form)).row
    except RateLimited as exc:
        page = _page(
            request, principal, values=form, error=str(exc), error_form=kind, status_code=429
        )
        page.headers["Retry-After"] = str(exc.retry_after_s)
        return page
    except BadRequest as exc:
        svc.metrics.form_rejections.labels(form="report", field="params").inc()
        return _page(
            request, principal, values=form, error=str(exc), error_form=kind, status_code=422
        )
    except QueueUnavailable:
        log.warning("report_queue_unavailable", user=principal.username, kind=kind)
        return _page(
            request,
            principal,
            values=form,
            error="The report queue is unavailable right now; nothing was queued. "
            "Try again in a minute.",
            error_form=kind,
            status_code=503,
        )
    log.info("report_requested_web", request=row.id, kind=kind, user=principal.username)
    flash(request, f"{row.name} is queued; it appears below and updates by itself.")
    return RedirectResponse(url(request, f"/reports#req-{row.id}"), status_code=303)


@router.post("/reports/{request_id}/cancel")
def cancel_report(
    request: Request,
    request_id: RequestId,
    principal: Annotated[Principal, Depends(require(*REPORT_ROLES))],
) -> Response:
    svc = services(request)
    check_may_cancel(svc, principal, request_id)
    cancel(svc.sessions, svc.redis, request_id, by=principal.username)
    flash(request, "The report request is cancelled.")
    return RedirectResponse(url(request, "/reports"), status_code=303)


def report_key(cfg: RepsysConfig, request_id: str, result_path: str | None) -> str | None:
    """The object key of a request's finished file, only if it is that request's own.

    ``result_path`` is an object key (``<request id>/<file>``) or, as the embedded default
    records it, a path inside ``runner.output_dir`` (the local store's root). Anything else
    (a path elsewhere, another request's key, ``..``) is never served.
    """
    if not result_path:
        return None
    if Path(result_path).is_absolute():
        root = Path(cfg.runner.output_dir).resolve()
        path = Path(result_path).resolve()
        if not path.is_relative_to(root):
            return None
        result_path = path.relative_to(root).as_posix()
    try:
        key = safe_key(result_path)
    except StorageError:
        return None
    return key if key.startswith(f"{request_id}/") else None


@functools.cache
def report_store(storage: StorageConfig, output_dir: str) -> Store:
    """One store per process and configuration (it holds an HTTP connection pool)."""
    return open_store(storage, default_root=output_dir)


def _disposition(name: str) -> str:
    quoted = quote(name)
    if quoted != name:
        return f"attachment; filename*=utf-8''{quoted}"
    return f'attachment; filename="{name}"'


@router.get("/reports/{request_id}/download")
def download(
    request: Request,
    request_id: RequestId,
    principal: Annotated[Principal, Depends(require(*REPORT_ROLES))],
) -> Response:
    """Stream the report from the object store, after the user's right to it is checked.

    The object is opened (so a missing one is a 404) and then sent in chunks of
    ``storage.chunk_bytes``: a report is never read whole into the web's memory.
    """
    svc = services(request)
    row = get_request(svc.sessions, request_id)
    if row is None:
        raise NotFound(f"There is no report request {request_id}.")
    if not principal.has_any(kind_roles(row.kind)):
        raise Forbidden(f"This report needs the {kind_roles(row.kind)[0]} role.")
    key = report_key(svc.cfg, row.id, row.result_path)
    if row.state != ReportState.COMPLETED.value or key is None:
        raise NotFound(f"Report {row.name} has no file to download.")
    try:
        opened = report_store(svc.cfg.storage, svc.cfg.runner.output_dir).open(key)
    except StorageError as exc:
        log.warning("report_download_failed", reason=exc.reason, request=row.id)
        if exc.reason == "not_found":
            raise NotFound(f"Report {row.name} has no file to download.") from exc
        raise
    name = key.rpartition("/")[2]
    log.info("report_downloaded", request=row.id, user=principal.username, size=opened.size)
    return StreamingResponse(
        opened.chunks,
        media_type=mimetypes.guess_type(name)[0] or "application/octet-stream",
        headers={"Content-Length": str(opened.size), "Content-Disposition": _disposition(name)},
    )


async def progress_stream(svc: Services, request: Request) -> AsyncIterator[str]:
    """Relay the progress channel as server-sent events until the client or we stop."""
    client = svc.async_redis()
    pubsub = client.pubsub()
    svc.metrics.live_listeners.inc()
    try:
        await pubsub.subscribe(keys.REPORT_PROGRESS)
        yield "retry: 3000\n\n"
        idle = 0.0
        while not svc.stopper.stopped and not await request.is_disconnected():
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is None:
                idle += 1.0
                if idle >= HEARTBEAT_S:
                    idle = 0.0
                    yield ": keep-alive\n\n"
                continue
            idle = 0.0
            data = str(message.get("data", "")).replace("\n", " ")
            yield f"data: {data}\n\n"
    finally:
        svc.metrics.live_listeners.dec()
        with contextlib.suppress(Exception):  # the connection may be gone already
            await asyncio.shield(pubsub.aclose())
        with contextlib.suppress(Exception):
            await client.aclose()


@router.get("/reports/events")
async def events(
    request: Request, principal: Annotated[Principal, Depends(require(*REPORT_ROLES))]
) -> Response:
    return StreamingResponse(
        progress_stream(services(request), request),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
