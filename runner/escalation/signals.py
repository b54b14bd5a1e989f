"""What the signal streams hold about a shift, for OEE.

The partition streams are capped (the collector's ``retention_s``, ``streams.max_len``),
so a stream may begin after the shift started; the signal history (``repsys history``),
when given as an archive, fills what the stream lost. This module reads, per machine,
the samples OEE needs inside the shift, the last value of each before the shift (so the
first counter rise of a shift counts and the mode at the shift start is known), and from
when each partition's stream covers the shift.
Times are the stream entry ids (when the sample entered RepSys), UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from core import keys
from core.model import DecodeError, Quality, Signal, SignalName, Value
from core.redis import RedisCommands
from core.sources import SignalArchive

#: Stream entries read per XRANGE call, and at most per report (a bound on the work).
_PAGE = 5_000
_MAX_ENTRIES = 2_000_000
#: How far back the last value before the shift is looked for.
_LOOKBACK = timedelta(hours=24)

COUNTERS = (
    SignalName.PART_COUNT.value,
    SignalName.PART_COUNT_GOOD.value,
    SignalName.PART_COUNT_BAD.value,
)
#: Signals whose last value before the shift matters (counter baselines, mode, program).
STATEFUL = frozenset({*COUNTERS, SignalName.OPERATION_MODE.value, SignalName.PROGRAM.value})
WANTED = STATEFUL | {SignalName.CYCLE_TIME.value}
#: Samples that carry no reading ("no data" is not "machine stopped").
_UNUSABLE = frozenset({Quality.BAD, Quality.NO_DATA})


@dataclass(frozen=True)
class Sample:
    at: datetime
    name: str
    value: Value


@dataclass
class MachineSignals:
    """One machine's samples in the shift (in stream order) and its values before it."""

    samples: list[Sample] = field(default_factory=list)
    before: dict[str, Value] = field(default_factory=dict)
    #: every sample of the machine in the shift, of any signal (silence detection)
    seen: int = 0


@dataclass
class SignalHistory:
    machines: dict[str, MachineSignals] = field(default_factory=dict)
    #: partition -> its oldest entry, where that is later than the shift start
    covered_from: dict[int, datetime] = field(default_factory=dict)
    truncated: bool = False

    def machine(self, machine_id: str) -> MachineSignals:
        return self.machines.get(machine_id, MachineSignals())


def _ms_time(entry_id: str) -> datetime:
    return datetime.fromtimestamp(int(entry_id.split("-", maxsplit=1)[0]) / 1000, tz=UTC)


def _decode(fields: dict[str, str]) -> Signal | None:
    try:
        return Signal.from_fields(fields)
    except DecodeError:
        return None  # the rules worker dead-letters these; the report only skips them


def _scan_window(
    client: RedisCommands,
    stream: str,
    span_ms: tuple[int, int],
    history: SignalHistory,
    budget: int,
) -> int:
    start_ms, end_ms = span_ms
    read = 0
    cursor = f"{start_ms}-0"
    while read < budget:
        page = client.xrange(stream, min=cursor, max=f"({end_ms}-0", count=_PAGE)
        for entry_id, fields in page:
            sig = _decode(fields)
            if sig is None or sig.quality in _UNUSABLE:
                continue
            m = history.machines.setdefault(sig.machine, MachineSignals())
            m.seen += 1
            if sig.name in WANTED and sig.value is not None:
                m.samples.append(Sample(_ms_time(entry_id), sig.name, sig.value))
        read += len(page)
        if len(page) < _PAGE:
            return read
        cursor = "(" + page[-1][0]
    history.truncated = True
    return read


def _scan_before(
    client: RedisCommands, stream: str, start_ms: int, machines: set[str], history: SignalHistory
) -> int:
    """Newest first before the shift, until every machine of the partition has a last
    value of each stateful signal it sends, or the look-back ends."""
    read = 0
    floor_ms = start_ms - int(_LOOKBACK.total_seconds() * 1000)
    cursor = f"({start_ms}-0"
    pending = set(machines)
    while pending and read < _MAX_ENTRIES:
        page = client.xrevrange(stream, max=cursor, min=f"{floor_ms}-0", count=_PAGE)
        for _entry_id, fields in page:
            if fields.get("n") not in STATEFUL or fields.get("m") not in machines:
                continue
            sig = _decode(fields)
            if sig is None or sig.value is None or sig.quality in _UNUSABLE:
                continue
            before = history.machines.setdefault(sig.machine, MachineSignals()).before
            before.setdefault(sig.name, sig.value)
            if before.keys() >= STATEFUL:
                pending.discard(sig.machine)
        read += len(page)
        if len(page) < _PAGE:
            break
        cursor = "(" + page[-1][0]
    return read


def read_history(
    client: RedisCommands,
    partitions: int,
    start: datetime,
    end: datetime,
    machines: list[str],
    *,
    archive: SignalArchive | None = None,
) -> SignalHistory:
    """Scan every partition stream for the window's entries (by stream id time).

    Where a stream begins after the window starts (or holds nothing at all) and
    ``archive`` (the signal history) is given, the part the stream no longer holds (and
    the look-back before the window) is read from the archive first, so the figures cover
    the whole shift or day.
    """
    history = SignalHistory()
    budget = _MAX_ENTRIES
    start_ms = int(start.timestamp() * 1000)
    end_ms = int(end.timestamp() * 1000)
    for partition in range(partitions):
        stream = keys.signal_stream(partition)
        oldest = client.xrange(stream, count=1)
        own = {m for m in machines if keys.partition_of(m, partitions) == partition}
        if oldest and int(oldest[0][0].split("-")[0]) > start_ms:
            history.covered_from[partition] = _ms_time(oldest[0][0])
            if archive is not None:
                span = (start_ms, min(end_ms, int(oldest[0][0].split("-")[0])))
                budget -= _from_archive(archive, partition, span, own, history=history)
        elif not oldest and archive is not None:
            # An empty stream (trimmed whole, or a partition at rest for longer than the
            # streams keep): the window is the history's alone. Nothing there either
            # leaves the window as before: covered, with no signal.
            history.covered_from[partition] = end
            budget -= _from_archive(archive, partition, (start_ms, end_ms), own, history=history)
            if history.covered_from.get(partition) == end:
                del history.covered_from[partition]
        budget -= _scan_before(client, stream, start_ms, own, history)
        budget -= _scan_window(client, stream, (start_ms, end_ms), history, budget)
        if budget <= 0:
            history.truncated = True
            break
    return history


def _from_archive(
    archive: SignalArchive,
    partition: int,
    span_ms: tuple[int, int],
    machines: set[str],
    *,
    history: SignalHistory,
) -> int:
    """Fill what the stream lost from the archive: the look-back and the window up to the
    stream's oldest entry (``span_ms``' end). Reads in id order, as the stream scans do.

    Entries of the very millisecond of the stream's oldest entry are left to the stream.
    """
    start_ms, upto_ms = span_ms
    floor_ms = start_ms - int(_LOOKBACK.total_seconds() * 1000)
    read = 0
    first: str | None = None
    before: dict[str, dict[str, Value]] = {}
    for entry_id, fields in archive(partition, floor_ms, upto_ms):
        read += 1
        first = first or entry_id
        sig = _decode(fields)
        if int(entry_id.split("-", maxsplit=1)[0]) < start_ms:
            if (sig is not None and sig.value is not None and sig.quality not in _UNUSABLE
                    and sig.name in STATEFUL and sig.machine in machines):  # fmt: skip
                before.setdefault(sig.machine, {})[sig.name] = sig.value  # the latest wins
            continue
        if sig is None or sig.quality in _UNUSABLE:
            continue
        m = history.machines.setdefault(sig.machine, MachineSignals())
        m.seen += 1
        if sig.name in WANTED and sig.value is not None:
            m.samples.append(Sample(_ms_time(entry_id), sig.name, sig.value))
    for machine, values in before.items():
        target = history.machines.setdefault(machine, MachineSignals()).before
        for name, value in values.items():
            target.setdefault(name, value)
    if first is not None:
        if int(first.split("-", maxsplit=1)[0]) <= start_ms:
            del history.covered_from[partition]
        else:
            history.covered_from[partition] = _ms_time(first)
    return read
