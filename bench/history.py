"""Signal history: write rate, bytes per signal, and a backtest of 30 days x 50 machines.

Figures, each beside a baseline measured in the same run:

1. **Write rate**: ``repsys history``'s writer drains the partition streams, pre-loaded
   with the simulated plant's signals (500 machines, its real mix), into Parquet files in
   a local store; the baseline is a bare ``XREADGROUP`` + ``XACK`` loop over the same
   entries (another group). Target: at least 0.5 x the baseline.
2. **Bytes per signal**: Parquet bytes stored / signals, beside the stream's own memory
   per entry (``MEMORY USAGE`` of the partition streams / their length).
3. **Backtest**: 30 simulated days x 50 machines of machining events (the plants' rules'
   input, as ``tests/rules/plant_backtest.py`` makes them) written as history files, then
   ``replay_partitions`` over them with one process per core: wall time and signals/s,
   beside the live rules worker's rate on one of those days (Redis + SQLite, as it runs).
   Target: faster than live by at least the number of processes used.

``python -m bench.history [--days N]`` (about three minutes at the full 30 days).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bench.rules import _baseline_drain, _load, _signals, _worker_drain
from bench.rules import _config as rules_config
from core import heap, keys
from core.config import RepsysConfig, parse_config
from core.db import make_engine, session_factory, upgrade
from core.logs import configure_logging
from core.metrics import new_registry
from core.model import Signal
from core.redis import connect_sync
from core.storage import open_store
from history import files
from history.metrics import HistoryMetrics
from history.read import HistorySource
from history.writer import HistoryWriter
from repsys.servers import RedisServer
from rules.backtest import replay_partitions
from rules.metrics import RulesMetrics
from rules.worker import RulesWorker
from tests.rules.plant_backtest import _events, _tools
from tests.rules.test_plant_reference import PLANT_RULES, SHIFTS, ZONE

PARTITIONS = 8
PRELOAD_SIM_S = 150.0  # simulated seconds of 500 machines: about 110,000 signals
MACHINES = 50
DAYS = 30
DAY_S = 86_400


def _history_config(tmp: Path, redis_url: str) -> RepsysConfig:
    base = rules_config(redis_url, f"sqlite:///{tmp / 'w.db'}")
    data = base.model_dump(mode="python")
    data["storage"] = {"type": "local", "root": str(tmp / "store")}
    data["history"] = {"file_rows": 50_000, "read_count": 5_000}
    data["redis"] = {"url": redis_url}
    data.pop("database")
    return parse_config(data)


def _stream_bytes_per_entry(redis: Any) -> float:
    used = entries = 0
    for p in range(PARTITIONS):
        stream = keys.signal_stream(p)
        used += int(redis.memory_usage(stream, samples=0) or 0)
        entries += int(redis.xlen(stream))
    return used / max(entries, 1)


def write_phase(redis_url: str, tmp: Path) -> None:
    cfg = _history_config(tmp, redis_url)
    redis = connect_sync(cfg.redis)
    signals = _signals(PRELOAD_SIM_S, seed=1)
    _load(redis, signals)
    per_entry = _stream_bytes_per_entry(redis)
    heap.settle()
    base = _baseline_drain(redis, len(signals))
    metrics = HistoryMetrics(new_registry())
    writer = HistoryWriter(cfg, redis, open_store(cfg.storage), metrics)
    started = time.perf_counter()
    stored = writer.drain()
    rate = stored / (time.perf_counter() - started)
    size = sum(p.stat().st_size for p in (tmp / "store").rglob("*.parquet"))
    print(
        f"history write: {rate:,.0f} signals/s ({stored:,} signals, "
        f"{int(metrics.files._value.get())} files); bare XREADGROUP+XACK baseline "
        f"{base:,.0f}/s; ratio {rate / base:.2f} (target >= 0.5)",
        flush=True,
    )
    print(
        f"history size: {size / stored:.1f} bytes per signal in Parquet (zstd) vs "
        f"{per_entry:.1f} bytes per entry in the Redis stream ({per_entry / (size / stored):.0f}x)",
        flush=True,
    )
    redis.flushall()


def _plant(days: int, seed: int = 7) -> tuple[dict[str, Any], list[list[Signal]]]:
    """Rules config and, per day, the machining events of MACHINES machines."""
    rng = random.Random(seed)
    machines, specs, tools_of = [], {}, {}
    for n in range(MACHINES):
        mid, pallets = f"m{n:02d}", 2 if n % 4 else 1
        tools = _tools(rng, pallets)
        tools_of[mid] = (tools, pallets)
        machines.append(
            {"id": mid, "pcn": 123681, "workcenter_key": 60000 + n, "workcenter_code": mid}
        )
        specs[mid] = {
            "cycle_source": "machining_event",
            "tools": {
                t.name: {"life": t.life, "increment": t.increment, "pallets": t.pallets}
                for t in tools.values()
            },
        }
    rules = [{"name": r, "type": r, "keep_firing_for_s": 0} for r in PLANT_RULES]
    section = {"shifts": SHIFTS, "group_wait_s": 0, "machines": specs, "rules": rules}
    per_day: list[list[Signal]] = []
    injected: Counter[str] = Counter()
    for day in range(days):
        out = []
        for mid, (tools, pallets) in tools_of.items():
            for e in _events(rng, tools, pallets, injected):
                t = e.end + day * DAY_S
                attrs = {"pallet": e.pallet, "tool": e.tool, "counter": str(e.counter),
                         "start": str(e.start + day * DAY_S)}  # fmt: skip
                out.append(Signal(mid, "machining_event", e.counter, source_ts=t,
                                  receive_ts=t, subject=e.tool, attrs=attrs))  # fmt: skip
        out.sort(key=lambda s: s.source_ts)
        per_day.append(out)
    return {"machines": machines, "plant": {"timezone": ZONE}, "rules": section}, per_day


def _entries(
    day: list[Signal], p: int, seq: dict[int, int]
) -> Iterator[tuple[str, dict[str, str]]]:
    """Entry ids from the signals' times, unique across the days (``seq`` is shared): the
    generated days overlap by minutes, and two entries with one id would replay in an
    arbitrary order."""
    for sig in day:
        if keys.partition_of(sig.machine, PARTITIONS) != p:
            continue
        ms = int(sig.source_ts * 1000)
        n = seq.get(ms, 0)
        seq[ms] = n + 1
        yield f"{ms}-{n}", sig.to_fields()


def backtest_phase(redis_url: str, tmp: Path, days: int) -> None:
    section, per_day = _plant(days)
    cfg = parse_config(
        {
            **section,
            "redis": {"url": redis_url},
            "database": {"url": f"sqlite:///{tmp / 'live.db'}"},
            "logging": {"format": "json", "level": "ERROR"},
            "streams": {"partitions": PARTITIONS},
            "storage": {"type": "local", "root": str(tmp / "backtest-store")},
        }
    )
    total = sum(len(d) for d in per_day)
    # History files as the writer makes them: per partition, per plant date, id ranges
    # (ids from the events' own times: a file per partition-day of 50,000 rows at most).
    store = open_store(cfg.storage)
    zone = ZoneInfo(cfg.plant.timezone)
    seqs: dict[int, dict[int, int]] = {p: {} for p in range(PARTITIONS)}
    for day in per_day:
        for p in range(PARTITIONS):
            rows = list(_entries(day, p, seqs[p]))
            for i in range(0, len(rows), 50_000):
                chunk = rows[i : i + 50_000]
                by_date: dict[Any, list[tuple[str, dict[str, str]]]] = {}
                for entry in chunk:
                    at = files.plant_date(files.EntryId.parse(entry[0]), zone)
                    by_date.setdefault(at, []).append(entry)
                for d, run in by_date.items():
                    data, _, _ = files.build(run, "zstd")
                    first, last = files.EntryId.parse(run[0][0]), files.EntryId.parse(run[-1][0])
                    key = files.file_key("history", d, p, first, last)
                    store.put_bytes(key, data)
    since = datetime.fromtimestamp(per_day[0][0].source_ts, UTC).date()
    until = datetime.fromtimestamp(per_day[-1][-1].source_ts, UTC).date()
    source = HistorySource(cfg, since - timedelta(days=1), until + timedelta(days=1))
    processes = os.cpu_count() or 1
    started = time.perf_counter()
    merged = replay_partitions(cfg, source, processes=processes)
    wall = time.perf_counter() - started
    assert merged.signals == total, (merged.signals, total)
    back_rate = total / wall

    # The live worker on day one of the same signals: Redis streams + SQLite commits.
    engine = make_engine(cfg.database)
    upgrade(engine)
    redis = connect_sync(cfg.redis)
    redis.flushall()
    live_day = per_day[0]
    _load(redis, live_day)
    worker = RulesWorker(cfg, redis, session_factory(engine), RulesMetrics(new_registry()))
    live_rate = _worker_drain(worker, len(live_day))
    print(
        f"history backtest: {days} days x {MACHINES} machines = {total:,} signals, "
        f"{len(merged.ledger.episodes):,} episodes, wall {wall:.1f} s with {processes} "
        f"processes = {back_rate:,.0f} signals/s; live worker {live_rate:,.0f} signals/s "
        f"({len(live_day):,} signals of day 1); ratio {back_rate / live_rate:.1f} "
        f"(target >= {processes})",
        flush=True,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.history")
    parser.add_argument("--days", type=int, default=DAYS)
    args = parser.parse_args(argv if argv is not None else [])
    configure_logging("console", "ERROR")
    with tempfile.TemporaryDirectory(prefix="repsys-bench-history-") as tmp:
        redis_srv = RedisServer(Path(tmp) / "redis")
        redis_srv.start()
        try:
            write_phase(redis_srv.url, Path(tmp))
            backtest_phase(redis_srv.url, Path(tmp), args.days)
        finally:
            redis_srv.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
