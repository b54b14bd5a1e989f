"""``micro_stop``: too many short stops while in processing mode.

A micro-stop is a stop (``run_state`` leaves ``running_states``) in processing mode that
lasts at least ``min_s`` and less than ``max_s`` (longer ones are downtime). ``count`` of
them within ``window_s`` fire; each further one within the window is a repeat. The
evidence charts the stops in the window counting up to ``count``.
"""

from __future__ import annotations

from core.config.rules import MicroStopRule
from core.model import Signal
from rules.alerts import Lifecycle
from rules.derive import Facts
from rules.state import MachineState
from rules.types.base import BaseRule, chart, count_points, fmt
from rules.types.downtime import processing


class MicroStop(BaseRule):
    """Counts short stops in a sliding window."""

    spec_model = MicroStopRule
    category = "downtime"
    #: Micro-stops share the downtime category (for Plex) but are short stops, a speed
    #: loss: the category's title would mislabel the ticket.
    title = "Micro-stop Issue"

    inputs = frozenset({"run_state"})

    def __init__(self, spec: MicroStopRule, facts: Facts) -> None:
        super().__init__(spec.name)
        self.spec = spec
        self.running = frozenset(spec.running_states)
        self.facts = facts

    def on_signal(self, m: MachineState, sig: Signal, ctx: Lifecycle) -> None:
        st = self.state(m)
        running = m.run_state in self.running
        stopped_at = st.get("stop")
        if not running:
            if stopped_at is None and processing(m):
                st["stop"] = sig.source_ts
            return
        if stopped_at is None:
            return
        st["stop"] = None
        spec = self.spec
        duration = sig.source_ts - stopped_at
        if not spec.min_s <= duration < spec.max_s:
            return
        stops = [s for s in st.get("stops", []) if s[0] > sig.source_ts - spec.window_s]
        stops.append([sig.source_ts, round(duration, 3)])
        st["stops"] = stops
        if len(stops) < spec.count:
            return
        total = sum(s[1] for s in stops)
        ctx.event(
            m,
            self.name,
            "",
            sig.source_ts,
            headline=f"Micro-stops on {self.facts.machine_name(m.id)}",
            detail=f"{len(stops)} stops of {fmt(spec.min_s)} to {fmt(spec.max_s)} s within "
            f"{fmt(spec.window_s / 60)} min, {fmt(total)} s lost",
            values={
                "stops": len(stops),
                "seconds_lost": round(total, 3),
                "window_s": spec.window_s,
                # Lifted to the evidence's top-level ``series`` (web/charts.py).
                "series": chart(
                    "micro_stops", "stops", count_points([s[0] for s in stops]), limit=spec.count
                ),
            },
        )
