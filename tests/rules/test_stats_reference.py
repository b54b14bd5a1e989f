"""Differential tests of the statistical rules: the engine against a plain reference.

Each reference below is written from ``rules/README.md`` and the textbook definitions, in
plain Python (no numpy, nothing from ``rules/``): what a quality engineer would compute by
hand. Hypothesis draws machine histories (in-control stretches, steps, drifts, outliers,
glitches, stops, alarms, program changes, setup mode; tool changes and overload spikes for
the spindle); the engine's episodes (subject, start, end) must equal the reference's.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.config import parse_config
from core.model import Signal
from rules.engine import Program
from rules.replay import DEFAULT_MACHINES, replay

T0 = 1_700_000_000.0
MIN_CYCLE = 1.0

# --- cycle_time ---------------------------------------------------------------------------

CYCLE_RULE: dict[str, Any] = {
    "name": "cycle_time",
    "type": "cycle_time",
    "warmup_cycles": 20,
    "charts": ["cusum", "ewma"],
    "cusum_h": 8.05,
    "ewma_limit": 3.75,
    "run_rules": [1, 2, 3, 4],
    "min_cycles": 2,
    "clear_cycles": 5,
    "keep_firing_for_s": 0,
    "inhibit_in_modes": [],
    "standard_s": {"O2": 45.0},
}


@dataclass
class Ev:
    """One raw signal of the generated history (time in milliseconds)."""

    ms: int
    name: str
    value: Any
    attrs: dict[str, str] | None = None
    subject: str = ""


segment = st.tuples(
    st.sampled_from(["run", "run", "step", "drift", "outlier", "glitch", "stop", "alarm",
                     "program", "setup"]),
    st.integers(1, 40),  # cycles in the segment
    st.floats(-4.0, 4.0),  # shift in sigmas (step, drift's end, outlier)
)  # fmt: skip


def cycle_history(seed: int, segments: list[tuple[str, int, float]]) -> list[Ev]:
    """A part_count machine's raw signals: parts of two programs around 60 and 50 s."""
    rng = random.Random(seed)
    mu = {"O1": 60.0, "O2": 50.0}
    sigma = {"O1": 1.0, "O2": 0.4}
    program = "O1"
    ms = 0
    count = 0
    out = [Ev(0, "run_state", "executing"), Ev(0, "program", program), Ev(0, "part_count", 0)]

    def part(seconds: float) -> None:
        nonlocal ms, count
        ms += max(1, round(seconds * 1000))
        count += 1
        out.append(Ev(ms, "part_count", count))

    for kind, n, shift in segments:
        if kind == "glitch":
            part(rng.uniform(0.05, 0.9))
            continue
        if kind == "stop":
            out.append(Ev(ms + 1000, "run_state", "stopped"))
            out.append(Ev(ms + 1000 + n * 30_000, "run_state", "executing"))
            ms += 1000 + n * 30_000
        elif kind == "alarm":
            out.append(Ev(ms + 500, "alarm", str(1000 + n % 3)))
            if n % 2:
                out.append(Ev(ms + 700, "alarm", str(1000 + n % 3), {"active": "false"}))
            ms += 700
        elif kind == "program":
            program = "O2" if program == "O1" else "O1"
            out.append(Ev(ms + 200, "program", program))
            ms += 200
        elif kind == "setup":
            out.append(Ev(ms + 100, "operation_mode", "setup"))
            for _ in range(min(n, 3)):
                part(mu[program] + rng.gauss(0, sigma[program]))
            out.append(Ev(ms + 100, "operation_mode", "processing"))
            ms += 100
            continue
        for i in range(n if kind != "outlier" else 1):
            offset = 0.0
            if kind == "step":
                offset = shift
            elif kind == "drift":
                offset = shift * (i + 1) / n
            elif kind == "outlier":
                offset = shift * 6
            part(mu[program] + sigma[program] * (offset + rng.gauss(0, 1)))
    return out


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def reference_sigma_factor(n: int, confidence: float) -> float:
    """The README's upper bound of a sigma from n values: sqrt((n-1) / chi2_q(n-1)),
    q = 1 - confidence, the quantile by Wilson and Hilferty's cube root."""
    nu = n - 1
    z = statistics.NormalDist().inv_cdf(1 - confidence)
    q = nu * (1 - 2 / (9 * nu) + z * math.sqrt(2 / (9 * nu))) ** 3
    return math.sqrt(nu / q)


def reference_baseline(
    xs: list[float], floor_share: float, confidence: float | None = None
) -> tuple[float, float] | None:
    """Phase I as rules/README.md says: robust screen, MR sigma, refusals. None: refused."""
    mrs = [abs(b - a) for a, b in itertools.pairwise(xs)]
    center = _median(xs)
    spread = _median(mrs) / 0.9539 or sum(mrs) / len(mrs) / 1.128
    robust = max(spread, floor_share * abs(center), 0.001)
    kept = [x for x in xs if abs(x - center) <= 3.5 * robust]
    if len(xs) - len(kept) > 0.1 * len(xs):
        return None
    mean = sum(kept) / len(kept)
    mr = [abs(b - a) for a, b in itertools.pairwise(kept)]
    sd = statistics.stdev(kept) if len(kept) > 1 else 0.0
    estimate = max(sum(mr) / len(mr) / 1.128 if mr else 0.0, sd)
    if confidence is not None:
        estimate *= reference_sigma_factor(len(kept), confidence)
    sigma = max(estimate, floor_share * abs(mean), 0.001)
    n = len(kept)
    if n > 2:
        ss = sum((x - mean) ** 2 for x in kept)
        mssd = sum((b - a) ** 2 for a, b in itertools.pairwise(kept))
        ratio = 2.0 if ss == 0 else mssd / ss * n / (n - 1)
        if ratio < 2.0 - 3.09 * math.sqrt(4.0 * (n - 2) / (n * n - 1)):
            return None
    return mean, sigma


def reference_cycle_time(events: list[Ev], rule: dict[str, Any]) -> list[tuple[str, float, Any]]:
    """Episodes (program, start, end or None) of the cycle_time rule, from the README."""
    warm_n, k, h = rule["warmup_cycles"], 0.5, 8.05
    lam, lim = 0.1, 3.75 * math.sqrt(0.1 / 1.9)
    episodes: list[list[Any]] = []
    program, mode, last_part, count = "", "", None, None
    stops: list[list[Any]] = []  # [start, end or None]
    marks: list[float] = []  # alarm raises and program changes
    active: set[str] = set()
    base: dict[str, dict[str, Any]] = {}
    runs: dict[str, int] = {}
    for ev in events:
        t = T0 + ev.ms / 1000
        if ev.name == "run_state":
            if ev.value == "executing":
                if stops and stops[-1][1] is None:
                    stops[-1][1] = t
            elif not stops or stops[-1][1] is not None:
                stops.append([t, None])
            continue
        if ev.name == "alarm":
            if (ev.attrs or {}).get("active") != "false" and str(ev.value) not in active:
                marks.append(t)
                active.add(str(ev.value))
            elif (ev.attrs or {}).get("active") == "false":
                active.discard(str(ev.value))
            continue
        if ev.name == "operation_mode":
            mode = ev.value
            continue
        if ev.name == "program":
            if program and ev.value != program:
                marks.append(t)
                base.pop(ev.value, None)
            program = ev.value
            continue
        previous, count = count, ev.value
        if previous is None:
            continue
        if last_part is None:
            last_part = t
            continue
        x = round(t - last_part, 3)
        start, last_part = t - x, t
        if x < MIN_CYCLE or mode not in ("", "processing"):
            continue
        if any(min(t, t if b is None else b) - max(start, a) >= 60.0 for a, b in stops):
            continue  # a pause of 60 s (stop_min_s) or more within the cycle
        if any(start < m < t for m in marks):
            continue
        # A shorter pause stays in its cycle, but not in its time (decision 0410).
        x -= min(x, sum(max(0.0, min(t, t if b is None else b) - max(start, a)) for a, b in stops))
        # A cycle: standard, baseline, charts, run rules.
        points = 1 if x > rule["standard_s"].get(program, math.inf) * 1.2 else 0
        b = base.setdefault(program, {"warm": []})
        signal = False
        if "mean" not in b:
            b["warm"].append(x)
            if len(b["warm"]) == warm_n:
                learned = reference_baseline(b["warm"], 0.001, rule.get("sigma_confidence", 0.975))
                if learned is None:
                    b["warm"] = b["warm"][warm_n // 2 :]
                else:
                    b.update(mean=learned[0], sigma=learned[1], sp=0.0, sn=0.0, e=0.0, zs=[],
                             since=None)  # fmt: skip
        else:
            z = (x - b["mean"]) / b["sigma"]
            zc = max(-4.0, min(4.0, z))
            b["sp"] = max(0.0, b["sp"] + zc - k)
            b["sn"] = max(0.0, b["sn"] - zc - k)
            if b["sp"] > h or b["sn"] > h:
                b["sp"] = b["sn"] = 0.0
                signal = True
            b["e"] = lam * zc + (1 - lam) * b["e"]
            if abs(b["e"]) > lim:
                b["e"] = 0.0
                signal = True
            zs = b["zs"] = (b["zs"] + [z])[-8:]
            side = 1 if z > 0 else -1 if z < 0 else 0
            we = (
                abs(z) > 3
                or (side and len(zs) >= 3 and sum(v * side > 2 for v in zs[-3:]) >= 2)
                or (side and len(zs) >= 5 and sum(v * side > 1 for v in zs[-5:]) >= 4)
                or (len(zs) == 8 and (all(v > 0 for v in zs) or all(v < 0 for v in zs)))
            )
            points |= bool(we)
            if signal:
                b["since"] = 0
            elif b["since"] is not None:
                b["since"] += 1
                if b["since"] >= rule["clear_cycles"]:
                    b["since"] = None
        runs[program] = runs.get(program, 0) + 1 if points else 0
        out = b.get("since") is not None or runs[program] >= rule["min_cycles"]
        open_ = [e for e in episodes if e[0] == program and e[2] is None]
        if out and not open_:
            episodes.append([program, t, None])
        elif not out and open_:
            open_[0][2] = t
    return [(p, s, e) for p, s, e in episodes]


def run_engine(rule: dict[str, Any], events: list[Ev], machine: str, **defaults: Any) -> list[Any]:
    cfg = parse_config(
        {
            "machines": DEFAULT_MACHINES,
            "rules": {
                "group_wait_s": 0,
                "min_cycle_time_s": MIN_CYCLE,
                "defaults": defaults,
                "rules": [rule],
            },
        }
    )
    signals = [
        Signal(machine, ev.name, ev.value, source_ts=T0 + ev.ms / 1000,
               receive_ts=T0 + ev.ms / 1000, subject=ev.subject, attrs=ev.attrs or {})
        for ev in events
    ]  # fmt: skip
    signals.sort(key=lambda s: s.source_ts)  # stable: same-time signals keep their order
    result = replay(Program(cfg), signals)
    return [
        (row["subject"], _ts(row["started_at"]), _ts(row["resolved_at"]))
        for row in result.ledger.rows()
    ]


def _ts(value: Any) -> float | None:
    from datetime import datetime

    return None if value is None else datetime.fromisoformat(value).timestamp()


def _rounded(episodes: list[Any]) -> list[Any]:
    """Episode times to the millisecond (the ledger keeps milliseconds)."""
    return sorted((s, round(a, 3), None if b is None else round(b, 3)) for s, a, b in episodes)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), segments=st.lists(segment, min_size=3, max_size=25))
def test_cycle_time_episodes_equal_the_reference(
    seed: int, segments: list[tuple[str, int, float]]
) -> None:
    events = cycle_history(seed, segments)
    events.sort(key=lambda e: e.ms)
    expected = reference_cycle_time(events, CYCLE_RULE)
    assert _rounded(run_engine(CYCLE_RULE, events, "cnc101", cycle_source="part_count")) == (
        _rounded(expected)
    )


def test_the_cycle_history_generator_exercises_every_branch() -> None:
    """The reference sees episodes, refusals and exclusions on a plain history (not vacuous)."""
    segments = [("run", 40, 0.0), ("glitch", 1, 0.0), ("stop", 3, 0.0), ("step", 30, 3.0),
                ("program", 1, 0.0), ("run", 30, 0.0), ("outlier", 1, 4.0)]  # fmt: skip
    events = cycle_history(7, segments)
    episodes = reference_cycle_time(events, CYCLE_RULE)
    assert episodes
    assert _rounded(run_engine(CYCLE_RULE, events, "cnc101", cycle_source="part_count")) == (
        _rounded(episodes)
    )


# --- spindle_load_drift ---------------------------------------------------------------------

SPINDLE_RULE: dict[str, Any] = {
    "name": "spindle_load_drift",
    "type": "spindle_load_drift",
    "threshold": 20.0,
    "baseline_samples": 10,
    "smoothing_samples": 9,
    "min_load": 5.0,
    "for_s": 0,
    "keep_firing_for_s": 0,
    "inhibit_in_modes": [],
}

load_segment = st.tuples(
    st.sampled_from(["level", "spike", "drift", "idle", "change"]),
    st.integers(1, 60),
    st.floats(-10.0, 200.0),
)


def spindle_history(seed: int, segments: list[tuple[str, int, float]]) -> list[Ev]:
    rng = random.Random(seed)
    out = [Ev(0, "tool_number", 1)]
    ms, level, tool = 0, 40.0, 1
    for kind, n, size in segments:
        if kind == "change":
            out.append(Ev(ms + 1, "tool_change", 100, subject=f"T{tool}"))
            tool = tool % 3 + 1
            out.append(Ev(ms + 2, "tool_number", tool))
            ms += 2
            continue
        for i in range(n):
            ms += 1000
            load = level + rng.gauss(0, 2)
            if kind == "spike":
                load = level + size
            elif kind == "drift":
                load = level + size * (i + 1) / n / 4
            elif kind == "idle":
                load = rng.uniform(0, 4.9)
            out.append(Ev(ms, "spindle_load", round(load, 2)))
        if kind == "drift":
            level += size / 4
    return out


def reference_spindle(
    events: list[Ev], rule: dict[str, Any], *, by_tool: bool = True
) -> list[tuple[str, float, Any]]:
    """Per tool (``by_tool``), or the machine's one ``spindle`` load whose level restarts at
    any tool change, except while it drifts: then it restarts when the drift clears, and
    the level learned from there is no higher than the old one."""
    alpha = 2 / (rule["smoothing_samples"] + 1)
    th = rule["threshold"]
    tools: dict[str, dict[str, Any]] = {}
    episodes: list[list[Any]] = []
    caps: dict[str, float] = {}  # the old level a re-learned level may not exceed
    in_spindle = ""
    for ev in events:
        t = T0 + ev.ms / 1000
        if ev.name == "tool_number":
            in_spindle = f"T{ev.value}" if by_tool else ""
            continue
        if ev.name == "tool_change":
            for name in (ev.subject, "spindle"):
                if name == "spindle" and tools.get(name, {}).get("on"):
                    tools[name]["relearn"] = True
                    continue
                caps.pop(name, None)
                if tools.pop(name, None) is not None:
                    for e in episodes:
                        if e[0] == name and e[2] is None:
                            e[2] = t
            continue
        load = float(ev.value)
        if load < rule["min_load"]:
            continue
        name = in_spindle or "spindle"
        if name not in tools:
            tools[name] = {"xs": [], "ewma": None, "on": False, "cap": caps.pop(name, None)}
        s = tools[name]
        if len(s["xs"]) < rule["baseline_samples"]:
            s["xs"].append(load)
            s["ewma"] = sum(s["xs"]) / len(s["xs"])
            continue
        level = sum(s["xs"]) / len(s["xs"])
        if s["cap"] is not None:
            level = min(level, s["cap"])
        s["ewma"] += alpha * (min(load, level + rule["sample_clip"] * th) - s["ewma"])
        drift = s["ewma"] - level
        if not s["on"] and drift > th:
            s["on"] = True
            episodes.append([name, t, None])
        elif s["on"] and drift < 0.8 * th:
            s["on"] = False
            for e in episodes:
                if e[0] == name and e[2] is None:
                    e[2] = t
            if s.get("relearn"):
                caps[name] = level
                del tools[name]
    return [(n, a, b) for n, a, b in episodes]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), segments=st.lists(load_segment, min_size=2, max_size=12))
def test_spindle_load_drift_episodes_equal_the_reference(
    seed: int, segments: list[tuple[str, int, float]]
) -> None:
    events = spindle_history(seed, segments)
    rule = dict(SPINDLE_RULE, sample_clip=2.0)
    expected = reference_spindle(events, rule)
    assert _rounded(run_engine(rule, events, "cnc103")) == _rounded(expected)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), segments=st.lists(load_segment, min_size=2, max_size=12))
def test_machine_level_spindle_drift_episodes_equal_the_reference(
    seed: int, segments: list[tuple[str, int, float]]
) -> None:
    """``load_by_tool: false``: one load for the machine, tool changes while it drifts."""
    events = spindle_history(seed, segments)
    rule = dict(SPINDLE_RULE, sample_clip=2.0)
    expected = reference_spindle(events, rule, by_tool=False)
    engine = run_engine(rule, events, "cnc103", load_by_tool=False)
    assert _rounded(engine) == _rounded(expected)
