"""Boards and silences over real HTTP, fed the way the rules engine and collector feed them.

Live state goes into the real redis-server under the ``core.keys`` names; episodes and
tickets into the test's database; the pages must show exactly that.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from markupsafe import escape
from sqlalchemy import select

from core import keys
from core.db.schema import Episode, Silence, Ticket
from core.outbox import add_ticket
from tests.web.conftest import csrf_of

NOW = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


def _tile(page: str, machine: str) -> str:
    start = page.index(f'id="machine-{machine}"')
    return page[start : page.index("</article>", start)]


def test_machines_board_shows_live_state_and_no_data(start_web, redis_client) -> None:
    web = start_web(clock=lambda: NOW)
    now = NOW.timestamp()
    redis_client.hset(
        keys.machine_live("cnc101"),
        mapping={
            "state": "running",
            "state_since": now - 600,
            "updated_at": now - 5,
            "program": "O1234",
            "part_count": "1187",
            "spindle_load": "63",
        },
    )
    redis_client.hset(
        keys.machine_live("cnc102"),
        mapping={
            "state": "down",
            "state_since": now - 120,
            "updated_at": now - 10,
            "alarm": "EX1041",
        },
    )
    # cnc103 was running, but nothing arrived for 10 minutes: no data, not "running".
    redis_client.hset(
        keys.machine_live("cnc103"), mapping={"state": "running", "updated_at": now - 600}
    )
    redis_client.hset(keys.machine_last_seen(), mapping={"cnc101": now - 1, "cnc103": now - 600})
    page = web.login("sam").get("/boards/machines").text
    one, two, three = (_tile(page, m) for m in ("cnc101", "cnc102", "cnc103"))
    assert 'data-state="running"' in one and "O1234" in one and "1187" in one
    assert "since" in one and "(10 min)" in one
    assert 'data-state="down"' in two and "EX1041" in two
    assert 'data-state="no_data"' in three and "last data 10 min ago" in three
    # Reloads itself every 15 s: the script (with a Pause button), else the meta refresh.
    assert 'data-refresh="15"' in page and "data-pause" in page
    assert '<noscript><meta http-equiv="refresh" content="15"></noscript>' in page
    # Grouped by cell, as configured.
    assert page.index("<h2>Knuckles</h2>") < page.index("<h2>Brackets</h2>")


def test_supervisor_silences_a_machine_and_the_board_shows_it(start_web) -> None:
    web = start_web(clock=lambda: NOW)
    c = web.login("sam")
    token = csrf_of(c.get("/silences").text)
    resp = c.post(
        "/silences",
        data={
            "machine": "cnc102",
            "rule": "",
            "hours": "2",
            "reason": "Spindle rebuild",
            "csrf_token": token,
        },
    )
    assert resp.status_code == 303 and resp.headers["location"] == "/silences"
    with web.sessions() as s:
        row = s.scalars(select(Silence)).one()
        assert (row.machine_id, row.rule, row.author, row.reason) == (
            "cnc102",
            None,
            "sam",
            "Spindle rebuild",
        )
        assert row.ends_at.replace(tzinfo=UTC) - row.starts_at.replace(tzinfo=UTC) == timedelta(
            hours=2
        )
    page = c.get("/silences").text
    assert f'id="silence-{row.id}"' in page and "Spindle rebuild" in page
    board = c.get("/boards/machines").text
    # Shown in plant time (the test plant keeps the default zone, UTC): 14:00 + 2 h.
    assert 'id="silenced-cnc102">Silenced until Mon 16:00' in board
    assert "silenced-cnc101" not in board
    # Expire it: the board no longer shows it, the list keeps it with who ended it.
    expire = c.post(f"/silences/{row.id}/expire", data={"csrf_token": token})
    assert expire.status_code == 303
    assert "silenced-cnc102" not in c.get("/boards/machines").text
    ended = c.get("/silences").text
    assert 'id="ended-silences"' in ended and "<td>sam</td><td>sam</td>" in ended


def test_silence_form_rejects_bad_input_with_messages(start_web) -> None:
    web = start_web({"web": {"silence_max_hours": 48}}, clock=lambda: NOW)
    c = web.login("sam")
    token = csrf_of(c.get("/silences").text)
    cases = [
        (
            {"machine": "", "rule": ""},
            "machine",
            "Pick a machine or a rule: a silence never covers everything.",
        ),
        ({"machine": "cnc999"}, "machine", "Unknown machine 'cnc999': pick one from the list."),
        (
            {"rule": "no spaces please"},
            "rule",
            "A rule name is letters, digits and _ . - (at most 64).",
        ),
        ({"hours": "0"}, "hours", BAD_HOURS),
        ({"hours": "49"}, "hours", BAD_HOURS),
        ({"hours": "nan"}, "hours", BAD_HOURS),
        # Shorter than web.silence_min_minutes (5): a window nobody could use.
        ({"hours": "0.05"}, "hours", BAD_HOURS),
        ({"hours": "1e-300"}, "hours", BAD_HOURS),
        # float() would read these; a person did not type them as a duration.
        ({"hours": "\u0663"}, "hours", BAD_HOURS),
        ({"hours": "inf"}, "hours", BAD_HOURS),
        ({"hours": "1_0"}, "hours", BAD_HOURS),
        ({"reason": ""}, "reason", "Say why (the next shift reads it)."),
        (
            {"reason": "<script>" * 100},
            "reason",
            "The reason is too long: 800 characters, at most 512.",
        ),
    ]
    for fields, field, message in cases:
        data = {
            "machine": "cnc101",
            "rule": "",
            "hours": "2",
            "reason": "ok",
            "csrf_token": token,
            **fields,
        }
        resp = c.post("/silences", data=data)
        assert resp.status_code == 422, fields
        assert f'id="err-{field}" role="alert">{escape(message)}</p>' in resp.text, fields
    with web.sessions() as s:
        assert s.scalars(select(Silence)).all() == []


BAD_HOURS = "The duration is at least 5 minutes and at most 48 hours."


def _episode(s, **kw) -> Episode:
    base = dict(
        fingerprint="fp",
        machine_id="cnc103",
        rule="tool_life_short",
        rule_type="tool_not_reaching_life",
        subject="T12",
        severity="high",
        state="firing",
        summary="Tool 12 on cnc103 is not reaching tool life",
        evidence={
            "series": {
                "name": "tool_counter",
                "limit": 798,
                "points": [[NOW.timestamp() - 60 * i, 400 - 40 * i] for i in range(10)],
            },
            "standard_life": 798,
        },
        started_at=NOW - timedelta(minutes=30),
        last_seen_at=NOW,
    )
    base.update(kw)
    row = Episode(**base)
    s.add(row)
    s.flush()
    return row


def test_episodes_board_shows_open_episodes_with_their_chart(start_web) -> None:
    web = start_web(clock=lambda: NOW)
    with web.sessions.begin() as s:
        firing = _episode(s)
        _episode(
            s, fingerprint="old", state="resolved", summary="Old resolved one", resolved_at=NOW
        )
        machine = web.cfg.machine("cnc103")
        ticket = add_ticket(
            s,
            machine=machine,
            source="rule",
            title="Tool 12 short",
            description="d",
            episode_id=firing.id,
        )
        ticket.plex_number = "WR-7"
        firing_id = firing.id
    c = web.login("sam")
    board = c.get("/boards/episodes").text
    assert "Tool 12 on cnc103 is not reaching tool life" in board
    assert "Old resolved one" not in board
    card = board[board.index(f'id="episode-{firing_id}"') :]
    assert '<svg class="chart"' in card and "limit 798" in card
    assert "firing for 30 min" in card
    detail = c.get(f"/episodes/{firing_id}").text
    assert "<dt>Standard tool life</dt><dd>798</dd>" in detail
    assert "WR-7" in detail and "Tool 12 short" in detail
    assert c.get("/episodes/999").status_code == 404


def test_tickets_board_filters_by_state(start_web) -> None:
    web = start_web(clock=lambda: NOW)
    with web.sessions.begin() as s:
        machine = web.cfg.machine("cnc101")
        for title, state in (
            ("one pending", "pending"),
            ("one filed", "filed"),
            ("one dead", "dead"),
            ("one closed", "closed"),
        ):
            add_ticket(
                s, machine=machine, source="operator", title=title, description="d"
            ).state = state
    c = web.login("sam")
    open_board = c.get("/boards/tickets").text
    assert all(t in open_board for t in ("one pending", "one filed", "one dead"))
    assert "one closed" not in open_board
    dead = c.get("/boards/tickets?state=dead").text
    assert "one dead" in dead and "one filed" not in dead
    assert "one closed" in c.get("/boards/tickets?state=closed").text
    # An unknown filter falls back to the open tickets instead of erroring.
    assert "one pending" in c.get("/boards/tickets?state=%3Cx%3E").text


def test_tool_changes_board_lists_the_soonest_first(start_web, redis_client) -> None:
    web = start_web()
    redis_client.zadd(
        keys.UPCOMING_TOOL_CHANGES, {"cnc103|T12": 95, "cnc101|T3": 12.5, "cnc102|T7": 430}
    )
    page = web.login("olga").get("/boards/tool-changes").text
    rows = re.findall(r"<tr class=\"(soon)?\"><td>(\w+)</td><td>(\w+)</td><td>([^<]+)</td>", page)
    assert [(m, t, left, bool(soon)) for soon, m, t, left in rows] == [
        ("cnc101", "T3", "12 min", True),
        ("cnc103", "T12", "1 h 35 min", False),
        ("cnc102", "T7", "7 h 10 min", False),
    ]


def test_tool_changes_board_puts_overdue_tools_first_with_their_as_of(
    start_web, redis_client
) -> None:
    web = start_web()
    # T5 is past its life (minutes below 0), T3 exactly at it: the overdue one comes first.
    redis_client.zadd(keys.UPCOMING_TOOL_CHANGES, {"cnc101|T3": 0, "cnc102|T5": -15})
    stamp = datetime(2024, 7, 8, 13, 5, tzinfo=UTC).timestamp()
    redis_client.hset(keys.UPCOMING_TOOL_CHANGES_AT, mapping={"cnc101|T3": repr(stamp)})
    page = web.login("olga").get("/boards/tool-changes").text
    rows = re.findall(
        r"<tr class=\"(\w*)\"><td>(\w+)</td><td>(\w+)</td><td>([^<]+)</td>.*?"
        r"<td class=\"as-of\">([^<]*)</td>",
        page,
        re.S,
    )
    assert [(cls, m, t, left, as_of) for cls, m, t, left, as_of in rows] == [
        ("overdue", "cnc102", "T5", "OVERDUE 15 min", "unknown"),
        ("soon", "cnc101", "T3", "0 min", "2024-07-08 13:05 UTC"),
    ]


def test_empty_boards_say_so(start_web) -> None:
    web = start_web()
    c = web.login("sam")
    assert "No tool change is forecast." in c.get("/boards/tool-changes").text
    assert "No open episode." in c.get("/boards/episodes").text
    assert "No ticket." in c.get("/boards/tickets").text
    assert "No silence is active." in c.get("/silences").text
    with web.sessions() as s:
        assert s.scalars(select(Ticket)).all() == []


def test_tickets_board_shows_the_escalation_level(start_web) -> None:
    # Issue 17: notify's sweep writes escalation_level; the board shows it as a badge.
    web = start_web(clock=lambda: NOW)
    with web.sessions.begin() as s:
        machine = web.cfg.machine("cnc103")
        for title, level in (("worn tool", 2), ("fresh one", 0)):
            t = add_ticket(s, machine=machine, source="rule", title=title, description="d")
            t.state, t.escalation_level = "filed", level
    page = web.login("sam").get("/boards/tickets").text
    rows = re.findall(r'<tr id="ticket-row-\d+">.*?</tr>', page, re.S)
    worn = next(r for r in rows if "worn tool" in r)
    fresh = next(r for r in rows if "fresh one" in r)
    assert '<span class="level level-2" title="escalation level">L2</span>' in worn
    assert 'title="escalation level"' not in fresh
