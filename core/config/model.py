"""The whole configuration file: one section per package."""

from __future__ import annotations

from pydantic import Field, field_validator

from core.config.base import StrictModel
from core.config.collector import CollectorConfig
from core.config.infra import (
    DatabaseConfig,
    HttpConfig,
    LoggingConfig,
    PlantConfig,
    RedisConfig,
    StreamsConfig,
)
from core.config.machines import Machine
from core.config.plex import PlexConfig
from core.config.rules import RulesConfig
from core.config.runner import RunnerConfig
from core.config.sim import SimConfig
from core.config.web import WebConfig


class RepsysConfig(StrictModel):
    """Root of ``repsys.yaml``. Every section has defaults; an empty file is valid."""

    plant: PlantConfig = PlantConfig()
    machines: list[Machine] = Field(default_factory=list)
    redis: RedisConfig = RedisConfig()
    database: DatabaseConfig = DatabaseConfig()
    http: HttpConfig = HttpConfig()
    logging: LoggingConfig = LoggingConfig()
    streams: StreamsConfig = StreamsConfig()
    collector: CollectorConfig = CollectorConfig()
    rules: RulesConfig = RulesConfig()
    plex: PlexConfig = PlexConfig()
    runner: RunnerConfig = RunnerConfig()
    web: WebConfig = WebConfig()
    sim: SimConfig = SimConfig()

    @field_validator("machines")
    @classmethod
    def _machine_ids_unique(cls, machines: list[Machine]) -> list[Machine]:
        seen: set[str] = set()
        for machine in machines:
            if machine.id in seen:
                raise ValueError(f"machine id {machine.id!r} appears twice")
            seen.add(machine.id)
        return machines

    def machine(self, machine_id: str) -> Machine | None:
        """The configured machine with this id, or ``None``."""
        for machine in self.machines:
            if machine.id == machine_id:
                return machine
        return None
