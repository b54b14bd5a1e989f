"""The master-data check at start-up: every configured machine's workcenter is in Plex.

A machine mapped to a workcenter key Plex does not know would have every one of its
tickets dead-lettered; saying so once, at start-up, is kinder. ``plex.master_data_check``
makes a mismatch fatal (the process exits 1) or a warning.
"""

from __future__ import annotations

from core.config.machines import Machine
from plex.actions import PlexActions


def workcenter_problems(actions: PlexActions, machines: list[Machine]) -> list[str]:
    """One line per machine whose workcenter Plex does not list (or lists differently).

    Raises plex.errors exceptions when Plex cannot be asked.
    """
    known = actions.workcenters()
    problems = []
    for machine in machines:
        code = known.get(machine.workcenter_key)
        if code is None:
            problems.append(
                f"machine {machine.id}: workcenter_key {machine.workcenter_key} "
                f"({machine.workcenter_code}) does not exist in Plex"
            )
        elif code and code != machine.workcenter_code:
            problems.append(
                f"machine {machine.id}: workcenter_key {machine.workcenter_key} is "
                f"{code!r} in Plex, not {machine.workcenter_code!r}"
            )
    return problems
