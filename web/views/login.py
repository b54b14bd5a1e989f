"""Logging in and out: user name and password, or an operator's badge and PIN.

Both forms go through the same steps: count the attempt and refuse it when the name or
the address is over its limit (``web/ratelimit.py``), check the secret, then give the
attempt back and start a session, or leave it counted as a failure. A wrong
name and a wrong password get the same message, so the form does not reveal which
accounts exist.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from core.logs import get_logger
from web.accounts import Principal, authenticate_badge, authenticate_password
from web.auth import client_address, current, end_session, resolve, start_session
from web.csrf import check_csrf
from web.errors import LoginLocked
from web.render import home_path, render, url
from web.services import services

log = get_logger(__name__)
router = APIRouter(dependencies=[Depends(check_csrf)])

BAD_PASSWORD = "Wrong user name or password."  # noqa: S105 - a message, not a secret
BAD_BADGE = "Wrong badge number or PIN."


def _safe_next(target: str) -> str:
    """Only a path of this site: never ``//host`` or a full URL (an open redirect)."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return ""


def _login(
    request: Request,
    *,
    who: str,
    method: str,
    check: Callable[[Session], Principal | None],
    bad_message: str,
    next_path: str,
    keep: dict[str, str],
) -> Response:
    svc = services(request)
    address = client_address(request)
    context = {"next": _safe_next(next_path), **keep}
    try:
        svc.limiter.attempt(who, address)
    except LoginLocked as exc:
        svc.metrics.logins.labels(method=method, result="locked").inc()
        log.warning("login_locked", who=who, address=address)
        return render(
            request,
            "login.html",
            {**context, "error": str(exc)},
            status_code=429,
            headers={"Retry-After": str(exc.retry_after_s)},
        )
    with svc.sessions() as session:
        principal = check(session)
    if principal is None:
        svc.metrics.logins.labels(method=method, result="bad_credentials").inc()
        log.info("login_failed", who=who, method=method, address=address)
        return render(request, "login.html", {**context, "error": bad_message}, status_code=401)
    svc.limiter.succeeded(who, address)
    start_session(request, principal)
    svc.metrics.logins.labels(method=method, result="ok").inc()
    log.info("login_ok", user=principal.username, method=method, address=address)
    target = context["next"] or home_path(principal)
    return RedirectResponse(url(request, target), status_code=303)


@router.get("/login")
def login_page(request: Request, next: str = "") -> Response:
    principal = resolve(request)
    if principal is not None:
        return RedirectResponse(url(request, home_path(principal)), status_code=303)
    return render(request, "login.html", {"next": _safe_next(next)})


@router.post("/login")
def login_password(
    request: Request,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    username = username.strip()
    return _login(
        request,
        who=f"user:{username}",
        method="password",
        check=lambda s: authenticate_password(s, username, password),
        bad_message=BAD_PASSWORD,
        next_path=next,
        keep={"username": username},
    )


@router.post("/login/badge")
def login_badge(
    request: Request,
    badge: Annotated[str, Form()] = "",
    pin: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    badge = badge.strip()
    return _login(
        request,
        who=f"badge:{badge}",
        method="badge",
        check=lambda s: authenticate_badge(s, badge, pin),
        bad_message=BAD_BADGE,
        next_path=next,
        keep={"badge": badge},
    )


@router.post("/logout")
def logout(request: Request) -> Response:
    principal = resolve(request)
    end_session(request)
    if principal is not None:
        log.info("logout", user=principal.username)
    return RedirectResponse(url(request, "/login"), status_code=303)


@router.get("/")
def home(request: Request, principal: Annotated[Principal, Depends(current)]) -> Response:
    return RedirectResponse(url(request, home_path(principal)), status_code=303)


@router.get("/account")
def account(request: Request, principal: Annotated[Principal, Depends(current)]) -> Response:
    return render(request, "account.html")
