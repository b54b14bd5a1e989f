"""Where recorded signals come from, for replays: the contract between readers and rules.

``rules backtest`` takes any :class:`SignalSource` (the signal history's Parquet files,
for one); ``repsys/`` builds it, so ``rules`` never imports the package that reads it. A
source must pickle: the backtest sends it to one worker process per partition, where
:meth:`SignalSource.read` opens whatever it needs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from core.model import DecodeError, Signal


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
