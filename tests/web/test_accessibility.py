"""axe-core (Deque's accessibility engine, the npm package) on every page, for every role,
at the three viewports the floor uses: 768x1024 (a tablet upright), 1024x768 (lying) and
1440x900 (a supervisor's desk). A serious or critical violation fails the walk; the test
prints the pages it walked and every violation of any impact, so a lesser one is seen.

The script is read from ``.tools/axe`` (``tools/setup-node.sh`` installs it) and injected
by Playwright into each page; the context bypasses the app's Content-Security-Policy for
that one injection only (the app's own pages are still held to it by test_browser.py).
With ``REPSYS_SCREENSHOTS`` set (``make screenshots``) the walk also saves every page at
768x1024 and 1440x900 into that folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, ViewportSize, sync_playwright

from tests.conftest import REPO, _merge
from tests.web.conftest import PASSWORD, RunningWeb
from tests.web.test_browser import CHROMIUM_ARGS, NAMED_MACHINES, _seed_plant
from tests.web.test_tool_life import seed_history

AXE = REPO / ".tools" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
VIEWPORTS: dict[str, ViewportSize] = {
    "768x1024": {"width": 768, "height": 1024},
    "1024x768": {"width": 1024, "height": 768},
    "1440x900": {"width": 1440, "height": 900},
}
SHOT_VIEWPORTS = ("768x1024", "1440x900")
SHOTS = REPO / os.environ["REPSYS_SCREENSHOTS"] if os.environ.get("REPSYS_SCREENSHOTS") else None
USERS = {"operator": "olga", "controller": "dan", "supervisor": "sam", "admin": "ada"}
FLOOR_PAGES = ["/boards/machines", "/boards/tool-changes", "/machines/cnc103", "/board/tv"]
SUPERVISOR_PAGES = [
    "/boards/episodes",
    "/episodes/{episode}",
    "/boards/tickets",
    "/silences",
    "/tickets/{ticket}",
    "/report",
    "/reports",
    "/tool-life",
]
#: Pages per role: everything its navigation offers, the pages those link to, an error.
PAGES: dict[str, list[str]] = {
    "anonymous": ["/login"],
    "operator": ["/report", "/tickets/{ticket}", *FLOOR_PAGES, "/account", "/no/such/page"],
    "controller": ["/reports", "/account"],
    "supervisor": [*FLOOR_PAGES, *SUPERVISOR_PAGES, "/account"],
    "admin": ["/boards/machines", "/boards/episodes", "/reports", "/silences"],
}
BLOCKING = ("serious", "critical")
RUN_AXE = """async () => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return result.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 5).map(n => n.target.join(" ")),
  }));
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert AXE.is_file(), f"{AXE} is missing: run tools/setup-node.sh (make test does)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


def _login(page: Page, username: str) -> None:
    page.goto("/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#password-form button[type=submit]")
    page.wait_for_load_state()


def _check(page: Page, where: str, found: list[str]) -> None:
    page.add_script_tag(path=str(AXE))
    for v in page.evaluate(RUN_AXE):
        line = f"{where}: {v['impact']} {v['id']} ({v['help']}) at {', '.join(v['nodes'])}"
        found.append(line)


def test_no_serious_or_critical_violation_on_any_page_role_or_viewport(
    start_web, redis_client, redis_url, browser: Browser, tmp_path
) -> None:
    store = {"storage": {"type": "local", "root": str(tmp_path / "store")}}
    web: RunningWeb = start_web(_merge(NAMED_MACHINES, store))
    _seed_plant(web, redis_client)
    seed_history(web, redis_client, redis_url)  # the tool-life page shows its table
    with web.sessions() as s:
        from core.db.schema import Episode, Ticket

        episode = s.query(Episode).order_by(Episode.id).first()
        ticket = s.query(Ticket).order_by(Ticket.id).first()
        assert episode is not None and ticket is not None
        ids = {"episode": episode.id, "ticket": ticket.id}
    found: list[str] = []
    walked: list[str] = []
    shots: set[str] = set()
    for size, viewport in VIEWPORTS.items():
        for role, paths in PAGES.items():
            ctx = browser.new_context(viewport=viewport, base_url=web.url, bypass_csp=True)
            page = ctx.new_page()
            page.set_default_timeout(15_000)
            try:
                if role != "anonymous":
                    _login(page, USERS[role])
                for raw in paths:
                    path = raw.format(**ids)
                    page.goto(path)
                    where = f"{role} {path} {size}"
                    walked.append(where)
                    _check(page, where, found)
                    name = raw.strip("/").replace("/", "-").replace("{", "").replace("}", "")
                    shot = f"page-{name}-{size}.png"
                    if SHOTS is not None and size in SHOT_VIEWPORTS and shot not in shots:
                        shots.add(shot)  # each page once, as the first role to see it
                        SHOTS.mkdir(parents=True, exist_ok=True)
                        page.screenshot(path=str(SHOTS / shot), full_page=True)
            finally:
                ctx.close()
    print(f"\naxe-core walked {len(walked)} pages:")
    for where in walked:
        print(f"  {where}")
    print(f"violations of any impact: {len(found)}")
    for line in found:
        print(f"  {line}")
    blocking = [line for line in found if any(f": {impact} " in line for impact in BLOCKING)]
    assert blocking == []
    # The walk covered what it says: every role, every viewport.
    assert len(walked) == sum(len(p) for p in PAGES.values()) * len(VIEWPORTS)


def test_axe_finds_what_it_should(start_web, browser: Browser) -> None:
    """The engine is live: a page with a known serious violation is reported."""
    web: RunningWeb = start_web()
    ctx = browser.new_context(base_url=web.url, bypass_csp=True)
    page = ctx.new_page()
    try:
        page.goto("/login")
        page.evaluate(
            "() => { document.querySelector('#username').removeAttribute('id'); "
            "const i = document.createElement('input'); document.body.append(i); }"
        )
        found: list[str] = []
        _check(page, "broken login", found)
    finally:
        ctx.close()
    assert any(" critical label " in f or " serious label " in f for f in found), found
