"""Start and stop real local servers: redis-server, mosquitto, PostgreSQL, Prometheus.

Used by ``repsys demo``, by the test fixtures and by the benchmarks, so all three run the
very same servers the same way. Each server listens on a loopback port (a free one unless
given), keeps its files in a folder of ours, runs as our child process, and is stopped
with SIGTERM then SIGKILL. Readiness is waited for by polling the port or the protocol
with a deadline, never by sleeping a fixed time.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml


class ServerError(RuntimeError):
    """A local server is missing or did not start; the message says what to install."""


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_udp_port() -> int:
    """A UDP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    check: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.05
) -> None:
    """Poll ``check`` until it returns True; raise :class:`ServerError` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise ServerError(f"{what} not ready after {timeout:.0f} s")
        time.sleep(interval)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _which(name: str, package: str, extra_dirs: tuple[str, ...] = ()) -> str:
    found = shutil.which(name)
    if found:
        return found
    for pattern in extra_dirs:
        hits = sorted(glob.glob(os.path.join(pattern, name)))
        if hits:
            return hits[-1]
    raise ServerError(f"{name} not found: install the Debian package {package} (make setup does)")


class _Process:
    """A child server process with start/stop/restart."""

    name = "server"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / f"{self.name}.log"

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        return port_open(self.port)

    def _popen_kwargs(self) -> dict[str, Any]:
        return {}

    def start(self, timeout: float = 30.0) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it until stop()
        self.proc = subprocess.Popen(
            self._argv(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C on the terminal reaches us, not the server
            **self._popen_kwargs(),
        )
        log.close()
        try:
            wait_until(self._check_alive_and_ready, timeout=timeout, what=self.name)
        except ServerError:
            self.stop()
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise ServerError(f"{self.name} did not start on port {self.port}:\n{tail}") from None

    def _check_alive_and_ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise ServerError(f"{self.name} exited with {self.proc.returncode}")
        return self._ready()

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def kill(self) -> None:
        """SIGKILL: a crash, for failure tests."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        self.stop()
        wait_until(lambda: not port_open(self.port), timeout=10, what=f"{self.name} port free")
        self.start()

    def __enter__(self) -> _Process:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RedisServer(_Process):
    """A private redis-server; ``persistent`` keeps an append-only file in ``workdir``."""

    name = "redis"

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        persistent: bool = False,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        super().__init__(workdir, port)
        self.persistent = persistent
        self.extra_args = extra_args

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _argv(self) -> list[str]:
        argv = [
            _which("redis-server", "redis-server"),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.workdir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.persistent else "no",
            "--protected-mode",
            "no",
        ]
        return [*argv, *self.extra_args]

    def _ready(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")


class MosquittoServer(_Process):
    """A private mosquitto broker with persistence (QoS 1 sessions survive restarts)."""

    name = "mosquitto"

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _argv(self) -> list[str]:
        conf = self.workdir / "mosquitto.conf"
        user = pwd.getpwuid(os.geteuid()).pw_name
        conf.write_text(
            "\n".join(
                [
                    f"listener {self.port} 127.0.0.1",
                    "allow_anonymous true",
                    "persistence true",
                    f"persistence_location {self.workdir}/",
                    "autosave_interval 1",
                    "max_queued_messages 1000000",
                    "max_inflight_messages 1000",
                    f"user {user}",
                    "log_dest stderr",
                    "log_type error",
                    "log_type warning",
                    "",
                ]
            )
        )
        return [_which("mosquitto", "mosquitto", ("/usr/sbin",)), "-c", str(conf)]


class PostgresServer(_Process):
    """A throw-away PostgreSQL cluster (initdb in ``workdir``), trust auth on loopback.

    PostgreSQL refuses to run as root, so as root the cluster belongs to ``nobody``.
    """

    name = "postgres"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self._user = "nobody" if os.geteuid() == 0 else None
        if self._user:
            # The unprivileged owner must be able to reach its folder: test and temp folders
            # are private to root (0700), so as root the cluster lives in a fresh folder of
            # its own under the system temp directory, removed by cleanup().
            workdir = Path(tempfile.mkdtemp(prefix="repsys-pg-"))
            workdir.chmod(0o755)
        super().__init__(workdir, port)
        self.datadir = self.workdir / "data"
        self.sockdir = self.workdir / "sock"

    @property
    def bindir(self) -> str:
        initdb = _which("initdb", "postgresql", ("/usr/lib/postgresql/*/bin",))
        return os.path.dirname(os.path.realpath(initdb))

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _popen_kwargs(self) -> dict[str, Any]:
        return {"user": self._user} if self._user else {}

    def _initdb(self) -> None:
        if (self.datadir / "PG_VERSION").exists():
            return
        self.datadir.mkdir(parents=True, exist_ok=True)
        self.sockdir.mkdir(parents=True, exist_ok=True)
        if self._user:
            entry = pwd.getpwnam(self._user)
            for path in (self.workdir, self.datadir, self.sockdir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            self.log_path.touch()
            os.chown(self.log_path, entry.pw_uid, entry.pw_gid)
        subprocess.run(
            [
                os.path.join(self.bindir, "initdb"),
                "-D",
                str(self.datadir),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--locale=C.UTF-8",
            ],
            check=False,
            capture_output=True,
            **self._popen_kwargs(),
        ).check_returncode()

    def cleanup(self) -> None:
        """Stop the server and remove its folder (data, socket, log)."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _argv(self) -> list[str]:
        self._initdb()
        return [
            os.path.join(self.bindir, "postgres"),
            "-D",
            str(self.datadir),
            "-p",
            str(self.port),
            "-k",
            str(self.sockdir),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=200",
        ]

    def _ready(self) -> bool:
        import psycopg  # noqa: PLC0415 - only needed where PostgreSQL runs

        try:
            with psycopg.connect(
                host="127.0.0.1",
                port=self.port,
                user="postgres",
                dbname="postgres",
                connect_timeout=2,
            ):
                return True
        except psycopg.OperationalError:
            return False

    def create_database(self, name: str) -> str:
        """Create an empty database; return its SQLAlchemy URL."""
        import psycopg  # noqa: PLC0415

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        import psycopg  # noqa: PLC0415

        with (
            psycopg.connect(
                host="127.0.0.1",
                port=self.port,
                user="postgres",
                dbname="postgres",
                autocommit=True,
            ) as conn,
            contextlib.suppress(psycopg.Error),
        ):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class PrometheusServer(_Process):
    """A private Prometheus 2 (Debian's ``prometheus``) scraping RepSys's processes.

    ``jobs`` maps a job name to its ``host:port`` targets; every target also gets
    ``labels`` (the demo and the tests set ``namespace``, so the chart's alert expressions
    select them as they select pods in Kubernetes) and its job's ``job_labels`` (the
    ``component`` label the chart's ServiceMonitor adds). ``rule_files`` are loaded as
    they are.
    Scrapes and rule evaluations every ``interval``; the data lives in ``workdir`` only.
    """

    name = "prometheus"

    def __init__(
        self,
        workdir: Path,
        jobs: dict[str, list[str]],
        *,
        labels: dict[str, str] | None = None,
        job_labels: dict[str, dict[str, str]] | None = None,
        rule_files: tuple[Path, ...] = (),
        interval: str = "5s",
        alertmanagers: tuple[str, ...] = (),
        port: int | None = None,
    ) -> None:
        super().__init__(workdir, port)
        self.jobs = jobs
        self.alertmanagers = alertmanagers
        self.labels = labels or {}
        self.job_labels = job_labels or {}
        self.rule_files = rule_files
        self.interval = interval
        self.config_path = self.workdir / "prometheus.yml"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict[str, Any]:
        alerting = {"alertmanagers": [{"static_configs": [{"targets": list(self.alertmanagers)}]}]}
        return {
            "global": {"scrape_interval": self.interval, "evaluation_interval": self.interval},
            **({"alerting": alerting} if self.alertmanagers else {}),
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": [
                {
                    "job_name": job,
                    "scrape_interval": self.interval,
                    "static_configs": [
                        {
                            "targets": targets,
                            "labels": {**self.labels, **self.job_labels.get(job, {})},
                        }
                    ],
                }
                for job, targets in self.jobs.items()
            ],
        }

    def _argv(self) -> list[str]:
        self.config_path.write_text(yaml.safe_dump(self.config()), encoding="utf-8")
        return [
            _which("prometheus", "prometheus"),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]

    def _ready(self) -> bool:
        # 503 while it replays its write-ahead log, 200 once it serves queries.
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False


class AlertmanagerServer(_Process):
    """A private Alertmanager (Debian's ``prometheus-alertmanager``), without clustering."""

    name = "alertmanager"

    def __init__(self, workdir: Path, config: dict[str, Any], port: int | None = None) -> None:
        super().__init__(workdir, port)
        self.config = config
        self.config_path = self.workdir / "alertmanager.yml"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _argv(self) -> list[str]:
        self.config_path.write_text(yaml.safe_dump(self.config), encoding="utf-8")
        return [
            _which("prometheus-alertmanager", "prometheus-alertmanager"),
            f"--config.file={self.config_path}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",  # no gossip port: several may run at once
            "--log.level=warn",
        ]

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False


class MariaDBServer(_Process):
    """A throw-away MariaDB server (Debian's ``mariadb-server``): its own datadir, loopback
    TCP only, ``root`` without a password over TCP from 127.0.0.1 (tests and benchmarks).

    ``mariadb-install-db`` makes the datadir; as root the server runs as ``mysql`` (the
    Debian package's user), which must own the datadir.
    """

    name = "mariadb"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self._user = "mysql" if os.geteuid() == 0 else None
        if self._user:
            # Like PostgreSQL's: the server's user must reach its folder.
            workdir = Path(tempfile.mkdtemp(prefix="repsys-mariadb-"))
            workdir.chmod(0o755)
        super().__init__(workdir, port)
        self.datadir = self.workdir / "data"
        self.socket = self.workdir / "mysqld.sock"

    def url(self, database: str = "mysql") -> str:
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/{database}?charset=utf8mb4"

    def _install(self) -> None:
        if (self.datadir / "mysql").exists():
            return
        install = _which("mariadb-install-db", "mariadb-server", ("/usr/bin", "/usr/sbin"))
        self.datadir.mkdir(parents=True, exist_ok=True)
        args = [install, f"--datadir={self.datadir}", "--auth-root-authentication-method=normal",
                "--skip-test-db", "--skip-name-resolve"]  # fmt: skip
        if self._user:
            entry = pwd.getpwnam(self._user)
            for path in (self.workdir, self.datadir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            self.log_path.touch()
            os.chown(self.log_path, entry.pw_uid, entry.pw_gid)
            args.append(f"--user={self._user}")
        subprocess.run(args, check=False, capture_output=True).check_returncode()

    def cleanup(self) -> None:
        """Stop the server and remove its folder."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _argv(self) -> list[str]:
        self._install()
        mariadbd = _which("mariadbd", "mariadb-server", ("/usr/sbin",))
        argv = [
            mariadbd,
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--socket={self.socket}",
            f"--pid-file={self.workdir / 'mysqld.pid'}",
            "--bind-address=127.0.0.1",
            f"--port={self.port}",
            "--skip-name-resolve",
            "--skip-log-bin",
            "--innodb-flush-log-at-trx-commit=0",
            "--innodb-buffer-pool-size=64M",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_unicode_ci",
            "--default-time-zone=+00:00",
        ]
        if self._user:
            argv.append(f"--user={self._user}")
        return argv

    def _ready(self) -> bool:
        if not port_open(self.port):
            return False
        import pymysql  # type: ignore[import-untyped]  # noqa: PLC0415 - no stubs; only where used

        try:
            pymysql.connect(host="127.0.0.1", port=self.port, user="root").close()
        except pymysql.err.OperationalError:
            return False
        return True

    def create_database(self, name: str) -> str:
        """Create an empty database (utf8mb4); return its SQLAlchemy URL."""
        import pymysql  # noqa: PLC0415 - no stubs

        conn = pymysql.connect(host="127.0.0.1", port=self.port, user="root", autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        finally:
            conn.close()
        return self.url(name)

    def drop_database(self, name: str) -> None:
        import pymysql  # noqa: PLC0415 - no stubs

        conn = pymysql.connect(host="127.0.0.1", port=self.port, user="root", autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            conn.close()
