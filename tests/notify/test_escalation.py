"""Working-time calendar and escalation levels, held to a plain minute-by-minute reference.

The reference walks UTC minutes, reads each one's plant wall-clock time and asks "is this
minute inside a worked shift and outside its breaks", written from the words of the
calendar's rules (a shift belongs to the day it starts on) with no code shared with
``core.calendar``. Generated bounds avoid 01:00-03:59 local, where the reference's wall
clock and the calendar's instants legitimately differ on DST nights.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from core.calendar import Pause, Shift, WorkCalendar
from core.config.notify import CalendarConfig, EscalationPolicy, LevelSpec
from notify.escalation import calendar_from_config, level, level_times, policy_for

ZONES = ["UTC", "America/Chicago", "Europe/Berlin"]


def _minutes(t: time) -> int:
    return t.hour * 60 + t.minute


def ref_working(
    shifts: list[Shift], workdays: set[int], holidays: set[date], tz: ZoneInfo, minute: datetime
) -> bool:
    """Is the UTC minute starting at ``minute`` working time? Wall-clock reading."""
    local = minute.astimezone(tz)
    wall = local.hour * 60 + local.minute
    for shift in shifts:
        s, e = _minutes(shift.start), _minutes(shift.end)
        crosses = e <= s
        # Which plant day's occurrence of this shift contains the minute, if any.
        if (not crosses and s <= wall < e) or (crosses and wall >= s):
            day = local.date()
        elif crosses and wall < e:
            day = local.date() - timedelta(days=1)
        else:
            continue
        if day.weekday() not in workdays or day in holidays:
            continue
        in_break = False
        for pause in shift.breaks:
            b = _minutes(pause.start)
            # Minutes since the break began, on the wall clock of the same occurrence.
            offset_from_start = (wall - s) % 1440
            b_offset = (b - s) % 1440
            if b_offset <= offset_from_start < b_offset + pause.minutes:
                in_break = True
        if not in_break:
            return True
    return False


def ref_seconds(shifts, workdays, holidays, tz, start: datetime, end: datetime) -> float:
    n = 0
    t = start
    while t < end:
        if ref_working(shifts, workdays, holidays, tz, t):
            n += 1
        t += timedelta(minutes=1)
    return n * 60.0


safe_hours = st.integers(min_value=4, max_value=23)
clock = st.builds(time, safe_hours, st.sampled_from([0, 15, 30, 45]))


@st.composite
def shift_sets(draw: st.DrawFn) -> list[Shift]:
    out = []
    for i in range(draw(st.integers(1, 3))):
        start = draw(clock)
        length_h = draw(st.integers(2, 12))
        end_total = (_minutes(start) + length_h * 60) % 1440
        end = time(end_total // 60, end_total % 60)
        if 60 <= end_total < 4 * 60:  # keep bounds out of the DST hours
            end = time(4)
        breaks = []
        if draw(st.booleans()) and length_h >= 3:
            b = (_minutes(start) + 60) % 1440
            if b >= 4 * 60:
                breaks.append(Pause(time(b // 60, b % 60), draw(st.sampled_from([15, 30]))))
        out.append(Shift(f"s{i}", start, end, tuple(breaks)))
    return out


def _non_overlapping(shifts: list[Shift]) -> bool:
    # The reference checks one shift at a time; overlapping shifts whose breaks differ
    # would be judged differently (the calendar merges spans before removing breaks).
    return len(shifts) == 1 or all(not s.breaks for s in shifts)


@settings(max_examples=60, deadline=None)
@given(
    shifts=shift_sets(),
    workdays=st.sets(st.integers(0, 6), min_size=1),
    zone=st.sampled_from(ZONES),
    start_minute=st.integers(0, 60 * 24 * 400),
    length_minutes=st.integers(0, 60 * 24 * 9),
    holiday_offsets=st.sets(st.integers(-1, 9), max_size=2),
)
def test_working_seconds_match_the_reference(
    shifts, workdays, zone, start_minute, length_minutes, holiday_offsets
) -> None:
    if not _non_overlapping(shifts):
        shifts = shifts[:1]
    tz = ZoneInfo(zone)
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=start_minute)
    end = start + timedelta(minutes=length_minutes)
    holidays = {start.astimezone(tz).date() + timedelta(days=d) for d in holiday_offsets}
    cal = WorkCalendar(shifts, workdays, holidays, tz)
    expected = ref_seconds(shifts, workdays, holidays, tz, start, end)
    assert cal.working_seconds(start, end) == expected


@settings(max_examples=40, deadline=None)
@given(
    shifts=shift_sets(),
    workdays=st.sets(st.integers(0, 6), min_size=1),
    zone=st.sampled_from(ZONES),
    start_minute=st.integers(0, 60 * 24 * 400),
    need_minutes=st.integers(1, 60 * 30),
)
def test_reached_at_is_the_first_minute_with_enough_working_time(
    shifts, workdays, zone, start_minute, need_minutes
) -> None:
    if not _non_overlapping(shifts):
        shifts = shifts[:1]
    tz = ZoneInfo(zone)
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=start_minute)
    cal = WorkCalendar(shifts, workdays, set(), tz)
    at = cal.reached_at(start, need_minutes * 60)
    # Reference: walk minutes until enough working minutes were counted.
    t, got = start, 0
    while got < need_minutes:
        if ref_working(shifts, workdays, set(), tz, t):
            got += 1
        t += timedelta(minutes=1)
    # ``t`` is the end of the minute that completed the count; no earlier instant has it.
    assert at == t


def _plant_calendar(tz: str = "America/Chicago") -> WorkCalendar:
    cfg = CalendarConfig.model_validate(
        {
            "shifts": [
                {
                    "name": "first",
                    "start": "06:00",
                    "end": "14:00",
                    "breaks": [{"start": "10:00", "minutes": 30}],
                },
                {
                    "name": "second",
                    "start": "14:00",
                    "end": "22:00",
                    "breaks": [{"start": "18:00", "minutes": 30}],
                },
                {
                    "name": "third",
                    "start": "22:00",
                    "end": "06:00",
                    "breaks": [{"start": "02:00", "minutes": 30}],
                },
            ],
            "workdays": ["mon", "tue", "wed", "thu", "fri"],
        }
    )
    return calendar_from_config(cfg, tz)


def test_friday_night_ticket_reaches_level_2_on_monday_not_saturday() -> None:
    tz = ZoneInfo("America/Chicago")
    cal = _plant_calendar()
    policy = EscalationPolicy(levels=[LevelSpec(after_filed_h=4), LevelSpec(after_filed_h=8)])
    filed = datetime(2026, 12, 4, 22, 55, tzinfo=tz)  # a Friday
    assert filed.weekday() == 4
    # Friday's night shift runs to Saturday 06:00: 7 h 05 min minus the 02:00 break.
    times = level_times(policy, cal, filed, None)
    first, second = times.reached
    assert first is not None and second is not None
    assert first.astimezone(tz) == datetime(2026, 12, 5, 3, 25, tzinfo=tz)  # Saturday morning
    assert second.astimezone(tz).date() == date(2026, 12, 7)  # Monday
    # 6 h 35 worked by Saturday 06:00; 1 h 25 more from Monday 06:00.
    assert second.astimezone(tz) == datetime(2026, 12, 7, 7, 25, tzinfo=tz)
    saturday_noon = datetime(2026, 12, 5, 12, 0, tzinfo=tz)
    sunday = datetime(2026, 12, 6, 23, 0, tzinfo=tz)
    assert level(policy, cal, filed, None, saturday_noon) == 1
    assert level(policy, cal, filed, None, sunday) == 1
    assert level(policy, cal, filed, None, second) == 2
    # Wall-clock ages (what the status follow-up did) would have said level 2 on Saturday.
    wall = EscalationPolicy(levels=policy.levels, working_time=False)
    assert level(wall, cal, filed, None, saturday_noon) == 2


def test_holiday_monday_moves_it_to_tuesday() -> None:
    tz = ZoneInfo("America/Chicago")
    cfg = CalendarConfig(holidays=[date(2026, 12, 7)])
    cal = calendar_from_config(cfg, "America/Chicago")
    policy = EscalationPolicy(levels=[LevelSpec(after_filed_h=4), LevelSpec(after_filed_h=8)])
    filed = datetime(2026, 12, 4, 22, 55, tzinfo=tz)
    second = level_times(policy, cal, filed, None).reached[1]
    assert second is not None
    # Default shifts have no breaks: 7 h 05 by Saturday 06:00, 55 min from Tuesday 06:00.
    assert second.astimezone(tz) == datetime(2026, 12, 8, 6, 55, tzinfo=tz)


def test_a_status_change_restarts_the_status_clock_only_for_levels_to_come() -> None:
    tz = ZoneInfo("UTC")
    cal = WorkCalendar([Shift("all", time(0), time(0))], range(7), (), tz)
    policy = EscalationPolicy(
        levels=[
            LevelSpec(after_filed_h=1, after_status_h=1),
            LevelSpec(after_filed_h=2, after_status_h=2),
        ]
    )
    filed = datetime(2026, 1, 5, 8, tzinfo=UTC)
    changed = filed + timedelta(hours=1, minutes=30)  # after level 1 was reached
    times = level_times(policy, cal, filed, changed)
    # Level 1's "since status" uses the same (latest) change: it is reached later now...
    assert times.reached[0] == changed + timedelta(hours=1)
    # ...so the sweep, which never lowers a level, keeps a level already written.
    assert times.reached[1] == changed + timedelta(hours=2)
    assert level(policy, cal, filed, changed, filed + timedelta(hours=3)) == 1


def test_policy_for_takes_the_first_match() -> None:
    high = EscalationPolicy(severity=["high"], levels=[LevelSpec(after_filed_h=1)])
    tooling = EscalationPolicy(category=["tooling"], levels=[LevelSpec(after_filed_h=2)])
    rest = EscalationPolicy(levels=[LevelSpec(after_filed_h=8)])
    policies = [high, tooling, rest]
    assert policy_for(policies, "tooling", "high") is high
    assert policy_for(policies, "tooling", "low") is tooling
    assert policy_for(policies, "pallet", "low") is rest
    assert policy_for([high], "pallet", "low") is None


def test_no_workdays_never_escalates() -> None:
    cal = WorkCalendar([Shift("all", time(6), time(14))], [], (), UTC)
    policy = EscalationPolicy(levels=[LevelSpec(after_filed_h=1)])
    filed = datetime(2026, 1, 5, 8, tzinfo=UTC)
    assert level_times(policy, cal, filed, None).reached == (None,)
