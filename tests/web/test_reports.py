"""Report requests from the web: the real runner queue, live progress over SSE, download.

The trial balance runs for real in this process (``runner --burst``): the seeded ledger
behind the SQLite ODBC driver and the simulated Plex serving data source 4814.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from core.db.schema import ReportRequestRow
from core.metrics import sample
from repsys.servers import wait_until
from tests.conftest import _merge
from tests.web.conftest import RunningWeb, csrf_of, run_runner


def _request(c: httpx.Client, **fields: str) -> httpx.Response:
    token = csrf_of(c.get("/reports").text)
    return c.post("/reports", data={"csrf_token": token, **fields})


def _rows(web: RunningWeb) -> list[ReportRequestRow]:
    with web.sessions() as s:
        return list(s.scalars(select(ReportRequestRow)))


class EventReader:
    """Reads the SSE stream in a thread, collecting each ``data:`` JSON until a final state.

    Leaving the ``with`` block hangs up, as a browser leaving the page does.
    """

    FINAL = ("completed", "failed", "cancelled")

    def __init__(self, client: httpx.Client) -> None:
        self.events: list[dict[str, Any]] = []
        self.opened = threading.Event()
        self.client = client
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with self.client.stream("GET", "/reports/events", timeout=30) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            for line in resp.iter_lines():
                if line.startswith("retry:"):
                    self.opened.set()
                if line.startswith("data: "):
                    self.events.append(json.loads(line[6:]))
                    if self.events[-1]["state"] in self.FINAL:
                        return


def test_controller_requests_a_tb_follows_it_live_and_downloads_it(start_web, accounting) -> None:
    web = start_web(accounting)
    c = web.login("dan")
    reader = EventReader(web.login("dan"))
    assert reader.opened.wait(10)
    wait_until(
        lambda: sample(web.registry, "repsys_web_live_listeners") == 1,
        timeout=5,
        what="SSE listener",
    )
    resp = _request(c, kind="tb", start="202401", end="202404", pcn="123681")
    assert resp.status_code == 303, resp.text
    [row] = _rows(web)
    assert (row.kind, row.name, row.requester, row.state) == (
        "tb",
        "TB_202401_to_202404",
        "dan",
        "pending",
    )
    assert row.params == {"pcns": [123681], "start": 202401, "end": 202404}
    queue = c.get("/reports/queue").text
    assert f'id="req-{row.id}" data-state="pending"' in queue and ">Cancel</button>" in queue

    assert run_runner(web) == 1
    reader.thread.join(15)
    assert not reader.thread.is_alive()
    wait_until(
        lambda: sample(web.registry, "repsys_web_live_listeners") == 0,
        timeout=10,
        what="SSE stream closed after the client left",
    )
    states = [e["state"] for e in reader.events if e["id"] == row.id]
    assert states[0] == "pending" and states[-1] == "completed" and "running" in states
    steps = [e["step"] for e in reader.events if e["state"] == "running" and e["step"]]
    assert "closed_balances" in steps or len(steps) >= 3

    queue = c.get("/reports/queue").text
    assert f'id="req-{row.id}" data-state="completed"' in queue
    assert f'href="/reports/{row.id}/download"' in queue
    download = c.get(f"/reports/{row.id}/download")
    assert download.status_code == 200
    assert download.content[:2] == b"PK"  # an .xlsx is a zip
    disposition = download.headers["content-disposition"]
    assert "TB-202401_to_202404" in disposition and disposition.endswith('.xlsx"')
    api = web.client(cookies=c.cookies).get(f"/api/v1/reports/{row.id}").json()
    assert api["state"] == "completed" and api["download"] == f"/reports/{row.id}/download"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"start": "202406", "end": "202401"}, "start period 202406 is after end period 202401"),
        (
            {"start": "2024-1", "end": "202401"},
            "start period &#39;2024-1&#39; is not a period like 202401 (YYYYPP)",
        ),
        (
            {"start": "202401", "end": ""},
            "give both a start and an end period, or neither (the latest window)",
        ),
        (
            {"start": "202401", "end": "202402", "pcn": "999"},
            "unknown PCN 999 (known: 123681, 300758)",
        ),
    ],
)
def test_bad_tb_request_shows_the_runners_message(start_web, accounting, fields, message) -> None:
    web = start_web(accounting)
    resp = _request(web.login("dan"), kind="tb", **fields)
    assert resp.status_code == 422
    assert f'<p class="banner error" role="alert" id="tb-error">{message}</p>' in resp.text
    assert 'value="202401"' in resp.text or fields["start"] != "202401"  # typed values kept
    assert _rows(web) == []


def test_roles_decide_who_asks_for_what(start_web, accounting) -> None:
    web = start_web(accounting)
    sup = web.login("sam")
    page = sup.get("/reports").text
    assert 'id="escalation-form"' in page and 'id="tb-form"' not in page
    refused = _request(sup, kind="tb", start="202401", end="202401")
    assert (
        refused.status_code == 403 and "A Trial balance needs the controller role." in refused.text
    )
    assert _request(sup, kind="escalation", shift="").status_code == 303
    assert [r.kind for r in _rows(web)] == ["escalation"]
    assert web.login("olga").get("/reports").status_code == 403
    unknown = _request(web.login("dan"), kind="payroll")
    assert unknown.status_code == 422
    assert (
        "unknown report kind &#39;payroll&#39; (known: escalation, tb, tool_check)" in unknown.text
    )


def test_cancel_and_file_safety(start_web, accounting) -> None:
    web = start_web(accounting)
    c = web.login("dan")
    _request(c, kind="tb", start="202401", end="202402")
    [row] = _rows(web)
    token = csrf_of(c.get("/reports").text)
    # Someone else's request: a supervisor may not cancel a controller's TB.
    sup = web.login("sam")
    sup_token = csrf_of(sup.get("/reports").text)
    assert sup.post(f"/reports/{row.id}/cancel", data={"csrf_token": sup_token}).status_code == 403
    assert c.post(f"/reports/{row.id}/cancel", data={"csrf_token": token}).status_code == 303
    [row] = _rows(web)
    assert (row.state, row.error) == ("cancelled", "cancelled by dan")
    # A completed row whose file lies outside runner.output_dir is never served.
    with web.sessions.begin() as s:
        r = s.get(ReportRequestRow, row.id)
        r.state, r.result_path = "completed", "/etc/passwd"
    resp = c.get(f"/reports/{row.id}/download")
    assert resp.status_code == 404 and "has no file to download" in resp.text
    assert c.get("/reports/nope/download").status_code == 404


def test_reports_api(start_web, accounting) -> None:
    web = start_web(accounting)
    c = web.login("dan")
    token = csrf_of(c.get("/reports").text)
    h = {"X-CSRF-Token": token}
    made = c.post(
        "/api/v1/reports",
        json={"kind": "tb", "params": {"start": 202403, "end": 202404}},
        headers=h,
    )
    assert made.status_code == 201, made.text
    assert made.json()["name"] == "TB_202403_to_202404"
    again = c.post(
        "/api/v1/reports",
        json={"kind": "tb", "params": {"start": 202403, "end": 202404}},
        headers=h,
    )
    # An identical request made again soon is the same one: 200 and no new resource.
    assert (again.status_code, again.json()["id"]) == (200, made.json()["id"])
    bad = c.post(
        "/api/v1/reports",
        json={"kind": "tb", "params": {"start": 202405, "end": 202401}},
        headers=h,
    )
    assert bad.status_code == 422
    assert bad.json() == {
        "detail": "start period 202405 is after end period 202401",
        "reason": "bad_input",
        "errors": {"params": "start period 202405 is after end period 202401"},
    }
    assert [r["id"] for r in c.get("/api/v1/reports").json()] == [made.json()["id"]]
    cancelled = c.post(f"/api/v1/reports/{made.json()['id']}/cancel", headers=h)
    assert cancelled.json() == {"cancelled": True}


def test_over_the_hourly_quota_the_page_answers_429_with_retry_after(start_web, accounting) -> None:
    web = start_web(_merge(accounting, {"web": {"reports": {"per_hour_by_kind": {"tb": 1}}}}))
    c = web.login("dan")
    assert _request(c, kind="tb", start="202401", end="202402").status_code == 303
    # The same request again is the one already made, over the quota or not.
    assert _request(c, kind="tb", start="202401", end="202402").status_code == 303
    over = _request(c, kind="tb", start="202401", end="202403")
    assert over.status_code == 429 and 3540 <= int(over.headers["Retry-After"]) <= 3600
    assert "You asked for 1 tb reports in the last hour, the most one person may." in over.text
    assert len(_rows(web)) == 1
