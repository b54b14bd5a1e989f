"""The tool-life history page (``/tool-life``) and its ``.xlsx``, on a real history.

Signals go through Redis and ``repsys history``'s writer into Parquet files, then the web
app (with the history's report wired in, as ``repsys web`` has it) shows them. The rows
are held to the plain reading of the tracker's rule of ``tests/history/test_toollife.py``.
"""

from __future__ import annotations

import html
import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from openpyxl import load_workbook
from playwright.sync_api import expect

from core.model import Signal
from tests.history.test_toollife import LIFE, MACHINES, TOOLS, reference
from tests.history.test_writer import writer_for
from tests.rules.helpers import push
from tests.web.conftest import RunningWeb
from tests.web.test_browser import browser, login_with_password, open_page  # noqa: F401 - fixtures

ZONE = "America/Chicago"
ROW = re.compile(r'<tr class="[^"]*" data-machine="([^"]+)" data-tool="([^"]+)">(.*?)</tr>', re.S)
CELL = re.compile(r"<td[^>]*>(.*?)</td>", re.S)


def history_sections(tmp_path: Path) -> dict[str, Any]:
    """Config of a web app whose history is a local store under ``tmp_path``."""
    return {
        "plant": {"timezone": ZONE},
        "storage": {"type": "local", "root": str(tmp_path / "store")},
        "rules": {
            "machines": {m: {"tools": {tl: {"life": life}}} for (m, tl), life in LIFE.items()}
        },
    }


def plant_signals(seed: int, n: int = 400) -> list[Signal]:
    """Tool counters that count up and are reset now and then, and job changes."""
    rng = random.Random(seed)
    t = datetime.now(UTC).timestamp() - n * 20
    counters = {(m, tl): rng.randint(0, 50) for m in MACHINES for tl in TOOLS}
    out = []
    for _ in range(n):
        t += rng.randint(1, 20)
        machine = rng.choice(MACHINES)
        if rng.random() < 0.1:
            job = rng.choice(["O1000", "O2000"])
            out.append(Signal(machine, "program", job, source_ts=t, receive_ts=t))
            continue
        tool = rng.choice(TOOLS)
        if rng.random() < 0.1:
            counters[machine, tool] = rng.choice([0, 1, 2])
        else:
            counters[machine, tool] += rng.randint(1, 40)
        out.append(Signal(machine, "tool_life", counters[machine, tool], source_ts=t,
                          receive_ts=t, subject=tool))  # fmt: skip
    return out


def seed_history(web: RunningWeb, redis_client: Any, redis_url: str, seed: int = 7) -> list[Signal]:
    """What ``repsys history`` would have stored by now: the signals, in Parquet."""
    signals = plant_signals(seed)
    push(redis_client, signals, web.cfg.streams.partitions)
    writer_for(web.cfg, redis_url).drain()
    return signals


def page_rows(text: str) -> list[tuple[str, ...]]:
    return [
        (machine, tool, *(html.unescape(c) for c in CELL.findall(cells)))
        for machine, tool, cells in ROW.findall(text)
    ]


def expected_rows(web: RunningWeb, signals: list[Signal]) -> list[tuple[str, ...]]:
    names = {m.id: m.display_name for m in web.cfg.machines}
    zone = ZoneInfo(ZONE)
    out: list[tuple[str, ...]] = []
    for machine, tool, job, ts, quantity, life in reference(signals):
        at = datetime.fromtimestamp(ts, UTC).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
        share = f"{round(round(quantity / life, 3) * 100)} %" if life else ""
        row = (names[machine], tool, job, at, str(quantity), str(life or ""), share)
        out.append((machine, tool, *row))
    return out


def test_supervisor_sees_every_tool_change_of_the_period_and_its_xlsx(
    start_web: Any, redis_client: Any, redis_url: str, tmp_path: Path
) -> None:
    web: RunningWeb = start_web(history_sections(tmp_path))
    signals = seed_history(web, redis_client, redis_url)
    expected = expected_rows(web, signals)
    assert len(expected) > 10  # the plant changed tools, on both machines
    today = datetime.now(ZoneInfo(ZONE)).date()
    period = f"from={(today - timedelta(days=1)).isoformat()}&to={today.isoformat()}"
    sam = web.login("sam")

    resp = sam.get(f"/tool-life?{period}")
    assert resp.status_code == 200, resp.text
    assert page_rows(resp.text) == expected
    # The default period (the last week) holds today too.
    assert page_rows(sam.get("/tool-life").text) == expected
    only = sam.get(f"/tool-life?{period}&machine=cnc102")
    assert page_rows(only.text) == [r for r in expected if r[0] == "cnc102"]
    # A period before the history: nothing, said in words.
    earlier = (today - timedelta(days=30)).isoformat()
    empty = sam.get(f"/tool-life?from={earlier}&to={earlier}")
    assert empty.status_code == 200 and 'id="tool-life-none"' in empty.text

    download = sam.get(f"/tool-life.xlsx?{period}")
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("application/vnd.openxmlformats")
    path = tmp_path / "tool-life.xlsx"
    path.write_bytes(download.content)
    sheet = load_workbook(path).active
    assert sheet is not None
    rows = list(sheet.iter_rows(values_only=True))[1:]
    assert [(r[0], r[1], r[2] or "", r[4], r[5]) for r in rows] == [
        (m, tl, job, q, life) for m, tl, job, _, q, life in reference(signals)
    ]


def test_the_page_refuses_what_it_cannot_answer(
    start_web: Any, redis_client: Any, redis_url: str, tmp_path: Path
) -> None:
    web: RunningWeb = start_web(history_sections(tmp_path))
    sam = web.login("sam")
    bad = sam.get("/tool-life?from=2026-13-01")
    assert bad.status_code == 422 and "Give a date as YYYY-MM-DD." in bad.text
    backwards = sam.get("/tool-life?from=2026-11-02&to=2026-11-01")
    assert backwards.status_code == 422 and "comes after the last one" in backwards.text
    too_long = sam.get("/tool-life?from=2026-01-01&to=2026-12-01")
    assert too_long.status_code == 422 and "at most 92 days" in too_long.text
    assert sam.get("/tool-life?machine=nope").status_code == 422
    assert sam.get("/tool-life.xlsx?from=x").status_code == 422
    # An operator's pages do not include it; the page refuses them.
    assert web.login("olga").get("/tool-life").status_code == 403
    anonymous = web.client().get("/tool-life")
    assert anonymous.status_code == 303 and "/login" in anonymous.headers["location"]


def test_without_the_history_wired_in_the_page_says_so(start_web: Any) -> None:
    web: RunningWeb = start_web(tool_life=None)
    resp = web.login("sam").get("/tool-life")
    assert resp.status_code == 503
    assert "The signal history is not set up" in resp.text


def test_an_unreadable_history_is_a_503_not_a_500(
    start_web: Any, redis_client: Any, redis_url: str, tmp_path: Path
) -> None:
    sections = history_sections(tmp_path)
    web: RunningWeb = start_web(sections)
    seed_history(web, redis_client, redis_url)
    # A stored file that is not Parquet (a torn copy, a stray upload): DuckDB refuses it.
    store = tmp_path / "store"
    victim = next(store.rglob("*.parquet"))
    victim.write_bytes(b"not parquet")
    resp = web.login("sam").get("/tool-life")
    assert resp.status_code == 503
    assert "cannot be read just now" in resp.text


def test_in_the_browser_the_supervisor_picks_a_machine_and_downloads(
    start_web: Any,
    redis_client: Any,
    redis_url: str,
    open_page: Any,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    web: RunningWeb = start_web(history_sections(tmp_path))
    signals = seed_history(web, redis_client, redis_url)
    expected = [r for r in expected_rows(web, signals) if r[0] == "cnc101"]
    page = open_page(web, {"width": 1440, "height": 900})
    login_with_password(page, "sam")
    page.goto("/boards/machines")
    page.get_by_role("link", name="Tool life", exact=True).click()
    expect(page).to_have_url(re.compile(r"/tool-life$"))
    page.select_option("#tl-machine", "cnc101")
    page.click("#tool-life-show")
    expect(page).to_have_url(re.compile(r"machine=cnc101"))
    expect(page.locator("#tool-life tbody tr")).to_have_count(len(expected))
    quantities = page.locator("#tool-life tbody td.quantity").all_inner_texts()
    assert quantities == [r[6] for r in expected]
    with page.expect_download() as info:
        page.click("#tool-life-xlsx")
    download = info.value
    assert download.suggested_filename.startswith("tool-life_")
    target = tmp_path / download.suggested_filename
    download.save_as(str(target))
    sheet = load_workbook(target).active
    assert sheet is not None
    assert len(list(sheet.iter_rows())) == len(expected) + 1
