"""``pallet_looped_out``: a shared tool's recent events do not cover all its pallets.

The plants' rule: for a tool run by ``pallets_per_tool > 1`` pallets, among its last
``events`` (5) machining events since the shift started, the number of distinct pallets
differs from ``pallets_per_tool``. ``pallets_per_tool`` is the tool list's value, or the
most pallets ever seen running the tool. The episode's subject is the missing pallet, so
every tool of a looped-out pallet reports the same one episode; it clears when the window
covers every pallet again. At the start of a stream, before the tool ever ran on another
pallet, the missing pallet has no name: the episode (subject ``""``) names the pallet that
repeated.

The evidence charts the pallet of each of the tool's last ``events`` events since the shift
started (pallet numbers; no chart where a pallet's name is not a number).
"""

from __future__ import annotations

from typing import Any

from core.config.rules import PalletLoopedOutRule
from core.model import Signal
from rules.alerts import Lifecycle
from rules.derive import Facts
from rules.state import MachineState
from rules.text import local_time
from rules.types.base import BaseRule, chart, tool_of


def _headline(missing: str, distinct: set[str], machine: str) -> str:
    # At the start of a stream the tool may never have run on the other pallet, so the
    # missing one has no name; the pallet that kept repeating has one.
    if missing:
        return f"Pallet {missing} looped out on {machine}"
    if len(distinct) == 1:
        return f"Pallet {next(iter(distinct))} repeated on {machine}"
    return f"Pallets out of sequence on {machine}"


class PalletLoopedOut(BaseRule):
    """A condition per machine and missing pallet, held while any tool shows it."""

    spec_model = PalletLoopedOutRule
    category = "pallet"

    inputs = frozenset({"machining_event"})

    def __init__(self, spec: PalletLoopedOutRule, facts: Facts) -> None:
        super().__init__(spec.name)
        self.events = spec.events
        #: Key of the chart points in the machine's rule memory: tool → [[time, pallet]].
        self.series_key = f"{spec.name}#series"
        self.facts = facts

    def _note(self, m: MachineState, tool: str, ts: float, pallet: str) -> list[list[Any]]:
        """Remember the tool's last ``events`` events (time, pallet) for the chart."""
        notes: dict[str, list[list[Any]]] | None = m.rules.get(self.series_key)
        if notes is None:
            notes = m.rules[self.series_key] = {}
        points = notes.get(tool)
        if points is None:
            points = notes[tool] = []
        points.append([round(ts, 3), pallet])
        if len(points) > self.events:
            del points[0]
        return points

    @staticmethod
    def _series(points: list[list[Any]], shift: float) -> dict[str, Any] | None:
        """The pallets of the events since the shift started, or None (a pallet's name is
        not a number: nothing to draw on a value axis)."""
        try:
            drawn = [[t, float(p)] for t, p in points if t >= shift]
        except ValueError:
            return None
        return chart("pallet", "number", drawn) if drawn else None

    def on_signal(self, m: MachineState, sig: Signal, ctx: Lifecycle) -> None:
        if sig.attrs.get("cmd") == "50":
            return
        tool = tool_of(sig)
        state = m.tools.get(tool)
        if state is None:
            return
        wanted = self.facts.pallets(m.id, tool, state)
        if wanted <= 1:
            return
        pallet = sig.attrs.get("pallet", "")
        noted = self._note(m, tool, sig.source_ts, pallet)
        shift = self.facts.shifts.start_of(sig.source_ts)
        window = (state.window if state.window_shift == shift else []) + [pallet]
        st = self.state(m)  # missing pallet -> tools showing it
        flagged = [p for p, tools in st.items() if tool in tools]
        if len(window) < self.events:
            return
        last = window[-self.events :]
        distinct = set(last)
        missing = ""
        if len(distinct) != wanted:
            absent = [p for p in state.pallets_seen if p not in distinct]
            missing = absent[0] if absent else ""
        for p in flagged:
            if p != missing or len(distinct) == wanted:
                st[p].remove(tool)
                if not st[p]:
                    del st[p]
                    ctx.inactive(m, self.name, p)
        if len(distinct) == wanted:
            return
        tools = st.setdefault(missing, [])
        if tool in tools:
            return
        tools.append(tool)
        machine = self.facts.machine_name(m.id)
        headline = _headline(missing, distinct, machine)
        series = self._series(noted, shift)
        ctx.active(
            m,
            self.name,
            missing,
            sig.source_ts,
            headline=headline,
            detail=f"the last {self.events} events of {self.facts.tool_name(m.id, tool)} since the "
            f"shift started at {local_time(shift, self.facts.shifts.zone)} ran on pallets "
            f"{', '.join(last)}; {wanted} pallets run this tool",
            values={
                "tool": tool,
                "pallets": last,
                "distinct": len(distinct),
                "pallets_per_tool": wanted,
                "shift_start_ts": shift,
                **({} if missing or len(distinct) > 1 else {"repeated_pallet": last[-1]}),
                # Lifted to the evidence's top-level ``series`` (web/charts.py).
                **({"series": series} if series else {}),
            },
        )
