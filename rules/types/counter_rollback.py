"""``counter_rollback``: a tool counter that does not continue from the other pallet.

The plants' rule: no jump (see ``counter_jump``), but ``current != last_other_pallet +
increment``, ``last_other_pallet`` being the tool's last reading on another pallet (for a
tool run by one pallet, its last reading). Any unexpected value is reported, a forward
skip as well as a counter going back, and also when the jump test cannot run (the first
event on a pallet after start or after a tool change: "no jump").

Readings belong to a tool life: a tool change (the counter back to 0, the increment or
twice the increment, or a ``tool_change`` signal) is not a roll-back, and the first
reading after it is compared with nothing; the next one on another pallet is compared
with it. So is a reading the collector marks ``resync: "1"`` (readings before it may be
lost: the Okuma UDP reader's first after its start).

A pallet that repeats is reported too (its counter continues from itself, not from the
other pallet), with one reading: a run of ``loop_out_events`` (5) events of the tool on
one pallet since the shift started is the ``pallet_looped_out`` episode, so its repeats
are not also roll-backs. A repeat is therefore held until its run ends: reported when
another pallet comes, dropped when the run reaches a loop-out. A tool change does not end
the run (the soak found a looped-out pallet whose first repeat was filed as a roll-back
because the tool reached its life one event later). A run still open at the end of a
replay is not reported.
"""

from __future__ import annotations

from typing import Any

from core.config.rules import CounterRollbackRule
from core.model import Signal
from rules.alerts import Lifecycle
from rules.derive import Facts, event_start
from rules.state import MachineState, ToolState
from rules.types.base import BaseRule, chart, counter_of, fmt, tool_of
from rules.types.counter_jump import jump_limit


class CounterRollback(BaseRule):
    """Fires once per offending event; a pallet's repeats once their run has ended."""

    spec_model = CounterRollbackRule
    category = "tooling"

    inputs = frozenset({"machining_event", "tool_change"})

    def __init__(self, spec: CounterRollbackRule, facts: Facts) -> None:
        super().__init__(spec.name)
        self.jump_factor = spec.jump_factor
        self.loop_events = spec.loop_out_events
        self.facts = facts

    def on_signal(self, m: MachineState, sig: Signal, ctx: Lifecycle) -> None:
        tool = tool_of(sig)
        if sig.name == "tool_change":
            # A change does not end a run of repeats: the pallets go on as they did (a
            # pallet looped out stays out while its tool is changed), so held repeats wait
            # for another pallet or for the run to reach a loop-out, as before.
            return
        # A START has no counter to judge. A reading marked ``resync`` may follow lost
        # ones (the collector's first after its start): it cannot be expected to continue
        # the last one the rules have; the next reading continues from it.
        if sig.attrs.get("cmd") == "50" or sig.attrs.get("resync") == "1":
            return
        counter = counter_of(sig)
        state = m.tools.get(tool)
        if counter is None or state is None:
            return
        pallet = sig.attrs.get("pallet", "")
        pallets = self.facts.pallets(m.id, tool, state)
        repeat = pallets > 1 and state.prev is not None and state.prev[0] == pallet
        held = self.state(m).get(tool)
        if not repeat and not (held and held[-1][1] == pallet):
            self._flush(m, tool, ctx)  # another pallet: the run of repeats has ended
        looped = pallets > 1 and self._looped(state, sig, pallets)
        if looped:
            self.state(m).pop(tool, None)  # the loop-out episode reports these repeats
        other = self._other(state, pallet, pallets)
        if other is None:
            return
        inc = self.facts.increment(m.id, tool, state)
        expected = other[1] + inc
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
        if found is not None and counter > found[0]:
            return  # a jump, reported by counter_jump
        seen = [sig.source_ts, pallet, counter, other[1], other[0], inc, repeat, other[2]]
        if not repeat:
            self._report(m, tool, seen, ctx)
        elif not looped:
            self.state(m).setdefault(tool, []).append(seen)

    def _looped(self, state: ToolState, sig: Signal, pallets: int) -> bool:
        """Whether this event makes the tool's last events since shift start a loop-out."""
        shift = self.facts.shifts.start_of(sig.source_ts)
        window = state.window if state.window_shift == shift else []
        last = [*window[-(self.loop_events - 1) :], sig.attrs.get("pallet", "")]
        return len(last) >= self.loop_events and len(set(last)) != pallets

    @staticmethod
    def _other(state: ToolState, pallet: str, pallets: int) -> tuple[str, float, float] | None:
        """The pallet, counter and event start the event must continue from, or None
        (nothing to compare)."""
        if pallets <= 1:
            last = state.by_pallet.get(pallet)
            return (pallet, last[0], last[1]) if last is not None else None
        best: tuple[str, float, float] | None = None
        for p, (counter, start) in state.by_pallet.items():
            if p != pallet and (best is None or start >= best[2]):
                best = (p, counter, start)
        return best

    def _flush(self, m: MachineState, tool: str, ctx: Lifecycle) -> None:
        for seen in self.state(m).pop(tool, []):
            self._report(m, tool, seen, ctx)

    def _report(self, m: MachineState, tool: str, seen: list[Any], ctx: Lifecycle) -> None:
        ts, pallet, counter, previous, other_pallet, inc, repeat = seen[:7]
        expected = previous + inc
        values: dict[str, Any] = {
            "tool": tool,
            "pallet": pallet,
            "counter": counter,
            "last_other_pallet": previous,
            "other_pallet": other_pallet,
            "increment": inc,
            "expected": expected,
        }
        if repeat:
            values["repeated_pallet"] = True
        if len(seen) > 7:  # held repeats checkpointed before the chart came have no start
            # Lifted to the evidence's top-level ``series`` (web/charts.py): the reading
            # the count continues from, this one, and the count expected.
            values["series"] = chart(
                "tool_counter",
                "parts",
                [[round(seen[7], 3), previous], [round(ts, 3), counter]],
                expected=expected,
            )
        ctx.event(
            m,
            self.name,
            tool,
            ts,
            headline=f"Counter rolled back on {self.facts.tool_name(m.id, tool)} of "
            f"{self.facts.machine_name(m.id)}",
            detail=f"counter {fmt(counter)} on pallet {pallet} after {fmt(previous)} on pallet "
            f"{other_pallet}, {fmt(expected)} expected"
            + (f" (pallet {pallet} ran again)" if repeat and other_pallet != pallet else ""),
            values=values,
        )
