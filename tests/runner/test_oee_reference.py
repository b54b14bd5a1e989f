"""OEE against a plain reference written from the standard definition (runner/README.md).

The reference walks the covered shift minute by minute: a minute is planned unless it is in
a break, and run time unless the machine is down (a downtime episode) or in setup mode.
Counts are the rises of the good and bad counters from their last value before the shift
(a drop is a reset to zero). Availability = run / planned, performance = ideal x total /
run with the ideal the standard or else the fastest cycle of at least ``min_cycle_s``,
quality = good / total. Hypothesis generates shifts, breaks, downtime, mode changes,
counter readings and cycles; :func:`runner.escalation.oee.compute` must agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.escalation.oee import OeeSettings, compute
from runner.escalation.shift import ShiftWindow
from runner.escalation.signals import MachineSignals, Sample

T0 = datetime(2024, 7, 8, 11, 0, tzinfo=UTC)
MIN_CYCLE = 1.0


def at(minute: int) -> datetime:
    return T0 + timedelta(minutes=minute)


@dataclass
class Scenario:
    length: int  # shift minutes
    breaks: list[tuple[int, int]]  # start minute, minutes
    covered_from: int  # 0: the whole shift
    downtime: list[tuple[int, int]]  # start, end minute (may pass the shift end)
    mode_before: str
    modes: list[tuple[int, str]]
    good_before: int | None
    bad_before: int | None
    good: list[tuple[int, int]]
    bad: list[tuple[int, int]]
    cycles: list[tuple[int, float]]
    standard: float | None


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    length = draw(st.integers(30, 600))
    minute = st.integers(0, length - 1)
    breaks = draw(st.lists(st.tuples(minute, st.integers(1, 60)), max_size=3))
    covered = draw(st.one_of(st.just(0), minute))
    in_window = st.integers(covered, length - 1)
    spans = draw(st.lists(st.tuples(minute, st.integers(1, 200)), max_size=3))
    downtime = [(s, s + n) for s, n in spans]
    modes = sorted(
        draw(st.lists(st.tuples(in_window, st.sampled_from(["processing", "setup"])), max_size=4))
    )
    based = covered == 0 and draw(st.booleans())
    counter = st.integers(0, 5000)
    good = sorted(draw(st.lists(st.tuples(in_window, counter), max_size=6)))
    bad = sorted(draw(st.lists(st.tuples(in_window, st.integers(0, 50)), max_size=4)))
    cycles = sorted(
        draw(
            st.lists(
                st.tuples(in_window, st.one_of(st.floats(0.1, 0.9), st.floats(20, 120))),
                max_size=5,
            )
        )
    )
    return Scenario(
        length=length,
        breaks=breaks,
        covered_from=covered,
        downtime=downtime,
        mode_before=draw(st.sampled_from(["processing", "setup"])) if covered == 0 else "",
        modes=modes,
        good_before=draw(counter) if based else None,
        bad_before=draw(st.integers(0, 50)) if based else None,
        good=good,
        bad=bad,
        cycles=cycles,
        standard=draw(st.one_of(st.none(), st.floats(10, 100))),
    )


def _rise(before: int | None, readings: list[int]) -> int | None:
    values = ([before] if before is not None else []) + readings
    if not values:
        return None
    total = 0
    for a, b in pairwise(values):
        total += b - a if b >= a else b
    return total


def reference(s: Scenario) -> tuple[float | None, float | None, float | None]:
    """Availability, performance, quality by the book, minute by minute."""
    planned = run = down_planned = 0
    for m in range(s.covered_from, s.length):
        if any(b <= m < b + n for b, n in s.breaks):
            continue
        planned += 1
        mode = s.mode_before
        for when, value in s.modes:
            if when <= m:
                mode = value
        down = any(a <= m < b for a, b in s.downtime)
        down_planned += down
        if not down and mode != "setup":
            run += 1
    seen = s.modes or s.good or s.bad or s.cycles
    if planned == 0 or (not seen and down_planned == 0):
        return None, None, None
    availability = run / planned
    good = _rise(s.good_before, [v for _, v in s.good])
    bad = _rise(s.bad_before, [v for _, v in s.bad])
    if good is None and bad is None:
        total = len([c for _, c in s.cycles if c >= MIN_CYCLE])
        if not s.cycles:
            return availability, None, None
        quality = None
    else:
        total = (good or 0) + (bad or 0)
        quality = None if good is None or bad is None or total == 0 else good / total
    if total == 0:
        return availability, 0.0, quality
    real = [c for _, c in s.cycles if c >= MIN_CYCLE]
    ideal = s.standard if s.standard is not None else (min(real) if real else None)
    if ideal is None or run == 0:
        return availability, None, quality
    return availability, ideal * total / (run * 60), quality


def run_code(s: Scenario) -> tuple[float | None, float | None, float | None]:
    window = ShiftWindow(
        "first",
        T0,
        at(s.length),
        UTC,
        tuple((at(b), min(at(b + n), at(s.length))) for b, n in s.breaks),
    )
    samples = [Sample(at(m), "operation_mode", v) for m, v in s.modes]
    samples += [Sample(at(m), "part_count_good", v) for m, v in s.good]
    samples += [Sample(at(m), "part_count_bad", v) for m, v in s.bad]
    samples += [Sample(at(m), "cycle_time", v) for m, v in s.cycles]
    samples.sort(key=lambda x: x.at)  # stable: stream order within a minute as generated
    before: dict[str, float | int | str | bool | None] = {}
    if s.mode_before:
        before["operation_mode"] = s.mode_before
    if s.good_before is not None:
        before["part_count_good"] = s.good_before
    if s.bad_before is not None:
        before["part_count_bad"] = s.bad_before
    row = compute(
        "cnc101",
        "CNC 101",
        window,
        covered_from=at(s.covered_from) if s.covered_from else None,
        downtime=[(at(a), min(at(b), at(s.length))) for a, b in s.downtime],
        signals=MachineSignals(samples, before, seen=len(samples)),
        cfg=OeeSettings(
            standard_cycle_s={"cnc101": s.standard} if s.standard is not None else {},
            min_cycle_s=MIN_CYCLE,
        ),
    )
    return row.availability, row.performance, row.quality


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_oee_matches_the_reference(s: Scenario) -> None:
    got = run_code(s)
    want = reference(s)
    for name, g, w in zip(("availability", "performance", "quality"), got, want, strict=True):
        if w is None:
            assert g is None, (name, g, s)
        else:
            assert g == pytest.approx(w, rel=1e-9), (name, g, w, s)
