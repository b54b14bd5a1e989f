"""A machine page's charts over a chosen window, longer than the streams hold if need be.

The window comes from the partition stream, read newest first (a short window from its tail).
A longer window reads the stream newest first, at most ``scan`` entries, and where that
stops before the window's start (the stream was trimmed, or the read is bounded) the
older part comes from the signal history (``core.sources.SeriesArchive``, handed over by
the composition root). The boundary is one entry-id millisecond ``b``: the stream keeps
every entry it holds, the history gives ``[start, b]`` less the samples of millisecond
``b`` the stream holds too, so no sample is charted twice or lost between them. Without
the history (not wired in, or unreadable) the chart starts where the stream does, and the
page says from when.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from core import keys
from core.logs import get_logger
from core.model import DecodeError, Signal
from core.redis import RedisCommands
from core.sources import HistoryReadError, SeriesArchive
from web.live import CHARTED_SIGNALS

log = get_logger(__name__)
#: Points drawn per chart at most (a week of one sample a second is 600,000).
MAX_POINTS = 600
Points = dict[str, list[tuple[float, float]]]


@dataclass
class Window:
    """The samples of one window, and from when they really cover it."""

    points: Points = field(default_factory=dict)
    #: Unix seconds of the oldest sample covered, when later than the window's start.
    covered_from: float | None = None
    from_history: int = 0


def _ms(entry_id: str) -> int:
    return int(entry_id.split("-", maxsplit=1)[0])


def _sample(fields: dict[str, str], machine_id: str) -> tuple[str, float, float] | None:
    if fields.get("m") != machine_id or fields.get("n") not in CHARTED_SIGNALS:
        return None
    try:
        sig = Signal.from_fields(fields)
    except DecodeError:
        return None  # best effort: the rules engine dead-letters it
    value = sig.value
    if sig.subject or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(float(value)):
        return None
    return sig.name, sig.source_ts, float(value)


def window_signals(
    redis: RedisCommands,
    machine_id: str,
    *,
    partitions: int,
    since: float,
    archive: SeriesArchive | None,
    scan: int = 20_000,
    page: int = 5_000,
) -> Window:
    """The machine's charted samples with ``source_ts >= since``, oldest first."""
    partition = keys.partition_of(machine_id, partitions)
    stream = keys.signal_stream(partition)
    since_ms = int(since * 1000)
    newest_first: list[tuple[int, str, float, float]] = []
    cursor = "+"
    read = 0
    reached = False  # the stream read went back past the window's start
    oldest_ms: int | None = None
    while read < scan:
        want = min(page, scan - read)
        got = redis.xrevrange(stream, max=cursor, count=want)
        for entry_id, fields in got:
            ms = _ms(entry_id)
            oldest_ms = ms
            if ms < since_ms:
                reached = True
                break
            found = _sample(fields, machine_id)
            if found is not None:
                newest_first.append((ms, *found))
        read += len(got)
        if reached or len(got) < want:
            break  # past the window's start, or the stream's oldest entry
        cursor = "(" + got[-1][0]
    out = Window()
    # Where the stream (or the bounded read) ends inside the window, the history gives
    # everything up to and including the millisecond of the oldest entry read.
    boundary = oldest_ms if not reached else None
    # The stream keeps every entry it holds; the history's samples of the boundary
    # millisecond that the stream also holds are left out of the history's part (a trim
    # may cut inside one millisecond, and the history writer may not have stored the rest).
    at_boundary = {(n, t, v) for ms, n, t, v in newest_first if ms == boundary}
    older: Points = {}
    if not reached and archive is not None:
        # An empty stream: the history up to now (nothing is newer).
        end_ms = boundary + 1 if boundary is not None else int(time.time() * 1000) + 1
        try:
            older = archive(partition, machine_id, CHARTED_SIGNALS, since_ms, end_ms)
        except HistoryReadError as exc:
            log.warning("machine_chart_history_failed", machine=machine_id, error=str(exc))
            older = {}
            archive = None
    for name, points in older.items():
        kept = [(t, v) for t, v in points if t >= since and (name, t, v) not in at_boundary]
        out.points.setdefault(name, []).extend(kept)
        out.from_history += len(kept)
    for _entry_ms, name, ts, value in reversed(newest_first):
        if ts >= since:
            out.points.setdefault(name, []).append((ts, value))
    if not reached and archive is None:
        # An empty stream covers nothing of the window: from now on, as it were.
        out.covered_from = boundary / 1000 if boundary is not None else time.time()
    return out


def thin(points: list[tuple[float, float]], limit: int = MAX_POINTS) -> list[tuple[float, float]]:
    """At most ``limit`` points: each bucket of the series keeps its lowest and highest
    sample (in time order), so a spike a week ago still shows on a week's chart."""
    if len(points) <= limit:
        return points
    size = math.ceil(len(points) / (limit // 2))
    out: list[tuple[float, float]] = []
    for start in range(0, len(points), size):
        bucket = points[start : start + size]
        lo = min(bucket, key=lambda p: p[1])
        hi = max(bucket, key=lambda p: p[1])
        out.extend(sorted({lo, hi}))
    return out


#: The windows the machine page offers, in minutes, with their labels.
WINDOWS: tuple[tuple[int, str], ...] = ((60, "1 h"), (480, "8 h"), (1440, "24 h"), (10080, "7 d"))
