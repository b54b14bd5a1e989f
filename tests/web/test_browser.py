"""The three stories of the issue in a real browser (Debian's Chromium, headless).

Each test drives the served app the way a person does (clicks, typing, waiting for the
page to change by itself) and saves a screenshot of every page it sees: into the test
run's temporary folder, or, with ``REPSYS_SCREENSHOTS=docs/screenshots`` (``make
screenshots``), into the folder web/README.md shows, so an ordinary test run leaves the
work tree clean. The browser reports any script error or
Content-Security-Policy violation on the console; every test fails on one.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    ViewportSize,
    expect,
    sync_playwright,
)

from core import keys
from core.db.schema import Episode
from core.outbox import add_ticket
from tests.conftest import REPO, TEST_MACHINES, _merge
from tests.web.conftest import PASSWORD, PIN, RunningWeb, run_runner, run_sender

SHOTS = (
    REPO / os.environ["REPSYS_SCREENSHOTS"]
    if os.environ.get("REPSYS_SCREENSHOTS")
    else Path(tempfile.gettempdir()) / "repsys-screenshots"
)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TABLET: ViewportSize = {"width": 1024, "height": 768}
#: The test machines with display names and buildings, as a plant configures them.
NAMED_MACHINES = {
    "machines": [
        {**m, "name": str(m["id"]).upper().replace("CNC", "CNC "), "building": "B1"}
        for m in TEST_MACHINES
    ]
}
PHONE: ViewportSize = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


#: Pages the tests load on purpose with these statuses (a rejected form, a refused page).
EXPECTED_STATUSES = ("status of 422", "status of 403")


def _unexpected(message: ConsoleMessage) -> bool:
    """A console error the page should not have (script error, CSP violation, 404, 500)."""
    if message.type != "error":
        return False
    text = message.text
    return not (
        text.startswith("Failed to load resource")
        and any(status in text for status in EXPECTED_STATUSES)
    )


@pytest.fixture
def open_page(browser: Browser) -> Iterator[Any]:
    """Factory: a fresh browser context (own cookies) and page; console errors collected."""
    contexts = []
    problems: list[str] = []

    def factory(web: RunningWeb, viewport: ViewportSize = TABLET) -> Page:
        ctx = browser.new_context(viewport=viewport, base_url=web.url, accept_downloads=True)
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(15_000)
        page.on("console", lambda m: problems.append(m.text) if _unexpected(m) else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("dialog", lambda d: problems.append(f"dialog opened: {d.message}"))
        return page

    yield factory
    for ctx in contexts:
        ctx.close()
    assert problems == []


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def login_with_password(page: Page, username: str) -> None:
    page.goto("/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#password-form button[type=submit]")


def test_operator_files_a_ticket_and_sees_it_filed_with_the_plex_number(
    start_web, plex_world, open_page
) -> None:
    web = start_web(_merge(NAMED_MACHINES, plex_world.sections))
    page = open_page(web)
    page.goto("/report")
    expect(page).to_have_url(f"{web.url}/login?next=/report")
    shot(page, "login")
    page.fill("#badge", "1001")
    page.fill("#pin", PIN)
    page.click("#badge-form button[type=submit]")
    expect(page).to_have_url(f"{web.url}/report")
    expect(page.locator("#badge")).to_have_value("1001")

    # Bad input first: nothing picked, nothing typed.
    page.click("#file-ticket")
    expect(page.locator("#err-machine")).to_have_text("Pick the machine.")
    expect(page.locator("#err-category")).to_have_text("Pick a category.")
    expect(page.locator("#err-description")).to_have_text("Describe the problem.")
    shot(page, "report-form-errors")

    page.select_option("#machine", "cnc103")
    page.click("label.tile:has-text('Quality / rejection risk')")
    page.click("label.tile:has-text('High')")
    text = "<script>alert('x')</script> Engraver skips the last digit on every part"
    page.fill("#description", text)
    shot(page, "report-form")
    page.click("#file-ticket")
    expect(page.locator("#ticket-state")).to_have_text("Waiting to be sent to Plex")
    expect(page.locator("#ticket-description")).to_have_text(text)  # shown as text, not run
    shot(page, "ticket-pending")

    assert run_sender(web) == 1
    # The page polls its status block: it turns to "Filed" without a reload.
    expect(page.locator("#ticket-state")).to_have_text("Filed in Plex")
    [filed] = plex_world.sim.tickets()
    expect(page.locator("#plex-number")).to_have_text(str(filed.number))
    assert "Engraver skips the last digit" in str(filed.description)
    shot(page, "ticket-filed")

    phone = open_page(web, PHONE)
    phone.goto("/login")
    phone.fill("#badge", "1001")
    phone.fill("#pin", PIN)
    phone.click("#badge-form button[type=submit]")
    expect(phone.locator("#file-ticket")).to_be_visible()
    shot(phone, "report-form-phone")


def test_two_taps_on_a_slow_network_file_one_ticket_in_plex(
    start_web, plex_world, open_page
) -> None:
    """1.5 s of network delay, two taps 0.4 s apart: one ticket in the simulated Plex."""
    web = start_web(_merge(NAMED_MACHINES, plex_world.sections))
    page = open_page(web)
    page.goto("/login")
    page.fill("#badge", "1001")
    page.fill("#pin", PIN)
    page.click("#badge-form button[type=submit]")
    expect(page).to_have_url(f"{web.url}/report")

    def slow(route: Any) -> None:
        time.sleep(1.5)  # the plant's Wi-Fi: the answer takes a while
        route.continue_()

    page.route("**/report", slow)
    page.select_option("#machine", "cnc103")
    page.click("label.tile:has-text('Tool')")
    page.fill("#description", "Insert chipped on the roughing tool")
    # Two taps 0.4 s apart, while the first is still on its way; what the button said between.
    between = page.evaluate(
        """async () => {
            const button = document.getElementById("file-ticket");
            button.click();
            await new Promise((done) => setTimeout(done, 400));
            const seen = [button.textContent, button.disabled];
            button.click();
            return seen;
        }"""
    )
    assert between == ["Sending…", True]
    expect(page.locator("#ticket-state")).to_have_text("Waiting to be sent to Plex")
    page.unroute("**/report")
    assert run_sender(web) == 1
    assert len(plex_world.sim.tickets()) == 1


def _seed_plant(web: RunningWeb, redis_client) -> None:
    """What the collector and the rules engine would have written by now."""
    now = datetime.now(UTC)
    ts = now.timestamp()
    live = {
        "cnc101": {
            "state": "running",
            "program": "O1234",
            "part_count": "1187",
            "tool_number": "T12",
            "spindle_load": "63",
            "cycle_time": "41.8",
        },
        "cnc102": {"state": "idle", "program": "O2210", "part_count": "402"},
        "cnc103": {"state": "down", "alarm": "EX1041 spindle overload", "part_count": "88"},
    }
    for machine_id, fields in live.items():
        redis_client.hset(
            keys.machine_live(machine_id),
            mapping={**fields, "state_since": ts - 1500, "updated_at": ts - 3},
        )
    redis_client.hset(
        keys.machine_last_seen(), mapping={"cnc101": ts - 1, "cnc102": ts - 2, "cnc103": ts - 3}
    )
    redis_client.zadd(
        keys.UPCOMING_TOOL_CHANGES, {"cnc101|T12": 18, "cnc102|T3": 95, "cnc103|T7": 260}
    )
    with web.sessions.begin() as s:
        cycle = Episode(
            fingerprint="cnc101|cycle",
            machine_id="cnc101",
            rule="cycle_time_drift",
            rule_type="cycle_time",
            subject="O1234",
            severity="medium",
            state="firing",
            summary="Cycle time on CNC 101 drifted 12% above its baseline",
            evidence={
                "series": {
                    "name": "cycle_time",
                    "unit": "s",
                    "baseline": 41.0,
                    "points": [
                        [ts - 60 * (30 - i), 41 + (i * 0.2) + (i % 3) * 0.3] for i in range(30)
                    ],
                }
            },
            started_at=now - timedelta(minutes=25),
            last_seen_at=now,
        )
        tool = Episode(
            fingerprint="cnc103|tool|T7",
            machine_id="cnc103",
            rule="tool_life_short",
            rule_type="tool_not_reaching_life",
            subject="T7",
            severity="high",
            state="firing",
            summary="Tool 7 on CNC 103 changed at 412 of 798 parts",
            evidence={
                "series": {
                    "name": "tool_counter",
                    "limit": 798,
                    "warning": 700,
                    "points": [[ts - 300 * (20 - i), 22 * i] for i in range(20)],
                },
                "standard_life": 798,
                "changed_at": 412,
            },
            started_at=now - timedelta(hours=2),
            last_seen_at=now,
        )
        s.add_all([cycle, tool])
        s.flush()
        machine = web.cfg.machine("cnc103")
        assert machine is not None
        t = add_ticket(
            s,
            machine=machine,
            source="rule",
            title=tool.summary,
            description="Tool 7 is not reaching tool life",
            severity="high",
            episode_id=tool.id,
        )
        t.state, t.plex_number = "filed", "WR-104233"
        add_ticket(
            s,
            machine=machine,
            source="operator",
            title="Chips in the fixture",
            description="Coolant nozzle blocked",
            reporter="1001",
        )


def test_supervisor_silences_a_machine_and_the_board_shows_it(
    start_web, redis_client, open_page
) -> None:
    web = start_web(NAMED_MACHINES)
    _seed_plant(web, redis_client)
    page = open_page(web)
    login_with_password(page, "sam")
    page.goto("/silences")
    page.select_option("#machine", "cnc102")
    page.fill("#hours", "4")
    page.fill("#reason", "Spindle rebuild by maintenance")
    page.click("#create-silence")
    expect(page.locator("#silences")).to_contain_text("Spindle rebuild by maintenance")
    shot(page, "silences")

    page.goto("/boards/machines")
    expect(page.locator("#silenced-cnc102")).to_contain_text("Silenced until")
    expect(page.locator("#machine-cnc101")).to_have_attribute("data-state", "running")
    expect(page.locator("#machine-cnc103")).to_have_attribute("data-state", "down")
    expect(page.locator("#silenced-cnc101")).to_have_count(0)
    shot(page, "machines")

    page.goto("/boards/episodes")
    expect(page.locator("svg.chart")).to_have_count(2)
    shot(page, "episodes")
    page.click("text=Tool 7 on CNC 103 changed at 412 of 798 parts")
    expect(page.locator("#episode-charts svg.chart")).to_be_visible()
    expect(page.locator("#tickets")).to_contain_text("WR-104233")
    shot(page, "episode")
    page.goto("/boards/tickets")
    expect(page.locator("#tickets")).to_contain_text("Chips in the fixture")
    shot(page, "tickets")
    page.goto("/boards/tool-changes")
    expect(page.locator("#tool-changes tr.soon")).to_contain_text("CNC 101")
    shot(page, "tool-changes")

    # The operator may see the floor boards, not the supervisor's pages.
    operator = open_page(web)
    login_with_password(operator, "olga")
    response = operator.goto("/silences")
    assert response is not None and response.status == 403
    expect(operator.locator("#error-message")).to_have_text("This page needs the supervisor role.")
    shot(operator, "forbidden")


def test_controller_requests_a_tb_and_downloads_the_file(
    start_web, plex_world, open_page, tmp_path: Path
) -> None:
    web = start_web(plex_world.sections)
    page = open_page(web)
    login_with_password(page, "dan")
    expect(page).to_have_url(f"{web.url}/reports")
    page.fill("#tb-start", "202401")
    page.fill("#tb-end", "202404")
    page.select_option("#tb-pcn", "123681")
    page.click("#request-tb")
    row = page.locator("#queue-table tbody tr").first
    expect(row).to_have_attribute("data-state", "pending")
    expect(page.locator("#live-state")).to_have_text("live")
    shot(page, "reports-pending")

    assert run_runner(web) == 1
    # No reload: the queue block follows the progress channel by itself.
    expect(row).to_have_attribute("data-state", "completed")
    shot(page, "reports")
    # On a tablet upright the table keeps its action column in view: Download is tappable.
    page.set_viewport_size({"width": 768, "height": 1024})
    button = row.locator("a.download")
    box = button.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 768, box
    shot(page, "reports-tablet")
    page.set_viewport_size(TABLET)
    with page.expect_download() as info:
        row.locator("a.download").click()
    download = info.value
    assert download.suggested_filename.startswith("TB-202401_to_202404")
    assert download.suggested_filename.endswith(".xlsx")
    target = tmp_path / download.suggested_filename
    download.save_as(str(target))
    assert target.read_bytes()[:2] == b"PK"

    # A wrong period is refused on the form with the runner's words.
    page.fill("#tb-start", "202406")
    page.fill("#tb-end", "202401")
    page.click("#request-tb")
    expect(page.locator("#tb-error")).to_have_text("start period 202406 is after end period 202401")
    shot(page, "reports-error")


def test_a_board_whose_rules_engine_stopped_says_no_data_by_itself(
    start_web, redis_client, open_page
) -> None:
    """The tile flips to "no data" on the board's own reload once the rules engine's last
    write is older than the staleness, while the collector still hears the machine."""
    web = start_web({"web": {"no_data_after_s": 3, "board_refresh_s": 2}})
    now = time.time()
    redis_client.hset(
        keys.machine_live("cnc101"),
        mapping={"state": "running", "state_since": now - 600, "updated_at": now},
    )
    page = open_page(web)
    login_with_password(page, "sam")
    page.goto("/boards/machines")
    tile = page.locator("#machine-cnc101")
    expect(tile).to_have_attribute("data-state", "running")
    # The collector keeps hearing the machine; the rules engine has stopped writing.
    deadline = time.time() + 20
    while time.time() < deadline and tile.get_attribute("data-state") == "running":
        redis_client.hset(keys.machine_last_seen(), "cnc101", time.time())
        page.wait_for_timeout(250)
    expect(tile).to_have_attribute("data-state", "no_data")
    expect(page.locator("#stale-cnc101")).to_contain_text("rules engine silent")
    # A supervisor can hold the board still to read it.
    page.click("[data-pause]")
    expect(page.locator("#refresh")).to_contain_text("Updates paused")
    shot(page, "machines-rules-silent")


def test_tv_board_rotates_its_pages_with_a_kiosk_token(
    start_web, redis_client, open_page, monkeypatch
) -> None:
    monkeypatch.setenv("TEST_KIOSK_TOKEN", "andon-1")
    web = start_web(
        _merge(
            NAMED_MACHINES,
            {
                "web": {
                    "kiosk_token": {"env": "TEST_KIOSK_TOKEN"},
                    "tv_tiles_per_page": 2,
                    "tv_page_s": 5,
                }
            },
        )
    )
    _seed_plant(web, redis_client)
    page = open_page(web, {"width": 1920, "height": 1080})
    page.goto("/board/tv?token=andon-1")  # no login: the wall screen's kiosk token
    expect(page.locator("#tv-page")).to_have_text("page 1 of 2")
    expect(page.locator("#machine-cnc101")).to_be_visible()
    shot(page, "tv-board")
    # The screen turns to the next page by itself, and back to the first.
    expect(page.locator("#tv-page")).to_have_text("page 2 of 2", timeout=15_000)
    expect(page.locator("#machine-cnc103")).to_be_visible()
    expect(page.locator("#tv-page")).to_have_text("page 1 of 2", timeout=15_000)


@pytest.mark.parametrize(
    "viewport", [{"width": 1024, "height": 768}, {"width": 768, "height": 1024}]
)
def test_the_primary_action_is_on_the_first_screen_of_a_tablet(
    start_web, open_page, viewport: ViewportSize
) -> None:
    """ "File the ticket" without scrolling, on a tablet either way up; the navigation of a
    supervisor (seven links) folds behind Menu below 900 px instead of filling the screen."""
    web = start_web(NAMED_MACHINES)
    page = open_page(web, viewport)
    login_with_password(page, "sam")
    page.goto("/report")
    button = page.locator("#file-ticket").bounding_box()
    assert button is not None
    assert button["y"] + button["height"] <= viewport["height"], button
    header = page.locator("header.top").bounding_box()
    assert header is not None and header["height"] <= 80, header
    if viewport["width"] < 900:
        expect(page.locator("#nav")).to_be_hidden()
        page.click(".menu-toggle")
        expect(page.locator("#nav")).to_be_visible()
        expect(page.locator(".menu-toggle")).to_have_attribute("aria-expanded", "true")
    else:
        expect(page.locator("#nav")).to_be_visible()
