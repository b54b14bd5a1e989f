"""The supervisors' boards: machines, upcoming tool changes, open episodes, tickets.

Each board is one server-rendered page that reloads itself every ``web.board_refresh_s``
(a meta refresh: no script, works on any wall screen). Machines and tool changes are
read from Redis (live state written by the rules engine); episodes and tickets from the
database.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from core.config import Machine
from core.model import TicketState
from web.accounts import Principal
from web.auth import require
from web.baselines import cycle_baselines
from web.csrf import check_csrf
from web.live import MachineStatus, machine_statuses, upcoming_tool_changes
from web.params import EpisodeId
from web.queries import episodes, get_episode, silenced_machines, tickets
from web.render import render, url
from web.roles import FLOOR, SUPERVISOR
from web.services import services

router = APIRouter(dependencies=[Depends(check_csrf)])
#: The tool changes bar spans this many minutes (a shift).
TOOL_HORIZON_MIN = 480.0


def _names(machines: list[Machine]) -> dict[str, str]:
    return {m.id: m.display_name for m in machines}


@router.get("/boards")
def boards(request: Request, principal: Annotated[Principal, Depends(require(*FLOOR))]) -> Response:
    return RedirectResponse(url(request, "/boards/machines"), status_code=303)


@router.get("/boards/machines")
def machines_board(
    request: Request, principal: Annotated[Principal, Depends(require(*FLOOR))]
) -> Response:
    svc = services(request)
    now = svc.clock()
    statuses = machine_statuses(
        svc.redis, svc.cfg.machines, now=now, no_data_after_s=svc.cfg.web.no_data_after_s
    )
    groups: dict[str, list[MachineStatus]] = {}
    for status in statuses:
        m = status.machine
        label = " · ".join(p for p in (m.building, m.cell) if p) or "Other machines"
        groups.setdefault(label, []).append(status)
    with svc.sessions() as session:
        silenced = silenced_machines(session, now=now)
    return render(
        request,
        "machines.html",
        {
            "groups": list(groups.items()),
            "silenced": silenced,
            "baselines": cycle_baselines(svc.redis, svc.cfg),
            "refresh_s": svc.cfg.web.board_refresh_s,
        },
    )


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
    return render(
        request,
        "episodes.html",
        {
            "episodes": rows,
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
    machine = svc.cfg.machine(episode.machine_id)
    return render(
        request,
        "episode.html",
        {
            "episode": episode,
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
