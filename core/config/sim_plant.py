"""Configuration section ``sim.plant:`` (owned by ``sim/plant/``)."""

from __future__ import annotations

from core.config.base import StrictModel


class SimPlantConfig(StrictModel):
    """Settings of the simulated plant. Every key has a default and a description."""
