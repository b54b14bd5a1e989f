"""``cycle_time``: cycles slower than standard, or out of control against a learned baseline.

Each cycle (derived by ``rules/derive.py`` from the machine's ``cycle_source``) is first
judged to be a cycle at all. These are not, and are only counted, by reason, in the rule
state (``excluded``) and the episode's values:

- ``glitch``: shorter than ``rules.min_cycle_time_s``;
- ``stop``: the machine was out of ``running_states`` for ``stop_min_s`` (60 s) or more
  between the cycle's start and end (on a ``part_count`` machine a stop lies inside the
  time between two parts). A shorter pause, such as loading between parts on a controller
  that says ``ready`` meanwhile, or a micro-stop, keeps the cycle, but the time paused is
  taken out of it: the chart judges the time the machine ran (a cycle with a 20 s feed
  hold did not cut slower; the stops are ``micro_stop``'s, not a slow cycle);
- ``alarm``: an alarm was raised within it;
- ``program``: the program changed within it (the setup of the new program);
- ``mode``: the machine is in an operation mode other than processing (setup, maintenance).

A cycle is then normalized for feed override (``x = cycle_time x feed_override / 100``: at
50 % feed a cut takes twice as long and is no anomaly) and judged:

- **standard**: ``x > standard_s[program] x max_ratio`` (``'*'`` is any program);
- **learned baseline** per program, phase I (``rules/stats.py``): ``warmup_cycles`` cycles
  are screened (median and median moving range; values beyond 3.5 robust sigmas, such as
  a first cycle after a setup, are removed), and the mean and the moving-range sigma of
  the rest become the baseline, unless the stretch is refused (over 10 % removed, or the
  von Neumann ratio says shift or trend): then its older half is dropped and collection
  goes on. Sigma is floored at ``min_sigma_fraction`` of the mean (and 1 ms). A program
  that starts again (``relearn_on_program_change``) learns its baseline again, and so does
  any on request: a ``baseline_reset`` signal (``repsys rules relearn MACHINE [--program
  P]``; subject the program, empty for all).
- phase II on ``z = (x - mean) / sigma``: the ``charts`` (tabular CUSUM ``k``/``h``, EWMA
  ``lambda``/``L``) on z clipped to ``±z_clip``, each restarting after it signals; and the
  Western Electric rules in ``run_rules`` on the exact z (side convention:
  :func:`rules.stats.run_rules`).

The condition of a program holds from a chart signal until ``clear_cycles`` cycles pass
without another, or while the standard or a run rule has been out on ``min_cycles``
consecutive cycles. The defaults (a 200-cycle phase I, the CUSUM alone with k 0.5 and h
12; EWMA lambda 0.1 and L 4.7 when listed; sigma at its 97.5 % upper confidence bound,
``sigma_confidence``) are designed for 0.003 false tickets per machine-week at a 60 s
cycle, counting the phase I estimation error, and 1 sigma / 2 sigma shifts caught in about
31 / 10 cycles: ``rules/README.md`` has the table, ``bench/stats.py`` measures it.

The episode's evidence carries the last ``SERIES_POINTS`` accepted cycles of the program
as a chart series against the learned mean (``baseline``) and ``standard x max_ratio``
(``limit``); only that many are kept per program, as the state is checkpointed.
"""

from __future__ import annotations

from typing import Any

from core.config.rules import CycleTimeRule
from core.model import Signal
from rules.alerts import Lifecycle
from rules.derive import Facts
from rules.state import MachineState
from rules.stats import HISTORY, clip, cusum_step, ewma_limit, ewma_step, phase_one, run_rules
from rules.types.base import BaseRule, fmt, num

#: How many recent cycles per program the evidence chart shows (kept in the rule state).
SERIES_POINTS = 30
#: Disturbances remembered per kind: the one that ends a cycle and the one before it.
KEEP_DISTURBANCES = 2
#: Stops remembered: every pause within a cycle is taken out of its time, and a cycle
#: with more pauses than this in it is beyond any controller seen.
KEEP_STOPS = 8
#: Active alarm codes remembered (a bound on the checkpointed state).
MAX_ALARMS = 16


def _spans(spans: list[list[Any]], start: float, end: float, at_least: float) -> bool:
    """Whether a disturbance ``[t1, t2 or None]`` covers at least ``at_least`` seconds of
    the open interval (start, end) (a point, with 0: whether it falls inside)."""
    return any(
        t1 < end
        and (t2 is None or t2 > start)
        and min(end, end if t2 is None else t2) - max(start, t1) >= at_least
        for t1, t2 in spans
    )


class CycleTime(BaseRule):
    """A condition per program; state per program: phase I stretch, baseline, charts."""

    spec_model = CycleTimeRule
    category = "process"

    inputs = frozenset({"cycle_time", "run_state", "alarm", "program", "baseline_reset"})

    def __init__(self, spec: CycleTimeRule, facts: Facts) -> None:
        super().__init__(spec.name)
        self.spec = spec
        self.rules = frozenset(spec.run_rules)
        self.ewma_limit = ewma_limit(spec.ewma_lambda, spec.ewma_limit)
        self.running = frozenset(s.lower() for s in spec.running_states)
        self.min_cycle = facts.cfg.min_cycle_time_s
        self.facts = facts

    # --- disturbances -------------------------------------------------------------------

    def _disturbance(self, st: dict[str, Any], sig: Signal) -> None:
        """Remember a stop, an alarm raised or a program change (cycles spanning it)."""
        dist = st.setdefault("dist", {})
        ts = sig.source_ts
        if sig.name == "run_state":
            stops = dist.setdefault("stop", [])
            stopped = bool(stops) and stops[-1][1] is None
            if str(sig.value).strip().lower() in self.running:
                if stopped:
                    stops[-1][1] = ts
            elif not stopped:
                stops.append([ts, None])
            kind = "stop"
        elif sig.name == "alarm":
            if not self._alarm_raised(st, sig):
                return
            dist.setdefault("alarm", []).append([ts, ts])
            kind = "alarm"
        else:
            program = str(sig.value)
            previous = st.get("prog")
            st["prog"] = program
            if previous is None or previous == program:
                return
            dist.setdefault("program", []).append([ts, ts])
            kind = "program"
            if self.spec.relearn_on_program_change:
                st.get("base", {}).pop(program, None)
        spans = dist[kind]
        if len(spans) > (KEEP_STOPS if kind == "stop" else KEEP_DISTURBANCES):
            del spans[0]

    def _alarm_raised(self, st: dict[str, Any], sig: Signal) -> bool:
        """Whether ``sig`` raises an alarm that was not active.

        A standing alarm sampled again is not raised again: only a code that was not active
        disturbs the cycle it falls in.
        """
        code = str(sig.value)
        active = st.setdefault("alarms", [])
        if sig.attrs.get("active", "true") == "false":
            if code in active:
                active.remove(code)
            return False
        if code in active:
            return False
        active.append(code)
        if len(active) > MAX_ALARMS:
            del active[0]
        return True

    def _excluded(self, m: MachineState, st: dict[str, Any], raw: float, end: float) -> str:
        """Why this cycle is not a cycle (``""``: it is one)."""
        if raw < self.min_cycle:
            return "glitch"
        if m.mode not in ("", "processing"):
            return "mode"
        start = end - raw
        for kind, spans in st.get("dist", {}).items():
            if _spans(spans, start, end, self.spec.stop_min_s if kind == "stop" else 0.0):
                return str(kind)
        return ""

    # --- baseline and charts ------------------------------------------------------------

    def _learned(self, b: dict[str, Any], x: float) -> tuple[list[str], list[str], dict[str, Any]]:
        """Chart signals, run-rule tests and values of cycle ``x`` against the baseline."""
        spec = self.spec
        if "since" not in b:
            self._warm(b, x)
            return [], [], {}
        z = (x - b["mean"]) / b["sigma"]
        zc = clip(z, spec.z_clip)
        charts = []
        if "cusum" in spec.charts:
            charts.append(cusum_step(b, zc, spec.cusum_k, spec.cusum_h))
        if "ewma" in spec.charts:
            charts.append(ewma_step(b, zc, spec.ewma_lambda, self.ewma_limit))
        signals = [c for c in charts if c]
        hist = b["z"]
        hist.append(z)
        if len(hist) > HISTORY:
            del hist[0]
        tests = run_rules(hist, self.rules) if self.rules else []
        values: dict[str, Any] = {
            "baseline_mean_s": round(b["mean"], 3),
            "baseline_sigma_s": round(b["sigma"], 3),
            "baseline_cycles": b["n"],
            "z": round(z, 3),
        }
        if "cusum" in spec.charts:
            crossed = "CUSUM+" in signals or "CUSUM-" in signals
            values["cusum_high"] = round(b["sp_out"] if crossed else b["sp"], 3)
            values["cusum_low"] = round(b["sn_out"] if crossed else b["sn"], 3)
        if "ewma" in spec.charts:
            values["ewma"] = round(b["ewma_out"] if "EWMA" in signals else b["ewma"], 3)
        if signals:
            b["since"] = 0
        elif b["since"] is not None:
            b["since"] += 1
            if b["since"] >= spec.clear_cycles:
                b["since"] = None
        return signals, tests, values

    def _warm(self, b: dict[str, Any], x: float) -> None:
        """Phase I: collect ``x``; at ``warmup_cycles`` judge the stretch (rules/stats.py)."""
        spec = self.spec
        if "mean" in b:
            b.clear()  # a baseline checkpointed before phase I existed: learn it again
        warm = b.setdefault("warm", [])
        warm.append(x)
        if len(warm) < spec.warmup_cycles:
            return
        base = phase_one(warm, spec.min_sigma_fraction, spec.sigma_confidence)
        if base.refused:
            b["refused"] = b.get("refused", 0) + 1
            del warm[: len(warm) // 2]
            return
        b.clear()
        b.update(
            mean=base.mean,
            sigma=base.sigma,
            n=base.n,
            removed=base.removed,
            ewma=0.0,
            sp=0.0,
            sn=0.0,
            z=[],
            since=None,
        )

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
        st = self.state(m)
        if sig.name == "baseline_reset":  # ``repsys rules relearn``: subject "" = all
            base = st.get("base", {})
            if sig.subject:
                base.pop(sig.subject, None)
            else:
                base.clear()
            return
        if sig.name != "cycle_time":
            self._disturbance(st, sig)
            return
        raw = num(sig.value)
        if raw is None or raw <= 0:
            return
        why = self._excluded(m, st, raw, sig.source_ts)
        if why:
            excluded = st.setdefault("excluded", {})
            excluded[why] = excluded.get(why, 0) + 1
            ctx.excluded[self.name, why] += 1
            return
        program = sig.attrs.get("program", m.program)
        paused = self._paused(st, raw, sig.source_ts)
        out, values = self._judge(m, st, sig, raw, program, paused=paused)
        flagged = st.setdefault("on", [])
        if not out:
            if program in flagged:
                flagged.remove(program)
                ctx.inactive(m, self.name, program)
            return
        if program in flagged:
            return
        flagged.append(program)
        if st.get("excluded"):
            values["excluded_cycles"] = dict(st["excluded"])
        self._raise(m, sig, program, values, ctx)

    def _paused(self, st: dict[str, Any], raw: float, end: float) -> float:
        """Seconds out of ``running_states`` within the cycle ``(end - raw, end)``.

        Only pauses shorter than ``stop_min_s`` get here (longer ones exclude the cycle);
        the last ``KEEP_STOPS`` are remembered.
        """
        start = end - raw
        paused = 0.0
        for t1, t2 in st.get("dist", {}).get("stop", []):
            paused += max(0.0, min(end, end if t2 is None else t2) - max(start, t1))
        return min(paused, raw)

    def _judge(
        self,
        m: MachineState,
        st: dict[str, Any],
        sig: Signal,
        raw: float,
        program: str,
        *,
        paused: float = 0.0,
    ) -> tuple[bool, dict[str, Any]]:
        """Whether the program's condition holds after this cycle, and the cycle's values."""
        spec = self.spec
        ran = raw - paused
        x = ran * m.feed / 100.0 if spec.normalize_feed_override and m.feed != 100.0 else ran
        points: list[str] = []
        values: dict[str, Any] = {"cycle_time_s": raw, "normalized_s": round(x, 3)}
        if paused:
            values["paused_s"] = round(paused, 3)
        if m.feed != 100.0:
            values["feed_override"] = m.feed
        standard = spec.standard_s.get(program, spec.standard_s.get("*"))
        if standard is not None:
            values["standard_s"] = standard
            if x > standard * spec.max_ratio:
                points.append("standard")
        recent = st.setdefault("pts", {}).setdefault(program, [])
        recent.append([round(sig.source_ts, 3), round(x, 3)])
        if len(recent) > SERIES_POINTS:
            del recent[0]
        signals: list[str] = []
        charted = False
        if spec.learned:
            b = st.setdefault("base", {}).setdefault(program, {})
            signals, found, learned = self._learned(b, x)
            points += found
            values.update(learned)
            charted = b.get("since") is not None
        runs = st.setdefault("run", {})
        run = runs[program] = runs.get(program, 0) + 1 if points else 0
        values["tests"] = points + signals
        values["out_cycles"] = run
        values["x"] = x
        values["series"] = self._series(recent, values.get("baseline_mean_s"), standard)
        return charted or run >= spec.min_cycles, values

    def _raise(
        self, m: MachineState, sig: Signal, program: str, values: dict[str, Any], ctx: Lifecycle
    ) -> None:
        x = values.pop("x")
        tests = values["tests"]
        standard = values.get("standard_s")
        if "standard" in tests and standard is not None:
            compare = f"{fmt(x)} s against a standard of {fmt(standard)} s"
        else:
            compare = (
                f"{fmt(x)} s against a baseline of {fmt(values['baseline_mean_s'])} "
                f"± {fmt(values['baseline_sigma_s'])} s"
            )
        if "CUSUM+" in tests or "CUSUM-" in tests:
            slow = "CUSUM+" in tests
        elif "EWMA" in tests:
            slow = values["ewma"] > 0
        else:
            slow = x > values.get("baseline_mean_s", standard or 0.0)
        # ``series`` is lifted to the evidence's top level by the lifecycle (web/charts.py).
        ctx.active(
            m,
            self.name,
            program,
            sig.source_ts,
            headline=f"Cycle time of {program or 'the program'} on {self.facts.machine_name(m.id)} "
            f"is out of control ({'slow' if slow else 'fast'})",
            detail=f"{compare} ({', '.join(tests)})",
            values=values,
        )
