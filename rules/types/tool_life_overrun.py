"""``tool_life_overrun``: a tool used past its life without being changed.

Fires when a tool's counter exceeds ``life + margin`` on a use that started at or past its
life: the tool was used again instead of being changed. A reading that overshoots the
life from below (a counter jump past it, or an increment of 2 over an odd life) is not yet
an overrun: the tool is changed at that very reading as a rule; only its next reading, if
it is still past the life, is. The episode holds until the tool is changed (then it
resolves, after ``keep_firing_for_s``). Before any earlier reading is known (the start
of a stream), a reading past the life fires.

The evidence charts the tool's last ``RECENT`` distinct readings of its current life up
to the one that fired, against the life.
"""

from __future__ import annotations

from core.config.rules import ToolLifeOverrunRule
from core.model import Signal
from rules.alerts import Lifecycle
from rules.derive import Facts
from rules.state import MachineState
from rules.types.base import BaseRule, chart, fmt

#: Distinct readings per tool the chart shows (kept in the rule's state: small).
RECENT = 20


class ToolLifeOverrun(BaseRule):
    """A condition per tool: over its life, until changed."""

    spec_model = ToolLifeOverrunRule
    category = "tooling"

    inputs = frozenset({"tool_life", "machining_event", "tool_change"})

    def __init__(self, spec: ToolLifeOverrunRule, facts: Facts) -> None:
        super().__init__(spec.name)
        self.margin = spec.margin
        #: Key of the chart points in the machine's rule memory: tool → [[time, counter]].
        self.series_key = f"{spec.name}#series"
        self.facts = facts

    def _note(self, m: MachineState, tool: str, ts: float, counter: float) -> list[list[float]]:
        notes: dict[str, list[list[float]]] | None = m.rules.get(self.series_key)
        if notes is None:
            notes = m.rules[self.series_key] = {}
        points = notes.get(tool)
        if points is None:
            points = notes[tool] = []
        if not points or points[-1][1] != counter:
            points.append([round(ts, 3), counter])
            if len(points) > RECENT:
                del points[0]
        return points

    def on_signal(self, m: MachineState, sig: Signal, ctx: Lifecycle) -> None:
        tool = sig.subject or sig.attrs.get("tool", "")
        seen = self.state(m)
        if sig.name == "tool_change":
            seen.pop(tool, None)  # a new tool life: its readings start afresh
            notes = m.rules.get(self.series_key)
            if notes is not None and notes.pop(tool, None) is not None and not notes:
                del m.rules[self.series_key]
            ctx.inactive(m, self.name, tool)
            return
        state = m.tools.get(tool)
        if state is None or state.counter is None:
            return
        # [the previous distinct reading, the current one]: a machining event and a
        # tool_life signal often report the same reading one after the other.
        readings = seen.get(tool)
        if readings is None:
            readings = [None, state.counter]
        elif readings[1] != state.counter:
            readings = [readings[1], state.counter]
        seen[tool] = readings
        points = self._note(m, tool, sig.source_ts, state.counter)
        life = self.facts.life(m.id, tool, state)
        if life is None or state.counter <= life + self.margin:
            return
        before = readings[0]
        if before is not None and before < life:
            return  # this use started under the life: changed now, it was not overrun
        ctx.active(
            m,
            self.name,
            tool,
            sig.source_ts,
            headline=f"{self.facts.tool_name(m.id, tool)} on "
            f"{self.facts.machine_name(m.id)} is past its tool life",
            detail=f"{fmt(state.counter)} of {life} parts and not changed",
            values={
                "tool": tool,
                "counter": state.counter,
                "life": life,
                "margin": self.margin,
                # Lifted to the evidence's top-level ``series`` (web/charts.py).
                "series": chart("tool_counter", "parts", [list(p) for p in points], limit=life),
            },
        )
