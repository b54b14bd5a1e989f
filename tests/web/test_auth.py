"""Login, roles, CSRF, rate limiting, trusted proxy and security headers, over real HTTP.

The app runs in uvicorn on a loopback port with the test's redis-server and SQLite file;
clients are plain httpx, so every cookie, header and status is what a browser would get.
"""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest
from sqlalchemy import func, select

from core import keys
from core.db.schema import Ticket
from core.metrics import sample
from repsys.servers import free_port
from tests.web.conftest import PASSWORD, PIN, csrf_of
from web import accounts


def _post_login(c, **data):
    token = csrf_of(c.get("/login").text)
    return c.post("/login", data={"csrf_token": token, **data})


def test_session_cookie_is_httponly_samesite_and_secure(start_web) -> None:
    web = start_web({"web": {"cookie_secure": True}})
    cookie = web.client().get("/login").headers["set-cookie"].lower()
    assert cookie.startswith("repsys_session=")
    assert "httponly" in cookie and "samesite=lax" in cookie and "; secure" in cookie


def test_password_login_lands_on_the_home_page(start_web) -> None:
    web = start_web()
    c = web.client()
    resp = _post_login(c, username="sam", password=PASSWORD)
    assert resp.status_code == 303
    assert resp.headers["location"] == "/boards/machines"  # a supervisor's own home
    assert "; secure" not in resp.headers["set-cookie"].lower()  # cookie_secure: false here
    assert "Sam Supervisor" in c.get("/report").text
    assert (
        sample(web.registry, "repsys_web_logins_total", {"method": "password", "result": "ok"}) == 1
    )


def test_wrong_password_and_unknown_user_get_the_same_message(start_web) -> None:
    web = start_web()
    c = web.client()
    for username in ("sam", "nobody"):
        resp = _post_login(c, username=username, password="wrong password!")
        assert resp.status_code == 401
        assert "Wrong user name or password." in resp.text
    assert c.get("/report").status_code == 303  # still anonymous


def test_operator_logs_in_with_badge_and_pin(start_web) -> None:
    web = start_web()
    c = web.client()
    token = csrf_of(c.get("/login").text)
    bad = c.post("/login/badge", data={"badge": "1001", "pin": "0000", "csrf_token": token})
    assert bad.status_code == 401 and "Wrong badge number or PIN." in bad.text
    ok = c.post("/login/badge", data={"badge": "1001", "pin": PIN, "csrf_token": token})
    assert ok.status_code == 303 and ok.headers["location"] == "/report"
    page = c.get("/report").text
    # The badge of a badge login is the reporter, shown read-only on the form.
    assert 'name="badge" value="1001" readonly' in page


def test_failed_logins_lock_the_name_even_for_the_right_password(start_web, redis_client) -> None:
    web = start_web({"web": {"login": {"max_failures_per_user": 3, "window_s": 600}}})
    c = web.client()
    for _ in range(3):
        assert _post_login(c, username="sam", password="guess guess").status_code == 401
    locked = _post_login(c, username="sam", password=PASSWORD)
    assert locked.status_code == 429
    assert "Too many failed logins. Try again in 10 minutes." in locked.text
    assert 590 <= int(locked.headers["retry-after"]) <= 600
    assert redis_client.get(keys.login_attempts("user:sam")) == "3"
    assert 0 < redis_client.ttl(keys.login_attempts("user:sam")) <= 600
    assert (
        sample(web.registry, "repsys_web_logins_total", {"method": "password", "result": "locked"})
        == 1
    )
    # Another user from the same address is not locked by sam's failures.
    assert _post_login(web.client(), username="dan", password=PASSWORD).status_code == 303


def test_good_login_clears_the_name_counter(start_web, redis_client) -> None:
    web = start_web()
    c = web.client()
    _post_login(c, username="sam", password="guess guess")
    assert redis_client.get(keys.login_attempts("user:sam")) == "1"
    assert _post_login(c, username="sam", password=PASSWORD).status_code == 303
    assert redis_client.get(keys.login_attempts("user:sam")) is None
    assert redis_client.get(keys.login_attempts("addr:127.0.0.1")) == "1"


def test_post_without_csrf_token_is_refused_with_403_and_changes_nothing(start_web) -> None:
    web = start_web()
    c = web.login("olga")
    resp = c.post(
        "/report",
        data={"machine": "cnc101", "category": "tool", "description": "forged", "severity": "low"},
    )
    assert resp.status_code == 403
    assert "This form has expired or did not come from this site." in resp.text
    wrong = c.post(
        "/report",
        data={
            "machine": "cnc101",
            "category": "tool",
            "description": "forged",
            "csrf_token": "x" * 43,
        },
    )
    assert wrong.status_code == 403
    with web.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Ticket)) == 0
    assert sample(web.registry, "repsys_web_csrf_rejections_total") == 2
    # The login form is protected too (login CSRF).
    anon = web.client()
    assert anon.post("/login", data={"username": "sam", "password": PASSWORD}).status_code == 403


def test_operator_on_a_supervisor_page_gets_403(start_web) -> None:
    web = start_web()
    c = web.login("olga")
    for path in ("/silences", "/boards/episodes", "/boards/tickets"):
        resp = c.get(path)
        assert resp.status_code == 403, path
        assert "This page needs the supervisor role." in resp.text
    assert c.get("/boards/machines").status_code == 200
    # The operator's header shows only what they may open.
    page = c.get("/report").text
    assert 'href="/silences"' not in page and 'href="/report"' in page
    # And an API write needing the role is refused the same way.
    token = csrf_of(page)
    api = c.post(
        "/api/v1/silences",
        json={"machine": "cnc101", "hours": 1, "reason": "x"},
        headers={"X-CSRF-Token": token},
    )
    assert api.status_code == 403
    assert api.json() == {
        "detail": "This page needs the supervisor role.",
        "reason": "forbidden",
        "errors": {},
    }


def test_admin_passes_every_role_check(start_web) -> None:
    web = start_web()
    c = web.login("ada")
    assert all(c.get(p).status_code == 200 for p in ("/silences", "/report", "/boards/tickets"))


def test_anonymous_page_redirects_to_login_and_api_answers_401(start_web) -> None:
    web = start_web()
    c = web.client()
    resp = c.get("/boards/tickets")
    assert resp.status_code == 303
    assert resp.headers["location"] == "/login?next=/boards/tickets"
    api = c.get("/api/v1/tickets")
    assert api.status_code == 401
    assert api.json() == {"detail": "log in first", "reason": "not_authenticated", "errors": {}}
    # After login the user lands where they were going; a foreign target is ignored.
    token = csrf_of(c.get("/login?next=/boards/tickets").text)
    ok = c.post(
        "/login",
        data={
            "username": "sam",
            "password": PASSWORD,
            "csrf_token": token,
            "next": "/boards/tickets",
        },
    )
    assert ok.headers["location"] == "/boards/tickets"
    other = web.client()
    token = csrf_of(other.get("/login").text)
    evil = other.post(
        "/login",
        data={
            "username": "sam",
            "password": PASSWORD,
            "csrf_token": token,
            "next": "//evil.example/x",
        },
    )
    assert evil.headers["location"] == "/boards/machines"  # the supervisor's home


def test_logout_ends_the_session_on_the_server(start_web, redis_client) -> None:
    web = start_web()
    c = web.login("sam")
    old_cookie = c.cookies.get("repsys_session")
    assert len(redis_client.keys(keys.web_session("*"))) == 1
    token = csrf_of(c.get("/report").text)
    assert c.post("/logout", data={"csrf_token": token}).status_code == 303
    assert redis_client.keys(keys.web_session("*")) == []
    # Replaying the old signed cookie no longer works: the login lived in Redis.
    replay = web.client(cookies={"repsys_session": old_cookie})
    assert replay.get("/report").status_code == 303


def test_disabling_a_user_ends_their_sessions_at_once(start_web) -> None:
    web = start_web()
    c = web.login("sam")
    assert c.get("/silences").status_code == 200
    with web.sessions.begin() as s:
        accounts.set_active(s, "sam", False)
    assert c.get("/silences").status_code == 303
    assert _post_login(web.client(), username="sam", password=PASSWORD).status_code == 401


PROXY_SECRET = "gateway-secret-for-tests"


def proxy_settings(monkeypatch, **extra):
    monkeypatch.setenv("REPSYS_TEST_PROXY_SECRET", PROXY_SECRET)
    return {
        "enabled": True,
        "secret": {"env": "REPSYS_TEST_PROXY_SECRET"},
        "role_map": {"cnc-supervisors": "supervisor", "plant-ops": "operator"},
        **extra,
    }


def test_trusted_proxy_headers_from_an_unlisted_address_are_ignored(start_web, monkeypatch) -> None:
    web = start_web({"web": {"trusted_proxy": proxy_settings(monkeypatch, proxies=["10.0.0.0/8"])}})
    c = web.client(
        headers={
            "X-Authenticated-User": "mallory",
            "X-Authenticated-Groups": "cnc-supervisors",
            "X-RepSys-Proxy-Secret": PROXY_SECRET,
        }
    )
    resp = c.get("/silences")
    assert resp.status_code == 303 and resp.headers["location"].startswith("/login")
    assert c.get("/api/v1/tickets").status_code == 401


def test_trusted_proxy_headers_from_a_listed_address_identify_the_user(
    start_web, monkeypatch
) -> None:
    web = start_web(
        {"web": {"trusted_proxy": proxy_settings(monkeypatch, proxies=["127.0.0.0/8"])}}
    )
    sup = web.client(
        headers={
            "X-Authenticated-User": "kim@plant",
            "X-Authenticated-Groups": "cnc-supervisors, unrelated",
            "X-RepSys-Proxy-Secret": PROXY_SECRET,
        }
    )
    page = sup.get("/silences")
    assert page.status_code == 200 and "kim@plant" in page.text
    # Groups the map does not know give no role: a gateway group named "admin" is not admin.
    nobody = web.client(
        headers={
            "X-Authenticated-User": "eve",
            "X-Authenticated-Groups": "admin",
            "X-RepSys-Proxy-Secret": PROXY_SECRET,
        }
    )
    assert nobody.get("/silences").status_code == 403


def test_every_page_carries_the_security_headers(start_web) -> None:
    web = start_web()
    c = web.login("sam")
    for path in ("/login", "/report", "/boards/machines", "/api/v1/tickets"):
        h = c.get(path).headers
        assert "default-src 'self'" in h["content-security-policy"]
        assert "frame-ancestors 'none'" in h["content-security-policy"]
        assert "script-src 'self'" in h["content-security-policy"]
        assert h["x-frame-options"] == "DENY"
        assert h["x-content-type-options"] == "nosniff"
        assert h["referrer-policy"] == "same-origin"
        assert h["cache-control"] == "no-store"
    static = c.get("/static/app.css")
    assert static.status_code == 200 and "no-store" not in static.headers.get("cache-control", "")


def test_huge_body_is_refused_with_413_before_parsing(start_web) -> None:
    web = start_web({"web": {"max_body_bytes": 65536}})
    c = web.login("olga")
    token = csrf_of(c.get("/report").text)
    resp = c.post("/report", data={"description": "x" * 200_000, "csrf_token": token})
    assert resp.status_code == 413
    # A page in the app's style (the handler never ran), saying what happened.
    assert resp.headers["content-type"].startswith("text/html")
    assert "Request body larger than 65536 bytes." in resp.text
    assert "/static/app.css" in resp.text
    api = c.post("/api/v1/tickets", content=b"x" * 200_000, headers={"X-CSRF-Token": token})
    assert api.status_code == 413 and api.json()["reason"] == "too_large"


def test_probes_and_metrics_with_bounded_route_labels(start_web) -> None:
    web = start_web()
    c = web.login("sam")
    for ticket_id in (101, 102, 103):
        assert c.get(f"/tickets/{ticket_id}").status_code == 404
    assert c.get("/no/such/page").status_code == 404
    assert c.get("/healthz").text == "ok\n"
    assert c.get("/readyz").text == "ok\n"
    metrics = generate_latest(web.registry).decode()
    assert (
        'repsys_web_requests_total{method="GET",route="/tickets/{ticket_id}",status="404"} 3.0'
        in metrics
    )
    assert 'route="unmatched",status="404"} 1.0' in metrics
    assert "/tickets/101" not in metrics
    # /metrics is served on http.port, not on the web port the ingress publishes.
    assert c.get("/metrics").status_code == 404


def test_readiness_names_the_missing_dependency(start_web) -> None:
    web = start_web({"redis": {"url": f"redis://127.0.0.1:{free_port()}/0"}}, users=False)
    c = web.client()
    assert c.get("/healthz").text == "ok\n"  # alive: do not restart it ...
    ready = c.get("/readyz")  # ... but send it no work
    assert ready.status_code == 503 and ready.text == "redis: ConnectionError\n"


@pytest.mark.parametrize(
    ("username", "home"),
    [
        ("olga", "/report"),
        ("sam", "/boards/machines"),
        ("dan", "/reports"),
        ("ada", "/boards/machines"),
    ],
)
def test_each_role_lands_on_its_own_home_page(start_web, username, home) -> None:
    web = start_web()
    c = web.client()
    resp = _post_login(c, username=username, password=PASSWORD)
    assert resp.headers["location"] == home
    assert c.get("/").headers["location"] == home
