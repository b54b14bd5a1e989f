"""The operator's ticket form over real HTTP: what is filed, and what each bad input gets."""

from __future__ import annotations

import threading

import pytest
from markupsafe import escape
from sqlalchemy import func, select

from core.db.schema import Ticket, TicketEvent
from core.metrics import sample
from tests.conftest import TEST_MACHINES, _merge
from tests.web.conftest import csrf_of, run_sender


def _form(c, **fields):
    token = csrf_of(c.get("/report").text)
    data = {
        "machine": "cnc103",
        "category": "quality",
        "severity": "high",
        "description": "Engraver skips the last digit",
        "csrf_token": token,
    }
    data.update(fields)
    return c.post("/report", data=data)


def _count(web) -> int:
    with web.sessions() as s:
        return s.scalar(select(func.count()).select_from(Ticket)) or 0


def test_operator_ticket_goes_into_the_outbox_as_pending(start_web) -> None:
    web = start_web()
    c = web.client()
    token = csrf_of(c.get("/login").text)
    c.post("/login/badge", data={"badge": "1001", "pin": "4321", "csrf_token": token})
    # A badge typed into the form cannot replace the logged-in operator's badge.
    resp = _form(c, badge="9999", description="Engraver skips the last digit\nsince 6:00")
    assert resp.status_code == 303
    ticket_id = int(resp.headers["location"].rsplit("/", 1)[1])
    with web.sessions() as s:
        t = s.get(Ticket, ticket_id)
        assert t is not None
        assert (t.source, t.reporter, t.machine_id, t.category, t.severity, t.state) == (
            "operator",
            "1001",
            "cnc103",
            "quality",
            "high",
            "pending",
        )
        assert (t.pcn, t.workcenter_key) == (123681, 61324)
        assert t.title == "Quality / rejection risk on cnc103: Engraver skips the last digit"
        assert t.description == "Engraver skips the last digit\nsince 6:00"
        assert t.external_ref.startswith("RS-")
        events = s.scalars(select(TicketEvent).where(TicketEvent.ticket_id == ticket_id)).all()
        assert [(e.event, e.detail) for e in events] == [("created", "operator")]
    page = c.get(resp.headers["location"]).text
    assert "Waiting to be sent to Plex" in page
    assert f'data-poll="/tickets/{ticket_id}/status"' in page
    assert sample(web.registry, "repsys_web_tickets_filed_total", {"category": "quality"}) == 1
    # The operator's own recent tickets are listed under the form.
    assert f'href="/tickets/{ticket_id}"' in c.get("/report").text


def test_supervisor_without_badge_must_type_one(start_web) -> None:
    web = start_web()
    c = web.login("sam")
    resp = _form(c, badge="")
    assert resp.status_code == 422
    assert "Enter your badge number." in resp.text
    ok = _form(c, badge="2002")
    assert ok.status_code == 303
    with web.sessions() as s:
        assert s.scalars(select(Ticket.reporter)).one() == "2002"


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"description": ""}, "description", "Describe the problem."),
        ({"description": "   \n  "}, "description", "Describe the problem."),
        (
            {"description": "x" * 102_400},
            "description",
            "The description is too long: 102400 characters, at most 4000.",
        ),
        (
            {"description": "bad\x00byte"},
            "description",
            "The description contains a control character; retype it.",
        ),
        ({"machine": "cnc999"}, "machine", "Unknown machine 'cnc999': pick one from the list."),
        ({"machine": ""}, "machine", "Pick the machine."),
        ({"category": "coffee"}, "category", "Unknown category 'coffee'."),
        ({"category": ""}, "category", "Pick a category."),
        ({"severity": "apocalyptic"}, "severity", "Severity is low, medium or high."),
        (
            {"badge": "<b>1</b>"},
            "badge",
            "A badge number is letters, digits and dashes, at most 32.",
        ),
    ],
)
def test_bad_input_is_rejected_on_the_form_and_nothing_is_filed(
    start_web, fields, field, message
) -> None:
    web = start_web()
    c = web.login("sam")
    resp = _form(c, **{"badge": "2002", **fields})
    assert resp.status_code == 422
    assert (
        f'<p class="field-error" id="err-{field}" role="alert">{escape(message)}</p>' in resp.text
    )
    assert "The ticket was not filed" in resp.text
    assert _count(web) == 0
    assert (
        sample(web.registry, "repsys_web_form_rejections_total", {"form": "ticket", "field": field})
        == 1
    )


def test_what_the_operator_typed_is_kept_on_a_rejected_form(start_web) -> None:
    web = start_web()
    c = web.login("sam")
    resp = _form(c, machine="cnc102", category="tool", badge="", description="kept text")
    assert resp.status_code == 422
    assert '<option value="cnc102" selected>' in resp.text
    assert 'value="tool" checked' in resp.text
    assert ">kept text</textarea>" in resp.text


def test_markup_in_fields_is_stored_as_typed_and_shown_escaped(start_web) -> None:
    web = start_web()
    c = web.login("sam")
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    resp = _form(c, badge="2002", description=evil)
    assert resp.status_code == 303
    with web.sessions() as s:
        assert s.scalars(select(Ticket.description)).one() == evil
    page = c.get(resp.headers["location"]).text
    assert "<script>alert" not in page and "<img src=x" not in page
    assert str(escape(evil)) in page
    board = c.get("/boards/tickets").text
    assert "<script>alert" not in board


def test_status_fragment_follows_the_outbox_row(start_web) -> None:
    web = start_web()
    c = web.login("sam")
    ticket_id = int(_form(c, badge="2002").headers["location"].rsplit("/", 1)[1])
    pending = c.get(f"/tickets/{ticket_id}/status").text
    assert 'data-state="pending"' in pending and "data-poll=" in pending
    # What the Plex sender writes when Plex answered with its number.
    with web.sessions.begin() as s:
        t = s.get(Ticket, ticket_id)
        t.state, t.plex_number = "filed", "WR-104233"
        s.add(TicketEvent(ticket_id=ticket_id, event="filed", detail="WR-104233"))
    filed = c.get(f"/tickets/{ticket_id}/status").text
    assert "Filed in Plex" in filed and '<strong id="plex-number">WR-104233</strong>' in filed
    assert "data-poll=" not in filed  # the page stops polling a final state
    with web.sessions.begin() as s:
        t = s.get(Ticket, ticket_id)
        t.state, t.plex_number = "dead", None
        t.last_error = "Plex: Workcenter 61324 is not valid for this data source"
    dead = c.get(f"/tickets/{ticket_id}/status").text
    assert "Failed: Plex did not take it" in dead
    assert "Why: Plex: Workcenter 61324 is not valid for this data source" in dead


def test_unknown_ticket_is_404(start_web) -> None:
    web = start_web()
    c = web.login("sam")
    resp = c.get("/tickets/4242")
    assert resp.status_code == 404 and "There is no ticket 4242." in resp.text
    # An address with an impossible id names no page: 404, never a 500 from the driver.
    for impossible in ("abc", "0", "-1", str(2**63), "9" * 40):
        assert c.get(f"/tickets/{impossible}").status_code == 404, impossible
    assert c.get(f"/tickets/{2**63 - 1}").status_code == 404  # the largest id: none there


def test_ticket_plex_refuses_shows_failed_with_why(start_web, plex_world) -> None:
    # cnc777's workcenter is not one the simulated Plex knows: a business error, no retry.
    machines = [
        *TEST_MACHINES,
        {
            "id": "cnc777",
            "pcn": 123681,
            "workcenter_key": 61777,
            "workcenter_code": "cnc777",
            "cell": "Knuckles",
        },
    ]
    web = start_web(_merge({"machines": machines}, plex_world.sections))
    c = web.login("olga")
    ok = _form(c, machine="cnc101").headers["location"]
    bad = _form(c, machine="cnc777").headers["location"]
    assert run_sender(web) == 2
    filed = c.get(f"{ok}/status").text
    [sim_ticket] = plex_world.sim.tickets()
    assert f'<strong id="plex-number">{sim_ticket.number}</strong>' in filed
    dead = c.get(f"{bad}/status").text
    assert 'data-state="dead"' in dead and "Failed: Plex did not take it" in dead
    assert (
        '<p class="message error" id="ticket-error">Why: data source 910001 failed: ErrorNo '
        "50003, StatusNo 1, &#39;Workcenter_Key 61777 does not exist&#39; (InstanceNo"
    ) in dead


def _token_of(html: str) -> str:
    marker = 'name="submit_token" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


def test_two_taps_of_one_form_file_one_ticket(start_web) -> None:
    """The second tap of a slow network (the same rendered form) finds the first ticket;
    eight taps at once (the race between lookup and insert) file one too."""
    web = start_web()
    c = web.login("olga")
    page = c.get("/report").text
    data = {
        "machine": "cnc103",
        "category": "quality",
        "severity": "high",
        "description": "Engraver skips the last digit",
        "csrf_token": csrf_of(page),
        "submit_token": _token_of(page),
    }
    results: list[str] = []
    taps = 8
    together = threading.Barrier(taps)

    def tap() -> None:
        with web.client(cookies=c.cookies) as own:
            together.wait(10)  # at once: the repeats race past the lookup to the insert
            resp = own.post("/report", data=data)
            results.append(f"{resp.status_code} {resp.headers.get('location')}")

    threads = [threading.Thread(target=tap) for _ in range(taps)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert _count(web) == 1
    assert len(set(results)) == 1 and results[0].startswith("303 /tickets/"), results
    # A new form is a new ticket; a refused form keeps its token, so fixing it is one ticket.
    again = c.get("/report").text
    assert _token_of(again) != data["submit_token"]
    refused = c.post("/report", data={**data, "submit_token": _token_of(again), "machine": ""})
    assert refused.status_code == 422 and _token_of(refused.text) == _token_of(again)
    fixed = c.post("/report", data={**data, "submit_token": _token_of(refused.text)})
    assert fixed.status_code == 303 and _count(web) == 2
    assert (
        c.post("/report", data={**data, "submit_token": _token_of(again)}).headers["location"]
        == fixed.headers["location"]
    )
    assert _count(web) == 2


def test_the_api_repeat_of_an_idempotency_key_returns_the_first_ticket(start_web) -> None:
    web = start_web()
    sam = web.login("sam")
    token = csrf_of(sam.get("/report").text)
    body = {"machine": "cnc101", "category": "tool", "description": "x", "badge": "1"}
    key = {"X-CSRF-Token": token, "Idempotency-Key": "tablet-7-0001"}
    first = sam.post("/api/v1/tickets", json=body, headers=key)
    repeat = sam.post("/api/v1/tickets", json=body, headers=key)
    assert (first.status_code, repeat.status_code) == (201, 200)
    assert repeat.json()["id"] == first.json()["id"]
    # Another user's same key is another ticket: keys are scoped by the user.
    olga = web.login("olga")
    other = olga.post(
        "/api/v1/tickets",
        json=body,
        headers={**key, "X-CSRF-Token": csrf_of(olga.get("/report").text)},
    )
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    bad = sam.post("/api/v1/tickets", json=body, headers={**key, "Idempotency-Key": "a b"})
    assert bad.status_code == 422
    assert _count(web) == 2


def test_recent_tickets_name_the_machine_as_the_plant_does(start_web) -> None:
    named = [{**m, "name": "CNC 103"} if m["id"] == "cnc103" else m for m in TEST_MACHINES]
    web = start_web({"machines": named})
    c = web.client()
    token = csrf_of(c.get("/login").text)
    c.post("/login/badge", data={"badge": "1001", "pin": "4321", "csrf_token": token})
    assert _form(c).status_code == 303
    recent = c.get("/report").text.split('id="recent-tickets"', 1)[1]
    assert "<td>CNC 103</td>" in recent and "<td>cnc103</td>" not in recent
