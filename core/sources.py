"""Where recorded signals come from, for replays: the contract between readers and rules.

``rules backtest`` takes any :class:`SignalSource` (the signal history's Parquet files,
for one); ``repsys/`` builds it, so ``rules`` never imports the package that reads it. A
source must pickle: the backtest sends it to one worker process per partition, where
:meth:`SignalSource.read` opens whatever it needs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from core.errors import RepsysError
from core.model import DecodeError, Signal


class HistoryReadError(RepsysError):
    """The signal history could not be read (its store or its files)."""

    reason = "history_unavailable"


class SignalSource(Protocol):
    """Recorded signals, partition by partition, each in stream order."""

    def partitions(self) -> list[int]:
        """The partitions that hold signals for the requested window."""

    def read(self, partition: int) -> Iterator[Signal | DecodeError]:
        """One partition's signals in stream-id order (a bad row as its DecodeError)."""


class SignalArchive(Protocol):
    """Stream entries kept after the stream let them go (the signal history).

    Called with a partition and a span of entry-id times (Unix ms, ``start`` included,
    ``end`` excluded); yields ``(entry id, fields)`` in id order, as ``XRANGE`` would have.
    """

    def __call__(
        self, partition: int, start_ms: int, end_ms: int
    ) -> Iterator[tuple[str, dict[str, str]]]:
        """The archived entries of ``partition`` in the span."""


class SeriesArchive(Protocol):
    """Numeric samples of one machine kept after the streams let them go (the history).

    Called by a web request for a chart: the samples of ``names`` (no subject, a number)
    with an entry-id time in ``[start_ms, end_ms)``, each as ``(source_ts, value)`` in id
    order. Raises ``core.toollife.HistoryReadError`` when the history cannot be read.
    """

    def __call__(
        self, partition: int, machine: str, names: tuple[str, ...], start_ms: int, end_ms: int
    ) -> dict[str, list[tuple[float, float]]]:
        """The machine's samples per signal name."""
