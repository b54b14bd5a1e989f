"""``alarm_frequency``: the same alarm code ``count`` times within ``window_s``.

An alarm that keeps coming back is a machine asking for maintenance even when each one is
cleared at the control. Alarm signals carry the code as value (attrs ``text``,
``severity``; ``active: "false"`` marks a clear, which does not count; a raise at a source
time already counted is the same raise delivered again, and does not count). Each further
occurrence inside the window is a repeat of the same episode (subject: the code). The
evidence charts the occurrences in the window counting up to ``count``.
"""

from __future__ import annotations

from core.config.rules import AlarmFrequencyRule
from core.model import Signal
from rules.alerts import Lifecycle
from rules.derive import Facts
from rules.state import MachineState
from rules.types.base import BaseRule, chart, count_points, fmt


class AlarmFrequency(BaseRule):
    """Per code: source times of its recent occurrences."""

    spec_model = AlarmFrequencyRule
    category = "alarm"

    inputs = frozenset({"alarm"})

    def __init__(self, spec: AlarmFrequencyRule, facts: Facts) -> None:
        super().__init__(spec.name)
        self.spec = spec
        self.codes = frozenset(spec.codes)
        self.facts = facts

    def on_signal(self, m: MachineState, sig: Signal, ctx: Lifecycle) -> None:
        if sig.attrs.get("active", "true") == "false" or sig.value is None:
            return
        code = str(sig.value)
        if self.codes and code not in self.codes:
            return
        st = self.state(m)
        spec = self.spec
        counted = st.get(code, [])
        if sig.source_ts in counted:
            # The same raise again: a message the broker delivered twice (a collector
            # restarted before its acknowledgement), not the alarm coming back.
            return
        times = [t for t in counted if t > sig.source_ts - spec.window_s]
        times.append(sig.source_ts)
        st[code] = times
        if len(times) < spec.count:
            return
        text = sig.attrs.get("text", "")
        ctx.event(
            m,
            self.name,
            code,
            sig.source_ts,
            headline=f"Alarm {code} on {self.facts.machine_name(m.id)} keeps coming back",
            detail=f"{len(times)} times within {fmt(spec.window_s / 60)} min"
            + (f" ({text})" if text else ""),
            values={
                "code": code,
                "text": text,
                "occurrences": len(times),
                "window_s": spec.window_s,
                # Lifted to the evidence's top-level ``series`` (web/charts.py).
                "series": chart("alarms", "times", count_points(times), limit=spec.count),
            },
        )
