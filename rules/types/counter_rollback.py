"""``counter_rollback``: a tool counter that did not continue from the previous event.

The plants' rule: no jump (see ``counter_jump``), but ``current != last_other_pallet +
increment``. ``last_other_pallet`` is the tool's previous machining event, which in normal
alternation ran on the other pallet; when a pallet repeats (that is ``pallet_looped_out``)
the previous event is still the one the counter continues from, so a loop-out is not also
read as a roll-back. A tool change (counter back to 0, the increment or twice the
increment) is not a roll-back. When the jump test cannot be evaluated yet (no cycle
learned), only a counter going backwards is reported, since a forward skip could be a jump.
"""

from __future__ import annotations

from core.config.rules import CounterRollbackRule
from core.model import Signal
from rules.alerts import Lifecycle
from rules.derive import Facts
from rules.state import MachineState
from rules.types.base import BaseRule, counter_of, fmt, tool_of
from rules.types.counter_jump import event_start, jump_limit


class CounterRollback(BaseRule):
    """Fires once per offending event."""

    inputs = frozenset({"machining_event"})

    def __init__(self, spec: CounterRollbackRule, facts: Facts) -> None:
        super().__init__(spec.name)
        self.jump_factor = spec.jump_factor
        self.facts = facts

    def on_signal(self, m: MachineState, sig: Signal, ctx: Lifecycle) -> None:
        if sig.attrs.get("cmd") == "50":
            return
        tool = tool_of(sig)
        counter = counter_of(sig)
        state = m.tools.get(tool)
        if counter is None or state is None or state.prev is None:
            return
        pallet = sig.attrs.get("pallet", "")
        inc = self.facts.increment(m.id, tool, state)
        previous = state.prev[1]
        expected = previous + inc
        if counter == expected:
            return
        found = jump_limit(
            self.facts,
            m,
            tool,
            state,
            pallet=pallet,
            start=event_start(sig),
            factor=self.jump_factor,
        )
        if found is None and counter > expected:
            return
        if found is not None and counter > found[0]:
            return  # a jump, reported by counter_jump
        ctx.event(
            m,
            self.name,
            tool,
            sig.source_ts,
            headline=f"Counter rolled back on {self.facts.tool_name(m.id, tool)} of "
            f"{self.facts.machine_name(m.id)}",
            detail=f"counter {fmt(counter)} on pallet {pallet} after {fmt(previous)} on pallet "
            f"{state.prev[0]}, {fmt(expected)} expected",
            values={
                "tool": tool,
                "pallet": pallet,
                "counter": counter,
                "last_other_pallet": previous,
                "last_pallet": state.prev[0],
                "increment": inc,
                "expected": expected,
            },
        )
