"""Sources the composition root hands to packages that must not import each other.

``rules backtest --from/--to`` replays the signal history; ``rules`` may not import
``history``, so the CLI puts :func:`history_source` on every command's arguments
(``args.history_source``) and the backtest calls it.
"""

from __future__ import annotations

from datetime import date

from core.config import RepsysConfig
from core.sources import SignalSource


def history_source(
    cfg: RepsysConfig, start: date, end: date, machines: tuple[str, ...]
) -> SignalSource:
    """The signal history of plant dates ``start``..``end`` (both included)."""
    from history.read import HistorySource  # noqa: PLC0415 - DuckDB only when used

    return HistorySource(cfg, start, end, machines)
