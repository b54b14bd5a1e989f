"""The whole configuration file: one section per package."""

from __future__ import annotations

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from core.config.base import StrictModel
from core.config.collector import CollectorConfig, unknown_machine_error
from core.config.history import HistoryConfig
from core.config.infra import (
    DatabaseConfig,
    HttpConfig,
    LoggingConfig,
    PlantConfig,
    RedisConfig,
    StreamsConfig,
)
from core.config.machines import Machine
from core.config.notify import NotifyConfig
from core.config.plex import PlexConfig
from core.config.rules import RulesConfig
from core.config.runner import RunnerConfig
from core.config.sim import SimConfig
from core.config.storage import StorageConfig
from core.config.web import WebConfig


def _at(loc: tuple[str | int, ...], message: str) -> ValidationError:
    """A validation error reported at ``loc`` (a cross-section check of the root model)."""
    err = PydanticCustomError("cross_section", message)
    return ValidationError.from_exception_data(
        "RepsysConfig", [InitErrorDetails(type=err, loc=loc, input=None)]
    )


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
    notify: NotifyConfig = NotifyConfig()
    storage: StorageConfig = StorageConfig()
    history: HistoryConfig = HistoryConfig()

    @field_validator("machines")
    @classmethod
    def _machine_ids_unique(cls, machines: list[Machine]) -> list[Machine]:
        seen: set[str] = set()
        for machine in machines:
            if machine.id in seen:
                raise ValueError(f"machine id {machine.id!r} appears twice")
            seen.add(machine.id)
        return machines

    @model_validator(mode="after")
    def _machine_refs_known(self) -> RepsysConfig:
        # Sections name machines by id only; an id missing from `machines:` is reported at
        # the exact key that names it (collector.sources[0].nodes[3].machine).
        known = {m.id for m in self.machines}
        for loc, machine_id in [*self.collector.machine_refs(), *self.sim.plant.machine_refs()]:
            if machine_id not in known:
                raise unknown_machine_error(loc, machine_id)
        return self

    @model_validator(mode="after")
    def _receivers_known(self) -> RepsysConfig:
        # Routes name receivers by name; one missing is reported at the key that names it.
        for loc, reason in self.notify.reference_errors():
            raise _at(("notify", *loc), reason)
        return self

    @model_validator(mode="after")
    def _wait_fits_redis(self) -> RepsysConfig:
        # WAIT confirms replication of one connection's writes: a Cluster writes a batch
        # over one connection per master, so it cannot confirm a batch; and a WAIT longer
        # than the socket timeout would be cut off as a Redis outage.
        sink = self.collector.sink
        if sink.wait_replicas and self.redis.mode == "cluster":
            raise _at(
                ("collector", "sink", "wait_replicas"),
                "WAIT cannot confirm a batch with redis.mode cluster: set 0",
            )
        if sink.wait_replicas and sink.wait_timeout_ms >= self.redis.socket_timeout_s * 1000:
            raise _at(
                ("collector", "sink", "wait_timeout_ms"), "must be below redis.socket_timeout_s"
            )
        return self

    def machine(self, machine_id: str) -> Machine | None:
        """The configured machine with this id, or ``None``."""
        for machine in self.machines:
            if machine.id == machine_id:
                return machine
        return None
