"""``rules backtest --from --to`` over the signal history gives the live engine's episodes.

The same signals go through the live worker (``repsys rules --once``, episodes in the
database) and, after ``repsys history --burst``, through the partition-parallel backtest
over the Parquet files (two processes): the episodes must be identical.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from core.model import Signal
from rules.replay import read_items
from tests.conftest import REPO
from tests.rules.helpers import episodes, push
from tests.rules.plant_backtest import generate

P = 4


def repsys(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "repsys", "-c", str(config), *args],
        capture_output=True, text=True, cwd=REPO, timeout=240, check=False,
    )  # fmt: skip


def _key(machine: str, rule: str, subject: str, started: datetime, state: str) -> tuple[Any, ...]:
    return (
        machine,
        rule,
        subject,
        started.astimezone(UTC).isoformat(timespec="milliseconds"),
        state,
    )


def test_backtest_over_history_gives_the_live_engines_episodes(
    tmp_path: Path, redis_url: str, redis_client: Any, sqlite_url: str, sqlite_engine: Any
) -> None:
    generate(tmp_path / "plant")
    cfg = yaml.safe_load((tmp_path / "plant" / "config.yaml").read_text())
    keep = {f"m{n:02d}" for n in range(8)}
    cfg.update(
        redis={"url": redis_url},
        database={"url": sqlite_url},
        logging={"format": "json", "level": "WARNING"},
        streams={"partitions": P},
        storage={"type": "local", "root": str(tmp_path / "store")},
        history={"file_rows": 3000},
    )
    config = tmp_path / "repsys.yaml"
    config.write_text(yaml.safe_dump(cfg))
    items = read_items(tmp_path / "plant" / "signals.jsonl")
    signals = [s for s in items if isinstance(s, Signal) and s.machine in keep]
    push(redis_client, signals, P)

    live = repsys(config, "rules", "--once")
    assert live.returncode == 0, live.stderr[-3000:]
    want = sorted(
        _key(e.machine_id, e.rule, e.subject, e.started_at.replace(tzinfo=UTC), e.state)
        for e in episodes(sqlite_engine)
    )
    assert len(want) > 20  # the generated day has anomalies of every plant rule

    stored = repsys(config, "history", "--burst")
    assert stored.returncode == 0, stored.stderr[-3000:]
    assert stored.stdout.strip() == f"history: {len(signals)} signals stored"

    today = datetime.now(ZoneInfo(cfg["plant"]["timezone"])).date()
    window = ["--from", str(today - timedelta(days=1)), "--to", str(today + timedelta(days=1))]
    back = repsys(config, "rules", "backtest", *window, "--processes", "2", "--json")
    assert back.returncode == 0, back.stderr[-3000:]
    rows = [json.loads(line) for line in back.stdout.splitlines()]
    got = sorted(
        _key(r["machine"], r["rule"], r["subject"], datetime.fromisoformat(r["started_at"]),
             r["state"])
        for r in rows
    )  # fmt: skip
    assert got == want

    # --machines narrows the replay to those machines' episodes only.
    one = repsys(config, "rules", "backtest", *window, "--machines", "m01,m02", "--json")
    assert one.returncode == 0, one.stderr[-3000:]
    narrowed = {json.loads(line)["machine"] for line in one.stdout.splitlines()}
    assert narrowed and narrowed <= {"m01", "m02"}


def test_a_window_without_history_replays_nothing(tmp_path: Path, redis_url: str) -> None:
    config = tmp_path / "repsys.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "redis": {"url": redis_url},
                "storage": {"type": "local", "root": str(tmp_path / "store")},
            }
        )
    )
    day = str(date(2020, 1, 1))
    result = repsys(config, "rules", "backtest", "--from", day, "--to", day)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "0 signals replayed, 0 entries did not decode"
