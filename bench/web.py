"""Web app: requests per second of the pages a plant leans on, beside /healthz.

A plant has hundreds of machines and every supervisor's wall screen reloads the machines
board every few seconds, so the board for 300 machines (live state from Redis) is the
page that must stay cheap; filing a ticket (an INSERT into the outbox) is the write path.
The baseline is /healthz on the same server in the same run: the cost of uvicorn, the
middleware and the HTTP client with no work behind it. Figures are ratios to it.

Everything runs on loopback: a private redis-server, a SQLite file, ``repsys web`` as its
own process (so the clients here do not share its interpreter lock), 8 client threads
for a fixed few seconds per figure.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from core import keys
from core.config import parse_config
from core.config.infra import DatabaseConfig
from core.db import make_engine, session_factory, upgrade
from core.redis import connect_sync
from repsys.servers import RedisServer, free_port, port_open, wait_until
from web import accounts

MACHINES = 300
CLIENTS = 8
SECONDS = 4.0


def _config(redis_url: str, db_url: str) -> dict[str, Any]:
    machines = [
        {
            "id": f"cnc{i}",
            "pcn": 123681,
            "workcenter_key": 60000 + i,
            "workcenter_code": f"cnc{i}",
            "cell": f"Cell {i // 25}",
        }
        for i in range(MACHINES)
    ]
    return {
        "machines": machines,
        "redis": {"url": redis_url},
        "database": {"url": db_url},
        "http": {"port": 0},
        "logging": {"format": "json", "level": "WARNING"},
        "web": {"cookie_secure": False},
    }


def _rate(base: str, token: str, method: str, path: str, body: Any = None) -> float:
    """Requests per second over SECONDS with CLIENTS threads; every answer must be 2xx."""
    count = [0] * CLIENTS
    failures: list[str] = []
    deadline = time.monotonic() + SECONDS

    def work(i: int) -> None:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as c:
            while time.monotonic() < deadline:
                resp = c.request(method, path, json=body)
                if resp.status_code >= 300:
                    failures.append(f"{resp.status_code} {resp.text[:200]}")
                    return
                count[i] += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(CLIENTS)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise RuntimeError(f"{method} {path}: {failures[0]}")
    return sum(count) / (time.monotonic() - started)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        redis_server = RedisServer(Path(tmp) / "redis")
        redis_server.start()
        db_url = f"sqlite:///{tmp}/repsys.db"
        data = _config(redis_server.url, db_url)
        cfg = parse_config(data)
        cfg_path = Path(tmp) / "repsys.yaml"
        cfg_path.write_text(yaml.safe_dump(data), encoding="utf-8")
        engine = make_engine(DatabaseConfig(url=db_url))
        upgrade(engine)
        with session_factory(engine).begin() as s:
            _, token = accounts.add_token(s, name="bench", roles=["supervisor"])
        engine.dispose()
        redis = connect_sync(cfg.redis)
        now = time.time()
        pipe = redis.pipeline(transaction=False)
        for i in range(MACHINES):
            pipe.hset(
                keys.machine_live(f"cnc{i}"),
                mapping={
                    "state": ("running", "idle", "down")[i % 3],
                    "state_since": now - 600,
                    "updated_at": now,
                    "program": f"O{1000 + i}",
                    "part_count": str(i * 7),
                    "spindle_load": str(i % 90),
                },
            )
        pipe.execute()
        redis.close()
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "repsys", "-c", str(cfg_path), "web", "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until(lambda: port_open(port), timeout=60, what="repsys web")
            base = f"http://127.0.0.1:{port}"
            ticket = {"machine": "cnc7", "category": "tool", "description": "bench", "badge": "1"}
            baseline = _rate(base, token, "GET", "/healthz")
            figures = [
                (
                    f"machines board, {MACHINES} machines",
                    _rate(base, token, "GET", "/boards/machines"),
                ),
                (
                    f"GET /api/v1/machines, {MACHINES}",
                    _rate(base, token, "GET", "/api/v1/machines"),
                ),
                (
                    "POST /api/v1/tickets (outbox insert)",
                    _rate(base, token, "POST", "/api/v1/tickets", ticket),
                ),
            ]
            print(f"baseline GET /healthz: {baseline:8.0f} req/s ({CLIENTS} clients)")
            for name, rate in figures:
                print(f"{name:<40} {rate:8.0f} req/s  = {rate / baseline:5.2f} x baseline")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
            redis_server.stop()
