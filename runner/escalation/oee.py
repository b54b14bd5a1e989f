"""OEE per machine and shift, from what RepSys keeps: episodes and the signal streams.

RepSys stores no long-term signal history, so each factor says where it comes from:

* **availability** = (shift - downtime) / shift, downtime being the downtime episodes in
  the database that overlap the shift (planned stops are not known: the whole shift is
  planned time);
* **performance** = cycles x ideal cycle time / run time, cycles and cycle times read
  from the signal streams (``cycle_time`` samples in the shift); the ideal is the
  configured standard (``runner.escalation.standard_cycle_s``) or else the fastest cycle
  seen in the shift (the rules learn the same "fastest" over a longer history);
* **quality** = good / (good + bad), from the increase of ``part_count_good`` and
  ``part_count_bad`` in the shift.

The streams are capped (``streams.max_len``): when their oldest entry is younger than the
shift start, performance and quality cover only the part of the shift still in the
stream, and the row's note says from when.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

from core import keys
from core.model import DecodeError, Signal, SignalName
from runner.escalation.data import ShiftWindow

#: Stream entries read per XRANGE call, and at most per report (a bound on the work).
_PAGE = 5_000
_MAX_ENTRIES = 2_000_000
_WANTED = frozenset(
    {SignalName.CYCLE_TIME.value, SignalName.PART_COUNT_GOOD.value, SignalName.PART_COUNT_BAD.value}
)


@dataclass
class MachineSignals:
    cycle_times: list[float] = field(default_factory=list)
    good: list[float] = field(default_factory=list)
    bad: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class OeeRow:
    machine_id: str
    availability: float | None
    performance: float | None
    quality: float | None
    note: str = ""

    @property
    def oee(self) -> float | None:
        if None in (self.availability, self.performance, self.quality):
            return None
        assert self.availability is not None
        assert self.performance is not None
        assert self.quality is not None
        return self.availability * self.performance * self.quality


@dataclass
class SignalHistory:
    """Per machine, the samples of the signals OEE needs that the streams hold."""

    machines: dict[str, MachineSignals] = field(default_factory=dict)
    #: partition -> its oldest entry, where that is later than the shift start
    covered_from: dict[int, datetime] = field(default_factory=dict)
    truncated: bool = False


def _add(history: SignalHistory, fields: dict[str, str]) -> None:
    try:
        sig = Signal.from_fields(fields)
    except DecodeError:
        return
    if not isinstance(sig.value, int | float) or isinstance(sig.value, bool):
        return
    m = history.machines.setdefault(sig.machine, MachineSignals())
    value = float(sig.value)
    if sig.name == SignalName.CYCLE_TIME.value:
        m.cycle_times.append(value)
    elif sig.name == SignalName.PART_COUNT_GOOD.value:
        m.good.append(value)
    else:
        m.bad.append(value)


def _scan(
    client: Any, partition: int, window: ShiftWindow, history: SignalHistory, budget: int
) -> int:
    """Read one partition's entries of the window; returns how many were read."""
    stream = keys.signal_stream(partition)
    start_ms = int(window.start.timestamp() * 1000)
    end_ms = int(window.end.timestamp() * 1000)
    oldest = client.xrange(stream, count=1)
    if oldest:
        first_ms = int(oldest[0][0].split("-")[0])
        if first_ms > start_ms:
            history.covered_from[partition] = datetime.fromtimestamp(first_ms / 1000, tz=UTC)
    read = 0
    cursor = f"{start_ms}-0"
    while read < budget:
        page = client.xrange(stream, min=cursor, max=f"{end_ms}-0", count=_PAGE)
        for _entry_id, fields in page:
            if fields.get("n") in _WANTED:
                _add(history, fields)
        read += len(page)
        if len(page) < _PAGE:
            return read
        cursor = "(" + page[-1][0]
    history.truncated = True
    return read


def read_history(client: Any, partitions: int, window: ShiftWindow) -> SignalHistory:
    """Scan every partition stream for the shift's entries (by stream id time)."""
    history = SignalHistory()
    budget = _MAX_ENTRIES
    for partition in range(partitions):
        budget -= _scan(client, partition, window, history, budget)
        if budget <= 0:
            history.truncated = True
            break
    return history


def _increase(samples: list[float]) -> float:
    """How much a counter rose, counting a reset (a drop) as a restart from zero."""
    total = 0.0
    for before, after in pairwise(samples):
        total += after - before if after >= before else after
    return total


def oee_rows(
    machines: list[str],
    window: ShiftWindow,
    *,
    downtime_h: dict[str, float],
    history: SignalHistory,
    standard_cycle_s: dict[str, float],
    partitions: int,
) -> list[OeeRow]:
    rows = []
    shift_s = window.hours * 3600
    for machine in machines:
        down_s = min(shift_s, downtime_h.get(machine, 0.0) * 3600)
        availability = (shift_s - down_s) / shift_s if shift_s else None
        run_s = shift_s - down_s
        signals = history.machines.get(machine, MachineSignals())
        performance = None
        cycles = [c for c in signals.cycle_times if c > 0]
        if cycles and run_s > 0:
            ideal = standard_cycle_s.get(machine) or min(cycles)
            performance = min(1.0, len(cycles) * ideal / run_s)
        quality = None
        good, bad = _increase(signals.good), _increase(signals.bad)
        if good + bad > 0:
            quality = good / (good + bad)
        notes = []
        if performance is None:
            notes.append("no cycle times in the signal streams")
        if quality is None:
            notes.append("no good/bad counts in the signal streams")
        covered = history.covered_from.get(keys.partition_of(machine, partitions))
        if covered is not None and (performance is not None or quality is not None):
            notes.append(f"signals only from {covered:%H:%M} UTC")
        if history.truncated:
            notes.append("signal scan truncated")
        rows.append(OeeRow(machine, availability, performance, quality, "; ".join(notes)))
    return rows
