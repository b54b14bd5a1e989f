"""Runner processes for the crash tests: ``repsys runner`` as real child processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import REPO, TEST_MACHINES, _merge
from tests.runner.conftest import SIM_PASSWORD, SIM_PASSWORD_ENV, SIM_USER, Accounting


def write_config(
    path: Path,
    *,
    redis_url: str,
    db_url: str,
    accounting: Accounting,
    output_dir: Path,
    runner: dict[str, Any] | None = None,
) -> Path:
    data: dict[str, Any] = {
        "machines": TEST_MACHINES,
        "redis": {"url": redis_url},
        "database": {"url": db_url},
        "http": {"port": 0},
        "logging": {"format": "json", "level": "INFO"},
        "plex": {
            "endpoint": accounting.sim.url,
            "environment": "simulator",
            "username": SIM_USER,
            "password": {"env": SIM_PASSWORD_ENV},
            "operation_timeout_s": 10.0,
        },
        "runner": _merge(
            {
                "output_dir": str(output_dir),
                "lease_ttl_s": 2.0,
                "claim_idle_s": 3.0,
                "block_s": 0.5,
                "max_attempts": 10,
                "tb": {"pcns": [123681, 300758], "odbc": {"connection_string": accounting.odbc}},
            },
            runner or {},
        ),
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@dataclass
class Runners:
    """Child ``repsys runner`` processes, each logging to its own file."""

    config: Path
    logdir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, *extra: str) -> subprocess.Popen[bytes]:
        self.logdir.mkdir(parents=True, exist_ok=True)
        log = open(self.logdir / f"runner-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "repsys", "-c", str(self.config), "runner", *extra],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, SIM_PASSWORD_ENV: SIM_PASSWORD},
        )
        log.close()
        self.procs.append(proc)
        return proc

    def by_pid(self, pid: int) -> subprocess.Popen[bytes] | None:
        return next((p for p in self.procs if p.pid == pid and p.poll() is None), None)

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.procs if p.poll() is None]

    def stop_all(self) -> None:
        for proc in self.alive():
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in self.logdir.glob("*.log"))
