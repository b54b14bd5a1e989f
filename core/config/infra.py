"""Configuration of the shared infrastructure: Redis, the SQL database, HTTP, logging."""

from __future__ import annotations

from typing import Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import Field, field_validator, model_validator

from core.config.base import OptionalSecret, StrictModel, url_without_password


class SentinelConfig(StrictModel):
    """A Redis Sentinel group, as the OT redis-operator creates it."""

    master_name: str = Field(default="mymaster", min_length=1)
    sentinels: list[str] = Field(min_length=1, description="host:port of each sentinel.")
    password: OptionalSecret = Field(default=None, description="Sentinel's own password.")


class RedisConfig(StrictModel):
    """Where Redis is. ``mode`` picks a plain server, a Sentinel group or a Cluster."""

    mode: Literal["standalone", "sentinel", "cluster"] = "standalone"
    url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="redis:// or rediss:// URL; for a cluster, any node's URL.",
    )
    sentinel: SentinelConfig | None = None
    password: OptionalSecret = None
    socket_timeout_s: float = Field(default=5.0, gt=0)
    health_check_interval_s: float = Field(default=15.0, ge=0)

    @field_validator("url")
    @classmethod
    def _no_password_in_url(cls, url: str) -> str:
        return url_without_password(url)

    @model_validator(mode="after")
    def _sentinel_needs_section(self) -> RedisConfig:
        if self.mode == "sentinel" and self.sentinel is None:
            raise ValueError("mode 'sentinel' needs a 'sentinel' section")
        return self


class DatabaseConfig(StrictModel):
    """The system of record: SQLite file by default, PostgreSQL in production."""

    url: str = Field(
        default="sqlite:///var/repsys.db",
        description="SQLAlchemy URL without the password, e.g. postgresql+psycopg://u@h/db.",
    )
    password: OptionalSecret = Field(default=None, description="Inserted into the URL.")
    pool_size: int = Field(default=5, ge=1)
    echo: bool = False

    @field_validator("url")
    @classmethod
    def _no_password_in_url(cls, url: str) -> str:
        return url_without_password(url)

    @model_validator(mode="after")
    def _freetds_password(self) -> DatabaseConfig:
        # Debian's FreeTDS (1.3) does not undo the ODBC escape of a "}" inside a braced
        # value (PWD={a}}b}): the server would be sent "a}}b" and refuse the login.
        query = parse_qs(urlsplit(self.url).query)
        drivers = [d.lower() for d in query.get("driver", [])]
        secret = self.password.get_secret_value() if self.password is not None else ""
        if self.url.startswith("mssql") and "freetds" in drivers and "}" in secret:
            raise ValueError(
                "password: FreeTDS cannot pass a '}' in a password; change the password "
                "or use Microsoft's ODBC driver (decision 0430)"
            )
        return self


class HttpConfig(StrictModel):
    """The /metrics, /healthz and /readyz endpoint every long-running process serves."""

    host: str = "127.0.0.1"
    port: int = Field(default=9100, ge=0, le=65535, description="0 picks a free port.")


class LoggingConfig(StrictModel):
    """Structured logs: JSON for a log pipeline, readable lines on a terminal."""

    format: Literal["auto", "json", "console"] = Field(
        default="auto", description="auto: console on a terminal, JSON otherwise."
    )
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class StreamsConfig(StrictModel):
    """Signal streams: how many partitions, how long they may grow."""

    partitions: int = Field(default=8, ge=1, le=1024)
    max_len: int = Field(
        default=1_000_000, ge=1000, description="Approximate cap per partition stream."
    )


class PlantConfig(StrictModel):
    """Plant-wide facts."""

    name: str = "Plant"
    timezone: str = Field(
        default="UTC", description="IANA zone of the plant's local clocks (MQTT TransDate)."
    )
