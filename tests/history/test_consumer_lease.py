"""One ``repsys history`` per consumer name: a second process refuses, or waits its turn.

Real processes on a real Redis: the first writer holds the name's lease; a second one
with the same ``history.consumer`` exits 3 with the holder named (``lease_wait_s: 0``), or
waits and takes over when the first stops. Every signal ends in exactly one file.
"""

from __future__ import annotations

import signal as signals
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from core import keys
from core.lifecycle import Stopper
from history.lease import ConsumerLease
from repsys.servers import wait_until
from tests.conftest import REPO, TEST_MACHINES
from tests.history.test_writer import P, make_signals, stored_ids, stream_ids, writer_for
from tests.rules.helpers import push

CONSUMER = "history-0"


def _config(tmp_path: Path, redis_url: str, **history: Any) -> list[str]:
    config = tmp_path / "repsys.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "machines": TEST_MACHINES,
                "redis": {"url": redis_url},
                "database": {"url": f"sqlite:///{tmp_path / 'x.db'}"},
                "http": {"port": 0},
                "streams": {"partitions": P},
                "storage": {"type": "local", "root": str(tmp_path / "store")},
                "history": {"file_age_s": 0.2, "block_ms": 200, "lease_ttl_s": 3, **history},
            }
        )
    )
    return [sys.executable, "-m", "repsys", "-c", str(config), "history"]


def _holder(redis_client: Any) -> str:
    return str(redis_client.get(keys.history_consumer_lease(CONSUMER)) or "")


def _start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)


def _stop(*procs: subprocess.Popen[bytes]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_a_second_writer_with_the_same_consumer_refuses_to_start(
    tmp_path: Path, redis_url: str, redis_client: Any
) -> None:
    argv = _config(tmp_path, redis_url, lease_wait_s=0)
    first = _start(argv, tmp_path / "first.log")
    try:
        wait_until(lambda: f":{first.pid}:" in _holder(redis_client), timeout=60,
                   what="the first writer's lease")  # fmt: skip
        second = subprocess.run(argv, cwd=REPO, capture_output=True, timeout=60, text=True)
        assert second.returncode == 3, second.stdout + second.stderr
        assert "history_consumer_taken" in second.stdout + second.stderr
        assert "history consumer 'history-0' is held by " in second.stderr
        assert f":{first.pid}:" in second.stderr  # the holder, named: host, pid, token
        # The first one goes on alone: every signal once.
        push(redis_client, make_signals(3000, seed=11), P)
        wait_until(lambda: len(stored_ids(tmp_path / "store")) >= 3000, timeout=60,
                   what="the first writer storing")  # fmt: skip
        first.send_signal(signals.SIGTERM)
        assert first.wait(30) == 0
    finally:
        _stop(first)
    got = stored_ids(tmp_path / "store")
    assert len(got) == len(set(got)) == 3000
    assert set(got) == stream_ids(redis_client)
    assert _holder(redis_client) == ""  # given back on a clean stop


def test_a_waiting_writer_takes_over_when_the_first_stops(
    tmp_path: Path, redis_url: str, redis_client: Any
) -> None:
    argv = _config(tmp_path, redis_url, lease_wait_s=60)
    first = _start(argv, tmp_path / "first.log")
    second: subprocess.Popen[bytes] | None = None
    try:
        wait_until(lambda: f":{first.pid}:" in _holder(redis_client), timeout=60,
                   what="the first writer's lease")  # fmt: skip
        push(redis_client, make_signals(2000, seed=12), P)
        second = _start(argv, tmp_path / "second.log")
        wait_until(lambda: "history_consumer_busy" in (tmp_path / "second.log").read_text(),
                   timeout=60, what="the second writer waiting")  # fmt: skip
        assert f":{first.pid}:" in _holder(redis_client)
        first.send_signal(signals.SIGTERM)
        assert first.wait(30) == 0
        wait_until(lambda: f":{second.pid}:" in _holder(redis_client), timeout=30,
                   what="the second writer's lease")  # fmt: skip
        push(redis_client, make_signals(2000, seed=13), P)
        wait_until(lambda: len(stored_ids(tmp_path / "store")) >= 4000, timeout=60,
                   what="the second writer storing")  # fmt: skip
        second.send_signal(signals.SIGTERM)
        assert second.wait(30) == 0
    finally:
        _stop(first, *([second] if second else []))
    got = stored_ids(tmp_path / "store")
    assert len(got) == len(set(got)) == 4000
    assert set(got) == stream_ids(redis_client)


def test_a_writer_whose_lease_was_taken_stops_without_storing(
    make_config: Any, redis_url: str, redis_client: Any, tmp_path: Path
) -> None:
    cfg = make_config(
        {"streams": {"partitions": P}, "storage": {"type": "local", "root": str(tmp_path)}}
    )
    now = [0.0]
    writer = writer_for(cfg, redis_url)
    lease = ConsumerLease(writer.redis, CONSUMER, ttl_s=3, clock=lambda: now[0])
    lease.acquire(wait_s=0)
    assert lease.keep()
    # Paused past its TTL: the lease ran out and another process took the name.
    redis_client.set(keys.history_consumer_lease(CONSUMER), "other:1:x")
    now[0] = 5.0
    push(redis_client, make_signals(100, seed=14), P)
    assert writer.run(Stopper(), keep=lease.keep) is False
    assert stored_ids(tmp_path) == []  # nothing stored: the entries wait for the new holder
