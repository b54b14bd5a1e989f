"""``downtime``: not running while in processing mode, for longer than ``for_s``.

The machine is down when its ``run_state`` is not one of ``running_states`` while its
``operation_mode`` is processing (a machine that does not report a mode counts as
processing). Setup and maintenance are planned, not downtime. The episode starts at the
moment the machine stopped; ``for_s`` (default 5 minutes) keeps short stops out (those
are micro-stops).

The evidence charts the machine's last stops and starts (1 running, 0 down) up to the
stop, with its last alarm marked (``machine_state.last_alarm``).
"""

from __future__ import annotations

from core.config.rules import DowntimeRule
from core.model import Signal
from rules.alerts import Lifecycle
from rules.derive import Facts
from rules.state import MachineState
from rules.text import local_time
from rules.types.base import BaseRule, chart

#: Stops and starts the rule remembers per machine for the chart (checkpointed: small).
TRANSITIONS = 8


def processing(m: MachineState) -> bool:
    return m.mode in ("", "processing")


def steps(runs: list[list[float]]) -> list[list[float]]:
    """Changes ``[time, state]`` as a step line: each change drawn as a vertical edge."""
    out: list[list[float]] = []
    for ts, state in runs:
        if out:
            out.append([ts, out[-1][1]])
        out.append([ts, state])
    return out


class Downtime(BaseRule):
    """A condition per machine; ``for_s`` is the minimum downtime."""

    spec_model = DowntimeRule
    category = "downtime"

    inputs = frozenset({"run_state", "operation_mode"})

    def __init__(self, spec: DowntimeRule, facts: Facts) -> None:
        super().__init__(spec.name)
        self.running = frozenset(spec.running_states)
        self.facts = facts

    def on_signal(self, m: MachineState, sig: Signal, ctx: Lifecycle) -> None:
        down = bool(m.run_state) and m.run_state not in self.running and processing(m)
        st = self.state(m)
        if down == st.get("down", False):
            if not down and m.run_state and "runs" not in st:
                st["runs"] = [[round(m.run_since or sig.source_ts, 3), 1]]  # first seen running
            return
        st["down"] = down
        # [time, 1 running or 0 down] of each change; only changes reach this line. A
        # change of run state happened at ``run_since``; one of mode, at this signal.
        at = m.run_since if sig.name == "run_state" and m.run_since else sig.source_ts
        runs = st.setdefault("runs", [])
        runs.append([round(at, 3), 0 if down else 1])
        if len(runs) > TRANSITIONS:
            del runs[0]
        if not down:
            ctx.inactive(m, self.name, "")
            return
        alarm = ""
        if m.last_alarm is not None and m.last_alarm[2] >= m.run_since - 1.0:
            alarm = f" with alarm {m.last_alarm[0]} {m.last_alarm[1]}".rstrip()
        ctx.active(
            m,
            self.name,
            "",
            m.run_since,
            headline=f"{self.facts.machine_name(m.id)} is down",
            detail=f"{m.run_state} since {local_time(m.run_since, self.facts.shifts.zone)} in "
            f"processing mode{alarm}",
            values={
                "run_state": m.run_state,
                "since_ts": m.run_since,
                # Lifted to the evidence's top-level ``series`` (web/charts.py).
                "series": chart("running", "1 running, 0 down", steps(runs)),
            },
        )
