"""The board the floor trusts: units, staleness from the write itself, open work on each
tile, a page per machine, silences where they act, confirmations, and the TV board.

Fed as the rules engine and collector feed them: live hashes and real signal stream
entries in the real redis-server, episodes, tickets and silences in the test's database.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from core import keys
from core.db.schema import Episode, Silence
from core.model import Signal
from core.outbox import add_ticket
from tests.web.conftest import csrf_of

NOW = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
T = NOW.timestamp()


def _tile(page: str, machine: str) -> str:
    start = page.index(f'id="machine-{machine}"')
    return page[start : page.index("</article>", start)]


def _pairs(tile: str) -> dict[str, str]:
    return dict(re.findall(r"<dt>([^<]+)</dt><dd>([^<]*)</dd>", tile))


def _live(redis_client, machine: str, **fields: object) -> None:
    redis_client.hset(keys.machine_live(machine), mapping={k: str(v) for k, v in fields.items()})


def _episode(s, machine: str = "cnc103", rule: str = "tool_life_short", **kw: object) -> Episode:
    row = Episode(
        fingerprint=kw.pop("fingerprint", f"fp-{machine}-{rule}"),
        machine_id=machine,
        rule=rule,
        rule_type="tool_life",
        subject="T12",
        severity="high",
        state=kw.pop("state", "firing"),
        summary=kw.pop("summary", f"{rule} on {machine}"),
        started_at=NOW - timedelta(minutes=30),
        last_seen_at=NOW,
        evidence={},
        **kw,
    )
    s.add(row)
    s.flush()
    return row


def test_tiles_show_units_and_sensible_rounding(start_web, redis_client) -> None:
    web = start_web(
        {"web": {"signals": {"coolant_temp": {"label": "coolant", "unit": "°C", "decimals": 1}}}},
        clock=lambda: NOW,
    )
    _live(
        redis_client,
        "cnc101",
        state="running",
        updated_at=T - 2,
        cycle_time="35.914",
        spindle_load="63.4",
        part_count="1187",
        coolant_temp="21.06",
        program="O1234",
    )
    redis_client.hset(keys.machine_last_seen(), "cnc101", T - 1)
    tile = _tile(web.login("olga").get("/boards/machines").text, "cnc101")
    shown = _pairs(tile)
    assert shown["cycle time"] == "35.9 s"
    assert shown["spindle load"] == "63%"
    assert shown["part count"] == "1187"
    assert shown["program"] == "O1234"
    assert shown["coolant"] == "21.1 °C"  # configured in web.signals
    assert "35.914" not in tile and "cycle_time" not in tile


def test_a_stopped_rules_engine_makes_tiles_say_no_data_within_the_staleness(
    start_web, redis_client
) -> None:
    web = start_web({"web": {"no_data_after_s": 60}}, clock=lambda: NOW)
    # The collector still hears cnc101 (last_seen 1 s ago) but the rules engine last wrote
    # its state 90 s ago: the state is not known any more, whatever the hash's TTL says.
    _live(redis_client, "cnc101", state="running", updated_at=T - 90, state_since=T - 900)
    _live(redis_client, "cnc102", state="running", updated_at=T - 30, state_since=T - 900)
    _live(redis_client, "cnc103", state="idle", updated_at=T - 600)
    redis_client.hset(
        keys.machine_last_seen(), mapping={"cnc101": T - 1, "cnc102": T - 1, "cnc103": T - 600}
    )
    page = web.login("sam").get("/boards/machines").text
    one, two, three = (_tile(page, m) for m in ("cnc101", "cnc102", "cnc103"))
    assert 'data-state="no_data"' in one and "rules engine silent" in one
    assert 'data-state="running"' in two and 'id="stale-cnc102"' not in two
    assert 'data-state="no_data"' in three and "the machine sends no data" in three


def test_tiles_show_open_work_and_level_and_tap_through_to_the_machine(
    start_web, redis_client
) -> None:
    web = start_web(clock=lambda: NOW)
    with web.sessions.begin() as s:
        _episode(s)
        _episode(s, rule="cycle_time_drift", state="resolved")
        ticket = add_ticket(
            s, machine=web.cfg.machine("cnc103"), source="rule", title="T12 short", description="d"
        )
        ticket.escalation_level = 2
        ticket.plex_number = "WR-000042"
        closed = add_ticket(
            s, machine=web.cfg.machine("cnc101"), source="rule", title="old", description="d"
        )
        closed.state = "closed"
    _live(redis_client, "cnc103", state="running", updated_at=T - 1)
    c = web.login("sam")
    page = c.get("/boards/machines").text
    tile = _tile(page, "cnc103")
    work = re.search(r'id="work-cnc103">(.*?)</p>', tile, re.S)
    assert work is not None
    words = re.sub(r"<[^>]+>", " ", work.group(1)).split()
    assert " ".join(words) == "1 open episode 1 open ticket escalation level 2"
    assert 'id="work-cnc101"' not in page  # a closed ticket is not open work
    assert 'href="/machines/cnc103"' in tile

    # The machine's page: its last hour charted from the real stream, its work listed.
    stream = keys.signal_stream(keys.partition_of("cnc103", web.cfg.streams.partitions))
    for i in range(12):
        sig = Signal(
            machine="cnc103", name="cycle_time", value=40.0 + i, source_ts=T - 600 + 30 * i
        )
        redis_client.xadd(stream, sig.to_fields())
    old = Signal(machine="cnc103", name="cycle_time", value=99.0, source_ts=T - 7200)
    redis_client.xadd(stream, old.to_fields())
    other = Signal(machine="cnc101", name="cycle_time", value=77.0, source_ts=T - 60)
    redis_client.xadd(keys.signal_stream(keys.partition_of("cnc101", 8)), other.to_fields())
    machine = c.get("/machines/cnc103").text
    charts = machine[machine.index('id="machine-charts"') :]
    assert '<svg class="chart"' in charts and "cycle time (s)" in charts
    points = re.search(r'<polyline class="chart-line" points="([^"]+)"', charts)
    assert points is not None and len(points.group(1).split()) == 12  # not the 2-h-old one
    assert "T12 short" in machine and "WR-000042" in machine
    assert "escalation level 2" in machine
    assert "tool_life_short on cnc103" in machine  # its episodes, for a supervisor
    assert c.get("/machines/nope").status_code == 404
    # An operator sees the machine page too, without the supervisors' episode list.
    operator_view = web.login("olga").get("/machines/cnc103").text
    assert "T12 short" in operator_view and "tool_life_short on cnc103" not in operator_view


def test_silences_show_where_they_act_and_actions_are_confirmed(start_web) -> None:
    web = start_web(clock=lambda: NOW)
    with web.sessions.begin() as s:
        muted_id = _episode(s, machine="cnc102").id
        loud_id = _episode(s, machine="cnc101").id
        tickets = {}
        for episode_id, machine in ((muted_id, "cnc102"), (loud_id, "cnc101")):
            row = add_ticket(
                s, machine=web.cfg.machine(machine), source="rule", title="T12", description="d"
            )
            row.episode_id = episode_id
            s.flush()
            tickets[machine] = row.id
    c = web.login("sam")
    assert 'id="ticket-muted"' not in c.get(f"/tickets/{tickets['cnc102']}").text
    token = csrf_of(c.get("/silences").text)
    resp = c.post(
        "/silences",
        data={
            "machine": "cnc102",
            "rule": "",
            "hours": "2",
            "reason": "Spindle",
            "csrf_token": token,
        },
    )
    assert resp.status_code == 303
    confirmed = c.get("/silences").text
    assert 'id="flash"' in confirmed and "Silenced cnc102 until Mon 16:00." in confirmed
    assert 'id="flash"' not in c.get("/silences").text  # shown once
    board = c.get("/boards/episodes").text
    assert f'id="muted-{muted_id}"' in board and "Silenced until Mon 16:00: Spindle" in board
    assert f'id="muted-{loud_id}"' not in board
    assert 'id="muted"' in c.get(f"/episodes/{muted_id}").text
    assert 'id="muted"' not in c.get(f"/episodes/{loud_id}").text
    # The ticket of the silenced episode says so, to an operator too; the other does not.
    ticket_page = web.login("olga").get(f"/tickets/{tickets['cnc102']}").text
    assert 'id="ticket-muted"' in ticket_page and "until Mon 16:00: Spindle (by sam)" in ticket_page
    assert 'id="ticket-muted"' not in c.get(f"/tickets/{tickets['cnc101']}").text
    with web.sessions() as s:
        silence_id = s.query(Silence).one().id
    c.post(f"/silences/{silence_id}/expire", data={"csrf_token": token})
    assert f"Silence {silence_id} ended" in c.get("/silences").text
    assert f'id="muted-{muted_id}"' not in c.get("/boards/episodes").text
    assert 'id="ticket-muted"' not in c.get(f"/tickets/{tickets['cnc102']}").text


def test_tv_board_opens_with_the_kiosk_token_and_rotates_its_pages(
    start_web, redis_client, monkeypatch
) -> None:
    monkeypatch.setenv("TEST_KIOSK_TOKEN", "wall-screen-7f3a")
    web = start_web(
        {"web": {"kiosk_token": {"env": "TEST_KIOSK_TOKEN"}, "tv_tiles_per_page": 2}},
        clock=lambda: NOW,
    )
    _live(redis_client, "cnc101", state="running", updated_at=T - 1)
    anonymous = web.client()
    page0 = anonymous.get("/board/tv?token=wall-screen-7f3a")
    assert page0.status_code == 200
    body = page0.text
    assert '<body class="tv">' in body and 'id="machine-cnc101"' in body
    assert 'id="machine-cnc103"' not in body  # on the second page
    assert "page 1 of 2" in body
    assert 'url=/board/tv?page=1&amp;token=wall-screen-7f3a"' in body
    assert "tile-link" not in body and "<form" not in body and 'class="nav"' not in body
    page1 = anonymous.get("/board/tv?page=1&token=wall-screen-7f3a").text
    assert 'id="machine-cnc103"' in page1 and "page 2 of 2" in page1
    assert 'url=/board/tv?page=0&amp;token=wall-screen-7f3a"' in page1
    # A wrong token, or none, is sent to the login; a floor user needs no token.
    wrong = anonymous.get("/board/tv?token=guess")
    assert wrong.status_code == 303 and wrong.headers["location"].startswith("/login")
    assert anonymous.get("/board/tv").status_code == 303
    assert web.login("olga").get("/board/tv").status_code == 200
    # The token opens nothing else.
    assert anonymous.get("/boards/machines?token=wall-screen-7f3a").status_code == 303
