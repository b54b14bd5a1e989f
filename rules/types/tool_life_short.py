"""``tool_life_short``: a tool changed before reaching its standard tool life.

The plants' rule: a tool change (explicit, or the counter back to 0, the increment or
twice the increment) with the counter at change below ``life x min_fraction``. The life
is the plant's tool list (``rules.machines.<id>.tools``) or the controller's limit.
Example: "Tool 1 on CNC 120 is not reaching tool life: changed at 212 of 348 parts".

The episode's evidence carries the tool's counter over its short life as a chart series
against the life (``limit``). The rule keeps at most ``MAX_POINTS`` ``[time, counter]``
samples per tool in its checkpointed state; when full, every other older sample is
dropped, so the chart still spans the whole life at a coarser step.
"""

from __future__ import annotations

from typing import Any

from core.config.rules import ToolLifeShortRule
from core.model import Signal
from rules.alerts import Lifecycle
from rules.derive import Facts
from rules.state import MachineState
from rules.types.base import BaseRule, counter_of, fmt, num, tool_of

#: Counter samples kept per tool (the state is checkpointed to Redis: keep it small).
MAX_POINTS = 40


class ToolLifeShort(BaseRule):
    """Fires once per premature change."""

    spec_model = ToolLifeShortRule
    category = "tooling"

    inputs = frozenset({"tool_change", "tool_life", "machining_event"})

    def __init__(self, spec: ToolLifeShortRule, facts: Facts) -> None:
        super().__init__(spec.name)
        self.fraction = spec.min_fraction
        self.facts = facts

    def _sample(self, m: MachineState, sig: Signal) -> None:
        """Remember a counter reading of the tool's current life (bounded, see module doc)."""
        tool = tool_of(sig)
        counter = counter_of(sig)
        if not tool or counter is None or sig.attrs.get("cmd") == "50":
            return
        history: list[list[float]] = self.state(m).setdefault(tool, [])
        if history and history[-1][1] == counter:
            return  # many events read the same count; one point is enough for a chart
        history.append([round(sig.source_ts, 3), counter])
        if len(history) > MAX_POINTS:
            del history[1:-1:2]

    @staticmethod
    def _series(
        history: list[list[float]], sig: Signal, reached: float, life: float
    ) -> dict[str, Any]:
        """The counter over the life that just ended, as a chart series against the life."""
        points = [p for p in history if p[0] <= sig.source_ts]
        if not points or points[-1][1] != reached:
            points.append([round(sig.source_ts, 3), reached])
        return {"name": "tool_counter", "unit": "parts", "points": points, "limit": life}

    def on_signal(self, m: MachineState, sig: Signal, ctx: Lifecycle) -> None:
        if sig.name != "tool_change":
            self._sample(m, sig)
            return
        history = self.state(m).pop(sig.subject, [])  # every change ends the tool's life
        reached = num(sig.value)
        life = num(sig.attrs.get("life"))
        if reached is None or life is None or reached >= life * self.fraction:
            return
        tool = sig.subject
        state = m.tools.get(tool)
        values: dict[str, Any] = {
            "tool": tool,
            "reached": reached,
            "life": int(life),
            "percent_of_life": round(100.0 * reached / life, 1),
            "reason": sig.attrs.get("reason", ""),
        }
        detail = f"changed at {fmt(reached)} of {fmt(life)} parts"
        if state is not None and state.changes > 1:
            values["changes"] = state.changes
        # Lifted to the evidence's top-level ``series`` by the lifecycle (web/charts.py).
        values["series"] = self._series(history, sig, reached, life)
        ctx.event(
            m,
            self.name,
            tool,
            sig.source_ts,
            headline=f"{self.facts.tool_name(m.id, tool)} on "
            f"{self.facts.machine_name(m.id)} is not reaching tool life",
            detail=detail,
            values=values,
        )
