"""``repsys rules`` as an operator runs it: --once, backtest, a long-running worker."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from core import keys
from core.model import Signal
from repsys.servers import free_port, wait_until
from rules.replay import DEFAULT_MACHINES
from tests.conftest import REPO
from tests.rules.helpers import episodes, pending, push

P = 4
T0 = float(int(time.time()) - 600)
RULES = {
    "group_wait_s": 0,
    "machines": {"cnc120": {"tools": {"T1": {"life": 348}}}},
    "rules": [{"name": "tool_life_short", "type": "tool_life_short"}],
}


def early_change(t: float) -> list[Signal]:
    return [
        Signal("cnc120", "tool_life", 212, source_ts=t, receive_ts=t, subject="T1"),
        Signal("cnc120", "tool_life", 1, source_ts=t + 1, receive_ts=t + 1, subject="T1"),
    ]


def write_config(tmp_path: Path, redis_url: str, db_url: str, **over: Any) -> Path:
    data = {
        "machines": DEFAULT_MACHINES,
        "redis": {"url": redis_url},
        "database": {"url": db_url},
        "logging": {"format": "json", "level": "WARNING"},
        "streams": {"partitions": P},
        "rules": RULES,
        **over,
    }
    path = tmp_path / "repsys.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def repsys(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "repsys", "-c", str(config), *args],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip


def test_once_drains_commits_and_reports(
    tmp_path: Path, redis_url: str, redis_client: Any, sqlite_url: str, sqlite_engine: Any
) -> None:
    config = write_config(tmp_path, redis_url, sqlite_url)
    push(redis_client, early_change(T0), P)
    redis_client.xadd(keys.signal_stream(0), {"v": "7"})
    result = repsys(config, "rules", "--once")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "rules: 3 entries, 1 dead-lettered, 1 episodes, 1 tickets, 0 replays"
    )
    assert [e.rule for e in episodes(sqlite_engine)] == ["tool_life_short"]
    assert pending(redis_client, P) == 0


def test_a_rule_naming_an_unknown_machine_stops_the_worker_with_exit_2(
    tmp_path: Path, redis_url: str, sqlite_url: str
) -> None:
    rules = {"rules": [{"name": "downtime", "type": "downtime", "machines": ["cnc999"]}]}
    config = write_config(tmp_path, redis_url, sqlite_url, rules=rules)
    result = repsys(config, "rules", "--once")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"repsys: {config}: rules.rules[0].machines[0]: unknown machine 'cnc999'"
    )


def test_backtest_of_a_file_prints_what_would_have_fired(
    tmp_path: Path, redis_url: str, sqlite_url: str
) -> None:
    config = write_config(tmp_path, redis_url, sqlite_url)
    case = REPO / "tests" / "rules" / "cases" / "tool_life_short" / "input.jsonl"
    result = repsys(config, "rules", "backtest", "--file", str(case))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["rule", "machine", "episodes", "open", "repeats", "escalations"]
    assert lines[1].split() == ["tool_life_short", "cnc120", "2", "2", "0", "0"]
    assert "2 episodes" in lines
    assert any(
        "cnc120     tool_life_short      firing   Tool 1 on CNC 120 is not reaching tool life: "
        "changed at 212 of 348 parts" in line
        for line in lines
    )
    assert lines[-1] == "11 signals replayed, 0 entries did not decode"


def test_backtest_of_the_streams_reads_every_partition(
    tmp_path: Path, redis_url: str, redis_client: Any, sqlite_url: str
) -> None:
    config = write_config(tmp_path, redis_url, sqlite_url)
    push(redis_client, early_change(T0), P)
    redis_client.xadd(keys.signal_stream(3), {"v": "1", "m": "cnc101"})
    result = repsys(config, "rules", "backtest", "--json")
    assert result.returncode == 0, result.stderr
    [row] = [yaml.safe_load(line) for line in result.stdout.splitlines()]
    assert (row["machine"], row["rule"], row["subject"]) == ("cnc120", "tool_life_short", "T1")
    text = repsys(config, "rules", "backtest").stdout
    assert text.splitlines()[-1] == "2 signals replayed, 1 entries did not decode"
    # A backtest only reads: nothing was consumed from the streams.
    assert not redis_client.exists(keys.rules_state(keys.partition_of("cnc120", P)))


def test_worker_process_serves_metrics_and_stops_cleanly_on_sigterm(
    tmp_path: Path, redis_url: str, redis_client: Any, sqlite_url: str, sqlite_engine: Any
) -> None:
    config = write_config(tmp_path, redis_url, sqlite_url)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "repsys", "-c", str(config), "--http-port", str(port), "rules"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            try:
                return httpx.get(f"{base}/readyz").status_code == 200
            except httpx.TransportError:  # not listening yet
                return False

        wait_until(ready, timeout=30, what="rules worker ready")
        push(redis_client, early_change(T0), P)

        def evaluated() -> bool:
            body = httpx.get(f"{base}/metrics").text
            return "repsys_rules_signals_total 2.0" in body

        wait_until(evaluated, timeout=30, what="two signals evaluated")
        wait_until(lambda: len(episodes(sqlite_engine)) == 1, timeout=30, what="the episode")
        body = httpx.get(f"{base}/metrics").text
        assert "repsys_rules_partitions_owned 4.0" in body
        assert 'repsys_rules_anomalies_total{rule="tool_life_short",state="firing"} 1.0' in body
        assert httpx.get(f"{base}/healthz").status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(20)
    assert code == 0, proc.stderr.read() if proc.stderr else ""
    assert [redis_client.get(keys.rules_lease(p)) for p in range(P)] == [None] * P
    assert redis_client.zcard(keys.RULES_WORKERS) == 0
    assert pending(redis_client, P) == 0
