"""``repsys demo`` starts the whole system and Ctrl-C leaves no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis

from repsys.servers import free_port, wait_until
from tests.conftest import REPO


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes whose argv contains ``text``."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
        except OSError:
            continue
        cmd = raw.replace(b"\0", b" ").decode(errors="replace")
        if text in cmd and state != "Z":
            found.append(f"{pid}: {cmd}")
    return found


def test_demo_runs_and_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    out = tmp_path / "demo.out"
    web_port = free_port()
    with open(out, "wb") as log:
        demo = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "repsys",
                "demo",
                "--workdir",
                str(workdir),
                "--web-port",
                str(web_port),
            ],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(
            lambda: "RepSys demo is running" in out.read_text(),
            timeout=120,
            what=f"demo banner (output: {out})",
        )
        banner = out.read_text()
        # The private Redis really serves, and every child process is alive.
        redis_url = next(
            line.split()[-1] for line in banner.splitlines() if line.strip().startswith("redis ")
        )
        assert redis.Redis.from_url(redis_url).ping()
        children = processes_mentioning(str(workdir))
        assert len(children) >= 2, children  # at least redis-server and mosquitto
        for line in banner.splitlines():
            if "/metrics" in line:
                url = line.split()[-1]
                assert httpx.get(url.replace("/metrics", "/healthz"), timeout=10).status_code == 200
        assert demo.poll() is None, out.read_text()

        started = time.monotonic()
        demo.send_signal(signal.SIGINT)
        assert demo.wait(60) == 0, out.read_text()
        assert time.monotonic() - started < 30
        assert "stopped." in out.read_text()
        assert processes_mentioning(str(workdir)) == []
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
        for line in processes_mentioning(str(workdir)):
            os.kill(int(line.split(":")[0]), signal.SIGKILL)
