"""Fixtures of the deploy tests: a Sentinel group and a Redis Cluster of our own.

Each test that fails a master over gets a fresh group (a failover changes who is master);
the Cluster is shared by the module's tests, which only add keys. Both stop every process
they started, whatever the test did.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.topologies import RedisCluster, SentinelGroup


@pytest.fixture
def sentinel_group(tmp_path: Path) -> Iterator[SentinelGroup]:
    group = SentinelGroup(tmp_path / "sentinel")
    group.start()
    yield group
    group.stop()


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    cluster = RedisCluster(tmp_path_factory.mktemp("cluster"))
    cluster.start()
    yield cluster
    cluster.stop()
