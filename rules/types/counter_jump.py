"""``counter_jump``: a tool counter that advanced more than the machine could have cut.

The plants' rule ("network error", or an operator advancing a counter so the tool change
falls on the next shift). For a machining event of tool T on pallet P::

    cycle_time = start of this event - start of T's last event on P   (seconds)
    limit      = last_same_pallet + factor x (cycle_time / fastest_cycle_time)
                                  x increment x pallets_running_tool
    fire when current > limit

``fastest_cycle_time`` is the machine's configured value or the plants' fastest cycle
learned for its current program (:meth:`rules.derive.Facts.fastest_cycle`, this event's
cycle included). ``last_same_pallet`` is a reading of the tool's current life: the first
event on a pallet after start or after a tool change has none, and the jump test does
not run ("no jump"; ``counter_rollback`` then judges the value).

The episode's evidence charts it: the reading the limit starts from and the jumping one,
against the limit.
"""

from __future__ import annotations

from typing import Any

from core.config.rules import CounterJumpRule
from core.model import Signal
from rules.alerts import Lifecycle
from rules.derive import Facts, event_start
from rules.state import MachineState, ToolState
from rules.types.base import BaseRule, counter_of, fmt, tool_of


def jump_limit(
    facts: Facts,
    m: MachineState,
    tool: str,
    state: ToolState,
    *,
    pallet: str,
    start: float,
    factor: float,
) -> tuple[float, dict[str, Any]] | None:
    """The formula's limit and its inputs, or None when it cannot be evaluated."""
    last = state.by_pallet.get(pallet)
    last_start = state.starts.get(pallet)
    fastest = facts.fastest_cycle(m)
    if last is None or last_start is None or not fastest:
        return None
    cycle = start - last_start
    if cycle <= 0:
        return None
    inc = facts.increment(m.id, tool, state)
    pallets = facts.pallets(m.id, tool, state)
    limit = last[0] + factor * (cycle / fastest) * inc * pallets
    return limit, {
        "last_same_pallet": last[0],
        "cycle_time_s": round(cycle, 3),
        "fastest_cycle_time_s": round(fastest, 3),
        "increment": inc,
        "pallets_running_tool": pallets,
        "factor": factor,
        "limit": round(limit, 3),
    }


class CounterJump(BaseRule):
    """Fires once per jumping event; repeats within keep_firing_for_s join the episode."""

    spec_model = CounterJumpRule
    category = "tooling"

    inputs = frozenset({"machining_event"})

    def __init__(self, spec: CounterJumpRule, facts: Facts) -> None:
        super().__init__(spec.name)
        self.factor = spec.factor
        self.facts = facts

    def on_signal(self, m: MachineState, sig: Signal, ctx: Lifecycle) -> None:
        if sig.attrs.get("cmd") == "50":
            return
        tool = tool_of(sig)
        counter = counter_of(sig)
        state = m.tools.get(tool)
        if counter is None or state is None:
            return
        pallet = sig.attrs.get("pallet", "")
        found = jump_limit(
            self.facts, m, tool, state, pallet=pallet, start=event_start(sig), factor=self.factor
        )
        if found is None or counter <= found[0]:
            return
        limit, values = found
        start = event_start(sig)
        # Lifted to the evidence's top-level ``series`` (web/charts.py): the reading the
        # limit starts from, this one, and the limit between them.
        values["series"] = {
            "name": "tool_counter",
            "unit": "parts",
            "points": [
                [round(state.starts[pallet], 3), values["last_same_pallet"]],
                [round(start, 3), counter],
            ],
            "limit": values["limit"],
        }
        ctx.event(
            m,
            self.name,
            tool,
            sig.source_ts,
            headline=f"Counter jump on {self.facts.tool_name(m.id, tool)} of "
            f"{self.facts.machine_name(m.id)}",
            detail=f"counter went from {fmt(values['last_same_pallet'])} to {fmt(counter)} "
            f"on pallet {pallet} in {fmt(values['cycle_time_s'])} s, at most {fmt(limit)} "
            "expected",
            values={"tool": tool, "pallet": pallet, "counter": counter, **values},
        )
