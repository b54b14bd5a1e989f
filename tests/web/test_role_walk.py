"""Every route of the app and the API, for every role: who gets in and who gets 403.

The expected table is written here from the page table in ``web/README.md``, not taken
from ``web/roles.py``: a route whose roles change there, or a new route nobody placed in
this table, fails the walk. An API route allows exactly the roles of the page that shows
the same thing, so no role reads through ``/api/v1`` what its pages do not show it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute

from tests.web.conftest import RunningWeb, csrf_of

ROLES = ("anonymous", "operator", "controller", "supervisor", "admin")
USERS = {"operator": "olga", "controller": "dan", "supervisor": "sam", "admin": "ada"}

PUBLIC = "public"  # anonymous too
LOGGED_IN = ("operator", "controller", "supervisor")
REPORTERS = ("operator", "supervisor")
FLOOR = ("operator", "supervisor")
SUPERVISOR = ("supervisor",)
REPORTS = ("controller", "supervisor")

#: (method, path) -> who may (``admin`` passes every check).
EXPECTED: dict[tuple[str, str], str | tuple[str, ...]] = {
    ("GET", "/login"): PUBLIC,
    ("POST", "/login"): PUBLIC,
    ("POST", "/login/badge"): PUBLIC,
    ("POST", "/logout"): PUBLIC,
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/"): LOGGED_IN,
    ("GET", "/account"): LOGGED_IN,
    ("GET", "/api/openapi.json"): LOGGED_IN,
    ("GET", "/report"): REPORTERS,
    ("POST", "/report"): REPORTERS,
    ("GET", "/tickets/{ticket_id}"): REPORTERS,
    ("GET", "/tickets/{ticket_id}/status"): REPORTERS,
    ("GET", "/api/v1/tickets/{ticket_id}"): REPORTERS,
    ("POST", "/api/v1/tickets"): REPORTERS,
    ("GET", "/boards"): FLOOR,
    ("GET", "/boards/machines"): FLOOR,
    ("GET", "/boards/tool-changes"): FLOOR,
    ("GET", "/machines/{machine_id}"): FLOOR,
    # Without a kiosk token the TV board is a floor board; with one, see test_boards.py.
    ("GET", "/board/tv"): FLOOR,
    ("GET", "/api/v1/machines"): FLOOR,
    ("GET", "/api/v1/tool-changes"): FLOOR,
    ("GET", "/boards/episodes"): SUPERVISOR,
    ("GET", "/episodes/{episode_id}"): SUPERVISOR,
    ("GET", "/boards/tickets"): SUPERVISOR,
    ("GET", "/tool-life"): SUPERVISOR,
    ("GET", "/tool-life.xlsx"): SUPERVISOR,
    ("GET", "/silences"): SUPERVISOR,
    ("POST", "/silences"): SUPERVISOR,
    ("POST", "/silences/{silence_id}/expire"): SUPERVISOR,
    ("GET", "/api/v1/tickets"): SUPERVISOR,
    ("GET", "/api/v1/episodes"): SUPERVISOR,
    ("GET", "/api/v1/episodes/{episode_id}"): SUPERVISOR,
    ("GET", "/api/v1/silences"): SUPERVISOR,
    ("POST", "/api/v1/silences"): SUPERVISOR,
    ("POST", "/api/v1/silences/{silence_id}/expire"): SUPERVISOR,
    ("GET", "/reports"): REPORTS,
    ("GET", "/reports/queue"): REPORTS,
    ("POST", "/reports"): REPORTS,
    ("POST", "/reports/{request_id}/cancel"): REPORTS,
    ("GET", "/reports/{request_id}/download"): REPORTS,
    ("GET", "/reports/events"): REPORTS,
    ("GET", "/api/v1/reports"): REPORTS,
    ("GET", "/api/v1/reports/{request_id}"): REPORTS,
    ("POST", "/api/v1/reports"): REPORTS,
    ("POST", "/api/v1/reports/{request_id}/cancel"): REPORTS,
}


def app_routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, path) of every route, through included routers."""
    for route in routes:
        if hasattr(route, "original_router"):  # FastAPI's included router
            yield from app_routes(
                route.original_router.routes, prefix + route.include_context.prefix
            )
        elif isinstance(route, APIRoute):
            for method in sorted(set(route.methods or ()) - {"HEAD"}):
                yield method, prefix + route.path


def concrete(path: str) -> str:
    """A path with its parameters filled: ids that pass validation and exist nowhere."""
    path = path.replace("{request_id}", "no-such-request")
    return re.sub(r"\{[a-z_]+\}", "987654", path)


def allowed(who: str | tuple[str, ...], role: str) -> bool:
    if who == PUBLIC:
        return True
    return role != "anonymous" and (role == "admin" or role in who)


def status_of(client, method: str, path: str, csrf: str) -> int:
    headers = {"X-CSRF-Token": csrf} if csrf else {}
    if method == "GET":
        # Read the status only: /reports/events is a stream that does not end.
        with client.stream("GET", path, headers=headers) as resp:
            return resp.status_code
    if path.startswith("/api/"):
        return client.post(path, json={}, headers=headers).status_code
    return client.post(path, data={"csrf_token": csrf}, headers=headers).status_code


@pytest.fixture
def walk_web(start_web) -> RunningWeb:
    return start_web()


def test_every_route_of_the_app_is_in_the_table(walk_web: RunningWeb) -> None:
    app: Any = walk_web.server.config.app
    assert set(app_routes(app.routes)) == set(EXPECTED)


@pytest.mark.parametrize("role", ROLES)
def test_each_role_gets_in_exactly_where_its_pages_let_it(walk_web: RunningWeb, role: str) -> None:
    if role == "anonymous":
        client = walk_web.client()
        csrf = csrf_of(client.get("/login").text)
    else:
        client = walk_web.login(USERS[role])
        csrf = csrf_of(client.get("/account").text)
    wrong: list[str] = []
    walked = 0
    for (method, path), who in sorted(EXPECTED.items()):
        if (method, path) in (("POST", "/logout"), ("POST", "/login"), ("POST", "/login/badge")):
            continue  # they end or replace the session the walk goes on with
        status = status_of(client, method, concrete(path), csrf)
        walked += 1
        api = path.startswith("/api/")
        if allowed(who, role):
            ok = (
                status not in (401, 403)
                and status < 500
                and not (status == 303 and not api and role == "anonymous" and who != PUBLIC)
            )
        elif role == "anonymous":
            ok = status == (401 if api else 303)
        else:
            ok = status == 403
        if not ok:
            wrong.append(f"{method} {path}: {status}")
    print(f"\n{role}: walked {walked} routes")
    assert wrong == []
