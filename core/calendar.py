"""The plant's working time: shifts with breaks, workdays and holidays, in plant time.

Escalation counts age in working time, so a ticket filed at 22:55 on a Friday with the
weekend off climbs on Monday, not on Saturday. Shared by every package that ages something
against the plant's clock (the escalation job, reports), hence in ``core``; it is pure.

Semantics (docs/decisions/0320-escalation-in-plant-working-time.md):

- A shift occurrence belongs to the plant date it *starts* on. It is worked when that
  date's weekday is a workday and the date is not a holiday; so Friday's night shift
  (22:00-06:00) runs into Saturday morning, and Sunday's night shift is off.
- Bounds are wall-clock times in the plant's zone, each converted to a UTC instant once
  (the first occurrence of an ambiguous time, a skipped time mapped forward), so a shift
  across a DST change lasts its real elapsed time. ``start == end`` is a 24-hour shift.
- Breaks start at a wall-clock time (before the shift start = the next day) and last
  real minutes, clipped to the shift; break time is not working time.
- Overlapping shifts count once (spans are merged).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

#: A half-open span ``[start, end)`` of UTC instants.
Span = tuple[datetime, datetime]

#: How far ahead ``reached_at`` looks before saying "never" (a calendar of holidays only).
_HORIZON_DAYS = 800


@dataclass(frozen=True)
class Pause:
    """A break inside a shift: wall-clock start, real length."""

    start: time
    minutes: float


@dataclass(frozen=True)
class Shift:
    """One shift of the plant in wall-clock time; ``end <= start`` ends the next day."""

    name: str
    start: time
    end: time
    breaks: tuple[Pause, ...] = ()


def _instant(day: date, at: time, tz: tzinfo) -> datetime:
    # fold=0: an ambiguous wall time is its first occurrence, a skipped one maps forward.
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)


def merge(spans: Iterable[Span]) -> list[Span]:
    """Sorted, non-overlapping spans covering the same instants."""
    out: list[Span] = []
    for start, end in sorted(s for s in spans if s[0] < s[1]):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def subtract(spans: list[Span], holes: list[Span]) -> list[Span]:
    """``spans`` minus ``holes`` (both merged)."""
    out: list[Span] = []
    for start, end in spans:
        cursor = start
        for h_start, h_end in holes:
            if h_end <= cursor or h_start >= end:
                continue
            if h_start > cursor:
                out.append((cursor, h_start))
            cursor = max(cursor, h_end)
        if cursor < end:
            out.append((cursor, end))
    return out


class WorkCalendar:
    """Working time of one plant.

    Args:
        shifts: the plant's shifts in wall-clock time.
        workdays: weekdays (0 = Monday) whose shifts are worked.
        holidays: plant dates whose shifts are not worked.
        tz: the plant's time zone.
    """

    def __init__(
        self,
        shifts: Sequence[Shift],
        workdays: Iterable[int],
        holidays: Iterable[date],
        tz: tzinfo,
    ) -> None:
        self.shifts = tuple(shifts)
        self.workdays = frozenset(workdays)
        self.holidays = frozenset(holidays)
        self.tz = tz

    def worked(self, day: date) -> bool:
        """Whether shifts starting on plant date ``day`` are worked."""
        return day.weekday() in self.workdays and day not in self.holidays

    def day_spans(self, day: date) -> list[Span]:
        """Working spans of the shifts starting on plant date ``day`` (breaks removed)."""
        if not self.worked(day):
            return []
        spans: list[Span] = []
        pauses: list[Span] = []
        for shift in self.shifts:
            start = _instant(day, shift.start, self.tz)
            end_day = day + timedelta(days=1) if shift.end <= shift.start else day
            end = _instant(end_day, shift.end, self.tz)
            spans.append((start, end))
            for pause in shift.breaks:
                pause_day = day + timedelta(days=1) if pause.start < shift.start else day
                begin = _instant(pause_day, pause.start, self.tz)
                stop = min(begin + timedelta(minutes=pause.minutes), end)
                if start <= begin < stop:
                    pauses.append((begin, stop))
        return subtract(merge(spans), merge(pauses))

    def _days_from(self, instant: datetime) -> Iterator[date]:
        # A shift starting the day before may still run at ``instant`` (night shifts).
        day = instant.astimezone(self.tz).date() - timedelta(days=1)
        while True:
            yield day
            day += timedelta(days=1)

    def spans(self, start: datetime, end: datetime) -> list[Span]:
        """Working spans within ``[start, end)``."""
        out: list[Span] = []
        if end <= start:
            return out
        for day in self._days_from(start):
            if _instant(day, time(0), self.tz) >= end:
                break
            for span_start, span_end in self.day_spans(day):
                s, e = max(span_start, start), min(span_end, end)
                if s < e:
                    out.append((s, e))
        return merge(out)

    def working_seconds(self, start: datetime, end: datetime) -> float:
        """Working seconds between two instants (0 when ``end <= start``)."""
        return sum((e - s).total_seconds() for s, e in self.spans(start, end))

    def reached_at(self, start: datetime, seconds: float) -> datetime | None:
        """The instant at which ``seconds`` of working time have passed since ``start``.

        ``None`` when the calendar has no working time within about two years (no
        workdays, or nothing but holidays).
        """
        if seconds <= 0:
            return start
        left = seconds
        last: datetime | None = None
        for n, day in enumerate(self._days_from(start)):
            if n > _HORIZON_DAYS:
                return None
            for span_start, e in self.day_spans(day):
                # Overlapping night shifts of adjacent days count once.
                s = max(span_start, start, last or span_start)
                if s >= e:
                    continue
                length = (e - s).total_seconds()
                if length >= left:
                    return s + timedelta(seconds=left)
                left -= length
                last = e
        return None  # pragma: no cover - the loop returns


ALWAYS = WorkCalendar([Shift("all", time(0), time(0))], range(7), (), UTC)
"""Every instant is working time: wall-clock age."""
