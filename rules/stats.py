"""Statistical process control for the statistical rules: phase I baselines and charts.

Pure functions on plain JSON state, so a rule can checkpoint what they keep and the
benchmark (``bench/stats.py``) can run the very same steps millions of times.

**Phase I** (:func:`phase_one`) turns a warm-up stretch of individual values into a
baseline the way a quality engineer does it by hand:

1. screen: the centre is the median and the spread the median moving range / 0.954
   (both unmoved by a few wild values such as a setup cycle; the mean moving range / d2
   when most moving ranges are 0, as with whole seconds); values farther than
   ``OUTLIER_Z`` of that spread from the centre are removed;
2. estimate: the mean of what is left, and sigma the larger of the mean moving range / d2
   (d2 = 1.128, the short-term sigma of an individuals chart) and the standard deviation:
   a stretch that passes step 3 has the two close, and taking the larger trims the false
   alarms that an underestimated sigma causes (docs/decisions/0271); then, with a
   ``confidence`` (the rule's ``sigma_confidence``, 0.975 by default), raised to that
   upper confidence bound of a sigma estimated from ``n`` values,
   ``sigma x sqrt((n - 1) / chi2_(1 - confidence)(n - 1))`` (x 1.11 for 200 values). A
   sigma estimated from a few hundred values is as often 10 % low as high, and the low
   ones made most false tickets: bounded, the false tickets per machine-week fall from
   0.052 to 0.006 while a 1 sigma slowdown is caught in 32 cycles instead of 26
   (docs/decisions/0273);
3. judge the stretch: it is refused when more than ``MAX_REMOVED_SHARE`` of it had to be
   removed, or when the von Neumann ratio (mean squared successive difference over the
   variance, 2 for independent values) is below its one-sided ``VN_Z`` critical value,
   which is what a shift or a trend inside the stretch does. A refused stretch teaches
   nothing: the caller drops its older half and keeps collecting.

**Phase II** charts run on ``z = (x - mean) / sigma``, clipped to ``±clip`` first (a
single wild value moves a chart by at most ``clip``: Huber's winsorized CUSUM/EWMA), and
restart after they signal (the textbook tabular CUSUM with reset; an EWMA likewise):

- tabular CUSUM: ``S+ = max(0, S+ + z - k)``, ``S- = max(0, S- - z - k)``; a signal when
  either exceeds ``h``, then both return to 0;
- EWMA: ``e = lam z + (1 - lam) e`` from 0; a signal when ``|e| > L sqrt(lam / (2 - lam))``
  (the asymptotic limit), then ``e`` returns to 0.

The Western Electric run rules (:func:`run_rules`) take the exact z, never a rounded one.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: d2 for moving ranges of two: E[|x1 - x2|] = d2 sigma for independent normal values.
D2 = 1.128
#: Median of |x1 - x2| over sigma for independent normal values (0.6745 x sqrt 2).
MEDIAN_MR = 0.9539
#: Screening limit, in robust sigmas from the median (3.5: an in-control value is removed
#: with probability 0.05 %, so the screening barely biases sigma).
OUTLIER_Z = 3.5
#: A stretch needing more than this share removed is not an in-control stretch.
MAX_REMOVED_SHARE = 0.1
#: One-sided normal quantile of the von Neumann ratio test (alpha = 0.001).
VN_Z = 3.09
#: Smallest sigma whatever the data: cycle times are rounded to the millisecond.
RESOLUTION_S = 0.001


def sigma_upper_factor(n: int, confidence: float) -> float:
    """``sqrt((n - 1) / chi2_q(n - 1))`` with ``q = 1 - confidence``: the factor taking a
    standard deviation estimated from ``n`` values to its upper ``confidence`` bound.

    The chi-square quantile is Wilson and Hilferty's cube-root approximation: within 0.2 %
    of the exact factor from 20 degrees of freedom (``tests/rules/test_cycle_baseline.py``).
    """
    nu = max(1, n - 1)
    c = 2.0 / (9.0 * nu)
    z = statistics.NormalDist().inv_cdf(1.0 - confidence)
    quantile = nu * max(1.0 - c + z * math.sqrt(c), 0.05) ** 3
    return math.sqrt(nu / quantile)


@dataclass(frozen=True, slots=True)
class Baseline:
    """The outcome of phase I: a baseline, or why the stretch was refused."""

    mean: float
    sigma: float
    n: int  # values the estimate rests on
    removed: int  # values screened out
    refused: str = ""  # "" | "outliers" | "not_random"


def moving_range_sigma(xs: Sequence[float]) -> float:
    """Short-term sigma of individual values: mean moving range / d2."""
    if len(xs) < 2:
        return 0.0
    return sum(abs(b - a) for a, b in itertools.pairwise(xs)) / (len(xs) - 1) / D2


def von_neumann_ratio(xs: Sequence[float]) -> float:
    """Mean squared successive difference over the variance (about 2 when random)."""
    n = len(xs)
    mean = sum(xs) / n
    ss = sum((x - mean) ** 2 for x in xs)
    if ss == 0:
        return 2.0
    return sum((b - a) ** 2 for a, b in itertools.pairwise(xs)) / ss * n / (n - 1)


def von_neumann_limit(n: int) -> float:
    """The ratio below which ``n`` values are not random at alpha = 0.001 (normal approx.)."""
    return 2.0 - VN_Z * math.sqrt(4.0 * (n - 2) / (n * n - 1))


def phase_one(
    xs: Sequence[float], min_sigma_fraction: float, confidence: float | None = None
) -> Baseline:
    """A baseline from the warm-up stretch ``xs`` (in time order); see the module text.

    ``confidence``: raise sigma to this upper confidence bound (None: as estimated).
    """
    center = statistics.median(xs)
    ranges = [abs(b - a) for a, b in itertools.pairwise(xs)]
    robust = statistics.median(ranges) / MEDIAN_MR if ranges else 0.0
    if robust == 0.0:
        # Most moving ranges are 0 (a controller reporting whole seconds): the median says
        # nothing of the spread, the mean moving range still does.
        robust = moving_range_sigma(xs)
    floor = max(min_sigma_fraction * abs(center), RESOLUTION_S)
    robust = max(robust, floor)
    kept = [x for x in xs if abs(x - center) <= OUTLIER_Z * robust]
    removed = len(xs) - len(kept)
    if removed > MAX_REMOVED_SHARE * len(xs):
        return Baseline(center, robust, len(kept), removed, "outliers")
    mean = sum(kept) / len(kept)
    # The larger of the short-term and the overall estimate: the stretch passed the tests
    # below only if they agree, and a sigma too small is what makes false tickets.
    overall = statistics.stdev(kept) if len(kept) > 1 else 0.0
    estimate = max(moving_range_sigma(kept), overall)
    if confidence is not None:
        estimate *= sigma_upper_factor(len(kept), confidence)
    sigma = max(estimate, min_sigma_fraction * abs(mean), RESOLUTION_S)
    refused = ""
    if len(kept) > 2 and von_neumann_ratio(kept) < von_neumann_limit(len(kept)):
        refused = "not_random"
    return Baseline(mean, sigma, len(kept), removed, refused)


def clip(z: float, c: float) -> float:
    """``z`` limited to ``[-c, c]``."""
    return c if z > c else -c if z < -c else z


def cusum_step(b: dict[str, Any], z: float, k: float, h: float) -> str:
    """One tabular CUSUM step on ``b["sp"]``/``b["sn"]``: ``"CUSUM+"``, ``"CUSUM-"`` or ``""``.

    On a signal the sums that crossed are reported in ``b["sp_out"]``/``b["sn_out"]`` and
    both restart from 0.
    """
    sp = max(0.0, b["sp"] + z - k)
    sn = max(0.0, b["sn"] - z - k)
    out = "CUSUM+" if sp > h else "CUSUM-" if sn > h else ""
    if out:
        b["sp_out"], b["sn_out"] = sp, sn
        sp = sn = 0.0
    b["sp"], b["sn"] = sp, sn
    return out


def ewma_step(b: dict[str, Any], z: float, lam: float, limit: float) -> str:
    """One EWMA step on ``b["ewma"]`` against ``±limit``: ``"EWMA"`` or ``""`` (then 0)."""
    e = lam * z + (1.0 - lam) * b["ewma"]
    if abs(e) > limit:
        b["ewma_out"] = e
        b["ewma"] = 0.0
        return "EWMA"
    b["ewma"] = e
    return ""


def ewma_limit(lam: float, L: float) -> float:  # noqa: N803 (L is the textbook's name)
    """The EWMA's asymptotic control limit for weight ``lam`` and width ``L``."""
    return L * math.sqrt(lam / (2.0 - lam))


#: How many standardized values the run rules look back on.
HISTORY = 8


def run_rules(z: Sequence[float], rules: frozenset[int]) -> list[str]:
    """The Western Electric rules that the latest point of ``z`` completes.

    1: one point beyond 3 sigma; 2: two of the last three beyond 2 sigma, 3: four of the
    last five beyond 1 sigma, both counted on the side of the latest point; 4: eight in a
    row on one side of the mean (a point exactly on it is on neither). Counting on the
    latest point's side raises each pattern at the point that completes it, as counting
    both sides would; it only stops a pattern from being reported again by points of the
    other side that follow it.
    """
    broken = []
    last = z[-1]
    if 1 in rules and abs(last) > 3:
        broken.append("WE1")
    side = 1.0 if last > 0 else -1.0 if last < 0 else 0.0
    for rule, n, need, limit in ((2, 3, 2, 2.0), (3, 5, 4, 1.0)):
        beyond = sum(1 for v in z[-n:] if v * side > limit) if len(z) >= n else 0
        if rule in rules and side != 0 and beyond >= need:
            broken.append(f"WE{rule}")
    if 4 in rules and len(z) >= HISTORY:
        tail = z[-HISTORY:]
        if all(v > 0 for v in tail) or all(v < 0 for v in tail):
            broken.append("WE4")
    return broken
