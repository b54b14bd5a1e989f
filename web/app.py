"""The web app factory: one FastAPI app from the configuration and its connections.

``create_app`` wires the routers (``web/views/``), the static files, the session cookie,
the security middleware and the error pages. Connections are passed in (tests hand over
their own engine, Redis and metrics registry) or built from the configuration; the caller
owns and closes them. ``repsys web`` (``web/cli.py``) serves the app with uvicorn.

Errors raised anywhere in a handler become responses here, once: an HTML page for people,
JSON for the API (paths under ``/api/``), always the one shape ``web.openapi.ErrorOut``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, text
from starlette.exceptions import HTTPException
from starlette.middleware.sessions import SessionMiddleware

from core.config import RepsysConfig
from core.db import make_engine, session_factory
from core.db.schema import utcnow
from core.lifecycle import Stopper
from core.logs import get_logger
from core.metrics import new_registry
from core.redis import RedisCommands, connect, connect_sync
from core.sources import SeriesArchive
from core.toollife import ToolLifeHistory
from runner.errors import BadRequest, QueueUnavailable
from web.accounts import Principal
from web.auth import current
from web.errors import (
    CsrfError,
    Forbidden,
    FormError,
    NotAuthenticated,
    NotFound,
    RateLimited,
    WebError,
)
from web.metrics import WebMetrics
from web.middleware import WebMiddleware
from web.openapi import REASONS, SESSION_COOKIE
from web.openapi import install as install_openapi
from web.ratelimit import LoginLimiter, ReportQuota
from web.render import STATIC, build_templates, render, url
from web.services import Services, services
from web.views import api, boards, login, operator, reports, silences, toollife

log = get_logger(__name__)


def check_ready(svc: Services) -> tuple[bool, str]:
    """Ready when the database and Redis both answer; otherwise which one does not."""
    try:
        with svc.sessions() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means "not ready", with its text
        return False, f"database: {type(exc).__name__}"
    try:
        svc.redis.ping()
    except Exception as exc:  # redis-py raises several unrelated types
        return False, f"redis: {type(exc).__name__}"
    return True, ""


def _is_api(request: Request) -> bool:
    root = str(request.scope.get("root_path", ""))
    return request.url.path.startswith(f"{root}/api/")


def _printable(text: str) -> str:
    # A message may quote what the client sent; a lone surrogate in it would make the
    # answer itself unencodable.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def api_error(
    status: int,
    reason: str,
    detail: str,
    errors: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The API's one error answer (``web.openapi.ErrorOut``).

    A ``reason`` the document does not list is a bug here: it is logged and answered as
    ``http`` rather than letting the answer itself fail.
    """
    if reason not in REASONS:
        log.error("web_error_reason_undocumented", reason=reason, status=status)
        reason = "http"
    body = {
        "detail": _printable(detail),
        "reason": reason,
        "errors": {_printable(k): _printable(v) for k, v in (errors or {}).items()},
    }
    return JSONResponse(body, status_code=status, headers=headers)


def _error(
    request: Request,
    status: int,
    title: str,
    exc: Exception,
    *,
    reason: str,
    headers: dict[str, str] | None = None,
) -> Response:
    if _is_api(request):
        return api_error(status, reason, str(exc), headers=headers)
    context = {"title": title, "message": str(exc)}
    return render(request, "error.html", context, status_code=status, headers=headers)


async def _on_not_authenticated(request: Request, exc: Exception) -> Response:
    if _is_api(request):
        return api_error(401, "not_authenticated", str(exc), headers={"WWW-Authenticate": "Bearer"})
    target = request.url.path
    root = str(request.scope.get("root_path", ""))
    if root and target.startswith(root):
        target = target[len(root) :]
    wanted = request.method == "GET" and target not in ("/", "")
    query = f"?next={quote(target, safe='/')}" if wanted else ""
    return RedirectResponse(url(request, f"/login{query}"), status_code=303)


async def _on_forbidden(request: Request, exc: Exception) -> Response:
    # Also the answer to any other WebError (a lock, the root class): refused, 403.
    reason = exc.reason if isinstance(exc, WebError) and exc.reason in REASONS else "forbidden"
    return _error(request, 403, "Not allowed", exc, reason=reason)


async def _on_csrf(request: Request, exc: Exception) -> Response:
    return _error(request, 403, "Form expired", exc, reason="csrf")


async def _on_not_found(request: Request, exc: Exception) -> Response:
    return _error(request, 404, "Not found", exc, reason="not_found")


async def _on_rate_limited(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RateLimited)
    headers = {"Retry-After": str(exc.retry_after_s)}
    return _error(request, 429, "Too many requests", exc, reason="rate_limited", headers=headers)


async def _on_form_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FormError)
    if _is_api(request):
        return api_error(422, "bad_input", str(exc), exc.errors)
    # A form re-renders itself with its messages; one that reached here (a page without
    # its own form) still answers a page a person can read.
    return _page(request, 422, "Not accepted", str(exc))


async def _on_bad_report(request: Request, exc: Exception) -> Response:
    # The runner's words for a report request it refuses (the pages catch it themselves).
    if _is_api(request):
        return api_error(422, "bad_input", str(exc), {"params": str(exc)})
    return _page(request, 422, "Not accepted", str(exc))


async def _on_queue_unavailable(request: Request, exc: Exception) -> Response:
    if _is_api(request):
        return api_error(503, "queue_unavailable", str(exc))
    return _page(request, 503, "Try again in a minute", str(exc), headers={"Retry-After": "30"})


def _field(loc: tuple[Any, ...]) -> str:
    # ("body", "hours") -> "hours"; ("path", "ticket_id") -> "ticket_id"; ("body",) -> "body"
    parts = [str(p) for p in loc[1:]] or [str(p) for p in loc[:1]]
    return ".".join(parts)


async def _on_invalid_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors: dict[str, str] = {}
    for error in exc.errors():
        errors.setdefault(_field(tuple(error.get("loc", ()))), str(error.get("msg", "invalid")))
    detail = "; ".join(f"{k}: {v}" for k, v in errors.items())
    if _is_api(request):
        return api_error(422, "bad_input", detail, errors)
    if any(e.get("loc", ("",))[0] == "path" for e in exc.errors()):
        # A page's address with an impossible id names nothing: the page does not exist.
        return render(
            request,
            "error.html",
            {"title": "Not found", "message": "There is no such page."},
            status_code=404,
        )
    message = f"The request is not valid: {_printable(detail)}"
    context = {"title": "Bad request", "message": message}
    return render(request, "error.html", context, status_code=422)


_HTTP_REASONS = {400: "bad_body", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}


#: Page titles and messages of plain HTTP errors, in words (the API answers JSON instead).
_HTTP_PAGES = {
    400: ("Bad request", "The browser sent something this page cannot read."),
    404: ("Not found", "There is no such page."),
    405: ("Not found", "There is no such page."),
    413: ("Too large", "What was sent is larger than this page accepts."),
}


def _page(
    request: Request,
    status: int,
    title: str,
    message: str,
    headers: dict[str, str] | None = None,
) -> Response:
    context = {"title": title, "message": _printable(message)}
    return render(request, "error.html", context, status_code=status, headers=headers)


async def _on_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if _is_api(request):
        reason = _HTTP_REASONS.get(exc.status_code, "http")
        return api_error(exc.status_code, reason, str(exc.detail), headers=headers)
    title, message = _HTTP_PAGES.get(
        exc.status_code, ("Not possible", "This request cannot be answered.")
    )
    return _page(request, exc.status_code, title, message, headers=headers)


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    # Starlette re-raises the exception after this answer, so it is still logged with
    # its traceback; the client gets the documented shape instead of plain text.
    log.error("web_unexpected_error", path=request.url.path, error=type(exc).__name__)
    if _is_api(request):
        return api_error(500, "internal", "An unexpected error; it is logged.")
    return render(
        request,
        "error.html",
        {"title": "Something went wrong", "message": "An unexpected error; it is logged."},
        status_code=500,
    )


def create_app(
    cfg: RepsysConfig,
    *,
    engine: Engine | None = None,
    redis: RedisCommands | None = None,
    async_redis: Callable[[], Any] | None = None,
    registry: CollectorRegistry | None = None,
    stopper: Stopper | None = None,
    clock: Callable[[], datetime] = utcnow,
    tool_life: ToolLifeHistory | None = None,
    history_series: SeriesArchive | None = None,
) -> FastAPI:
    """Build the web app. Connections not given are made from ``cfg``; ``tool_life``
    and ``history_series`` (the signal history's readers, ``repsys/wiring.py``) are given
    by the caller."""
    registry = registry if registry is not None else new_registry()
    redis = redis if redis is not None else connect_sync(cfg.redis)
    metrics = WebMetrics(registry)
    svc = Services(
        cfg=cfg,
        sessions=session_factory(engine if engine is not None else make_engine(cfg.database)),
        redis=redis,
        async_redis=async_redis or (lambda: connect(cfg.redis)),
        registry=registry,
        metrics=metrics,
        limiter=LoginLimiter(redis, cfg.web.login),
        stopper=stopper or Stopper(),
        quota=ReportQuota(redis, cfg.web.reports),
        clock=clock,
        tool_life=tool_life,
        history_series=history_series,
    )
    if cfg.web.session_secret is not None:
        secret = cfg.web.session_secret.get_secret_value()
    else:
        # Without a configured secret, logins do not survive a restart and a second
        # replica would not accept the first one's cookies: fine for a demo, not a plant.
        secret = secrets.token_urlsafe(32)
        log.warning("session_secret_generated", why="web.session_secret is not set")

    app = FastAPI(
        title="RepSys",
        summary="Tickets, episodes, machines, silences and report requests of a plant.",
        version="1",
        docs_url=None,  # the stock docs pages load scripts from a CDN our CSP forbids
        redoc_url=None,
        # Served below, to logged-in users only: the document maps every route and role.
        openapi_url=None,
        root_path=cfg.web.root_path,
    )
    app.state.services = svc
    app.state.templates = build_templates(cfg.plant.timezone)
    for module in (login, operator, boards, silences, reports, toollife):
        app.include_router(module.router, include_in_schema=False)
    app.include_router(api.router)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> Response:
        return PlainTextResponse("ok\n")

    @app.get("/readyz", include_in_schema=False)
    def readyz(request: Request) -> Response:
        ready, why = check_ready(services(request))
        return PlainTextResponse((why or "ok") + "\n", status_code=200 if ready else 503)

    # /metrics is served on http.port only (``repsys web`` starts it, like every process):
    # the web port is what the ingress publishes.

    @app.get("/api/openapi.json", include_in_schema=False)
    def openapi_document(
        request: Request, principal: Annotated[Principal, Depends(current)]
    ) -> Response:
        doc = app.openapi()
        root = request.scope.get("root_path", "").rstrip("/")
        if root and not doc.get("servers"):
            doc = {**doc, "servers": [{"url": root}]}
        return JSONResponse(doc)

    app.add_exception_handler(NotAuthenticated, _on_not_authenticated)
    app.add_exception_handler(Forbidden, _on_forbidden)
    app.add_exception_handler(CsrfError, _on_csrf)
    app.add_exception_handler(NotFound, _on_not_found)
    app.add_exception_handler(RateLimited, _on_rate_limited)
    app.add_exception_handler(FormError, _on_form_error)
    app.add_exception_handler(WebError, _on_forbidden)
    app.add_exception_handler(BadRequest, _on_bad_report)
    app.add_exception_handler(QueueUnavailable, _on_queue_unavailable)
    app.add_exception_handler(RequestValidationError, _on_invalid_request)
    app.add_exception_handler(HTTPException, _on_http)
    app.add_exception_handler(Exception, _on_unexpected)
    install_openapi(app, cfg)

    # Added last = outermost: the security headers and metrics wrap the session cookie.
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret,
        session_cookie=SESSION_COOKIE,
        max_age=cfg.web.session_max_age_s,
        same_site="lax",
        https_only=cfg.web.cookie_secure,
    )
    app.add_middleware(
        WebMiddleware,
        metrics=metrics,
        max_body_bytes=cfg.web.max_body_bytes,
        hsts=cfg.web.hsts,
    )
    return app
