"""The real pipeline as separate processes, for the Sentinel and Cluster end-to-end tests.

``repsys collector``, ``repsys rules`` and ``repsys plex-sender`` run as child processes
on one config file, exactly as the chart runs them; MQTT messages go in through a real
mosquitto, tickets come out in the simulated Plex (in this process). Each message carries
a probe name of its own that the threshold rule turns into an episode (machine, rule,
subject), so every message over the limit must end as exactly one ticket in Plex.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import SecretStr
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from core import keys
from core.config import Machine
from core.config.infra import RedisConfig
from core.config.sim_plex import SimPlexConfig
from core.db.schema import Episode, Ticket
from core.outbox import add_ticket
from core.redis import connect_sync
from repsys.servers import ServerError, free_port, wait_until
from sim.plex.server import PlexSimServer
from tests.conftest import REPO, TEST_MACHINES

PLEX_USER = "RepsysWs@plex.com"
PLEX_PASSWORD_ENV = "REPSYS_E2E_PLEX_PASSWORD"
PLEX_PASSWORD = "e2e-only-secret"
PROCESSES = ("collector", "rules", "plex-sender")
PARTITIONS = 4
MACHINES = [m["id"] for m in TEST_MACHINES]


def redis_section(cfg: RedisConfig) -> dict[str, Any]:
    section: dict[str, Any] = {"mode": cfg.mode, "url": cfg.url, "socket_timeout_s": 1.0}
    if cfg.sentinel is not None:
        section["sentinel"] = {
            "master_name": cfg.sentinel.master_name,
            "sentinels": list(cfg.sentinel.sentinels),
        }
    return section


class Pipeline:
    """Writes the config, starts the processes and the simulated Plex, feeds MQTT."""

    def __init__(
        self,
        workdir: Path,
        redis: RedisConfig,
        db_url: str,
        mqtt_port: int,
        processes: tuple[str, ...] = PROCESSES,
    ) -> None:
        self.workdir = workdir
        self.processes = processes
        self.mqtt_port = mqtt_port
        self.topic = f"e2e-{uuid.uuid4().hex[:8]}"
        self.db_url = db_url
        self.plex = PlexSimServer(
            SimPlexConfig.model_validate({"username": PLEX_USER}).model_copy(
                update={"password": SecretStr(PLEX_PASSWORD)}
            )
        )
        self.redis = redis
        self.config_path = workdir / "repsys.yaml"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ports = {name: free_port() for name in processes}
        self._publisher: mqtt.Client | None = None
        self.env = {**os.environ, PLEX_PASSWORD_ENV: PLEX_PASSWORD}

    def config(self) -> dict[str, Any]:
        return {
            "machines": TEST_MACHINES,
            "redis": redis_section(self.redis),
            "database": {"url": self.db_url},
            "http": {"port": 0},
            "logging": {"format": "json", "level": "INFO"},
            "streams": {"partitions": PARTITIONS},
            "collector": {
                "name": "e2e",
                "sources": [
                    {
                        "type": "mqtt",
                        "name": "line",
                        "port": self.mqtt_port,
                        "client_id": f"repsys-{self.topic}",
                        "topics": [
                            {
                                "pattern": f"{self.topic}/{{machine}}/load",
                                "fields": [
                                    {"path": "load", "signal": "spindle_load", "subject": "{probe}"}
                                ],
                            }
                        ],
                    }
                ],
                "sink": {"retry_max_s": 0.5},
                "reconnect_max_s": 1.0,
            },
            "rules": {
                "group_wait_s": 0,
                "worker": {"lease_ttl_s": 3.0, "renew_interval_s": 0.5, "worker_ttl_s": 3.0},
                "rules": [
                    {
                        "type": "threshold",
                        "name": "overload",
                        "signal": "spindle_load",
                        "above": 100,
                        "severity": "high",
                    }
                ],
            },
            "plex": {
                "environment": "simulator",
                "endpoint": self.plex.url,
                "username": PLEX_USER,
                "password": {"env": PLEX_PASSWORD_ENV},
                "master_data_check": "off",
                "rate_limit": {"per_minute": 60000, "burst": 100, "max_wait_s": 5},
                "sender": {
                    "poll_interval_s": 0.2,
                    "backoff_base_s": 0.1,
                    "backoff_cap_s": 1.0,
                    "ambiguous_delay_s": 0.0,
                },
            },
        }

    def start(self) -> None:
        self.plex.start()
        self.config_path.write_text(yaml.safe_dump(self.config()), encoding="utf-8")
        migrated = self._repsys("db", "upgrade")
        assert migrated.returncode == 0, migrated.stderr
        for name in self.processes:
            log = (self.workdir / f"{name}.log").open("ab")
            self.procs[name] = subprocess.Popen(
                [
                    *(sys.executable, "-m", "repsys", "-c", str(self.config_path)),
                    *("--http-port", str(self.ports[name]), name),
                ],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            log.close()
        for name in self.processes:
            wait_until(partial(self.ready, name), timeout=90, what=f"{name} ready", interval=0.2)

    def ready(self, name: str) -> bool:
        """The process answers /readyz with 200 (connected to what it needs)."""
        self.alive()
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.ports[name]}/readyz", timeout=2
            ) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _repsys(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "repsys", "-c", str(self.config_path), *argv],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def stop(self) -> None:
        if self._publisher is not None:
            self._publisher.loop_stop()
            self._publisher.disconnect()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.plex.stop()

    def alive(self) -> None:
        for name, proc in self.procs.items():
            assert proc.poll() is None, f"{name} exited: {self.log_tail(name)}"

    def log_tail(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")[-3000:]

    # --- input and output -----------------------------------------------------------------

    def publish(self, probes: range, load: float = 150.0) -> None:
        """One QoS 1 message per probe, machines in turn; returns once the broker has them."""
        if self._publisher is None:
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2, client_id=f"feed-{uuid.uuid4().hex[:8]}"
            )
            client.connect("127.0.0.1", self.mqtt_port)
            client.loop_start()
            self._publisher = client
        infos = []
        for i in probes:
            machine = MACHINES[i % len(MACHINES)]
            payload = json.dumps({"load": load, "probe": f"P{i:05d}"})
            infos.append(self._publisher.publish(f"{self.topic}/{machine}/load", payload, qos=1))
        for info in infos:
            info.wait_for_publish(10)

    def episode_subjects(self) -> set[str]:
        engine = create_engine(self.db_url)
        try:
            with engine.connect() as conn:
                return set(conn.scalars(select(Episode.subject)))
        finally:
            engine.dispose()

    def tickets_by_state(self) -> dict[str, int]:
        engine = create_engine(self.db_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(select(Ticket.state, func.count()).group_by(Ticket.state))
                return {state: int(n) for state, n in rows}
        finally:
            engine.dispose()

    def add_operator_tickets(self, n: int) -> None:
        """``n`` tickets as the web form files them (straight into the outbox)."""
        engine = create_engine(self.db_url)
        machine = Machine.model_validate(TEST_MACHINES[0])
        try:
            with Session(engine) as session, session.begin():
                for i in range(n):
                    add_ticket(
                        session,
                        machine=machine,
                        source="operator",
                        title=f"Engraver does not mark parts ({i})",
                        description="Reported at the tablet",
                        severity="high",
                        kind="maintenance_work_request",
                        reporter="badge-17",
                        external_ref=f"RS-OP{i:05d}",
                    )
        finally:
            engine.dispose()

    def stream_subjects(self) -> set[str]:
        """Subjects of the signals in the partition streams now (what Redis still has)."""
        client = connect_sync(self.redis)
        try:
            return {
                fields.get("s", "")
                for p in range(PARTITIONS)
                for _id, fields in client.xrange(keys.signal_stream(p))
            }
        finally:
            client.close()

    def wait_for_tickets(self, n: int, timeout: float) -> None:
        """Until ``n`` tickets are filed; otherwise fail saying where the others stopped."""

        def done() -> bool:
            self.alive()
            return self.tickets_by_state().get("filed", 0) >= n

        try:
            wait_until(done, timeout=timeout, what=f"{n} tickets filed", interval=0.5)
        except ServerError:
            wanted = {f"P{i:05d}" for i in range(n)}
            no_episode = sorted(wanted - self.episode_subjects())
            not_in_streams = sorted(set(no_episode) - self.stream_subjects())
            raise AssertionError(
                f"tickets by state {self.tickets_by_state()}; {len(no_episode)} signals "
                f"without an episode ({no_episode[:10]}), of which {len(not_in_streams)} "
                f"are not in the streams either ({not_in_streams[:10]})"
            ) from None
