"""Configuration section ``runner:``, validated by the model below (owned by ``runner/``)."""

from __future__ import annotations

from core.config.base import StrictModel


class RunnerConfig(StrictModel):
    """Settings of the ``runner`` package. Every key has a default and a description."""
