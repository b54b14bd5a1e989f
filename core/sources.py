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
