"""The ``history:`` section: the signal history written by ``repsys history``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from core.config.base import StrictModel


class HistoryConfig(StrictModel):
    """Settings of the ``history`` package. Every key has a default and a description."""

    consumer: str = Field(
        default="history-0",
        description="Consumer name; a restart with the same name resumes its pending entries.",
    )
    partitions: list[int] = Field(
        default_factory=list, description="Partitions this process writes; [] = all."
    )
    prefix: str = Field(default="history", description="Key prefix of the files in the store.")
    file_rows: int = Field(
        default=50_000, ge=1, description="A file is written when it holds this many signals…"
    )
    file_age_s: float = Field(
        default=60.0, gt=0, description="…or when its oldest signal was read this long ago."
    )
    read_count: int = Field(default=5_000, ge=1, description="Entries per XREADGROUP call.")
    block_ms: int = Field(default=1000, ge=1, description="XREADGROUP BLOCK when idle.")
    compression: Literal["zstd", "snappy", "gzip", "none"] = Field(
        default="zstd", description="Parquet compression codec."
    )
    retention_days: int = Field(
        default=400, ge=1, description="Files of plant dates older than this are deleted."
    )
    backtest_processes: int = Field(
        default=0, ge=0, description="Processes of a history backtest; 0 = one per core."
    )
