"""What fuzzing the API found (issue 28), one test per finding.

Each input here earned a 500, a body unlike the document, or a stored row before: now
each earns a classified 4xx in the one documented error shape, and nothing is stored.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from core.db.schema import ReportRequestRow, Silence, Ticket
from repsys.servers import free_port
from tests.web.conftest import csrf_of
from web import accounts, models

ERROR_KEYS = {"detail", "reason", "errors"}


@pytest.fixture
def bot_web(start_web):
    """The app on SQLite (the demo's database, where big ids overflowed) and a token."""

    def factory(overrides=None):
        web = start_web(overrides)
        with web.sessions.begin() as s:
            _, token = accounts.add_token(s, name="bot", roles=["supervisor", "controller"])
        return web, web.client(headers={"Authorization": f"Bearer {token}"})

    return factory


def _post(client, path: str, body: dict[str, Any]):
    """POST ``body`` as JSON text; json.dumps escapes a lone surrogate as a client would."""
    return client.post(path, content=json.dumps(body), headers={"Content-Type": "application/json"})


def _is_error(resp, status: int, reason: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == ERROR_KEYS and body["reason"] == reason, body
    assert isinstance(body["detail"], str) and isinstance(body["errors"], dict)
    return body


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/tickets/{}"),
        ("GET", "/api/v1/episodes/{}"),
        ("POST", "/api/v1/silences/{}/expire"),
    ],
)
def test_ids_past_63_bits_are_refused_not_a_500(bot_web, method: str, path: str) -> None:
    _, bot = bot_web()
    for impossible in (2**63, 10**30, 0, -1):
        body = _is_error(bot.request(method, path.format(impossible)), 422, "bad_input")
        assert list(body["errors"]) == [path.split("/")[3].rstrip("s") + "_id"]
    # The largest possible id is a question with an answer: no such row.
    _is_error(bot.request(method, path.format(2**63 - 1)), 404, "not_found")


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("tool_check", {"window_minutes": "\u00b2"}),
        ("tb", {"start": "\u00b2" * 6, "end": 202401}),
        ("tb", {"pcns": "\u00b9"}),
        ("tb", {"pcns": "1\ud800"}),
    ],
)
def test_unicode_digits_in_report_parameters_are_a_422(bot_web, kind: str, params) -> None:
    web, bot = bot_web()
    body = _is_error(
        _post(bot, "/api/v1/reports", {"kind": kind, "params": params}), 422, "bad_input"
    )
    assert list(body["errors"]) == ["params"]
    with web.sessions() as s:
        assert s.scalars(select(ReportRequestRow)).all() == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x\ud800", "holds a character that cannot be stored"),
        ("\x85\x9f\x80", "contains a control character"),
        ("\u200b", None),
        ("\u200b\ufeff \u2060", None),
        ("Tool \u202eok\u202c", "contains a text-direction control character"),
    ],
)
def test_unstorable_invisible_or_misleading_text_is_refused(bot_web, text, message) -> None:
    web, bot = bot_web()
    ticket = {"machine": "cnc101", "category": "tool", "description": text, "badge": "1"}
    silence = {"machine": "cnc101", "hours": 1, "reason": text}
    for path, body, field, empty in [
        ("/api/v1/tickets", ticket, "description", "Describe the problem."),
        ("/api/v1/silences", silence, "reason", "Say why (the next shift reads it)."),
    ]:
        errors = _is_error(_post(bot, path, body), 422, "bad_input")["errors"]
        assert list(errors) == [field]
        assert (message or empty) in errors[field]
    with web.sessions() as s:
        assert s.scalars(select(Ticket)).all() == []
        assert s.scalars(select(Silence)).all() == []


def test_text_is_stored_nfc_normalized(bot_web) -> None:
    _, bot = bot_web()
    made = bot.post(
        "/api/v1/tickets",
        json={
            "machine": "cnc101",
            "category": "tool",
            "description": "Fre\u0301quence",
            "badge": "1",
        },
    )
    assert made.status_code == 201, made.text
    assert made.json()["description"] == "Fr\u00e9quence"


@pytest.mark.parametrize("hours", [1e-300, 0.01, 0, -1, 337, 1e300])
def test_silences_shorter_or_longer_than_allowed_are_refused(bot_web, hours: float) -> None:
    web, bot = bot_web()
    resp = bot.post("/api/v1/silences", json={"machine": "cnc101", "hours": hours, "reason": "x"})
    errors = _is_error(resp, 422, "bad_input")["errors"]
    assert errors == {"hours": "The duration is at least 5 minutes and at most 336 hours."}
    with web.sessions() as s:
        assert s.scalars(select(Silence)).all() == []


def test_the_422_body_is_the_documented_shape(bot_web) -> None:
    _, bot = bot_web()
    doc = bot.get("/api/openapi.json").json()
    shape = doc["components"]["schemas"]["ErrorOut"]
    assert shape["required"] == ["detail", "reason"]
    assert {k: v["type"] for k, v in shape["properties"].items()} == {
        "detail": "string",
        "reason": "string",
        "errors": "object",
    }
    assert {"bad_input", "not_authenticated", "rate_limited"} <= set(
        shape["properties"]["reason"]["enum"]
    )
    for path, method in [("/api/v1/tickets", "post"), ("/api/v1/silences", "post")]:
        declared = doc["paths"][path][method]["responses"]["422"]["content"]["application/json"]
        assert declared["schema"] == {"$ref": "#/components/schemas/ErrorOut"}
    # A pydantic check (wrong type) and a form check (unknown machine) answer alike.
    typed = _is_error(
        bot.post("/api/v1/silences", json={"hours": "x", "reason": 1}), 422, "bad_input"
    )
    assert set(typed["errors"]) == {"hours", "reason"}
    checked = _is_error(
        bot.post(
            "/api/v1/tickets", json={"machine": "cnc999", "category": "tool", "description": "x"}
        ),
        422,
        "bad_input",
    )
    assert checked["errors"]["machine"] == "Unknown machine 'cnc999': pick one from the list."


def test_the_document_declares_security_and_every_error_status(bot_web) -> None:
    _, bot = bot_web()
    doc = bot.get("/api/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["bearer"]["description"],
    }
    assert (schemes["session"]["in"], schemes["session"]["name"]) == ("cookie", "repsys_session")
    assert (schemes["csrf"]["in"], schemes["csrf"]["name"]) == ("header", "X-CSRF-Token")
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            codes = set(op["responses"])
            assert {"401", "403", "500"} <= codes, (method, path)
            assert op["security"], (method, path)
            if "{" in path:
                assert {"404", "422"} <= codes, (method, path)
            if "requestBody" in op:
                assert {"400", "413", "422"} <= codes, (method, path)
                assert op["requestBody"]["content"]["application/json"]["schema"], (method, path)
            if method == "post":
                assert {"csrf": [], "session": []} in op["security"], (method, path)
    # Every body in and out has an example, and the example is one the app would accept
    # or give.
    for name in ("TicketIn", "SilenceIn", "ReportIn", "TicketOut", "TicketDetail", "SilenceOut"):
        for example in doc["components"]["schemas"][name]["examples"]:
            getattr(models, name).model_validate(example)
    for example in doc["components"]["schemas"]["ReportOut"]["examples"]:
        models.ReportOut.model_validate(example)


def test_report_requests_are_limited_per_user_and_kind(bot_web) -> None:
    web, bot = bot_web({"web": {"reports": {"per_hour_by_kind": {"tool_check": 2}}}})

    def ask(client, minutes: int):
        return client.post(
            "/api/v1/reports", json={"kind": "tool_check", "params": {"window_minutes": minutes}}
        )

    assert [ask(bot, m).status_code for m in (10, 20)] == [201, 201]
    over = ask(bot, 30)
    body = _is_error(over, 429, "rate_limited")
    assert 3540 <= int(over.headers["Retry-After"]) <= 3600
    assert "2 tool_check reports in the last hour" in body["detail"]
    # An identical request is the existing one: it costs no quota, even over it.
    again = ask(bot, 20)
    assert again.status_code == 200
    # Another user has their own quota; another kind has its own too.
    dan = web.login("dan")
    csrf = {"X-CSRF-Token": csrf_of(dan.get("/account").text)}
    assert (
        dan.post(
            "/api/v1/reports",
            json={"kind": "tool_check", "params": {"window_minutes": 30}},
            headers=csrf,
        ).status_code
        == 201
    )
    with web.sessions() as s:
        assert len(s.scalars(select(ReportRequestRow)).all()) == 3
    counted = {
        result: web.registry.get_sample_value(
            "repsys_web_report_requests_total", {"kind": "tool_check", "result": result}
        )
        for result in ("created", "same", "rate_limited")
    }
    assert counted == {"created": 3.0, "same": 1.0, "rate_limited": 1.0}


def test_an_identical_request_soon_after_returns_the_existing_one(bot_web) -> None:
    web, bot = bot_web()
    body = {"kind": "tool_check", "params": {"window_minutes": 15}}
    first = bot.post("/api/v1/reports", json=body).json()
    # It ran and completed: asked again within the window, it is still that one.
    with web.sessions.begin() as s:
        s.get(ReportRequestRow, first["id"]).state = "completed"
    again = bot.post("/api/v1/reports", json=body)
    assert (again.status_code, again.json()["id"]) == (200, first["id"])
    # A failed one is no answer: asking again makes a new request.
    with web.sessions.begin() as s:
        s.get(ReportRequestRow, first["id"]).state = "failed"
    retried = bot.post("/api/v1/reports", json=body)
    assert retried.status_code == 201 and retried.json()["id"] != first["id"]


def test_what_the_document_forbids_the_api_refuses(bot_web) -> None:
    """The pages forgive a space around a machine id; the API keeps to its document."""
    web, bot = bot_web()
    doc = bot.get("/api/openapi.json").json()["components"]["schemas"]
    limit = doc["TicketIn"]["properties"]["description"]["maxLength"]
    assert limit == web.cfg.web.description_max_chars
    good = {"machine": "cnc101", "category": "tool", "description": "chipped", "badge": "1"}
    for field, value in [
        ("machine", " cnc101"),
        ("category", "tool "),
        ("severity", "HIGH"),
        ("badge", "1 "),
        # Longer than maxLength as sent, though only spaces make it so.
        ("description", "chipped" + " " * limit),
    ]:
        body = _is_error(bot.post("/api/v1/tickets", json={**good, field: value}), 422, "bad_input")
        assert list(body["errors"]) == [field], body
    silence = {"rule": "counter_jump", "hours": 1, "reason": "x"}
    for field, value in [("rule", "counter jump"), ("machine", "cnc101 "), ("reason", "x" * 513)]:
        resp = bot.post("/api/v1/silences", json={**silence, field: value})
        assert list(_is_error(resp, 422, "bad_input")["errors"]) == [field]
    with web.sessions() as s:
        assert s.scalars(select(Ticket)).all() == []
        assert s.scalars(select(Silence)).all() == []


def test_a_report_request_without_redis_is_a_503_not_a_500(bot_web) -> None:
    """The quota is counted in the queue's Redis: when it is away, nothing is queued."""
    web, bot = bot_web({"redis": {"url": f"redis://127.0.0.1:{free_port()}/0"}})
    resp = bot.post("/api/v1/reports", json={"kind": "tool_check", "params": {}})
    assert "the report queue is unavailable" in _is_error(resp, 503, "queue_unavailable")["detail"]
    with web.sessions() as s:
        assert s.scalars(select(ReportRequestRow)).all() == []
    # What has no classified answer is still a 500 in the documented shape, not text.
    broken = bot.get("/api/v1/machines")
    assert _is_error(broken, 500, "internal")["detail"] == "An unexpected error; it is logged."


@pytest.mark.parametrize(
    ("path", "name", "good"),
    [
        ("/api/v1/episodes", "machine", "cnc101"),
        ("/api/v1/tickets", "machine", "cnc101"),
        ("/api/v1/silences", "include_ended", "true"),
    ],
)
def test_a_query_parameter_given_twice_is_refused(bot_web, path: str, name: str, good: str) -> None:
    """Found by the soak run: the last of ?machine=<invalid>&machine=cnc101 was read."""
    _, bot = bot_web()
    resp = bot.get(path, params=[(name, "\n\x84"), (name, good)])
    assert _is_error(resp, 422, "bad_input")["errors"] == {name: "Give this parameter once."}
    assert bot.get(path, params={name: good}).status_code == 200


def test_a_reason_the_document_does_not_list_is_never_answered() -> None:
    from web.app import api_error

    def reason(resp) -> str:
        return str(json.loads(bytes(resp.body))["reason"])

    assert reason(api_error(400, "locked", "x")) == "http"
    assert reason(api_error(429, "rate_limited", "x")) == "rate_limited"
