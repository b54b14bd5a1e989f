"""``threshold``: a numeric signal above (or below) a limit, with hysteresis and ``for``.

Fires when the value goes past ``above`` (or under ``below``) and has stayed there
``for_s``; clears only once the value is back past ``clear_at`` (default: the limit), so
a value hovering at the limit does not open and close episodes. The subject is the
signal's subject (a tool, an axis), so each is its own episode.

The evidence charts the subject's last samples (at most ``2 x RECENT``, at least
``RECENT``, kept in the rule's state) up to the crossing, against the limit and the
clearing line.
"""

from __future__ import annotations

from core.config.rules import ThresholdRule
from core.model import Signal
from rules.alerts import Lifecycle
from rules.derive import Facts
from rules.state import MachineState
from rules.types.base import BaseRule, chart, fmt, num

#: Samples per subject the evidence chart shows at least (the state keeps up to twice).
RECENT = 20


class Threshold(BaseRule):
    """A condition per subject with two limits (fire, clear)."""

    spec_model = ThresholdRule
    category = "machine"

    def __init__(self, spec: ThresholdRule, facts: Facts) -> None:
        super().__init__(spec.name)
        self.inputs = frozenset({spec.signal})
        self.signal = spec.signal
        self.subject = spec.subject
        self.upward = spec.above is not None
        limit = spec.above if spec.above is not None else spec.below
        assert limit is not None
        self.limit = limit
        self.clear = spec.clear_at if spec.clear_at is not None else limit
        self.facts = facts

    def on_signal(self, m: MachineState, sig: Signal, ctx: Lifecycle) -> None:
        if self.subject is not None and sig.subject != self.subject:
            return
        value = sig.value
        if type(value) is not float:  # the common case skips the call (every sample)
            value = num(value)
            if value is None:
                return
        st = m.rules.get(self.name)
        if st is None:
            st = m.rules[self.name] = {}
        # The subject's recent samples, for the chart: trimmed by halves, not per sample.
        recent: list[list[float]] | None = st.get("\x1f" + sig.subject)
        if recent is None:
            recent = st["\x1f" + sig.subject] = []
        recent.append([sig.source_ts, value])
        if len(recent) > 2 * RECENT:
            del recent[:RECENT]
        on = st.get(sig.subject, False)
        if self.upward:
            fire, clear = value > self.limit, value < self.clear
        else:
            fire, clear = value < self.limit, value > self.clear
        if not on and fire:
            st[sig.subject] = True
            what = f"{self.signal} {sig.subject}".strip()
            side = "above" if self.upward else "below"
            ctx.active(
                m,
                self.name,
                sig.subject,
                sig.source_ts,
                headline=f"{what} on {self.facts.machine_name(m.id)} {side} {fmt(self.limit)}",
                detail=f"{fmt(value)}; clears past {fmt(self.clear)}",
                values={
                    "signal": self.signal,
                    "value": value,
                    "limit": self.limit,
                    "clear_at": self.clear,
                    # Lifted to the evidence's top-level ``series`` (web/charts.py).
                    "series": chart(
                        self.signal,
                        "",
                        [[round(t, 3), v] for t, v in recent],
                        limit=self.limit,
                        **({"clear_at": self.clear} if self.clear != self.limit else {}),
                    ),
                },
            )
        elif on and clear:
            st[sig.subject] = False
            ctx.inactive(m, self.name, sig.subject)
