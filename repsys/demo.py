"""``repsys demo``: the whole system on one machine, on embedded defaults.

Starts a private redis-server and mosquitto (data under ``var/demo/``), writes the demo
configuration with their ports into ``var/demo/repsys.yaml``, migrates the SQLite
database, then starts every process the packages contribute (simulators first), each as
``repsys -c var/demo/repsys.yaml --http-port N <process>`` in a session of its own.
When Debian's Prometheus is installed it scrapes them all and evaluates RepSys's own alerts
(``deploy/prometheus/repsys-rules.yaml``); the banner prints its URL beside the web app's.
Ctrl-C (or SIGTERM) stops the children with SIGTERM, waits, then SIGKILLs whatever is
left, and stops the servers: no process survives the demo.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from core.cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, CommandModule, DemoProcess
from core.config import parse_config
from core.errors import ConfigError
from repsys.servers import (
    MosquittoServer,
    PrometheusServer,
    RedisServer,
    ServerError,
    free_port,
    free_udp_port,
)

DEMO_TEMPLATE = Path(__file__).resolve().parent.parent / "config" / "demo.yaml"
#: The chart's alerts as a plain rules file (absent from an installed wheel: no Prometheus).
ALERT_RULES = Path(__file__).resolve().parent.parent / "deploy" / "prometheus" / "repsys-rules.yaml"
#: The demo's processes that are RepSys components: Prometheus scrapes these as the jobs
#: the alert rules select (``repsys-<component>`` in namespace ``repsys``).
COMPONENTS = ("collector", "rules", "plex-sender", "runner", "scheduler", "web")


class Demo:
    """Starts and stops the demo's servers and processes (also used by tests)."""

    def __init__(
        self,
        workdir: Path,
        modules: Sequence[CommandModule],
        *,
        template: Path = DEMO_TEMPLATE,
        web_port: int = 8080,
        grace_s: float = 10.0,
        prometheus: bool = True,
    ) -> None:
        self.workdir = workdir.resolve()
        self.modules = modules
        self.template = template
        self.web_port = web_port
        self.grace_s = grace_s
        self.redis = RedisServer(self.workdir / "redis", persistent=True)
        self.mosquitto = MosquittoServer(self.workdir / "mosquitto")
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.config_path = self.workdir / "repsys.yaml"
        #: Every process the demo started, "name pid" a line: what must be gone after stop().
        self.pidfile = self.workdir / "demo.pids"
        self.ports: dict[str, int] = {}
        # Fixed ports would collide when two demos (or a demo and the tests) run at once.
        self.opcua_port = free_port()
        self.plex_port = free_port()
        self.mail_port = free_port()  # the local mailbox (repsys sim mailbox), notify.smtp
        self.udp_port = free_udp_port()  # cnc130's Okuma datagrams (sim plant -> collector)
        #: Debian's Prometheus with RepSys's alerts, when it is installed (make setup does).
        self.prometheus: PrometheusServer | None = None
        self.with_prometheus = prometheus

    def processes(self) -> list[DemoProcess]:
        procs = [p for m in self.modules for p in m.demo_processes()]
        return sorted(procs, key=lambda p: p.order)

    def write_config(self) -> Path:
        text = self.template.read_text(encoding="utf-8")
        text = (
            text.replace("@REDIS_URL@", self.redis.url)
            .replace("@MQTT_PORT@", str(self.mosquitto.port))
            .replace("@WORKDIR@", str(self.workdir))
            .replace("@WEB_PORT@", str(self.web_port))
            .replace("@OPCUA_PORT@", str(self.opcua_port))
            .replace("@PLEX_PORT@", str(self.plex_port))
            .replace("@MAIL_PORT@", str(self.mail_port))
            .replace("@UDP_PORT@", str(self.udp_port))
        )
        parse_config(yaml.safe_load(text), file=str(self.template))  # fail before starting
        self.config_path.write_text(text, encoding="utf-8")
        return self.config_path

    def _repsys(self, *argv: str, http_port: int | None = None) -> list[str]:
        cmd = [sys.executable, "-m", "repsys", "-c", str(self.config_path)]
        if http_port is not None:
            cmd += ["--http-port", str(http_port)]
        return [*cmd, *argv]

    def _record_pid(self, name: str, pid: int) -> None:
        with self.pidfile.open("a", encoding="utf-8") as f:
            f.write(f"{name} {pid}\n")

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.pidfile.write_text("", encoding="utf-8")
        for server in (self.redis, self.mosquitto):
            server.start()
            assert server.proc is not None
            self._record_pid(server.name, server.proc.pid)
        self.write_config()
        subprocess.run(self._repsys("db", "upgrade"), check=True, stdout=subprocess.DEVNULL)
        logs = self.workdir / "logs"
        logs.mkdir(exist_ok=True)
        for proc in self.processes():
            if not proc.oneshot:
                continue
            argv = [a.replace("@WORKDIR@", str(self.workdir)) for a in proc.argv]
            with open(logs / f"{proc.name}.log", "ab") as log:
                subprocess.run(
                    self._repsys(*argv),
                    check=True,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **proc.env},
                )
        for proc in self.processes():
            if proc.oneshot:
                continue
            port = free_port() if proc.http else None
            if port is not None:
                self.ports[proc.name] = port
            log = open(logs / f"{proc.name}.log", "ab")  # noqa: SIM115 - child owns it
            argv = [a.replace("@WORKDIR@", str(self.workdir)) for a in proc.argv]
            self.children[proc.name] = subprocess.Popen(
                self._repsys(*argv, http_port=port),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **proc.env},
            )
            log.close()
            self._record_pid(proc.name, self.children[proc.name].pid)
        self._start_prometheus()

    def _start_prometheus(self) -> None:
        """Scrape every RepSys process and evaluate its alerts, when Prometheus is installed."""
        if not self.with_prometheus or shutil.which("prometheus") is None:
            return
        if not ALERT_RULES.exists():
            return
        jobs = {
            f"repsys-{name}": [f"127.0.0.1:{port}"]
            for name, port in self.ports.items()
            if name in COMPONENTS
        }
        self.prometheus = PrometheusServer(
            self.workdir / "prometheus",
            jobs,
            labels={"namespace": "repsys"},
            job_labels={job: {"component": job.removeprefix("repsys-")} for job in jobs},
            rule_files=(ALERT_RULES,),
        )
        self.prometheus.start()
        assert self.prometheus.proc is not None
        self._record_pid("prometheus", self.prometheus.proc.pid)

    def failed(self) -> list[str]:
        """Names of children that have exited (the demo stops when one does)."""
        return [n for n, p in self.children.items() if p.poll() is not None]

    def stop(self) -> None:
        for proc in self.children.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        for proc in self.children.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if self.prometheus is not None:
            self.prometheus.stop()
        self.mosquitto.stop()
        self.redis.stop()

    def banner(self) -> str:
        lines = [
            "RepSys demo is running. Ctrl-C stops everything.",
            f"  config       {self.config_path}",
            f"  logs         {self.workdir / 'logs'}/<process>.log",
            f"  redis        {self.redis.url}",
            f"  mqtt broker  {self.mosquitto.url}",
        ]
        if any(p.name == "web" for p in self.processes()):
            lines.append(f"  web app      http://127.0.0.1:{self.web_port}/")
        if self.prometheus is not None:
            lines.append(f"  prometheus   {self.prometheus.url}/alerts  (RepSys's own alerts)")
        else:
            lines.append("  prometheus   not installed (apt-get install prometheus): no alerts")
        for name, port in self.ports.items():
            lines.append(f"  {name:<12} metrics http://127.0.0.1:{port}/metrics")
        for proc in self.processes():
            lines.extend(line.replace("@WORKDIR@", str(self.workdir)) for line in proc.banner)
        return "\n".join(lines)


def run_demo(args: argparse.Namespace, modules: Sequence[CommandModule]) -> int:
    demo = Demo(Path(args.workdir), modules, web_port=args.web_port)
    stopping = False

    def on_signal(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        demo.start()
    except ConfigError as err:
        print(f"repsys: {err}", file=sys.stderr)
        demo.stop()
        return EXIT_CONFIG
    except (ServerError, subprocess.CalledProcessError) as err:
        print(f"repsys demo: {err}", file=sys.stderr)
        demo.stop()
        return EXIT_FAILURE
    print(demo.banner(), flush=True)
    status = EXIT_OK
    try:
        while not stopping:
            dead = demo.failed()
            if dead:
                print(
                    f"repsys demo: {', '.join(dead)} exited; see its log. Stopping.",
                    file=sys.stderr,
                )
                status = EXIT_FAILURE
                break
            time.sleep(0.2)  # the supervision poll of a foreground command, not a test wait
    finally:
        print("stopping…", flush=True)
        demo.stop()
        print("stopped.", flush=True)
    return status


def add_commands(sub: Any, modules: Sequence[CommandModule]) -> None:
    p = sub.add_parser("demo", help="run the whole system on embedded defaults")
    p.add_argument("--workdir", default="var/demo", help="where servers keep their files")
    p.add_argument("--web-port", type=int, default=8080, help="port of the web app")
    p.set_defaults(func=lambda args: run_demo(args, modules))
