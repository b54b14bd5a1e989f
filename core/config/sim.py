"""Configuration section ``sim:``: the simulated plant and the simulated Plex."""

from __future__ import annotations

from core.config.base import StrictModel
from core.config.sim_plant import SimPlantConfig
from core.config.sim_plex import SimPlexConfig


class SimConfig(StrictModel):
    """Simulators used by the demo, the tests and the benchmarks. Never used in a plant."""

    plant: SimPlantConfig = SimPlantConfig()
    plex: SimPlexConfig = SimPlexConfig()
