"""Configuration section ``sim.plex:`` (owned by ``sim/plex/``)."""

from __future__ import annotations

from core.config.base import StrictModel


class SimPlexConfig(StrictModel):
    """Settings of the simulated Plex. Every key has a default and a description."""
