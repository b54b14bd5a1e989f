"""The chaos soak's node: its servers, its configuration and RepSys's processes.

On loopback, in one work folder: a Redis Sentinel group (a master, one replica, three
sentinels: ``repsys/sentinel.py``), mosquitto, PostgreSQL, the simulated Plex (``repsys
sim plex``), and every RepSys process as its own OS process through
:class:`repsys.harness.Children`: the collector, two rules workers, two Plex senders, the
runner, the scheduler and the web app. The plant is a child too (``repsys/chaos_plant.py``).

Timers a soak of minutes cannot wait for are shortened here, each said in the decision
file (0400): the sender's retry backoff, its claim TTL and ambiguous delay, Plex's
operation timeout; everything else keeps its default.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import yaml

from core import keys
from core.redis import connect_sync
from repsys import chaos_poison as poisons
from repsys.chaos_plant import GO_FILE
from repsys.chaos_schedule import OPCUA_TAGS
from repsys.harness import Children, HarnessError, http_ready
from repsys.sentinel import MASTER_NAME, SentinelGroup
from repsys.servers import (
    MosquittoServer,
    PostgresServer,
    RedisServer,
    free_port,
    free_udp_port,
    port_open,
    wait_until,
)
from repsys.soak import soak_config_data
from sim.plant.model import default_specs

PARTITIONS = 4
#: The processes' log level (INFO shows partition hand-overs when a run needs reading).
LOG_LEVEL_ENV = "REPSYS_SOAK_LOG_LEVEL"
PASSWORD_ENV = "REPSYS_SOAK_PLEX_PASSWORD"  # noqa: S105 - the variable's name, no secret
#: The long-running RepSys processes and the command each runs.
COMMANDS = {
    "collector": ["collector"],
    "rules-1": ["rules"],
    "rules-2": ["rules"],
    "plex-sender-1": ["plex-sender"],
    "plex-sender-2": ["plex-sender"],
    "runner": ["runner"],
    "scheduler": ["scheduler"],
    "web": ["web"],
}
#: Shortened timers (decision 0400): Plex's command timeout, and the sender's waits.
PLEX_TIMEOUT_S = 3.0
AMBIGUOUS_DELAY_S = 8.0
COMMIT_DELAY_S = 5.0
CLAIM_TTL_S = 30.0


def machine_ids(n: int) -> list[str]:
    return [f"cnc{301 + i}" for i in range(n)]


def input_sources(
    data: dict[str, Any], transports: dict[str, str], urls: dict[str, Any]
) -> list[dict[str, Any]]:
    """The collector's OPC UA and UDP sources for the machines ``transports`` puts there.

    OPC UA: the Kepware-style tags of :data:`repsys.chaos_schedule.OPCUA_TAGS`, published
    every 250 ms with a queue per item, so the server coalesces nothing and the plant's
    record of what it wrote is what the collector could have read; the watchdog waits 30 s
    (a stopped machine's values do not change), and the poison node
    (:mod:`repsys.chaos_poison`) is read as a float. UDP: the workcenter of the Okuma
    machine with its tools' increments.
    """
    by_id = {m["id"]: m for m in data["machines"]}
    specs = {s.id: s for s in default_specs(list(by_id))}
    out: list[dict[str, Any]] = []
    opcua = [m for m, path in transports.items() if path == "opcua"]
    if opcua:
        kep = "nsu=urn:repsys:sim:kepware;s="
        nodes = [{"machine": m, "signal": signal, "node_id": f"{kep}{m}.{m}.{tag}"}
                 for m in opcua for signal, tag in OPCUA_TAGS.items()]  # fmt: skip
        p = opcua[0]
        nodes.append({"machine": p, "signal": poisons.OPCUA_SIGNAL, "type": "float",
                      "node_id": f"{kep}{p}.{p}.{poisons.OPCUA_TAG}"})  # fmt: skip
        out.append({"type": "opcua", "name": "kepware",
                    "endpoint": f"opc.tcp://127.0.0.1:{urls['opcua']}/repsys/sim",
                    "publishing_interval_ms": 250, "sampling_interval_ms": 0,
                    "queue_size": 100, "watchdog_factor": 120, "nodes": nodes})  # fmt: skip
    for m in (m for m, path in transports.items() if path == "udp"):
        increments = {int(t.name[1:]): t.increment for t in specs[m].tools if t.increment != 1}
        wc = {"key": by_id[m]["workcenter_key"], "machine": m, "increments": increments}
        out.append({"type": "udp", "name": "okuma", "host": "127.0.0.1", "port": urls["udp"],
                    "workcenters": [wc]})  # fmt: skip
    return out


def config_data(
    machines: int, urls: dict[str, Any], transports: dict[str, str] | None = None
) -> dict[str, Any]:
    """The soak's machines and rules (``repsys soak``'s) with this node's servers.

    ``transports`` (:func:`repsys.chaos_schedule.transports`) puts some machines on OPC UA
    and UDP; the MQTT source reads the rest, and the other signals of those.
    """
    data = soak_config_data(default_specs(machine_ids(machines)))
    data["collector"]["sources"][0] = {
        **data["collector"]["sources"][0],
        "port": urls["mqtt"],
        "qos": 1,
        "client_id": "soak-collector",
    }
    # A batch is acknowledged to the broker once the replica has it: a failover loses none.
    data["collector"]["sink"] = {"wait_replicas": 1, "wait_timeout_ms": 500}
    plex_url = f"http://127.0.0.1:{urls['plex']}/DataSource/Service.asmx"
    data.update(
        {
            "redis": urls["redis"],
            "database": {"url": urls["db"], "pool_size": 5},
            "http": {"host": "127.0.0.1", "port": 0},
            "logging": {"format": "json", "level": os.environ.get(LOG_LEVEL_ENV, "WARNING")},
            "streams": {"partitions": PARTITIONS, "max_len": 1_000_000},
            "plex": {
                "environment": "simulator",
                "endpoint": plex_url,
                "username": "RepsysWs@plex.com",
                "password": {"env": PASSWORD_ENV},
                "master_data_check": "warning",
                "operation_timeout_s": PLEX_TIMEOUT_S,
                "rate_limit": {"max_wait_s": 5.0},
                "sender": {
                    "poll_interval_s": 0.5,
                    "backoff_base_s": 1.0,
                    "backoff_cap_s": 8.0,
                    "ambiguous_delay_s": AMBIGUOUS_DELAY_S,
                    "claim_ttl_s": CLAIM_TTL_S,
                },
            },
        }
    )
    data["sim"]["plant"]["mqtt"].update({"port": urls["mqtt"], "client_id": "soak-plant"})
    paths = transports or {}
    data["collector"]["sources"] += input_sources(data, paths, urls)
    data["sim"]["plant"]["opcua"] = {"enabled": "opcua" in paths.values(),
                                     "port": urls.get("opcua", 48400)}  # fmt: skip
    udp = [m for m, path in paths.items() if path == "udp"]
    if udp:
        data["sim"]["plant"]["udp"] = {"enabled": True, "port": urls["udp"], "machines": udp}
    data["sim"]["plex"] = {
        "port": urls["plex"],
        "password": {"env": PASSWORD_ENV},
        "faults": {"commit_delay_s": COMMIT_DELAY_S, "latency_s": 2.0, "retry_after_s": 1},
    }
    return data


def _as_master(server: RedisServer) -> RedisServer:
    """``server`` restarted without the ``--replicaof`` it was first started with.

    A node restarts in whatever role the sentinels last gave it, as the operator's pods do;
    restarting the first replica with its original ``--replicaof`` after it had been
    promoted made two replicas of each other and no master (a harness error, seen once).
    """
    args = list(server.extra_args)
    if "--replicaof" in args:
        i = args.index("--replicaof")
        del args[i : i + 3]
    server.extra_args = tuple(args)
    return server


class Node:
    """The servers and processes of one chaos soak."""

    def __init__(
        self, workdir: Path, machines: int, transports: dict[str, str] | None = None
    ) -> None:
        self.workdir = workdir
        self.machines = machines
        self.transports = transports or dict.fromkeys(machine_ids(machines), "mqtt")
        self.sentinel = SentinelGroup(workdir / "redis", replicas=1)
        self.mqtt = MosquittoServer(workdir / "mosquitto")
        self.pg = PostgresServer(workdir / "pg")
        (workdir / "logs").mkdir(parents=True, exist_ok=True)
        self.children = Children(workdir / "logs")
        self.config = workdir / "repsys.yaml"
        os.environ.setdefault(PASSWORD_ENV, "soak-chaos-secret")
        self.env = {PASSWORD_ENV: os.environ[PASSWORD_ENV]}
        self.ports: dict[str, int] = {}
        self.plex_port = 0
        self.db_url = ""
        self.token = ""
        self.web_url = ""

    # -- servers -----------------------------------------------------------------------

    def start_servers(self) -> None:
        self.sentinel.start()
        self.mqtt.start(timeout=60)
        self.pg.start(timeout=120)
        self.db_url = self.pg.create_database("repsys")
        self.redis: Any = connect_sync(self.sentinel.config())

    def stop(self) -> None:
        self.children.stop()
        self.pg.cleanup()  # its folder is outside ours (initdb runs as nobody under root)
        self.mqtt.stop()
        self.sentinel.stop()

    def redis_failover(self) -> None:
        """kill -9 of the master; the sentinels promote the replica; the old one rejoins."""
        old = self.sentinel.server_on(self.sentinel.master_port())
        old.kill()
        wait_until(
            lambda: self.sentinel.master_port() != old.port, timeout=60, what="Sentinel failover"
        )
        _as_master(old).start()  # empty: the sentinels make it the new master's replica

    def redis_restart_empty(self) -> None:
        """kill -9 of the master and its restart at once, empty: the replica resyncs to it."""
        master = self.sentinel.server_on(self.sentinel.master_port())
        master.kill()
        _as_master(master).start()

    def postgres_restart(self) -> None:
        """A fast shutdown (open transactions aborted, connections cut), then a start."""
        proc = self.pg.proc
        assert proc is not None
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        self.pg.proc = None
        wait_until(lambda: not port_open(self.pg.port), timeout=30, what="postgres stopped")
        self.pg.start(timeout=120)

    def mosquitto_restart(self) -> None:
        self.mqtt.restart()  # SIGTERM: the broker saves its sessions and queues first

    # -- RepSys processes --------------------------------------------------------------

    def repsys(self, *argv: str, port: int | None = None) -> list[str]:
        cmd = [sys.executable, "-m", "repsys", "-c", str(self.config)]
        return [*cmd, *(["--http-port", str(port)] if port else []), *argv]

    def write_config(self) -> None:
        self.plex_port = free_port()
        sentinels = [f"127.0.0.1:{s.port}" for s in self.sentinel.sentinels]
        redis_cfg = {
            "mode": "sentinel",
            "sentinel": {"master_name": MASTER_NAME, "sentinels": sentinels},
            "socket_timeout_s": 1.0,
        }
        urls = {"redis": redis_cfg, "db": self.db_url, "mqtt": self.mqtt.port,
                "plex": self.plex_port, "opcua": free_port(), "udp": free_udp_port()}  # fmt: skip
        self.opcua_port = int(str(urls["opcua"]))
        data = config_data(self.machines, urls, self.transports)
        web_port = free_port()
        data["web"] = {"port": web_port}
        self.web_url = f"http://127.0.0.1:{web_port}"
        self.config.write_text(yaml.safe_dump(data, sort_keys=False))

    def start_processes(self, plant: tuple[float, int] | None = None) -> None:
        """Write the configuration and start the processes (and first the plant, if given).

        The plant (``(seconds, seed)``) starts before the collector, which is not ready
        until its OPC UA server answers, and waits at its gate (:meth:`go_plant`).
        """
        self.write_config()
        env = {**os.environ, **self.env}
        subprocess.run(self.repsys("db", "upgrade"), check=True, stdout=subprocess.PIPE, env=env)
        token = self.repsys("web", "token", "add", "soak", "--roles", "operator")
        out = subprocess.run(token, check=True, stdout=subprocess.PIPE, env=env)
        self.token = out.stdout.decode().strip().splitlines()[-1]
        self.children.start("sim-plex", self.repsys("sim", "plex"), self.env)
        wait_until(lambda: port_open(self.plex_port), timeout=60, what="sim plex")
        if plant is not None:
            self.start_plant(*plant)
            if "opcua" in self.transports.values():
                wait_until(lambda: port_open(self.opcua_port), timeout=60, what="plant OPC UA")
        for name, argv in COMMANDS.items():
            self.ports[name] = free_port()
            self.children.start(name, self.repsys(*argv, port=self.ports[name]), self.env)
        deadline = time.monotonic() + 180
        for name, port in self.ports.items():
            while not http_ready(port):
                self.children.check()
                if time.monotonic() > deadline:
                    raise HarnessError(f"{name} not ready after 180 s")
                time.sleep(0.2)  # start-up poll with a deadline

    def start_plant(self, seconds: float, seed: int) -> None:
        """Start the plant's process; its clock waits for :meth:`go_plant`."""
        argv = [sys.executable, "-m", "repsys.chaos_plant", str(self.config),
                str(self.workdir), str(seconds), str(seed)]  # fmt: skip
        self.children.start("plant", argv, self.env)

    def go_plant(self) -> None:
        """Open the plant's gate: its clock starts now."""
        (self.workdir / GO_FILE).touch()

    def plex(self, path: str, body: dict[str, Any] | None = None) -> Any:
        url = f"http://127.0.0.1:{self.plex_port}{path}"
        resp = httpx.post(url, json=body, timeout=10) if body is not None else httpx.get(url)
        resp.raise_for_status()
        return resp.json()

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        url = self.db_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(url, connect_timeout=2) as conn:
            return conn.execute(query, params).fetchall()

    def streams(self) -> list[str]:
        return [keys.signal_stream(p) for p in range(PARTITIONS)]


__all__ = ["COMMANDS", "PARTITIONS", "Node", "config_data", "machine_ids"]
