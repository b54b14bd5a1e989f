"""Configuration section ``sim:``, validated by the model below (owned by ``sim/``)."""

from __future__ import annotations

from core.config.base import StrictModel


class SimConfig(StrictModel):
    """Settings of the ``sim`` package. Every key has a default and a description."""
