"""ARL of the cycle_time charts: seeded simulation beside the textbook values, in one run.

The average run length (ARL) is the number of cycles a chart takes to signal: with the
process in control (ARL0, the false-alarm rate) and after a step of 1 or 2 sigma (ARL1,
the detection delay). This benchmark measures them by simulation of the rule's chart steps
(z clipped, tabular CUSUM and EWMA restarting after a signal) on seeded Gaussian cycles,
vectorized over many charts with numpy and checked to signal on exactly the same cycles as
``rules.stats`` itself, and prints each beside the textbook value computed in the same run
by the Brook-Evans Markov chain (CUSUM, two sides combined as 1/ARL = 1/ARL+ + 1/ARL-) and
the Lucas-Saccucci Markov chain (EWMA), both with the same clipping of z. The classic
designs (CUSUM k 0.5 h 5; EWMA lambda 0.1 L 2.814) check the simulation against the
published tables (Montgomery, Introduction to Statistical Quality Control, tables of the
tabular CUSUM and the EWMA): 465 / 10.4 / 4.01 and 500 / 10.3 / 4.36.

The table prints each simulated ARL with its 95 % interval; the run passes when every
textbook ARL lies in the simulation's interval, taken simultaneous over the 12 comparisons
(Bonferroni, z = 2.87), so that chance alone fails it one time in twenty.

The second table is the design's criterion: false signals in a machine-week of in-control
cycles when the baseline is estimated, as the rule does, by phase I (``rules.stats.
phase_one``) from 100, 200 or 300 cycles instead of being known.

``python -m bench.stats`` (about 10 s on an idle core, 20 s on a busy one); the tables go
into ``rules/README.md``. It fails (exit 1) when a textbook value falls outside.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from rules.stats import clip, cusum_step, ewma_limit, ewma_step, phase_one

#: Cycles per machine-week at the typical cycle (60 s, 100 running hours a week).
CYCLES_PER_WEEK = 6000
#: Seed of every simulation (the figures are reproducible).
SEED = 27
#: A run that has not signalled after this many ARL0s counts as this long (never reached
#: at the defaults; it bounds the time).
CAP = 20

_erf = np.frompyfunc(math.erf, 1, 1)


def _cdf(x: np.ndarray, mu: float, c: float | None) -> np.ndarray:
    """CDF of z = N(mu, 1) clipped to [-c, c] (a clipped z piles up at the clip)."""
    erf: np.ndarray = np.asarray(_erf((x - mu) / math.sqrt(2.0)), dtype=float)
    v: np.ndarray = 0.5 * (1.0 + erf)
    if c is not None:
        v = np.where(x < -c, 0.0, np.where(x >= c, 1.0, v))
    return v


def cusum_one_sided(k: float, h: float, mu: float, c: float | None, m: int = 200) -> float:
    """Brook-Evans ARL of the upper CUSUM from 0 (``m`` states over [0, h])."""
    w = h / (m - 0.5)
    s = (np.arange(m) * w)[:, None]
    up = ((np.arange(m) + 0.5) * w)[None, :]
    f = _cdf(up - s + k, mu, c)
    p = f.copy()
    p[:, 1:] -= f[:, :-1]
    return float(np.linalg.solve(np.eye(m) - p, np.ones(m))[0])


def cusum_arl(k: float, h: float, mu: float, c: float | None) -> float:
    """Two-sided tabular CUSUM ARL (the textbook combination of both sides)."""
    return 1.0 / (1.0 / cusum_one_sided(k, h, mu, c) + 1.0 / cusum_one_sided(k, h, -mu, c))


def ewma_arl(lam: float, big_l: float, mu: float, c: float | None, m: int = 201) -> float:
    """Lucas-Saccucci ARL of the EWMA from 0 with asymptotic limits (``m`` states)."""
    ucl = ewma_limit(lam, big_l)
    w = 2.0 * ucl / m
    centers = (-ucl + (np.arange(m) + 0.5) * w)[:, None]
    lo = (-ucl + np.arange(m) * w)[None, :]
    p = _cdf((lo + w - (1 - lam) * centers) / lam, mu, c) - _cdf(
        (lo - (1 - lam) * centers) / lam, mu, c
    )
    return float(np.linalg.solve(np.eye(m) - p, np.ones(m))[m // 2])


@dataclass(frozen=True)
class Design:
    """A chart and its parameters, as the rule runs it."""

    name: str
    chart: str  # cusum | ewma
    a: float  # k or lambda
    b: float  # h or L
    clip: float | None
    published: tuple[float, float, float] | None = None  # ARL at 0, 1, 2 sigma

    def stepper(self) -> Callable[[dict[str, Any], float], str]:
        c = self.clip if self.clip is not None else math.inf
        if self.chart == "cusum":
            k, h = self.a, self.b
            return lambda st, z: cusum_step(st, clip(z, c), k, h)
        lam, limit = self.a, ewma_limit(self.a, self.b)
        return lambda st, z: ewma_step(st, clip(z, c), lam, limit)

    def textbook(self, shift: float) -> float:
        if self.chart == "cusum":
            return cusum_arl(self.a, self.b, shift, self.clip)
        return ewma_arl(self.a, self.b, shift, self.clip)


def vector_step(design: Design, st: dict[str, np.ndarray], z: np.ndarray) -> np.ndarray:
    """The rule's chart step (``rules.stats``) on many independent runs at once.

    Returns which runs signalled; those restart from 0, as in the rule. :func:`check_engine`
    proves it signals on the same cycles as ``rules.stats`` itself.
    """
    if design.clip is not None:
        z = np.clip(z, -design.clip, design.clip)
    if design.chart == "cusum":
        sp = np.maximum(0.0, st["sp"] + z - design.a)
        sn = np.maximum(0.0, st["sn"] - z - design.a)
        out = (sp > design.b) | (sn > design.b)
        st["sp"] = np.where(out, 0.0, sp)
        st["sn"] = np.where(out, 0.0, sn)
        return out
    e = design.a * z + (1.0 - design.a) * st["ewma"]
    out = np.abs(e) > ewma_limit(design.a, design.b)
    st["ewma"] = np.where(out, 0.0, e)
    return out


def fresh(n: int) -> dict[str, np.ndarray]:
    return {"sp": np.zeros(n), "sn": np.zeros(n), "ewma": np.zeros(n)}


def run_lengths(
    design: Design,
    rng: np.random.Generator,
    shift: float,
    runs: int,
    cap: int,
    mean: np.ndarray | None = None,
    sigma: np.ndarray | None = None,
) -> np.ndarray:
    """Cycles until each of ``runs`` fresh charts signals, the process shifted by ``shift``.

    ``mean``/``sigma`` per run: the baseline the chart standardizes with (default 0 / 1, a
    known baseline). A run still silent after ``cap`` cycles counts as ``cap``.
    """
    mean = np.zeros(runs) if mean is None else mean
    sigma = np.ones(runs) if sigma is None else sigma
    lengths = np.full(runs, cap)
    alive = np.arange(runs)
    st = fresh(runs)
    for n in range(1, cap + 1):
        x = rng.standard_normal(alive.size) + shift
        out = vector_step(design, st, (x - mean[alive]) / sigma[alive])
        if out.any():
            lengths[alive[out]] = n
            keep = ~out
            alive = alive[keep]
            st = {k: v[keep] for k, v in st.items()}
            if alive.size == 0:
                break
    return lengths


def check_engine(design: Design, rng: np.random.Generator, cycles: int = 20_000) -> int:
    """Signals of ``rules.stats`` and of :func:`vector_step` on the same cycles (must agree)."""
    z = rng.standard_normal(cycles) + 1.0
    step = design.stepper()
    st: dict[str, Any] = {"sp": 0.0, "sn": 0.0, "ewma": 0.0}
    engine = [i for i, v in enumerate(z) if step(st, float(v))]
    vst = fresh(1)
    vector = [i for i, v in enumerate(z) if vector_step(design, vst, np.array([v]))[0]]
    if engine != vector:
        raise RuntimeError(f"{design.name}: the vectorized chart differs from rules.stats")
    return len(engine)


def interval(runs: np.ndarray, z: float = 1.96) -> tuple[float, float, float]:
    """Mean and its interval (normal approximation; 95 % by default)."""
    mean = float(runs.mean())
    half = z * float(runs.std(ddof=1)) / math.sqrt(runs.size)
    return mean, mean - half, mean + half


def within(runs: np.ndarray, value: float) -> bool:
    """Whether ``value`` lies in the simultaneous 95 % interval of the 12 comparisons."""
    _, lo, hi = interval(runs, FAMILY_Z)
    return lo <= value <= hi


DEFAULT_CUSUM = Design("default: CUSUM k 0.5, h 12, z clipped at 4", "cusum", 0.5, 12.0, 4.0)
DEFAULT_EWMA = Design("EWMA lambda 0.1, L 4.7, z clipped at 4", "ewma", 0.1, 4.7, 4.0)
#: The same chart designed for ARL0 10,000 with a known baseline (0.6 false tickets a week).
ARL0_10K = Design("CUSUM k 0.5, h 8.05, z clipped at 4", "cusum", 0.5, 8.05, 4.0)
CLASSIC = [
    Design("classic CUSUM k 0.5, h 5", "cusum", 0.5, 5.0, None, (465.0, 10.4, 4.01)),
    Design("classic EWMA lambda 0.1, L 2.814", "ewma", 0.1, 2.814, None, (500.0, 10.3, 4.36)),
]
#: Normal quantile of a two-sided 95 % interval shared by the 12 textbook comparisons
#: (Bonferroni: 0.05 / 12 each); a single 95 % interval would miss one of 12 half the time.
FAMILY_Z = 2.87
#: Runs simulated per (design, shift) to first signal (the classic ARL0s and every ARL1).
RUNS = {0.0: 1000, 1.0: 20_000, 2.0: 20_000}
#: In-control cycles simulated for a default design's ARL0: charts x cycles each.
RENEWAL = (20_000, 8_000)


def renewal_arl0(design: Design, rng: np.random.Generator) -> dict[str, Any]:
    """ARL0 of a design too quiet to wait for each run: signals counted over many cycles.

    Every chart restarts at 0 after a signal, so the cycles between signals are independent
    run lengths from 0, and ARL0 = cycles / signals (renewal counting; charts starting at 0
    and cut off at the end shift it by the few cycles a chart takes to settle, well under
    0.1 %). The interval treats the signal count as Poisson.
    """
    charts, cycles = RENEWAL
    st = fresh(charts)
    signals = 0
    for _ in range(cycles):
        signals += int(vector_step(design, st, rng.standard_normal(charts)).sum())
    total = charts * cycles
    book = design.textbook(0.0)

    def bounds(z: float) -> tuple[float, float]:
        half = z * math.sqrt(signals)
        return total / (signals + half), total / max(signals - half, 1.0)

    lo, hi = bounds(1.96)
    flo, fhi = bounds(FAMILY_Z)
    return {"design": design.name, "shift": 0.0, "runs": f"{signals} in {total:.2g} cycles",
            "mean": total / signals, "lo": lo, "hi": hi, "textbook": book,
            "ok": flo <= book <= fhi}  # fmt: skip


def measure(design: Design, rng: np.random.Generator, renewal: bool) -> list[dict[str, Any]]:
    rows = [renewal_arl0(design, rng)] if renewal else []
    for shift, n in RUNS.items():
        if renewal and shift == 0.0:
            continue
        book = design.textbook(shift)
        runs = run_lengths(design, rng, shift, n, cap=int(CAP * book))
        mean, lo, hi = interval(runs)
        row = {"design": design.name, "shift": shift, "runs": n, "mean": mean, "lo": lo,
               "hi": hi, "textbook": book, "ok": within(runs, book)}  # fmt: skip
        if design.published is not None:
            row["published"] = design.published[int(shift)]
        rows.append(row)
    return rows


#: The rule's default ``sigma_confidence`` (None: sigma as estimated).
CONFIDENCE: float | None = 0.975


def baselines(
    rng: np.random.Generator, warmup: int, n: int, confidence: float | None = CONFIDENCE
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` baselines (mean, sigma) of phase I on ``warmup`` in-control cycles each."""
    means: list[float] = []
    sigmas: list[float] = []
    while len(means) < n:
        base = phase_one(rng.standard_normal(warmup).tolist(), 0.0, confidence)
        if base.refused:
            continue  # the rule would collect more cycles; this start is not counted
        means.append(base.mean)
        sigmas.append(base.sigma)
    return np.array(means), np.array(sigmas)


def false_per_week(
    design: Design,
    rng: np.random.Generator,
    warmup: int,
    n: int = 2000,
    confidence: float | None = CONFIDENCE,
) -> str:
    """False signals in a week of in-control cycles after a ``warmup``-cycle phase I."""
    mean, sigma = baselines(rng, warmup, n, confidence)
    st = fresh(n)
    count = np.zeros(n)
    for _ in range(CYCLES_PER_WEEK):
        count += vector_step(design, st, (rng.standard_normal(n) - mean) / sigma)
    m, lo, hi = interval(count)
    return (
        f"| {design.name}, phase I from {warmup} cycles, sigma "
        f"{'as estimated' if confidence is None else f'at its {confidence:g} bound'} "
        f"| {m:.3f} ({lo:.3f} to {hi:.3f}) "
        f"| {float((count > 0).mean()):.3f} |"
    )


def delays_after_phase_one(
    design: Design, rng: np.random.Generator, warmup: int, confidence: float | None = CONFIDENCE
) -> str:
    out = []
    for shift in (1.0, 2.0):
        mean, sigma = baselines(rng, warmup, 2000, confidence)
        runs = run_lengths(design, rng, shift, 2000, 10_000, mean, sigma)
        m, lo, hi = interval(runs)
        out.append(f"{shift:g} sigma {m:.3g} ({lo:.3g} to {hi:.3g}), median {np.median(runs):g}")
    how = "sigma as estimated" if confidence is None else f"sigma at its {confidence:g} bound"
    return f"ARL1 after a {warmup}-cycle phase I, {how}: " + "; ".join(out)


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| design | shift | runs | simulated ARL (95 % interval) | textbook (Markov chain) "
        "| published | |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        book = f"{r['textbook']:.4g}"
        pub = f"{r['published']:g}" if "published" in r else ""
        ok = "" if "ok" not in r else ("agrees" if r["ok"] else "OUTSIDE")
        out.append(
            f"| {r['design']} | {r['shift']:g} sigma | {r['runs']} | {r['mean']:.4g} "
            f"({r['lo']:.4g} to {r['hi']:.4g}) | {book} | {pub} | {ok} |"
        )
    return "\n".join(out)


def main() -> None:
    started = time.monotonic()
    rng = np.random.default_rng(SEED)
    checked = sum(check_engine(d, rng) for d in (DEFAULT_CUSUM, DEFAULT_EWMA, *CLASSIC))
    rows = []
    for design in (DEFAULT_CUSUM, DEFAULT_EWMA):
        rows += measure(design, rng, renewal=True)
    for design in CLASSIC:
        rows += measure(design, rng, renewal=False)
    print(table(rows))
    print(
        f"\nFalse signals per machine-week ({CYCLES_PER_WEEK} in-control cycles: 60 s cycles, "
        "100 running hours), the baseline estimated by phase I, 2000 starts each:\n"
        "| design | false signals per week (95 % interval) | share of weeks with one |\n"
        "|---|---|---|"
    )
    for warmup in (100, 200, 300):
        print(false_per_week(DEFAULT_CUSUM, rng, warmup))
    print(false_per_week(DEFAULT_CUSUM, rng, 200, confidence=None))
    print(false_per_week(ARL0_10K, rng, 100, confidence=None))
    print("\n" + delays_after_phase_one(DEFAULT_CUSUM, rng, 200))
    print(delays_after_phase_one(DEFAULT_CUSUM, rng, 200, confidence=None))
    print(
        f"\nthe vectorized charts signalled on the same cycles as rules.stats ({checked} signals)"
        f"; seed {SEED}; {time.monotonic() - started:.1f} s"
    )
    failed = [r for r in rows if r.get("ok") is False]
    if failed:
        raise RuntimeError(f"{len(failed)} textbook values outside the interval")


if __name__ == "__main__":
    main()
