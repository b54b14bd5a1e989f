"""The web app factory: one FastAPI app from the configuration and its connections.

``create_app`` wires the routers (``web/views/``), the static files, the session cookie,
the security middleware and the error pages. Connections are passed in (tests hand over
their own engine, Redis and metrics registry) or built from the configuration; the caller
owns and closes them. ``repsys web`` (``web/cli.py``) serves the app with uvicorn.

Errors raised anywhere in a handler become responses here, once: an HTML page for people,
JSON for the API (paths under ``/api/``).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy import Engine, text
from starlette.exceptions import HTTPException
from starlette.middleware.sessions import SessionMiddleware

from core.config import RepsysConfig
from core.db import make_engine, session_factory
from core.db.schema import utcnow
from core.lifecycle import Stopper
from core.logs import get_logger
from core.metrics import new_registry
from core.redis import connect, connect_sync
from web.errors import CsrfError, Forbidden, FormError, NotAuthenticated, NotFound, WebError
from web.metrics import WebMetrics
from web.middleware import WebMiddleware
from web.ratelimit import LoginLimiter
from web.render import STATIC, build_templates, render, url
from web.services import Services, services
from web.views import api, boards, login, operator, reports, silences

log = get_logger(__name__)
SESSION_COOKIE = "repsys_session"


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


def _error(request: Request, status: int, title: str, message: str) -> Response:
    if _is_api(request):
        return JSONResponse({"detail": message}, status_code=status)
    return render(request, "error.html", {"title": title, "message": message}, status_code=status)


async def _on_not_authenticated(request: Request, exc: Exception) -> Response:
    if _is_api(request):
        return JSONResponse(
            {"detail": str(exc)}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
        )
    target = request.url.path
    root = str(request.scope.get("root_path", ""))
    if root and target.startswith(root):
        target = target[len(root) :]
    wanted = request.method == "GET" and target not in ("/", "")
    query = f"?next={quote(target, safe='/')}" if wanted else ""
    return RedirectResponse(url(request, f"/login{query}"), status_code=303)


async def _on_forbidden(request: Request, exc: Exception) -> Response:
    return _error(request, 403, "Not allowed", str(exc))


async def _on_csrf(request: Request, exc: Exception) -> Response:
    return _error(request, 403, "Form expired", str(exc))


async def _on_not_found(request: Request, exc: Exception) -> Response:
    return _error(request, 404, "Not found", str(exc))


async def _on_form_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FormError)
    return JSONResponse({"detail": str(exc), "errors": exc.errors}, status_code=422)


async def _on_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if _is_api(request) or exc.status_code not in (404, 405):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
    return _error(request, exc.status_code, "Not found", "There is no such page.")


def create_app(
    cfg: RepsysConfig,
    *,
    engine: Engine | None = None,
    redis: Any = None,
    async_redis: Callable[[], Any] | None = None,
    registry: CollectorRegistry | None = None,
    stopper: Stopper | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> FastAPI:
    """Build the web app. Connections not given are made from ``cfg``."""
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
        clock=clock,
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
        openapi_url="/api/openapi.json",
        root_path=cfg.web.root_path,
    )
    app.state.services = svc
    app.state.templates = build_templates(cfg.plant.timezone)
    for module in (login, operator, boards, silences, reports):
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

    @app.get("/metrics", include_in_schema=False)
    def metrics_endpoint() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.add_exception_handler(NotAuthenticated, _on_not_authenticated)
    app.add_exception_handler(Forbidden, _on_forbidden)
    app.add_exception_handler(CsrfError, _on_csrf)
    app.add_exception_handler(NotFound, _on_not_found)
    app.add_exception_handler(FormError, _on_form_error)
    app.add_exception_handler(WebError, _on_forbidden)
    app.add_exception_handler(HTTPException, _on_http)

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
