"""The ``history:`` section: the signal history written by ``repsys history``."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from core.config.base import StrictModel


class HistoryConfig(StrictModel):
    """Settings of the ``history`` package. Every key has a default and a description."""

    consumer: str = Field(
        default="history-0",
        description="Consumer name; a restart with the same name resumes its pending entries.",
    )
    lease_ttl_s: float = Field(
        default=30.0,
        ge=1.0,
        description="Lease on the consumer name (one writer per name), renewed every third.",
    )
    lease_wait_s: float = Field(
        default=45.0,
        ge=0,
        description="How long a start waits for a held consumer name (a crashed "
        "predecessor's lease runs out) before it refuses (exit 3); 0 = refuse at once.",
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

    @model_validator(mode="after")
    def _lease_outlives_a_step(self) -> Self:
        # The lease is renewed between steps, and an idle step blocks for block_ms.
        if self.lease_ttl_s * 1000 < 3 * self.block_ms:
            raise ValueError("lease_ttl_s must be at least three times block_ms")
        return self
