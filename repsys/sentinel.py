"""A Redis Sentinel group on loopback: a master, its replicas and three sentinels.

Built from the same :class:`repsys.servers.RedisServer` the demo and the tests use: a
sentinel is ``redis-server sentinel.conf --sentinel`` with fast timings (down after 1 s),
so a failover takes seconds. Used by the deploy tests (``tests/deploy/``), the Sentinel
benchmark and the chaos soak (``repsys/chaos.py``). Every wait is a poll with a deadline;
``stop()`` ends every process it started.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import redis

from core.config.infra import RedisConfig, SentinelConfig
from repsys.servers import RedisServer, ServerError, wait_until

MASTER_NAME = "mymaster"
#: A replica's full sync starts at once instead of after the default 5 s batching delay.
FAST_SYNC = ("--repl-diskless-sync-delay", "0")


class SentinelServer(RedisServer):
    """One sentinel watching ``master_port``; fast timings so a test fails over in seconds."""

    name = "sentinel"

    def __init__(self, workdir: Path, master_port: int) -> None:
        super().__init__(workdir)
        self.master_port = master_port

    def _argv(self) -> list[str]:
        conf = self.workdir / "sentinel.conf"
        if not conf.exists():  # a restarted sentinel keeps what it learnt (it rewrites it)
            conf.write_text(
                "\n".join(
                    [
                        f"port {self.port}",
                        "bind 127.0.0.1",
                        "protected-mode no",
                        f"dir {self.workdir}",
                        f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master_port} 2",
                        f"sentinel down-after-milliseconds {MASTER_NAME} 1000",
                        f"sentinel failover-timeout {MASTER_NAME} 5000",
                        f"sentinel parallel-syncs {MASTER_NAME} 1",
                        "",
                    ]
                ),
                encoding="utf-8",
            )
        server = shutil.which("redis-server")
        if server is None:
            raise ServerError("redis-server not found: install the Debian package redis-server")
        return [server, str(conf), "--sentinel"]


def client(port: int) -> redis.Redis:
    return redis.Redis(port=port, decode_responses=True, socket_timeout=2)


class SentinelGroup:
    """A master, its replicas and three sentinels, as the OT redis-operator runs them."""

    def __init__(self, workdir: Path, replicas: int = 1) -> None:
        self.master = RedisServer(workdir / "redis-a", extra_args=FAST_SYNC)
        self.replicas = [
            RedisServer(
                workdir / f"redis-{chr(ord('b') + i)}",
                extra_args=(*FAST_SYNC, "--replicaof", "127.0.0.1", str(self.master.port)),
            )
            for i in range(replicas)
        ]
        self.sentinels = [
            SentinelServer(workdir / f"sentinel-{i}", self.master.port) for i in range(3)
        ]

    @property
    def servers(self) -> list[RedisServer]:
        return [self.master, *self.replicas]

    def start(self) -> None:
        try:
            for server in self.servers:
                server.start()
            wait_until(self._replicas_synced, timeout=20, what="replicas in sync")
            for sentinel in self.sentinels:
                sentinel.start()
            wait_until(self._sentinels_agree, timeout=30, what="sentinels discovering each other")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for server in [*self.sentinels, *self.servers]:
            server.stop()

    def _replicas_synced(self) -> bool:
        for replica in self.replicas:
            with client(replica.port) as c:
                if c.info("replication").get("master_link_status") != "up":
                    return False
        return True

    def _sentinels_agree(self) -> bool:
        for sentinel in self.sentinels:
            with client(sentinel.port) as c:
                state = c.sentinel_master(MASTER_NAME)
            if int(state["num-other-sentinels"]) != 2 or int(state["num-slaves"]) != len(
                self.replicas
            ):
                return False
        return True

    def master_port(self) -> int:
        """The master as the sentinels see it now."""
        with client(self.sentinels[0].port) as c:
            _host, port = c.sentinel_get_master_addr_by_name(MASTER_NAME)
        return int(port)

    def server_on(self, port: int) -> RedisServer:
        return next(s for s in self.servers if s.port == port)

    def failover(self) -> int:
        """Planned failover (SENTINEL FAILOVER); returns the new master's port."""
        before = self.master_port()
        with client(self.sentinels[0].port) as c:
            c.execute_command("SENTINEL", "FAILOVER", MASTER_NAME)
        wait_until(lambda: self._promoted(before), timeout=30, what="failover")
        return self.master_port()

    def _promoted(self, before: int) -> bool:
        port = self.master_port()
        if port == before:
            return False
        with client(port) as c:
            return bool(c.info("replication")["role"] == "master")

    def role(self, port: int) -> str:
        """``master`` or ``slave``: what the server on ``port`` says it is now."""
        with client(port) as c:
            return str(c.info("replication")["role"])

    def wait_replicated(self) -> None:
        """Until the current master has a replica in sync again (after a failover)."""

        def synced() -> bool:
            with client(self.master_port()) as c:
                info = c.info("replication")
            return int(info.get("connected_slaves", 0)) >= 1 and (
                info.get("slave0", {}).get("state") == "online"
            )

        wait_until(synced, timeout=30, what="a replica of the new master")

    def config(self) -> RedisConfig:
        """RepSys's Redis section for this group (what the chart writes for the operator)."""
        return RedisConfig(
            mode="sentinel",
            sentinel=SentinelConfig(
                master_name=MASTER_NAME,
                sentinels=[f"127.0.0.1:{s.port}" for s in self.sentinels],
            ),
            socket_timeout_s=1.0,
        )
