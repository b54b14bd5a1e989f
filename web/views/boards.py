"""The supervisors' boards: machines, upcoming tool changes, open episodes, tickets.

Each board is one server-rendered page that reloads itself every ``web.board_refresh_s``
(a meta refresh: no script, works on any wall screen). Machines and tool changes are
read from Redis (live state written by the rules engine); episodes and tickets from the
database.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response

from core.config import Machine
from core.model import TicketState
from web.accounts import Principal
from web.auth import require
from web.baselines import cycle_baselines
from web.charts import Series
from web.csrf import check_csrf
from web.errors import NotAuthenticated, NotFound
from web.live import (
    MachineStatus,
    machine_statuses,
    signal_display,
    upcoming_tool_changes,
)
from web.machine_charts import WINDOWS, thin, window_signals
from web.params import EpisodeId, MachineId
from web.queries import (
    OPEN_EPISODE_STATES,
    active_silences,
    covering_silence,
    episodes,
    get_episode,
    machine_work,
    silenced_machines,
    tickets,
)
from web.render import render, url
from web.roles import FLOOR, SUPERVISOR
from web.services import Services, services

router = APIRouter(dependencies=[Depends(check_csrf)])
#: The tool changes bar spans this many minutes (a shift).
TOOL_HORIZON_MIN = 480.0


def _names(machines: list[Machine]) -> dict[str, str]:
    return {m.id: m.display_name for m in machines}


@router.get("/boards")
def boards(request: Request, principal: Annotated[Principal, Depends(require(*FLOOR))]) -> Response:
    return RedirectResponse(url(request, "/boards/machines"), status_code=303)


def _statuses(svc: Services, machines: list[Machine]) -> list[MachineStatus]:
    return machine_statuses(
        svc.redis,
        machines,
        now=svc.clock(),
        no_data_after_s=svc.cfg.web.no_data_after_s,
        formats=svc.cfg.web.signals,
    )


def _grouped(statuses: list[MachineStatus]) -> list[tuple[str, list[MachineStatus]]]:
    groups: dict[str, list[MachineStatus]] = {}
    for status in statuses:
        m = status.machine
        label = " · ".join(p for p in (m.building, m.cell) if p) or "Other machines"
        groups.setdefault(label, []).append(status)
    return list(groups.items())


def _board_context(svc: Services, statuses: list[MachineStatus]) -> dict[str, object]:
    with svc.sessions() as session:
        silenced = silenced_machines(session, now=svc.clock())
        work = machine_work(session)
    return {
        "groups": _grouped(statuses),
        "silenced": silenced,
        "work": work,
        "baselines": cycle_baselines(svc.redis, svc.cfg),
        "refresh_s": svc.cfg.web.board_refresh_s,
    }


@router.get("/boards/machines")
def machines_board(
    request: Request, principal: Annotated[Principal, Depends(require(*FLOOR))]
) -> Response:
    svc = services(request)
    context = _board_context(svc, _statuses(svc, svc.cfg.machines))
    return render(request, "machines.html", context)


#: Minutes of signals the machine page charts.
MACHINE_CHART_MIN = 60


@router.get("/machines/{machine_id}")
def machine_page(
    request: Request,
    machine_id: MachineId,
    principal: Annotated[Principal, Depends(require(*FLOOR))],
    minutes: Annotated[int, Query(ge=5, le=WINDOWS[-1][0])] = MACHINE_CHART_MIN,
) -> Response:
    """One machine: its state, its last hour (or ``minutes``) charted, its episodes,
    tickets and tool changes."""
    svc = services(request)
    machine = svc.cfg.machine(machine_id)
    if machine is None:
        raise NotFound(f"There is no machine {machine_id}.")
    (status,) = _statuses(svc, [machine])
    now = svc.clock()
    # Older than the stream holds: from the signal history (web/machine_charts.py).
    recent = window_signals(
        svc.redis,
        machine.id,
        partitions=svc.cfg.streams.partitions,
        since=now.timestamp() - minutes * 60,
        archive=svc.history_series,
    )
    charts = []
    for name, points in recent.points.items():
        fmt = signal_display(name, svc.cfg.web.signals)
        charts.append(Series(name=fmt.label, unit=fmt.unit, points=thin(points), references={}))
    with svc.sessions() as session:
        silenced = silenced_machines(session, now=now)
        show_episodes = principal.has_any(SUPERVISOR)
        machine_episodes = episodes(session, machine=machine.id, limit=20) if show_episodes else []
        machine_tickets = tickets(session, machine=machine.id, limit=20)
        work = machine_work(session).get(machine.id)
    changes = [
        c
        for c in upcoming_tool_changes(svc.redis, limit=svc.cfg.web.board_limit)
        if c.machine == machine.id
    ]
    return render(
        request,
        "machine.html",
        {
            "s": status,
            "charts": charts,
            "chart_minutes": minutes,
            "chart_windows": WINDOWS,
            "charts_from": (
                datetime.fromtimestamp(recent.covered_from, UTC) if recent.covered_from else None
            ),
            "silenced_until": silenced.get(machine.id),
            "episodes": machine_episodes,
            "show_episodes": show_episodes,
            "tickets": machine_tickets,
            "work": work,
            "changes": changes,
            "refresh_s": svc.cfg.web.board_refresh_s,
        },
    )


def _kiosk(request: Request, token: str) -> None:
    """Let the TV board in: a valid kiosk token, or a logged-in floor user."""
    svc = services(request)
    configured = svc.cfg.web.kiosk_token
    if configured is not None and token:
        if secrets.compare_digest(token.encode(), configured.get_secret_value().encode()):
            return
        raise NotAuthenticated("That kiosk token is not valid.")
    require(*FLOOR)(request)


@router.get("/board/tv")
def tv_board(request: Request, token: str = "", page: int = 0) -> Response:
    """The andon screen: every machine in large type, pages rotating, read only.

    Opened by a kiosk token (``web.kiosk_token``) so a wall screen needs no login; it
    shows nothing a floor user could not see and has no link that changes anything.
    """
    _kiosk(request, token)
    svc = services(request)
    statuses = _statuses(svc, svc.cfg.machines)
    per_page = svc.cfg.web.tv_tiles_per_page
    pages = max(1, -(-len(statuses) // per_page))
    page = page % pages if page >= 0 else 0
    shown = statuses[page * per_page : (page + 1) * per_page]
    context = _board_context(svc, shown)
    params = {"page": str((page + 1) % pages)} | ({"token": token} if token else {})
    query = "?" + urlencode(params)
    context.update(
        {
            "page": page,
            "pages": pages,
            "next_url": url(request, f"/board/tv{query}"),
            "refresh_s": svc.cfg.web.tv_page_s if pages > 1 else svc.cfg.web.board_refresh_s,
        }
    )
    return render(request, "tv.html", context)


@router.get("/boards/tool-changes")
def tool_changes_board(
    request: Request, principal: Annotated[Principal, Depends(require(*FLOOR))]
) -> Response:
    svc = services(request)
    changes = upcoming_tool_changes(svc.redis, limit=svc.cfg.web.board_limit)
    return render(
        request,
        "tool_changes.html",
        {
            "changes": changes,
            "names": _names(svc.cfg.machines),
            "horizon": TOOL_HORIZON_MIN,
            "refresh_s": svc.cfg.web.board_refresh_s,
        },
    )


@router.get("/boards/episodes")
def episodes_board(
    request: Request, principal: Annotated[Principal, Depends(require(*SUPERVISOR))]
) -> Response:
    svc = services(request)
    with svc.sessions() as session:
        rows = episodes(session, open_only=True, limit=svc.cfg.web.board_limit)
        active = active_silences(session, now=svc.clock())
    muted = {e.id: s for e in rows if (s := covering_silence(active, e.machine_id, e.rule))}
    return render(
        request,
        "episodes.html",
        {
            "episodes": rows,
            "muted": muted,
            "names": _names(svc.cfg.machines),
            "refresh_s": svc.cfg.web.board_refresh_s,
        },
    )


@router.get("/episodes/{episode_id}")
def episode_page(
    request: Request,
    episode_id: EpisodeId,
    principal: Annotated[Principal, Depends(require(*SUPERVISOR))],
) -> Response:
    svc = services(request)
    with svc.sessions() as session:
        episode = get_episode(session, episode_id)
        related = tickets(session, episode_id=episode.id)
        active = active_silences(session, now=svc.clock())
    muted = covering_silence(active, episode.machine_id, episode.rule)
    machine = svc.cfg.machine(episode.machine_id)
    return render(
        request,
        "episode.html",
        {
            "episode": episode,
            "muted": muted if episode.state in OPEN_EPISODE_STATES else None,
            "tickets": related,
            "names": _names(svc.cfg.machines),
            "machine_name": machine.display_name if machine else episode.machine_id,
        },
    )


TICKET_FILTERS = [
    ("", "Open"),
    (TicketState.PENDING.value, "Pending"),
    (TicketState.FILED.value, "Filed"),
    (TicketState.DEAD.value, "Failed"),
    (TicketState.CLOSED.value, "Closed"),
]


@router.get("/boards/tickets")
def tickets_board(
    request: Request,
    principal: Annotated[Principal, Depends(require(*SUPERVISOR))],
    state: str = "",
) -> Response:
    svc = services(request)
    known = {value for value, _ in TICKET_FILTERS}
    state = state if state in known else ""
    with svc.sessions() as session:
        rows = tickets(
            session, state=state or None, open_only=not state, limit=svc.cfg.web.board_limit
        )
    return render(
        request,
        "tickets.html",
        {
            "tickets": rows,
            "state": state,
            "filters": TICKET_FILTERS,
            "names": _names(svc.cfg.machines),
            "refresh_s": svc.cfg.web.board_refresh_s,
        },
    )
