"""``cycle_time``: cycles slower than standard, or out of control against a learned baseline.

Each cycle (derived by ``rules/derive.py`` from the machine's ``cycle_source``) is first
normalized for feed override (``x = cycle_time x feed_override / 100``: at 50 % feed a cut
takes twice as long and is no anomaly), then judged:

- **standard**: ``x > standard_s[program] x max_ratio`` (``'*'`` is any program);
- **learned baseline** per program: the first ``warmup_cycles`` cycles set mean and sigma
  (numpy, floored at ``min_sigma_fraction`` of the mean); then on ``z = (x - mean) / sigma``:
  an EWMA chart (``e = lambda z + (1 - lambda) e``, out when ``|e| > L sqrt(lambda / (2 -
  lambda))``), a two-sided CUSUM (``S+ = max(0, S+ + z - k)``, ``S- = max(0, S- - z - k)``,
  out when either exceeds ``h``, then both restart), and the Western Electric run rules
  (1: one point beyond 3 sigma; 2: two of three beyond 2 sigma on one side; 3: four of
  five beyond 1 sigma on one side; 4: eight in a row on one side).

A test out on ``min_cycles`` consecutive cycles raises the condition (subject: the
program); it clears at the first cycle where no test is out. The CUSUM sums are not
restarted while out. The defaults (100 warm-up cycles, lambda 0.1, L 4.5, k 1.5, h 10, 5
cycles, no run rules) were chosen by simulation to stay quiet over hundreds of
machine-shifts of Gaussian noise while catching a drift of 2 sigma over 30 cycles within
about 30 cycles; the run rules are sensitive and off unless listed.

The episode's evidence carries the last ``SERIES_POINTS`` normalized cycles of the program
as a chart series against the learned mean (``baseline``) and ``standard x max_ratio``
(``limit``); only that many are kept per program, as the state is checkpointed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from core.config.rules import CycleTimeRule
from core.model import Signal
from rules.alerts import Lifecycle
from rules.derive import Facts
from rules.state import MachineState
from rules.types.base import BaseRule, fmt, num

#: How many standardized cycles the run rules look back on.
HISTORY = 8
#: How many recent cycles per program the evidence chart shows (kept in the rule state).
SERIES_POINTS = 30


def run_rules(z: list[float], rules: frozenset[int]) -> list[str]:
    """The Western Electric rules that the latest point of ``z`` breaks."""
    arr = np.asarray(z[-HISTORY:], dtype=float)
    broken = []
    if 1 in rules and abs(arr[-1]) > 3:
        broken.append("WE1")
    for rule, n, need, limit in ((2, 3, 2, 2.0), (3, 5, 4, 1.0)):
        if rule in rules and arr.size >= n:
            tail = arr[-n:]
            side = np.sign(arr[-1])
            if side != 0 and np.count_nonzero(tail * side > limit) >= need:
                broken.append(f"WE{rule}")
    if 4 in rules and arr.size >= HISTORY:
        signs = np.sign(arr)
        if abs(int(signs.sum())) == HISTORY:
            broken.append("WE4")
    return broken


class CycleTime(BaseRule):
    """A condition per program; state per program: warmup, mean, sigma, EWMA, CUSUM."""

    inputs = frozenset({"cycle_time"})

    def __init__(self, spec: CycleTimeRule, facts: Facts) -> None:
        super().__init__(spec.name)
        self.spec = spec
        self.rules = frozenset(spec.run_rules)
        lam = spec.ewma_lambda
        self.ewma_limit = spec.ewma_limit * math.sqrt(lam / (2 - lam))
        self.facts = facts

    def _learned(self, b: dict[str, Any], x: float) -> tuple[list[str], dict[str, Any]]:
        spec = self.spec
        if "mean" not in b:
            warm = b.setdefault("warm", [])
            warm.append(x)
            if len(warm) >= spec.warmup_cycles:
                arr = np.asarray(warm, dtype=float)
                mean = float(arr.mean())
                sigma = max(float(arr.std(ddof=1)), spec.min_sigma_fraction * mean)
                b.update(mean=mean, sigma=sigma, ewma=0.0, sp=0.0, sn=0.0, z=[])
                del b["warm"]
            return [], {}
        z = (x - b["mean"]) / b["sigma"]
        out = []
        b["ewma"] = spec.ewma_lambda * z + (1 - spec.ewma_lambda) * b["ewma"]
        if abs(b["ewma"]) > self.ewma_limit:
            out.append("EWMA")
        b["sp"] = max(0.0, b["sp"] + z - spec.cusum_k)
        b["sn"] = max(0.0, b["sn"] - z - spec.cusum_k)
        cusum = {"cusum_high": round(b["sp"], 3), "cusum_low": round(b["sn"], 3)}
        # The sums are not restarted after a signal: while the shift lasts the condition
        # holds, and the sums decay back under h when the process returns.
        if b["sp"] > spec.cusum_h:
            out.append("CUSUM+")
        if b["sn"] > spec.cusum_h:
            out.append("CUSUM-")
        hist = b["z"]
        hist.append(round(z, 4))
        if len(hist) > HISTORY:
            del hist[0]
        out += run_rules(hist, self.rules)
        values = {
            "baseline_mean_s": round(b["mean"], 3),
            "baseline_sigma_s": round(b["sigma"], 3),
            "z": round(z, 3),
            "ewma": round(b["ewma"], 3),
            **cusum,
        }
        return out, values

    def _series(
        self, recent: list[list[float]], baseline: float | None, standard: float | None
    ) -> dict[str, Any]:
        """The program's recent cycles as a chart series against baseline and limit."""
        series: dict[str, Any] = {"name": "cycle_time", "unit": "s", "points": list(recent)}
        if baseline is not None:
            series["baseline"] = baseline
        if standard is not None:
            series["limit"] = round(standard * self.spec.max_ratio, 3)
        return series

    def on_signal(self, m: MachineState, sig: Signal, ctx: Lifecycle) -> None:
        raw = num(sig.value)
        if raw is None or raw <= 0:
            return
        spec = self.spec
        program = sig.attrs.get("program", m.program)
        x = raw * m.feed / 100.0 if spec.normalize_feed_override else raw
        tests: list[str] = []
        values: dict[str, Any] = {"cycle_time_s": raw, "normalized_s": round(x, 3)}
        if m.feed != 100.0:
            values["feed_override"] = m.feed
        standard = spec.standard_s.get(program, spec.standard_s.get("*"))
        if standard is not None:
            values["standard_s"] = standard
            if x > standard * spec.max_ratio:
                tests.append("standard")
        st = self.state(m)
        recent = st.setdefault("pts", {}).setdefault(program, [])
        recent.append([round(sig.source_ts, 3), round(x, 3)])
        if len(recent) > SERIES_POINTS:
            del recent[0]
        if spec.learned:
            found, learned = self._learned(st.setdefault("base", {}).setdefault(program, {}), x)
            tests += found
            values.update(learned)
        flagged = st.setdefault("on", [])
        runs = st.setdefault("run", {})
        if not tests:
            runs.pop(program, None)
            if program in flagged:
                flagged.remove(program)
                ctx.inactive(m, self.name, program)
            return
        runs[program] = run = runs.get(program, 0) + 1
        values["tests"] = tests
        values["out_cycles"] = run
        if program in flagged or run < spec.min_cycles:
            return
        flagged.append(program)
        # Lifted to the evidence's top-level ``series`` by the lifecycle (web/charts.py).
        values["series"] = self._series(recent, values.get("baseline_mean_s"), standard)
        if "standard" in tests and standard is not None:
            compare = f"{fmt(x)} s against a standard of {fmt(standard)} s"
        else:
            compare = (
                f"{fmt(x)} s against a baseline of {fmt(values['baseline_mean_s'])} "
                f"± {fmt(values['baseline_sigma_s'])} s"
            )
        side = "slow" if x > values.get("baseline_mean_s", standard or 0.0) else "fast"
        ctx.active(
            m,
            self.name,
            program,
            sig.source_ts,
            headline=f"Cycle time of {program or 'the program'} on {self.facts.machine_name(m.id)} "
            f"is out of control ({side})",
            detail=f"{compare} ({', '.join(tests)})",
            values=values,
        )
