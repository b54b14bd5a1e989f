"""The tool-life history's contract: one finished tool run, and who reads them.

``history`` computes the runs from the signal history (``history/toollife.py``); the web
shows them as a page and an ``.xlsx``. ``web`` may not import ``history``, so the
composition root (``repsys/wiring.py``) hands the web a :class:`ToolLifeHistory`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ToolRun:
    """One finished run of one tool: changed at ``changed_at`` after ``quantity`` parts."""

    machine: str
    tool: str
    job: str
    changed_at: datetime
    quantity: int
    life: int | None

    @property
    def of_life(self) -> float | None:
        """The run as a fraction of the standard life (None without a standard life)."""
        return round(self.quantity / self.life, 3) if self.life else None


class ToolLifeHistory(Protocol):
    """The tool-life history report over plant dates.

    Called by a web request (in the thread pool), once per page or download; it reads the
    store each time. Raises :class:`HistoryReadError` when the history cannot be read.
    """

    def runs(self, start: date, end: date) -> list[ToolRun]:
        """Every tool change in the plant dates ``start``..``end`` (both included)."""

    def write_xlsx(self, path: Path, runs: list[ToolRun]) -> None:
        """``runs`` as the report's workbook at ``path``."""
