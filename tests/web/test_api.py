"""The JSON API on PostgreSQL: tokens, tickets, silences, machines, episodes, OpenAPI."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from core import keys
from core.db.schema import ApiToken, Episode, Ticket
from tests.web.conftest import csrf_of
from web import accounts


@pytest.fixture
def api_web(start_web, pg_engine):
    web = start_web(engine=pg_engine)
    with web.sessions.begin() as s:
        _, sup = accounts.add_token(s, name="teams-bot", roles=["supervisor"], created_by="test")
        _, ctl = accounts.add_token(s, name="bi", roles=["controller"])
    web.tokens = {"supervisor": sup, "controller": ctl}
    return web


def _bot(web, role="supervisor"):
    return web.client(headers={"Authorization": f"Bearer {web.tokens[role]}"})


def test_token_is_stored_only_as_a_digest(api_web) -> None:
    token = api_web.tokens["supervisor"]
    assert token.startswith("rs_") and len(token) > 40
    with api_web.sessions() as s:
        row = s.scalars(select(ApiToken).where(ApiToken.name == "teams-bot")).one()
        assert row.token_hash == accounts.token_digest(token) and token not in row.token_hash


def test_a_bot_files_a_ticket_into_the_same_outbox(api_web) -> None:
    bot = _bot(api_web)
    resp = bot.post(
        "/api/v1/tickets",
        json={
            "machine": "cnc101",
            "category": "safety",
            "severity": "high",
            "description": "Guard door interlock bypassed",
            "badge": "3003",
        },
    )
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert (body["state"], body["source"], body["reporter"], body["machine_id"]) == (
        "pending",
        "operator",
        "3003",
        "cnc101",
    )
    assert body["created_at"].endswith("Z")  # UTC, with its zone
    with api_web.sessions() as s:
        assert s.get(Ticket, body["id"]).title == "Safety on cnc101: Guard door interlock bypassed"
    one = bot.get(f"/api/v1/tickets/{body['id']}").json()
    assert [e["event"] for e in one["events"]] == ["created"]
    listed = bot.get("/api/v1/tickets", params={"machine": "cnc101"}).json()
    assert [t["id"] for t in listed] == [body["id"]]
    assert bot.get("/api/v1/tickets", params={"machine": "cnc102"}).json() == []


def test_bad_ticket_fields_answer_422_with_every_message(api_web) -> None:
    bot = _bot(api_web)
    resp = bot.post(
        "/api/v1/tickets",
        json={"machine": "cnc999", "category": "tool", "description": "", "badge": ""},
    )
    assert resp.status_code == 422
    assert resp.json()["errors"] == {
        "machine": "Unknown machine 'cnc999': pick one from the list.",
        "description": "Describe the problem.",
        "badge": "Enter your badge number.",
    }
    unknown_key = bot.post(
        "/api/v1/tickets",
        json={"machine": "cnc101", "category": "tool", "description": "x", "colour": "red"},
    )
    assert unknown_key.status_code == 422  # extra keys are refused, not ignored
    with api_web.sessions() as s:
        assert s.scalars(select(Ticket)).all() == []


def test_tokens_are_checked_and_roles_apply(api_web) -> None:
    assert api_web.client(headers={"Authorization": "Bearer rs_nope"}).get(
        "/api/v1/tickets"
    ).json() == {
        "detail": "invalid or revoked API token",
        "reason": "not_authenticated",
        "errors": {},
    }
    controller = _bot(api_web, "controller")
    assert controller.get("/api/v1/reports").status_code == 200
    # A controller's pages show no tickets: neither does the API (web/roles.py).
    assert controller.get("/api/v1/tickets").status_code == 403
    refused = controller.post(
        "/api/v1/silences", json={"machine": "cnc101", "hours": 1, "reason": "x"}
    )
    assert refused.status_code == 403
    with api_web.sessions.begin() as s:
        assert accounts.revoke_token(s, "bi")
    assert controller.get("/api/v1/reports").status_code == 401


def test_silences_through_the_api(api_web) -> None:
    bot = _bot(api_web)
    made = bot.post(
        "/api/v1/silences", json={"rule": "counter_jump", "hours": 1.5, "reason": "Sensor swap"}
    )
    assert made.status_code == 201, made.text
    silence = made.json()
    assert (silence["machine_id"], silence["rule"], silence["author"]) == (
        None,
        "counter_jump",
        "token:teams-bot",
    )
    assert [x["id"] for x in bot.get("/api/v1/silences").json()] == [silence["id"]]
    expired = bot.post(f"/api/v1/silences/{silence['id']}/expire").json()
    assert expired["expired_by"] == "token:teams-bot"
    assert bot.get("/api/v1/silences").json() == []
    assert len(bot.get("/api/v1/silences", params={"include_ended": True}).json()) == 1
    bad = bot.post("/api/v1/silences", json={"hours": 1, "reason": "x"})
    assert bad.status_code == 422
    assert bad.json()["errors"] == {
        "machine": "Pick a machine or a rule: a silence never covers everything."
    }
    assert bot.post("/api/v1/silences/999/expire").status_code == 404


def test_machines_tool_changes_and_episodes(api_web, redis_client) -> None:
    now = datetime.now(UTC)
    redis_client.hset(
        keys.machine_live("cnc101"),
        mapping={"state": "idle", "updated_at": now.timestamp(), "part_count": "12"},
    )
    redis_client.zadd(keys.UPCOMING_TOOL_CHANGES, {"cnc101|T3": 25})
    with api_web.sessions.begin() as s:
        s.add(
            Episode(
                fingerprint="f",
                machine_id="cnc101",
                rule="r",
                rule_type="counter_jump",
                evidence={"series": {"name": "counter", "points": [[1, 2]]}},
                started_at=now - timedelta(minutes=5),
                last_seen_at=now,
            )
        )
    bot = _bot(api_web)
    machines = {m["id"]: m for m in bot.get("/api/v1/machines").json()}
    assert machines["cnc101"]["state"] == "idle"
    assert machines["cnc101"]["signals"] == {"part_count": "12"}
    assert machines["cnc102"]["state"] == "no_data"
    assert machines["cnc103"]["workcenter_key"] == 61324
    assert bot.get("/api/v1/tool-changes").json() == [
        {"machine": "cnc101", "tool": "T3", "minutes_remaining": 25.0}
    ]
    [episode] = bot.get("/api/v1/episodes").json()
    assert episode["rule_type"] == "counter_jump"
    assert episode["evidence"]["series"]["points"] == [[1, 2]]
    assert bot.get(f"/api/v1/episodes/{episode['id']}").json()["id"] == episode["id"]


def test_openapi_document_describes_the_api(api_web) -> None:
    assert api_web.client().get("/api/openapi.json").status_code == 401  # login first
    doc = _bot(api_web).get("/api/openapi.json").json()
    paths = set(doc["paths"])
    assert {
        "/api/v1/tickets",
        "/api/v1/tickets/{ticket_id}",
        "/api/v1/episodes",
        "/api/v1/machines",
        "/api/v1/silences",
        "/api/v1/tool-changes",
    } <= paths
    assert not any(p.startswith(("/login", "/boards", "/silences")) for p in paths)
    assert "TicketIn" in doc["components"]["schemas"]


def test_session_api_writes_need_the_csrf_header(api_web) -> None:
    c = api_web.login("sam")
    body = {"machine": "cnc101", "category": "tool", "description": "x", "badge": "1"}
    assert c.post("/api/v1/tickets", json=body).status_code == 403
    token = csrf_of(c.get("/report").text)
    assert c.post("/api/v1/tickets", json=body, headers={"X-CSRF-Token": token}).status_code == 201
