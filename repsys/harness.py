"""Child processes of a harness: RepSys's processes started, watched, killed and stopped.

Shared by the end-to-end benchmark (``bench/e2e.py``) and the chaos soak
(``repsys/chaos.py``): each child is ``python -m repsys -c CONFIG …`` (or any argv) in a
session of its own, with its output in ``<logs>/<name>.log``, and gets SIGTERM when the
harness dies (``PR_SET_PDEATHSIG``), so no run leaves a process behind. ``kill`` is the
crash (SIGKILL to the child's process group), ``stop`` the clean end (SIGTERM, then
SIGKILL after a grace period).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


class HarnessError(RuntimeError):
    """A child process exited when it should run, or a stage did not become ready."""


def pdeathsig() -> None:
    """In the child before exec: a new session, and SIGTERM when the harness dies."""
    os.setsid()
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def http_ready(port: int) -> bool:
    """A RepSys process's ``/readyz`` answers 200 on ``port``."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Children:
    """Every child process a harness started, by name, stopped together.

    ``ends_by_itself`` names children (a load generator) whose clean exit is no failure.
    """

    logs: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    argvs: dict[str, tuple[list[str], dict[str, str] | None]] = field(default_factory=dict)
    ends_by_itself: frozenset[str] = frozenset({"plant"})

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.argvs[name] = (argv, env)
        with open(self.logs / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=pdeathsig,  # noqa: PLW1509 - the child runs only setsid and prctl
                env={**os.environ, **(env or {})},
            )

    def check(self) -> None:
        """Raise :class:`HarnessError` naming a child that exited (with its log's end)."""
        for name, proc in self.procs.items():
            if proc.poll() is not None and (
                name not in self.ends_by_itself or proc.returncode != 0
            ):
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-1500:]
                raise HarnessError(f"{name} exited with {proc.returncode}; its log ends:\n{tail}")

    def kill(self, name: str) -> None:
        """SIGKILL the child's process group (a crash); :meth:`restart` starts it again."""
        proc = self.procs.pop(name)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def restart(self, name: str) -> None:
        """Start ``name`` again with the argv and environment it was first started with."""
        argv, env = self.argvs[name]
        self.start(name, argv, env)

    def stop(self, names: list[str] | None = None, grace_s: float = 15.0) -> None:
        chosen = [n for n in (list(self.procs) if names is None else names) if n in self.procs]
        for n in chosen:
            if self.procs[n].poll() is None:
                os.killpg(self.procs[n].pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for n in chosen:
            proc = self.procs.pop(n)
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
