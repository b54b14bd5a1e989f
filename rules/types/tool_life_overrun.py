"""``tool_life_overrun``: a tool used past its life without being changed.

Fires when a tool's counter exceeds ``life + margin``; the episode holds until the tool
is changed (then it resolves, after ``keep_firing_for_s``).
"""

from __future__ import annotations

from core.config.rules import ToolLifeOverrunRule
from core.model import Signal
from rules.alerts import Lifecycle
from rules.derive import Facts
from rules.state import MachineState
from rules.types.base import BaseRule, fmt


class ToolLifeOverrun(BaseRule):
    """A condition per tool: over its life, until changed."""

    inputs = frozenset({"tool_life", "machining_event", "tool_change"})

    def __init__(self, spec: ToolLifeOverrunRule, facts: Facts) -> None:
        super().__init__(spec.name)
        self.margin = spec.margin
        self.facts = facts

    def on_signal(self, m: MachineState, sig: Signal, ctx: Lifecycle) -> None:
        tool = sig.subject or sig.attrs.get("tool", "")
        if sig.name == "tool_change":
            ctx.inactive(m, self.name, tool)
            return
        state = m.tools.get(tool)
        if state is None or state.counter is None:
            return
        life = self.facts.life(m.id, tool, state)
        if life is None or state.counter <= life + self.margin:
            return
        ctx.active(
            m,
            self.name,
            tool,
            sig.source_ts,
            headline=f"{self.facts.tool_name(m.id, tool)} on "
            f"{self.facts.machine_name(m.id)} is past its tool life",
            detail=f"{fmt(state.counter)} of {life} parts and not changed",
            values={"tool": tool, "counter": state.counter, "life": life, "margin": self.margin},
        )
