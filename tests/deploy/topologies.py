"""Real Redis topologies on loopback: a Sentinel group (repsys/sentinel.py) and a Cluster.

Built from the same :class:`repsys.servers.RedisServer` the demo and the other tests use:
a Sentinel is ``redis-server sentinel.conf --sentinel``; a Cluster node is a redis-server
with ``--cluster-enabled yes``, joined by ``redis-cli --cluster create``. Every wait is a
poll with a deadline; ``stop()`` ends every process it started.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import subprocess
from pathlib import Path

from core.config.infra import RedisConfig
from repsys.sentinel import MASTER_NAME, SentinelGroup, SentinelServer
from repsys.sentinel import client as _client
from repsys.servers import RedisServer, ServerError, wait_until

__all__ = ["MASTER_NAME", "RedisCluster", "SentinelGroup", "SentinelServer", "cluster_port"]


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too, both below 65536.

    Redis refuses cluster ports above 55535; the kernel's ephemeral range is above that.
    """
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 45000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise ServerError("no free port pair for a cluster node")


class RedisCluster:
    """Three masters sharing the 16384 slots, no replicas."""

    def __init__(self, workdir: Path, masters: int = 3) -> None:
        self.nodes = [
            RedisServer(
                workdir / f"node-{i}",
                cluster_port(),
                extra_args=(
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ),
            )
            for i in range(masters)
        ]

    def start(self) -> None:
        try:
            for node in self.nodes:
                node.start()
            cli = shutil.which("redis-cli")
            if cli is None:
                raise ServerError("redis-cli not found: install the Debian package redis-tools")
            subprocess.run(
                [
                    cli,
                    "--cluster",
                    "create",
                    *[f"127.0.0.1:{n.port}" for n in self.nodes],
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                check=True,
                capture_output=True,
                timeout=60,
            )
            wait_until(self._ok, timeout=30, what="cluster state ok")
        except BaseException:
            self.stop()
            raise

    def _ok(self) -> bool:
        for node in self.nodes:
            with _client(node.port) as c:
                info = c.execute_command("CLUSTER", "INFO")
            if "cluster_state:ok" not in str(info):
                return False
        return True

    def stop(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(ServerError):
                node.stop()

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def config(self) -> RedisConfig:
        return RedisConfig(mode="cluster", url=self.url, socket_timeout_s=2.0)

    def node_of_slot(self, slot: int) -> int:
        """Port of the master serving ``slot``."""
        with _client(self.nodes[0].port) as c:
            for start, end, master, *_ in c.execute_command("CLUSTER", "SLOTS"):
                if int(start) <= slot <= int(end):
                    return int(master[1])
        raise AssertionError(f"slot {slot} is not served")
