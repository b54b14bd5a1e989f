"""Sources the composition root hands to packages that must not import each other.

``rules backtest --from/--to`` replays the signal history and the runner's escalation
report reads it for OEE; neither ``rules`` nor ``runner`` may import ``history``, so the
CLI puts :func:`history_source` and :func:`history_archive` on every command's arguments
(``args.history_source``, ``args.history_archive``) and those commands call them; the web
also takes :func:`tool_life_history` and :func:`history_series`
(``args.tool_life_history``, ``args.history_series``).
"""

from __future__ import annotations

from datetime import date

from core.config import RepsysConfig
from core.sources import SeriesArchive, SignalArchive, SignalSource
from core.toollife import ToolLifeHistory


def history_source(
    cfg: RepsysConfig, start: date, end: date, machines: tuple[str, ...]
) -> SignalSource:
    """The signal history of plant dates ``start``..``end`` (both included)."""
    from history.read import HistorySource  # noqa: PLC0415 - DuckDB only when used

    return HistorySource(cfg, start, end, machines)


def history_archive(cfg: RepsysConfig) -> SignalArchive:
    """The signal history as an archive of stream entries (the escalation report's OEE
    reads it where the capped stream no longer reaches back to the shift start)."""
    from history.read import HistoryArchive  # noqa: PLC0415 - DuckDB only when used

    return HistoryArchive(cfg)


def tool_life_history(cfg: RepsysConfig) -> ToolLifeHistory:
    """The tool-life history report over the signal history (the web's page reads it)."""
    from history.toollife import HistoryToolLife  # noqa: PLC0415 - DuckDB only when used

    return HistoryToolLife(cfg)


def history_series(cfg: RepsysConfig) -> SeriesArchive:
    """A machine's chart samples from the signal history (the web's long chart windows)."""
    from history.read import HistorySeries  # noqa: PLC0415 - DuckDB only when used

    return HistorySeries(cfg)
