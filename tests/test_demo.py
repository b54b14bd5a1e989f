"""``repsys demo`` starts the whole system and Ctrl-C leaves no process behind."""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis

from repsys.demo import COMPONENTS as DEMO_COMPONENTS
from repsys.servers import free_port, port_open, wait_until
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


def read_pids(workdir: Path) -> list[tuple[str, int]]:
    path = workdir / "demo.pids"
    if not path.exists():
        return []
    return [(n, int(p)) for n, p in (line.split() for line in path.read_text().splitlines())]


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its parent counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _check_prometheus(banner: str) -> None:
    """The demo's Prometheus has RepSys's alert rules and scrapes every RepSys process."""
    line = next(x for x in banner.splitlines() if x.strip().startswith("prometheus "))
    url = line.split()[1].removesuffix("/alerts")
    rules = httpx.get(f"{url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    alerts = [r["name"] for g in rules for r in g["rules"] if r["type"] == "alerting"]
    assert "RepsysCollectorIntakeStalled" in alerts and len(alerts) >= 16, alerts

    def all_up() -> bool:
        query = 'up{namespace="repsys"} == 1'
        got = httpx.get(f"{url}/api/v1/query", params={"query": query}, timeout=10).json()
        jobs = {r["metric"]["job"] for r in got["data"]["result"]}
        return jobs == {f"repsys-{c}" for c in DEMO_COMPONENTS}

    wait_until(all_up, timeout=60, what="prometheus scraping every RepSys process")


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
        # Each child binds its port a moment after the banner: poll with a deadline.
        for line in banner.splitlines():
            if "/metrics" in line:
                health = line.split()[-1].replace("/metrics", "/healthz")
                wait_until(functools.partial(_healthy, health), timeout=60, what=health)
        assert demo.poll() is None, out.read_text()
        if shutil.which("prometheus"):
            _check_prometheus(banner)

        started_pids = read_pids(workdir)
        assert all(alive(pid) for _, pid in started_pids), started_pids
        started = time.monotonic()
        demo.send_signal(signal.SIGINT)
        assert demo.wait(60) == 0, out.read_text()
        assert time.monotonic() - started < 30
        assert "stopped." in out.read_text()
        # Every process the demo started (servers rename their process title, so the
        # pidfile, not the command line, is the record) is gone, and so are their ports.
        assert {name for name, _ in started_pids} >= {"redis", "mosquitto"}
        assert [(n, p) for n, p in started_pids if alive(p)] == []
        assert processes_mentioning(str(workdir)) == []
        assert not port_open(int(redis_url.rsplit(":", 1)[1].split("/")[0]))
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
        for _, pid in read_pids(workdir):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
