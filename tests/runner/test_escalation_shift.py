"""Shift windows: plant-time shifts as UTC instants, real length across DST, breaks."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest

from core.config.runner import BreakConfig, ShiftConfig
from runner.escalation.shift import shift_window

CHICAGO = ZoneInfo("America/Chicago")
SHIFTS = [
    ShiftConfig(name="first", start=time(6), end=time(14)),
    ShiftConfig(name="second", start=time(14), end=time(22)),
    ShiftConfig(
        name="third",
        start=time(22),
        end=time(6),
        breaks=[BreakConfig(start=time(3), minutes=30), BreakConfig(start=time(23), minutes=15)],
    ),
]


@pytest.mark.parametrize(
    ("now", "hours", "start", "end"),
    [
        # autumn: 22:00 CDT to 06:00 CST is 9 hours
        (
            "2024-11-03T12:05:00+00:00",
            9.0,
            "2024-11-03T03:00:00+00:00",
            "2024-11-03T12:00:00+00:00",
        ),
        # spring: 22:00 CST to 06:00 CDT is 7 hours
        (
            "2024-03-10T11:05:00+00:00",
            7.0,
            "2024-03-10T04:00:00+00:00",
            "2024-03-10T11:00:00+00:00",
        ),
        # an ordinary summer night
        (
            "2024-07-08T11:05:00+00:00",
            8.0,
            "2024-07-08T03:00:00+00:00",
            "2024-07-08T11:00:00+00:00",
        ),
    ],
)
def test_night_length_is_real_elapsed_time(now: str, hours: float, start: str, end: str) -> None:
    window = shift_window(SHIFTS, CHICAGO, now=datetime.fromisoformat(now), name="third")
    assert window.hours == hours
    assert (window.start, window.end) == (
        datetime.fromisoformat(start),
        datetime.fromisoformat(end),
    )
    assert window.start.tzinfo is UTC and window.end.tzinfo is UTC


def test_breaks_fall_on_the_right_day_and_leave_planned_time() -> None:
    window = shift_window(
        SHIFTS, CHICAGO, now=datetime(2024, 11, 3, 12, 5, tzinfo=UTC), name="third"
    )
    # 23:00 CDT on the 2nd, then 03:00 CST on the 3rd (after the clocks went back)
    assert window.breaks == (
        (datetime(2024, 11, 3, 4, 0, tzinfo=UTC), datetime(2024, 11, 3, 4, 15, tzinfo=UTC)),
        (datetime(2024, 11, 3, 9, 0, tzinfo=UTC), datetime(2024, 11, 3, 9, 30, tzinfo=UTC)),
    )
    planned = sum((b - a).total_seconds() for a, b in window.planned()) / 60
    assert planned == 9 * 60 - 45


def test_the_last_ended_shift_is_chosen_in_plant_time() -> None:
    # 14:30 CDT: the first shift (06:00-14:00 CDT) ended last.
    window = shift_window(SHIFTS, CHICAGO, now=datetime(2024, 7, 8, 19, 30, tzinfo=UTC))
    assert window.name == "first"
    assert window.start == datetime(2024, 7, 8, 11, 0, tzinfo=UTC)
