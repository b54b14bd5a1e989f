"""Security review findings (issue 15), one test per finding, against the served app.

The app runs under uvicorn on loopback (``start_web``); "the gateway" is this test's
client sending the headers Kong would, from 127.0.0.1, a listed proxy address.
"""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest
import yaml

from core.config import load_config
from core.db.schema import Silence
from core.errors import ConfigError
from core.metrics import sample
from tests.web.conftest import PASSWORD, PIN, csrf_of, hashed
from tests.web.test_auth import PROXY_SECRET, proxy_settings
from web import accounts

SUPERVISOR = {"X-Authenticated-User": "kim@plant", "X-Authenticated-Groups": "cnc-supervisors"}


def login_with(web, *, headers: dict[str, str], username: str) -> httpx.Response:
    c = web.client(headers=headers)
    token = csrf_of(c.get("/login").text)
    return c.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token})


def gateway_web(start_web, monkeypatch, **login_limits):
    web_section = {"trusted_proxy": proxy_settings(monkeypatch, proxies=["127.0.0.0/8"])}
    if login_limits:
        web_section["login"] = login_limits
    return start_web({"web": web_section})


# --- proxy identity -----------------------------------------------------------------------


@pytest.mark.parametrize("secret", [None, "", "wrong", PROXY_SECRET + "x"])
def test_proxy_headers_without_the_gateway_secret_are_ignored(
    start_web, monkeypatch, secret
) -> None:
    """Any pod that can reach the web port could send these headers; the secret proves Kong."""
    web = gateway_web(start_web, monkeypatch)
    headers = dict(SUPERVISOR)
    if secret is not None:
        headers["X-RepSys-Proxy-Secret"] = secret
    c = web.client(headers=headers)
    page = c.get("/silences")
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    assert c.get("/api/v1/tickets").status_code == 401
    labels = {"method": "proxy", "result": "bad_proxy_secret"}
    assert sample(web.registry, "repsys_web_logins_total", labels) >= 1
    proven = web.client(headers={**SUPERVISOR, "X-RepSys-Proxy-Secret": PROXY_SECRET})
    assert proven.get("/silences").status_code == 200


@pytest.mark.parametrize(
    ("trusted_proxy", "message"),
    [
        (
            {"enabled": True, "proxies": ["10.0.0.1"], "role_map": {"g": "operator"}},
            "web.trusted_proxy: trusted_proxy.enabled needs 'secret': the header the gateway "
            "adds to prove itself (an address alone does not)",
        ),
        (
            {"enabled": True, "proxies": ["10.0.0.1"], "secret": {"env": "REPSYS_TEST_PS"}},
            "web.trusted_proxy: trusted_proxy.enabled needs 'role_map' (identity-provider "
            "group -> role), so no group name becomes a RepSys role by accident",
        ),
    ],
)
def test_proxy_config_needs_the_secret_and_the_role_map(
    tmp_path: Path, monkeypatch, trusted_proxy, message
) -> None:
    monkeypatch.setenv("REPSYS_TEST_PS", "s")
    path = tmp_path / "repsys.yaml"
    path.write_text(yaml.safe_dump({"web": {"trusted_proxy": trusted_proxy}}))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}: {message}"


# --- CSRF -----------------------------------------------------------------------------------


def test_a_junk_bearer_does_not_skip_csrf_for_a_proxy_user(start_web, monkeypatch) -> None:
    web = gateway_web(start_web, monkeypatch)
    proven = {**SUPERVISOR, "X-RepSys-Proxy-Secret": PROXY_SECRET}
    body = {"rule": "counter_jump", "hours": 1, "reason": "sensor swap"}
    junk = web.client(headers={**proven, "Authorization": "Bearer junk"})
    # Before: the bearer header alone skipped the check and the silence was made (201).
    assert junk.post("/api/v1/silences", json=body).status_code == 403
    plain = web.client(headers=proven)
    assert plain.post("/api/v1/silences", json=body).status_code == 403
    token = csrf_of(plain.get("/silences").text)
    made = plain.post("/api/v1/silences", json=body, headers={"X-CSRF-Token": token})
    assert made.status_code == 201, made.text


def test_a_junk_bearer_alone_is_refused_not_exempted(start_web) -> None:
    web = start_web()
    c = web.login("sam")
    body = {"rule": "counter_jump", "hours": 1, "reason": "sensor swap"}
    resp = c.post("/api/v1/silences", json=body, headers={"Authorization": "Bearer junk"})
    assert resp.status_code in (401, 403)
    with web.sessions() as s:
        assert s.query(Silence).count() == 0


def test_a_valid_token_needs_no_csrf_token(start_web) -> None:
    web = start_web()
    with web.sessions.begin() as s:
        _, token = accounts.add_token(s, name="bot", roles=["supervisor"])
    bot = web.client(headers={"Authorization": f"Bearer {token}"})
    body = {"rule": "counter_jump", "hours": 1, "reason": "sensor swap"}
    assert bot.post("/api/v1/silences", json=body).status_code == 201


# --- logins ---------------------------------------------------------------------------------


def _wrong_passwords_at_once(web, n: int, username: str, headers=None) -> list[int]:
    """``n`` clients, each with its own login page and token, post a wrong password at once."""
    clients = [web.client(headers=headers or {}) for _ in range(n)]
    tokens = [csrf_of(c.get("/login").text) for c in clients]
    barrier = threading.Barrier(n)
    codes: list[int] = [0] * n

    def attempt(i: int) -> None:
        barrier.wait(10)
        codes[i] = (
            clients[i]
            .post(
                "/login",
                data={"username": username, "password": "wrong guess", "csrf_token": tokens[i]},
            )
            .status_code
        )

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return codes


def test_thirty_parallel_wrong_passwords_check_at_most_the_limit(start_web) -> None:
    web = start_web({"web": {"login": {"max_failures_per_user": 5}}})
    codes = _wrong_passwords_at_once(web, 30, "sam")
    # 401 = the password was checked; 429 = refused before any check.
    assert sorted(set(codes)) == [401, 429]
    assert codes.count(401) == 5, codes
    assert codes.count(429) == 25, codes
    # The name stays locked for the right password too.
    c = web.client()
    token = csrf_of(c.get("/login").text)
    locked = c.post("/login", data={"username": "sam", "password": PASSWORD, "csrf_token": token})
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0


def test_a_locked_account_does_not_lock_out_others(start_web) -> None:
    web = start_web({"web": {"login": {"max_failures_per_user": 3}}})
    assert _wrong_passwords_at_once(web, 5, "sam").count(401) == 3
    assert web.login("olga").get("/report").status_code == 200


def test_behind_the_gateway_each_client_address_has_its_own_bucket(start_web, monkeypatch) -> None:
    """Every connection comes from the gateway; the proven gateway's X-Forwarded-For tells
    clients apart, so a guesser at one bench does not lock out the plant."""
    web = gateway_web(start_web, monkeypatch, max_failures_per_user=100, max_failures_per_address=3)

    def from_client(address: str, proven: bool = True) -> dict[str, str]:
        headers = {"X-Forwarded-For": f"203.0.113.9, {address}"}
        if proven:
            headers["X-RepSys-Proxy-Secret"] = PROXY_SECRET
        return headers

    guesser = _wrong_passwords_at_once(web, 4, "sam", headers=from_client("10.1.1.1"))
    assert sorted(guesser) == [401, 401, 401, 429]
    assert login_with(web, headers=from_client("10.2.2.2"), username="olga").status_code == 303
    # Unproven, the header is the client's own claim: the peer address counts instead.
    unproven = _wrong_passwords_at_once(web, 4, "sam", headers=from_client("10.3.3.3", False))
    assert sorted(unproven) == [401, 401, 401, 429]
    assert login_with(web, headers=from_client("10.4.4.4", False), username="olga").status_code == (
        429
    )


def test_a_badge_and_pin_log_in_as_operator_only(start_web) -> None:
    web = start_web()
    with web.sessions.begin() as s:
        ada = accounts.find_user(s, "ada")
        assert ada is not None and ada.roles == "admin"
        ada.badge, ada.pin_hash = "9009", hashed(PIN)
    c = web.client()
    token = csrf_of(c.get("/login").text)
    resp = c.post("/login/badge", data={"badge": "9009", "pin": PIN, "csrf_token": token})
    assert resp.status_code == 303
    assert c.get("/report").status_code == 200
    assert c.get("/silences").status_code == 403
    body = {"rule": "counter_jump", "hours": 1, "reason": "sensor swap"}
    token = csrf_of(c.get("/report").text)
    assert c.post("/api/v1/silences", json=body, headers={"X-CSRF-Token": token}).status_code == 403
    # The same admin with her password has every role.
    assert web.login("ada").get("/silences").status_code == 200


def test_login_limiter_never_leaves_a_counter_without_expiry(start_web) -> None:
    web = start_web({"web": {"login": {"max_failures_per_user": 2}}})
    web.login("olga")  # a good login gives its attempt back to a fresh address counter
    for key in web.redis.scan_iter("*login*"):
        assert web.redis.ttl(key) > 0, key
        assert int(web.redis.get(key)) >= 0, key
