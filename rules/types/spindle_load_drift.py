"""``spindle_load_drift``: a tool's spindle load creeping up since its last change.

A sharp tool cuts at some load; as it wears the load rises. For each tool the first
``baseline_samples`` cutting samples (load at least ``min_load``) after its change set its
level; the current load is an EWMA over ``smoothing_samples``; the tool drifts when the
EWMA exceeds the level by ``threshold`` percent points for ``for_s``, and clears below
80 % of that. A sample belongs to its signal's subject, else to the tool in the spindle
(``tool_number`` without subject), else to ``spindle``; with the machine's ``load_by_tool:
false`` always to ``spindle``, whose level then restarts at any tool change. A tool change
starts the tool over.

Except one: while the machine-level ``spindle`` load is drifting, another tool's change
does not end it. The load cannot say which tool wears; if the worn one was changed the load
falls back under the old level and the episode clears at once, but if another was, a level
re-learned from the drifted load would clear the episode and open a second one (a second
ticket for one worn tool: the ground-truth soak found it). So the old level is kept until
the drift clears, and the level is learned afresh from there, **no higher than the old
one**: the other tool's change may have taken its own wear out of the load and cleared the
drift while the worn tool goes on wearing (the soak's plant day: cnc202, T1 at its life
during T2's drift); a level learned from that still-drifted load would hide the drift until
it crossed again above it, too late to be the same episode. Capped, the drift that goes on
is seen again at once, within ``keep_firing_for_s``: the same episode, one ticket. A worn
tool that was the one changed brings the load under the old level, and the level learned
from there is the new tool's own (``tests/rules/test_drift_flap.py``).

A drift persists; an overload spike does not. Each sample enters the EWMA clipped to
``level + sample_clip x threshold``, so a spike of any height lifts the EWMA no more than a
spike of twice the threshold (by default) and decays from there within about
``ln(sample_clip / 0.8) / alpha`` samples (14 at the defaults): with ``for_s`` 60 and a
sample a second, a spike shorter than about 55 s never holds long enough to fire, while a
drift of any size past the threshold still does (``rules/README.md`` works it out).

The episode's evidence charts the climb: once a tool's drift reaches half the threshold,
its smoothed load is noted (at most ``MAX_POINTS`` ``[time, load]`` pairs, every other
older one dropped when full, as ``tool_life_short`` does) under the rule's ``#series``
memory, and the series goes out with the episode against the level (``baseline``) and the
limit (level + threshold). Only approaching or drifting tools keep points, so the
checkpointed state of a healthy machine does not grow; the note is forgotten when the
drift falls back below half the threshold or clears.
"""

from __future__ import annotations

from typing import Any

from core.config.rules import SpindleLoadDriftRule
from core.model import Signal
from rules.alerts import Lifecycle
from rules.derive import Facts
from rules.state import MachineState
from rules.types.base import BaseRule, fmt, num

#: The drift must fall below this share of the threshold to clear (hysteresis).
CLEAR_SHARE = 0.8
#: Subject of load that belongs to no known tool.
SPINDLE = "spindle"
#: Share of the threshold from which the smoothed load is noted for the episode's chart.
APPROACH_SHARE = 0.5
#: Points kept per approaching tool (the state is checkpointed: keep it small).
MAX_POINTS = 40


class SpindleLoadDrift(BaseRule):
    """Per tool: [samples, baseline sum, ewma, on] and, once a tool change is held back
    while the machine-level load drifts, a fifth item ``True`` (re-learn when it clears)."""

    spec_model = SpindleLoadDriftRule
    category = "tooling"

    inputs = frozenset({"spindle_load", "tool_change"})

    def __init__(self, spec: SpindleLoadDriftRule, facts: Facts) -> None:
        super().__init__(spec.name)
        self.spec = spec
        self.alpha = 2.0 / (spec.smoothing_samples + 1)
        self.pull = spec.sample_clip * spec.threshold
        self.approach = spec.threshold * APPROACH_SHARE
        #: Key of the chart points in the machine's rule memory: tool → [[time, load]].
        self.series_key = f"{spec.name}#series"
        #: Key of the levels a re-learned level may not exceed: tool → old level.
        self.cap_key = f"{spec.name}#cap"
        self.facts = facts

    def _note(self, m: MachineState, tool: str, ts: float, ewma: float) -> None:
        notes: dict[str, list[list[float]]] | None = m.rules.get(self.series_key)
        if notes is None:
            notes = m.rules[self.series_key] = {}
        points = notes.get(tool)
        if points is None:
            points = notes[tool] = []
        points.append([round(ts, 3), round(ewma, 2)])
        if len(points) > MAX_POINTS:
            del points[1:-1:2]

    def _forget(self, m: MachineState, tool: str) -> None:
        notes = m.rules.get(self.series_key)
        if notes is not None and notes.pop(tool, None) is not None and not notes:
            del m.rules[self.series_key]

    def _tool_changed(
        self, m: MachineState, st: dict[str, list[Any]], changed: str, ctx: Lifecycle
    ) -> None:
        """The changed tool starts over; so does ``spindle``, unless it is drifting."""
        for subject in (changed, SPINDLE):
            held = st.get(subject)
            if held is None:
                continue
            if subject == SPINDLE and subject != changed and held[3]:
                if len(held) == 4:
                    held.append(True)  # re-learn the level once this drift clears
                continue
            del st[subject]
            self._forget(m, subject)
            self._uncap(m, subject)
            ctx.inactive(m, self.name, subject)

    def _uncap(self, m: MachineState, tool: str) -> float | None:
        caps = m.rules.get(self.cap_key)
        if caps is None:
            return None
        cap: float | None = caps.pop(tool, None)
        if not caps:
            del m.rules[self.cap_key]
        return cap

    def on_signal(self, m: MachineState, sig: Signal, ctx: Lifecycle) -> None:  # noqa: PLR0912 - the hot path (every load sample) in one frame, no call per branch
        st = m.rules.get(self.name)
        if st is None:
            st = m.rules[self.name] = {}
        if sig.name == "tool_change":
            self._tool_changed(m, st, sig.subject, ctx)
            return
        load = sig.value
        if type(load) is not float:  # the common case skips the call (every sample)
            load = num(load)
            if load is None:
                return
        spec = self.spec
        if load < spec.min_load:
            return
        tool = sig.subject or (m.active_tool if self.facts.spec(m.id).load_by_tool else "")
        tool = tool or SPINDLE
        t = st.get(tool)
        if t is None:
            st[tool] = [1, load, load, False]
            return
        n = t[0]
        if n < spec.baseline_samples:
            t[0] = n = n + 1
            t[1] += load
            t[2] = t[1] / n
            if n == spec.baseline_samples and self.cap_key in m.rules:
                cap = self._uncap(m, tool)
                if cap is not None and t[1] > cap * n:
                    t[1] = cap * n  # the level only; the EWMA keeps the load as it is
            return
        base = t[1] / n
        load = min(load, base + self.pull)  # a spike pulls no harder than this (see above)
        ewma = t[2] = t[2] + self.alpha * (load - t[2])
        drift = ewma - base
        if drift >= self.approach or t[3]:
            self._note(m, tool, sig.source_ts, ewma)
        elif self.series_key in m.rules:
            self._forget(m, tool)
        if not t[3]:
            if drift > spec.threshold:
                t[3] = True
                whose = "" if tool == SPINDLE else f" of {self.facts.tool_name(m.id, tool)}"
                since = "the last tool change" if tool == SPINDLE else "its last change"
                ctx.active(
                    m,
                    self.name,
                    tool,
                    sig.source_ts,
                    headline=f"Spindle load{whose} on {self.facts.machine_name(m.id)} drifted up",
                    detail=f"{fmt(ewma)} % against {fmt(base)} % after {since} "
                    f"(+{fmt(drift)} points, limit {fmt(spec.threshold)})",
                    values={
                        "tool": tool,
                        "load_pct": round(ewma, 2),
                        "baseline_pct": round(base, 2),
                        "drift_points": round(drift, 2),
                        # Lifted to the evidence's top-level ``series`` (web/charts.py).
                        "series": {
                            "name": "spindle_load",
                            "unit": "%",
                            "points": [list(p) for p in m.rules[self.series_key][tool]],
                            "baseline": round(base, 2),
                            "limit": round(base + spec.threshold, 2),
                        },
                    },
                )
        elif drift < spec.threshold * CLEAR_SHARE:
            t[3] = False
            self._forget(m, tool)
            ctx.inactive(m, self.name, tool)
            if len(t) > 4:
                # A tool was changed while it drifted: learn the level afresh, no higher.
                del st[tool]
                m.rules.setdefault(self.cap_key, {})[tool] = base
