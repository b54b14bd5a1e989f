"""Configuration section ``collector:``, validated by the model below (owned by ``collector/``)."""

from __future__ import annotations

from core.config.base import StrictModel


class CollectorConfig(StrictModel):
    """Settings of the ``collector`` package. Every key has a default and a description."""
