"""``tool_change_forecast``: the upcoming tool change list for the boards (no ticket).

The plants' formula::

    minutes_remaining = floor((tool_life - current) / increment x fastest_cycle_time / 60)

Every tool due within ``horizon_min`` is kept in the sorted set
``core.keys.UPCOMING_TOOL_CHANGES`` (member ``machine|tool``, score = minutes, negative
when overdue) with the time it was computed at in ``UPCOMING_TOOL_CHANGES_AT``; a tool
further out, or without a known life or cycle time, is removed from both.
"""

from __future__ import annotations

import math

from core.config.rules import ToolChangeForecastRule
from core.model import Signal
from rules.alerts import Lifecycle
from rules.derive import Facts
from rules.state import MachineState
from rules.types.base import BaseRule


def minutes_remaining(life: float, current: float, increment: float, fastest_s: float) -> int:
    """The plants' forecast; negative for a tool past its life (overdue by that long), so
    the boards list it before a tool exactly at its life and can mark it."""
    return math.floor((life - current) / increment * fastest_s / 60)


class ToolChangeForecast(BaseRule):
    """Writes a forecast when a tool's minutes remaining change."""

    spec_model = ToolChangeForecastRule
    category = "tooling"

    inputs = frozenset({"tool_life", "machining_event", "tool_change"})

    def __init__(self, spec: ToolChangeForecastRule, facts: Facts) -> None:
        super().__init__(spec.name)
        self.horizon = spec.horizon_min
        self.facts = facts

    def on_signal(self, m: MachineState, sig: Signal, ctx: Lifecycle) -> None:
        tool = sig.subject or sig.attrs.get("tool", "")
        state = m.tools.get(tool)
        if state is None or state.counter is None:
            return
        st = self.state(m)
        seen = st.setdefault("_at", {})
        if seen.get(tool) == state.counter and sig.name != "tool_change":
            return  # the same count again (tool-life and machining event both carry it)
        seen[tool] = state.counter
        life = self.facts.life(m.id, tool, state)
        fastest = self.facts.fastest(m)
        minutes: int | None = None
        if life is not None and fastest:
            inc = self.facts.increment(m.id, tool, state)
            minutes = minutes_remaining(life, state.counter, inc, fastest)
            if minutes > self.horizon:
                minutes = None
        if st.get(tool, -1) == minutes:
            return
        st[tool] = minutes
        ctx.forecast(m, tool, minutes, sig.source_ts)
