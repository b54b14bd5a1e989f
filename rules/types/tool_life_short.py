"""``tool_life_short``: a tool changed before reaching its standard tool life.

The plants' rule: a tool change (explicit, or the counter back to 0, the increment or
twice the increment) with the counter at change below ``life x min_fraction``. The life
is the plant's tool list (``rules.machines.<id>.tools``) or the controller's limit.
Example: "Tool 1 on CNC 120 is not reaching tool life: changed at 212 of 348 parts".
"""

from __future__ import annotations

from core.config.rules import ToolLifeShortRule
from core.model import Signal
from rules.alerts import Lifecycle
from rules.derive import Facts
from rules.state import MachineState
from rules.types.base import BaseRule, fmt, num


class ToolLifeShort(BaseRule):
    """Fires once per premature change."""

    inputs = frozenset({"tool_change"})

    def __init__(self, spec: ToolLifeShortRule, facts: Facts) -> None:
        super().__init__(spec.name)
        self.fraction = spec.min_fraction
        self.facts = facts

    def on_signal(self, m: MachineState, sig: Signal, ctx: Lifecycle) -> None:
        reached = num(sig.value)
        life = num(sig.attrs.get("life"))
        if reached is None or life is None or reached >= life * self.fraction:
            return
        tool = sig.subject
        state = m.tools.get(tool)
        values = {
            "tool": tool,
            "reached": reached,
            "life": int(life),
            "percent_of_life": round(100.0 * reached / life, 1),
            "reason": sig.attrs.get("reason", ""),
        }
        detail = f"changed at {fmt(reached)} of {fmt(life)} parts"
        if state is not None and state.changes > 1:
            values["changes"] = state.changes
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
