"""Shared fixtures: real redis-server, mosquitto and PostgreSQL on free loopback ports.

Servers start once per session (``repsys.servers``, the same launchers the demo uses) and
stop at the end. Each test gets a clean keyspace (FLUSHALL), its own PostgreSQL database,
and a config factory pointing at them. A test that breaks a server on purpose (restart,
outage) starts its own with the ``make_redis_server`` / ``make_mosquitto`` factories.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import Engine

from core.config import RepsysConfig, parse_config
from core.config.infra import DatabaseConfig
from core.db import make_engine, upgrade
from repsys.servers import MosquittoServer, PostgresServer, RedisServer

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mosquitto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoServer]:
    server = MosquittoServer(tmp_path_factory.mktemp("mosquitto"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    server = PostgresServer(tmp_path_factory.mktemp("postgres"))
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The session redis-server's URL, its keyspace empty at the start of the test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def mqtt_port(mosquitto_server: MosquittoServer) -> int:
    return mosquitto_server.port


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    url = postgres_server.create_database(name)
    yield url
    postgres_server.drop_database(name)


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[Engine]:
    """A migrated PostgreSQL database for this test."""
    engine = make_engine(DatabaseConfig(url=pg_url))
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'repsys.db'}"


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    """A migrated SQLite database file for this test."""
    engine = make_engine(DatabaseConfig(url=sqlite_url))
    upgrade(engine)
    yield engine
    engine.dispose()


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


TEST_MACHINES = [
    {
        "id": "cnc101",
        "pcn": 123681,
        "workcenter_key": 61101,
        "workcenter_code": "cnc101",
        "cell": "Knuckles",
    },
    {
        "id": "cnc102",
        "pcn": 123681,
        "workcenter_key": 61102,
        "workcenter_code": "cnc102",
        "cell": "Knuckles",
    },
    {
        "id": "cnc103",
        "pcn": 123681,
        "workcenter_key": 61324,
        "workcenter_code": "cnc103",
        "cell": "Brackets",
    },
]


@pytest.fixture
def make_config(redis_url: str, sqlite_url: str) -> Callable[..., RepsysConfig]:
    """Factory: a validated config on the test's Redis and SQLite, with overrides.

    ``make_config({"streams": {"partitions": 2}})`` merges the dict onto the base; pass
    ``database={"url": pg_url}`` to use PostgreSQL.
    """

    def factory(overrides: dict[str, Any] | None = None, **sections: Any) -> RepsysConfig:
        base: dict[str, Any] = {
            "machines": TEST_MACHINES,
            "redis": {"url": redis_url},
            "database": {"url": sqlite_url},
            "http": {"port": 0},
            "logging": {"format": "console", "level": "WARNING"},
            "streams": {"partitions": 4},
        }
        data = _merge(_merge(base, overrides or {}), sections)
        return parse_config(data, file="<test>")

    return factory


# --- MariaDB (issue 18): the MySQL-family database, beside PostgreSQL and SQLite ----------


@pytest.fixture(scope="session")
def mariadb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from repsys.servers import MariaDBServer

    server = MariaDBServer(tmp_path_factory.mktemp("mariadb"))
    server.start(timeout=60)
    yield server
    server.cleanup()


@pytest.fixture
def mysql_url(mariadb_server: Any) -> Iterator[str]:
    """A fresh, empty MariaDB database for this test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    url: str = mariadb_server.create_database(name)
    yield url
    mariadb_server.drop_database(name)


@pytest.fixture
def mysql_engine(mysql_url: str) -> Iterator[Engine]:
    """A migrated MariaDB database for this test."""
    engine = make_engine(DatabaseConfig(url=mysql_url))
    upgrade(engine)
    yield engine
    engine.dispose()
