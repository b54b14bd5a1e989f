"""OEE over a whole plant day, from the history where the streams no longer hold it.

Reference (runner/README.md's definition, walked minute by minute): the day is every
shift starting on the plant date; a minute is planned when it is in a shift and not in
its break; run time is planned time not in a ``setup`` operation mode (no downtime
episodes here); the total is the rise of ``part_count`` from its last reading before the
day (a drop is a reset to zero), scrap the rise of ``part_count_bad``, good the rest;
availability = run / planned, performance = standard cycle x total / run, quality =
good / total. Hypothesis generates the day's signals and how much of it the capped
streams still hold (all, from mid-day, none of the day, nothing at all); the signals
went through ``repsys history`` first, and the figures must match the reference with the
whole day covered.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import keys
from core.config import RepsysConfig
from core.config.runner import BreakConfig, ShiftConfig
from core.model import Signal
from history.read import HistoryArchive
from runner.errors import BadRequest
from runner.escalation.oee import OeeSettings, compute
from runner.escalation.shift import day_window, seconds
from runner.escalation.signals import read_history
from runner.params import normalize
from tests.history.test_writer import writer_for

P = 2
ZONE = ZoneInfo("America/Chicago")
DAY = date(2026, 11, 3)
SHIFTS = [
    ShiftConfig(
        name="first", start=time(6), end=time(14), breaks=[BreakConfig(start=time(10), minutes=30)]
    ),
    ShiftConfig(
        name="second",
        start=time(15),
        end=time(23),
        breaks=[BreakConfig(start=time(19), minutes=20)],
    ),
]
#: Minutes of the day window (06:00 to 23:00) and the planned minutes by the book.
LENGTH = 17 * 60
PLANNED = [
    m
    for m in range(LENGTH)
    if (0 <= m < 8 * 60 and not 4 * 60 <= m < 4 * 60 + 30)
    or (9 * 60 <= m < 17 * 60 and not 13 * 60 <= m < 13 * 60 + 20)
]
STANDARD = 30.0
MACHINE = "cnc101"


@dataclass
class Day:
    modes: list[tuple[int, str]]  # minute (from 06:00, may be before), mode
    counts: list[tuple[int, int]]  # minute, part_count reading
    bad: list[tuple[int, int]]
    stream_from: str  # what the capped stream still holds: all, midday, after, nothing


@st.composite
def days(draw: Any) -> Day:
    minute = st.integers(-60, LENGTH + 90)
    modes = [(-90, draw(st.sampled_from(["processing", "setup"])))]
    modes += sorted(draw(st.lists(st.tuples(minute, st.sampled_from(["processing", "setup"])),
                                  max_size=8)))  # fmt: skip
    counts = [(-100, draw(st.integers(0, 500))), (1, draw(st.integers(0, 500)))]
    for m in sorted(draw(st.lists(minute, min_size=1, max_size=30))):
        last = counts[-1][1]
        counts.append(
            (
                m,
                draw(st.integers(0, 5))
                if draw(st.integers(0, 9)) == 0
                else last + draw(st.integers(0, 60)),
            )
        )
    counts.sort(key=lambda c: c[0])
    bad = [(-100, draw(st.integers(0, 20)))]
    for m in sorted(draw(st.lists(minute, max_size=6))):
        bad.append((m, bad[-1][1] + draw(st.integers(0, 3))))
    return Day(modes, counts, bad, draw(st.sampled_from(["all", "midday", "after", "nothing"])))


def _rise(readings: list[int]) -> int:
    return sum(b - a if b >= a else b for a, b in pairwise(readings))


def _in_day(readings: list[tuple[int, int]]) -> list[int]:
    """The last reading before the day, then the day's readings."""
    before = [v for w, v in readings if w < 0][-1:]
    return before + [v for w, v in readings if 0 <= w < LENGTH]


def reference(d: Day) -> tuple[float, float | None, float | None]:
    run = 0
    for m in PLANNED:
        mode = ""
        for when, value in d.modes:
            if when <= m:
                mode = value
        run += mode != "setup"
    availability = run / len(PLANNED)
    total = _rise(_in_day(d.counts))
    bad = _rise(_in_day(d.bad))
    quality = (total - bad) / total if total else None
    if total == 0:
        return availability, 0.0, quality
    performance = STANDARD * total / (run * 60) if run else None
    return availability, performance, quality


def _xadd(redis: Any, d: Day, start: datetime) -> None:
    entries: list[tuple[int, str, str | int]] = [(m, "operation_mode", v) for m, v in d.modes]
    entries += [(m, "part_count", v) for m, v in d.counts]
    entries += [(m, "part_count_bad", v) for m, v in d.bad]
    entries.sort(key=lambda e: e[0])  # stable: the generated order within a minute
    seq: dict[int, int] = {}
    stream = keys.signal_stream(keys.partition_of(MACHINE, P))
    for minute, name, value in entries:
        when = start + timedelta(minutes=minute)
        ms = int(when.timestamp() * 1000)
        n = seq[ms] = seq.get(ms, -1) + 1
        sig = Signal(MACHINE, name, value, source_ts=when.timestamp(), receive_ts=when.timestamp())
        redis.xadd(stream, sig.to_fields(), id=f"{ms}-{n}")


def _trim(redis: Any, d: Day, start: datetime) -> None:
    stream = keys.signal_stream(keys.partition_of(MACHINE, P))
    cut = {"midday": start + timedelta(hours=9), "after": start + timedelta(minutes=LENGTH + 1)}
    if d.stream_from in cut:
        redis.xtrim(
            stream, minid=f"{int(cut[d.stream_from].timestamp() * 1000)}-0", approximate=False
        )
    elif d.stream_from == "nothing":
        redis.xtrim(stream, maxlen=0, approximate=False)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(d=days())
def test_day_oee_from_the_history_matches_the_reference(
    d: Day, make_config: Any, redis_url: str, redis_client: Any
) -> None:
    redis_client.flushall()
    window = day_window(SHIFTS, DAY, ZONE)
    assert seconds(window.planned()) == len(PLANNED) * 60
    with tempfile.TemporaryDirectory() as tmp:
        cfg: RepsysConfig = make_config(
            {
                "plant": {"timezone": "America/Chicago"},
                "streams": {"partitions": P},
                "storage": {"type": "local", "root": tmp},
            }
        )
        _xadd(redis_client, d, window.start)
        assert writer_for(cfg, redis_url).drain() == len(d.modes) + len(d.counts) + len(d.bad)
        _trim(redis_client, d, window.start)
        history = read_history(redis_client, P, window.start, window.end, [MACHINE],
                               archive=HistoryArchive(cfg))  # fmt: skip
        row = compute(
            MACHINE,
            "CNC 101",
            window,
            covered_from=history.covered_from.get(keys.partition_of(MACHINE, P)),
            downtime=[],
            signals=history.machine(MACHINE),
            cfg=OeeSettings(standard_cycle_s={MACHINE: STANDARD}),
        )
    assert row.covered_share == 1.0 and row.planned_s == len(PLANNED) * 60
    want = reference(d)
    got = (row.availability, row.performance, row.quality)
    for name, g, w in zip(("availability", "performance", "quality"), got, want, strict=True):
        if w is None:
            assert g is None, (name, g, d)
        else:
            assert g == pytest.approx(w, rel=1e-9), (name, g, w, d)


def test_a_day_is_every_shift_starting_on_it_without_gaps_or_breaks() -> None:
    night = ShiftConfig(name="night", start=time(22), end=time(6))
    window = day_window([*SHIFTS, night], DAY, ZONE)
    assert window.name == "day"
    assert window.local(window.start).replace(tzinfo=None) == datetime(2026, 11, 3, 6)
    assert window.local(window.end).replace(tzinfo=None) == datetime(2026, 11, 4, 6)
    # 8 h + 8 h + 8 h, less the breaks (30 + 20 min); the hour 14:00-15:00 is not planned
    # and the night overlaps the second shift from 22:00 to 23:00 (counted once).
    assert seconds(window.planned()) == (23 * 60 - 50) * 60
    assert window.start.tzinfo is UTC or window.start.utcoffset() == timedelta(0)


def test_a_day_is_requested_by_its_date_alone(make_config: Any) -> None:
    cfg = make_config()
    normalized = normalize(cfg, "escalation", {"day": "2026-11-03"}, lambda _pcn: None)
    assert normalized.params == {"day": "2026-11-03"}
    assert normalized.name == "Escalation_day_2026-11-03"
    with pytest.raises(BadRequest, match="not an ISO date"):
        normalize(cfg, "escalation", {"day": "03/11/2026"}, lambda _pcn: None)
    with pytest.raises(BadRequest, match="not both"):
        normalize(cfg, "escalation", {"day": "2026-11-03", "shift": "first"}, lambda _pcn: None)
