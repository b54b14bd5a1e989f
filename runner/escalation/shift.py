"""The shift a report covers, as UTC instants, and time spans within it.

Shifts are configured in plant time (``runner.escalation.shifts``) but every bound here is
a UTC instant: comparing two aware datetimes of the same ``ZoneInfo`` in Python uses their
wall-clock digits, so a DST night would count 8 hours whatever its real length. Converting
each bound to UTC once makes lengths real elapsed time and every database comparison an
instant comparison.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from core.config.runner import ShiftConfig

#: A half-open span of time ``[start, end)`` in UTC.
Span = tuple[datetime, datetime]


@dataclass(frozen=True)
class ShiftWindow:
    """One occurrence of a shift: its UTC bounds, its breaks, and the plant's zone."""

    name: str
    start: datetime
    end: datetime
    tz: tzinfo = UTC
    breaks: tuple[Span, ...] = field(default=())

    @property
    def seconds(self) -> float:
        """Real elapsed length (7 h or 9 h across a DST change)."""
        return (self.end - self.start).total_seconds()

    @property
    def hours(self) -> float:
        return self.seconds / 3600

    def local(self, value: datetime) -> datetime:
        return value.astimezone(self.tz)

    def planned(self, start: datetime | None = None) -> list[Span]:
        """Planned production time from ``start`` (default: the shift start): the shift
        minus its breaks."""
        begin = max(start or self.start, self.start)
        return subtract([(begin, self.end)] if begin < self.end else [], list(self.breaks))


def _instant(day: date, at: time, tz: tzinfo) -> datetime:
    # fold=0: an ambiguous wall time (01:30 on the autumn night) is its first occurrence,
    # a skipped one (02:30 on the spring night) maps forward; both are real instants.
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)


def occurrence(shift: ShiftConfig, day: date, tz: tzinfo) -> ShiftWindow:
    """The shift starting on plant-date ``day``."""
    start = _instant(day, shift.start, tz)
    end_day = day + timedelta(days=1) if shift.end <= shift.start else day
    end = _instant(end_day, shift.end, tz)
    breaks = []
    for pause in shift.breaks:
        pause_day = day + timedelta(days=1) if pause.start < shift.start else day
        begin = _instant(pause_day, pause.start, tz)
        stop = min(begin + timedelta(minutes=pause.minutes), end)
        if start <= begin < stop:
            breaks.append((begin, stop))
    return ShiftWindow(shift.name, start, end, tz, tuple(sorted(breaks)))


#: The name of a whole plant day's window (``day_window``).
DAY = "day"


def day_window(shifts: list[ShiftConfig], day: date, tz: tzinfo) -> ShiftWindow:
    """Every shift starting on plant-date ``day`` as one window: from the first shift's
    start to the last one's end; the breaks and the time between shifts are not planned.

    Raises:
        ValueError: no shift is configured.
    """
    if not shifts:
        raise ValueError("no shift is configured")
    occurrences = sorted((occurrence(s, day, tz) for s in shifts), key=lambda w: w.start)
    start = occurrences[0].start
    end = max(w.end for w in occurrences)
    worked = merge([(w.start, w.end) for w in occurrences])
    idle = subtract([(start, end)], worked)
    pauses = [b for w in occurrences for b in w.breaks]
    return ShiftWindow(DAY, start, end, tz, tuple(merge(idle + pauses)))


def shift_window(
    shifts: list[ShiftConfig],
    tz: tzinfo,
    *,
    now: datetime,
    name: str | None = None,
    end: datetime | None = None,
) -> ShiftWindow:
    """The shift to report on: the named one (ending at ``end`` or most recently), or
    else whichever shift ended last before ``now``."""
    limit = (end or now).astimezone(UTC) + timedelta(seconds=1)
    local_day = limit.astimezone(tz).date()
    best: ShiftWindow | None = None
    for shift in shifts:
        if name is not None and shift.name != name:
            continue
        for days_back in (0, 1, 2):
            window = occurrence(shift, local_day - timedelta(days=days_back), tz)
            if window.end <= limit:
                if best is None or window.end > best.end:
                    best = window
                break
    if best is None:
        raise ValueError(f"no shift named {name!r}")
    return best


def merge(spans: list[Span]) -> list[Span]:
    """Sorted, non-overlapping spans covering the same time."""
    out: list[Span] = []
    for start, end in sorted(s for s in spans if s[1] > s[0]):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def intersect(spans: list[Span], within: list[Span]) -> list[Span]:
    """The parts of ``spans`` inside ``within``."""
    out = []
    for a_start, a_end in merge(spans):
        for b_start, b_end in merge(within):
            start, end = max(a_start, b_start), min(a_end, b_end)
            if end > start:
                out.append((start, end))
    return merge(out)


def subtract(spans: list[Span], cut: list[Span]) -> list[Span]:
    """``spans`` without the time of ``cut``."""
    out = []
    for start, end in merge(spans):
        cursor = start
        for c_start, c_end in merge(cut):
            if c_end <= cursor or c_start >= end:
                continue
            if c_start > cursor:
                out.append((cursor, c_start))
            cursor = max(cursor, c_end)
        if cursor < end:
            out.append((cursor, end))
    return out


def seconds(spans: list[Span]) -> float:
    return sum((end - start).total_seconds() for start, end in merge(spans))
