"""HTML rendering: the Jinja2 environment, its filters, and the navigation by role.

Templates live in ``web/templates`` and are autoescaped: whatever a user typed
(``<script>`` included) is shown as text. Times are stored in UTC and shown in the plant's
time zone (``plant.timezone``), since that is the clock on the shop-floor wall.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi.templating import Jinja2Templates
from starlette.requests import Request
from starlette.responses import Response

from core.config import Machine
from web.accounts import Principal
from web.auth import resolve
from web.charts import evidence_facts, evidence_series, render_svg
from web.csrf import csrf_token
from web.errors import WebError
from web.services import services

TEMPLATES = Path(__file__).with_name("templates")
STATIC = Path(__file__).with_name("static")


@dataclass(frozen=True)
class NavItem:
    """A link in the header, shown to holders of any of ``roles``."""

    label: str
    path: str
    roles: tuple[str, ...]


NAV = (
    NavItem("Report a problem", "/report", ("operator", "supervisor")),
    NavItem("Machines", "/boards/machines", ("operator", "supervisor")),
    NavItem("Tool changes", "/boards/tool-changes", ("operator", "supervisor")),
    NavItem("Episodes", "/boards/episodes", ("supervisor",)),
    NavItem("Tickets", "/boards/tickets", ("supervisor",)),
    NavItem("Tool life", "/tool-life", ("supervisor",)),
    NavItem("Silences", "/silences", ("supervisor",)),
    NavItem("Reports", "/reports", ("controller", "supervisor")),
)


def url(request: Request, path: str) -> str:
    """``path`` under the app's root path (when a gateway serves it under a prefix)."""
    return f"{request.scope.get('root_path', '')}{path}"


#: Each role's own home, in this order for a user with several (an admin lands on the
#: supervisors' board): the work a person of that role comes to do.
HOMES = (
    ("supervisor", "/boards/machines"),
    ("controller", "/reports"),
    ("operator", "/report"),
)


def home_path(principal: Principal) -> str:
    """Where a user lands after login: their role's own page."""
    for role, path in HOMES:
        if principal.has_any((role,)):
            return path
    return "/account"


def _age(value: datetime | None, now: datetime) -> str:
    """``now - value`` in words a shift reads at a glance: 42 s, 12 min, 3 h 05 min, 4 d."""
    if value is None:
        return ""
    seconds = max(0, int((now - value).total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours = minutes // 60
    if hours < 48:
        return f"{hours} h {minutes % 60:02d} min"
    return f"{hours // 24} d"


def _minutes(value: float) -> str:
    total = max(0, int(value))
    return f"{total // 60} h {total % 60:02d} min" if total >= 60 else f"{total} min"


def local_time(request: Request, value: datetime, fmt: str = "%a %H:%M") -> str:
    """``value`` on the plant's wall clock, for messages built outside a template."""
    zone = ZoneInfo(services(request).cfg.plant.timezone)
    return value.astimezone(zone).strftime(fmt)


def build_templates(timezone: str) -> Jinja2Templates:
    """The template set with the plant's time zone baked into its filters."""
    templates = Jinja2Templates(directory=str(TEMPLATES))
    zone = ZoneInfo(timezone)

    def local(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
        # Every datetime here is aware (UtcDateTime columns, the services' clock).
        return value.astimezone(zone).strftime(fmt) if value is not None else ""

    env = templates.env
    # Templates ship with the code: no need to stat every file on every render.
    env.auto_reload = False
    env.filters["local"] = local
    env.filters["minutes"] = _minutes
    env.globals["evidence_series"] = evidence_series
    env.globals["evidence_facts"] = lambda evidence: evidence_facts(evidence, zone)
    env.globals["chart"] = lambda series: render_svg(series, zone)
    return templates


#: Session key of the one-time confirmation the next page shows ("Silence created...").
FLASH_KEY = "flash"


def flash(request: Request, message: str) -> None:
    """Confirm an action on the page the browser is sent to next (shown once)."""
    request.session[FLASH_KEY] = message[:300]


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """Render ``name`` with what every page needs: user, navigation, CSRF token, clock."""
    svc = services(request)
    try:
        principal = resolve(request)
    except WebError:  # an error page for a request whose credentials were refused
        principal = None
    now = svc.clock()
    root = str(request.scope.get("root_path", ""))
    path = request.url.path
    templates: Jinja2Templates = request.app.state.templates
    ctx: dict[str, Any] = {
        "principal": principal,
        "nav": [i for i in NAV if principal is not None and principal.has_any(i.roles)],
        "csrf": csrf_token(request),
        "plant": svc.cfg.plant.name,
        "now": now,
        "age": lambda value: _age(value, now),
        "took": lambda start, end: _age(start, end or now),
        "root": root,
        "path": path[len(root) :] if root and path.startswith(root) else path,
        "flash": request.session.pop(FLASH_KEY, None) if "session" in request.scope else None,
    }
    ctx.update(context or {})
    return templates.TemplateResponse(request, name, ctx, status_code=status_code, headers=headers)


def machine_groups(machines: list[Machine]) -> list[tuple[str, list[Machine]]]:
    """Machines grouped by building and cell, in configuration order (the form's picker)."""
    groups: dict[str, list[Machine]] = {}
    for m in machines:
        label = " · ".join(p for p in (m.building, m.cell) if p) or "Other machines"
        groups.setdefault(label, []).append(m)
    return list(groups.items())
