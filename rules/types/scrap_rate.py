"""``scrap_rate``: the share of bad parts over a window above ``max_rate``.

Counts come from the ``part_count_good`` and ``part_count_bad`` counters (their
increases; a counter going down is a reset, not negative parts). Once at least
``min_parts`` parts were made within ``window_s``, the rate ``bad / (good + bad)`` is
judged on every count; the episode clears when the rate is back at or under the limit.

The evidence charts the bad share of the parts counted since the window's oldest count, at
each count, against the limit: its last point is the rate that fired.
"""

from __future__ import annotations

from core.config.rules import ScrapRateRule
from core.model import Signal
from rules.alerts import Lifecycle
from rules.derive import Facts
from rules.state import MachineState
from rules.types.base import BaseRule, chart, fmt, num


def shares(window: list[list[float]]) -> list[list[float]]:
    """``[time, bad share %]`` of the counts from the window's oldest to each one."""
    good = bad = 0.0
    out = []
    for ts, g, b in window:
        good += g
        bad += b
        out.append([round(ts, 3), round(100.0 * bad / (good + bad), 2)])
    return out


class ScrapRate(BaseRule):
    """A condition per machine over a sliding window of count increases."""

    spec_model = ScrapRateRule
    category = "quality"

    inputs = frozenset({"part_count_good", "part_count_bad"})

    def __init__(self, spec: ScrapRateRule, facts: Facts) -> None:
        super().__init__(spec.name)
        self.spec = spec
        self.facts = facts

    def on_signal(self, m: MachineState, sig: Signal, ctx: Lifecycle) -> None:
        value = num(sig.value)
        if value is None:
            return
        st = self.state(m)
        bad = sig.name == "part_count_bad"
        key = "b" if bad else "g"
        last = st.get(key)
        st[key] = value
        if last is None or value <= last:
            return
        spec = self.spec
        window = st.setdefault("w", [])
        sums = st.setdefault("sums", [0.0, 0.0])
        delta = value - last
        entry = [sig.source_ts, 0.0 if bad else delta, delta if bad else 0.0]
        window.append(entry)
        sums[0] += entry[1]
        sums[1] += entry[2]
        # Oldest first: drop what left the window, keeping the running sums exact.
        horizon = sig.source_ts - spec.window_s
        drop = 0
        while window[drop][0] <= horizon:
            sums[0] -= window[drop][1]
            sums[1] -= window[drop][2]
            drop += 1
        if drop:
            del window[:drop]
        good_n, bad_n = sums
        total = good_n + bad_n
        if total < spec.min_parts:
            return
        rate = bad_n / total
        on = st.get("on", False)
        if rate > spec.max_rate and not on:
            st["on"] = True
            ctx.active(
                m,
                self.name,
                "",
                sig.source_ts,
                headline=f"Scrap rate on {self.facts.machine_name(m.id)} is {fmt(100 * rate)} %",
                detail=f"{fmt(bad_n)} bad of {fmt(total)} parts within "
                f"{fmt(spec.window_s / 60)} min, limit {fmt(100 * spec.max_rate)} %",
                values={
                    "bad": bad_n,
                    "good": good_n,
                    "rate": round(rate, 4),
                    # Lifted to the evidence's top-level ``series`` (web/charts.py).
                    "series": chart(
                        "scrap_share", "%", shares(window), limit=round(100 * spec.max_rate, 2)
                    ),
                },
            )
        elif rate <= spec.max_rate and on:
            st["on"] = False
            ctx.inactive(m, self.name, "")
