"""``repsys history``: every signal in exactly one Parquet file, acknowledged only after.

The stream is the reference: rows are counted against what was XADDed, by (partition,
entry id), so a lost or duplicated signal shows.
"""

from __future__ import annotations

import random
import signal as signals
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq  # type: ignore[import-untyped]  # pyarrow ships no type hints
import pytest
import yaml

from core import keys
from core.config import RepsysConfig
from core.config.storage import StorageConfig
from core.metrics import new_registry
from core.model import Quality, Signal
from core.storage import open_store
from history import files
from history.metrics import HistoryMetrics
from history.read import query
from history.writer import HistoryWriter, prune
from repsys.servers import wait_until
from tests.conftest import REPO, TEST_MACHINES
from tests.rules.helpers import push

P = 4


def make_signals(n: int, seed: int = 1) -> list[Signal]:
    rng = random.Random(seed)
    machines = [str(m["id"]) for m in TEST_MACHINES]
    out = []
    t = 1_764_000_000.0
    for i in range(n):
        t += rng.random()
        kind = rng.random()
        value: Any = (
            rng.randint(0, 3000) if kind < 0.6 else (rng.random() * 100 if kind < 0.8 else "AUTO")
        )
        if kind > 0.95:
            value = None
        out.append(
            Signal(
                rng.choice(machines),
                rng.choice(["tool_life", "spindle_load", "run_state"]),
                value,
                Quality.GOOD if value is not None else Quality.NO_DATA,
                source_ts=t,
                receive_ts=t + 0.25,
                subject=rng.choice(["", "T1", "T2"]),
                attrs={"pallet": "1"} if i % 7 == 0 else {},
            )
        )
    return out


def stream_ids(redis: Any) -> set[tuple[int, str]]:
    return {
        (p, entry_id)
        for p in range(P)
        for entry_id, fields in redis.xrange(keys.signal_stream(p))
        if fields.get("v") == "1" and "x" in fields
    }


def stored_ids(root: Path) -> list[tuple[int, str]]:
    """Every (partition, id) in the stored files, duplicates kept."""
    paths = sorted(str(p) for p in root.glob("history/date=*/partition=*/*.parquet"))
    if not paths:
        return []
    got = duckdb.execute(
        "SELECT partition, id_ms, id_seq FROM read_parquet(?, hive_partitioning=true)",
        [paths],
    ).fetchall()
    return [(int(p), f"{ms}-{seq}") for p, ms, seq in got]


@pytest.fixture
def cfg(make_config: Any, tmp_path: Path) -> RepsysConfig:
    return make_config(
        {
            "streams": {"partitions": P},
            "storage": {"type": "local", "root": str(tmp_path / "store")},
            "history": {"file_rows": 700, "read_count": 300},
        }
    )


def writer_for(cfg: RepsysConfig, redis_url: str) -> HistoryWriter:
    import redis as redis_lib

    client = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    store = open_store(cfg.storage)
    return HistoryWriter(cfg, client, store, HistoryMetrics(new_registry()))


def test_burst_stores_every_signal_once_typed_and_acknowledged(
    cfg: RepsysConfig, redis_url: str, redis_client: Any, tmp_path: Path
) -> None:
    sigs = make_signals(5000)
    push(redis_client, sigs, P)
    redis_client.xadd(keys.signal_stream(1), {"v": "9", "m": "x"})  # does not decode
    writer = writer_for(cfg, redis_url)
    assert writer.drain() == 5000
    assert sorted(stored_ids(tmp_path / "store")) == sorted(stream_ids(redis_client))
    assert writer.metrics.skipped.labels("decode")._value.get() == 1
    for p in range(P):
        assert redis_client.xpending(keys.signal_stream(p), "history")["pending"] == 0
    # Named by their id range, under date=/partition= folders, typed and compressed.
    some = next((tmp_path / "store").glob("history/date=*/partition=*/*.parquet"))
    span = files.range_of(some.name)
    assert span is not None and span[0] <= span[1]
    meta = pq.ParquetFile(some)
    assert meta.schema_arrow.field("value_num").type == "double"
    assert meta.schema_arrow.field("machine").type.value_type == "string"
    assert meta.metadata.row_group(0).column(0).compression == "ZSTD"
    # Rows read back are the signals that went in (per partition, in order).
    want = {p: [s for s in sigs if keys.partition_of(s.machine, P) == p] for p in range(P)}
    from history.read import HistorySource

    today = date.today()
    source = HistorySource(cfg, today - timedelta(days=1), today + timedelta(days=1))
    for p in source.partitions():
        assert list(source.read(p)) == want[p]


def test_a_crash_after_storing_before_acking_writes_no_second_copy(
    cfg: RepsysConfig, redis_url: str, redis_client: Any, tmp_path: Path
) -> None:
    push(redis_client, make_signals(3000, seed=2), P)
    first = writer_for(cfg, redis_url)
    first.ensure_groups()

    class Crash(BaseException):
        pass

    def crash(*_: Any) -> None:
        raise Crash

    first._ack = crash  # type: ignore[method-assign,assignment]  # the process dies right after a store
    with pytest.raises(Crash):
        while True:
            first.step(block=False)
    assert len(stored_ids(tmp_path / "store")) == 700  # one file stored, nothing acked

    # The restarted process (a smaller file size now) re-reads its pending entries.
    smaller = cfg.model_copy(update={"history": cfg.history.model_copy(update={"file_rows": 250})})
    again = writer_for(smaller, redis_url)
    again.drain()
    got = stored_ids(tmp_path / "store")
    assert len(got) == len(set(got)) == 3000
    assert set(got) == stream_ids(redis_client)
    assert again.metrics.skipped.labels("stored")._value.get() == 700


def test_kill_9_mid_write_loses_and_duplicates_nothing(
    tmp_path: Path, redis_url: str, redis_client: Any
) -> None:
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
                # The killed writer's consumer lease runs out in 2 s; the burst waits.
                "history": {
                    "file_rows": 400,
                    "read_count": 200,
                    "file_age_s": 0.2,
                    "lease_ttl_s": 2,
                    "block_ms": 200,
                },
            }
        )
    )
    argv = [sys.executable, "-m", "repsys", "-c", str(config), "history"]
    push(redis_client, make_signals(20_000, seed=3), P)
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Kill it while it writes: some files stored, most entries still to go.
        wait_until(
            lambda: len(list((tmp_path / "store").glob("history/**/*.parquet"))) >= 5,
            timeout=60,
            what="files being written",
        )
        proc.send_signal(signals.SIGKILL)
        proc.wait(10)
        before = len(stored_ids(tmp_path / "store"))
        assert 0 < before < 20_000
        push(redis_client, make_signals(2000, seed=4), P)  # the plant goes on meanwhile
        done = subprocess.run([*argv, "--burst"], cwd=REPO, capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    got = stored_ids(tmp_path / "store")
    assert len(got) == len(set(got)) == 22_000
    assert set(got) == stream_ids(redis_client)


def test_retention_deletes_old_dates_only(cfg: RepsysConfig, tmp_path: Path) -> None:
    store = open_store(cfg.storage)
    today = date(2026, 12, 7)
    old = files.file_key("history", today - timedelta(days=401), 0, *_span())
    kept = files.file_key("history", today - timedelta(days=400), 0, *_span())
    for key in (old, kept):
        store.put_bytes(key, b"x")
    assert prune(cfg, store, HistoryMetrics(new_registry()), today=today) == 1
    assert [s.key for s in store.list("history/")] == [kept]


def _span() -> tuple[files.EntryId, files.EntryId]:
    return files.EntryId(1, 0), files.EntryId(2, 0)


def test_duckdb_queries_history_in_an_s3_store(
    make_config: Any, redis_url: str, redis_client: Any, s3_store: StorageConfig
) -> None:
    cfg = make_config({"streams": {"partitions": P}})
    cfg = cfg.model_copy(update={"storage": s3_store})
    push(redis_client, make_signals(1500, seed=5), P)
    writer = writer_for(cfg, redis_url)
    assert writer.drain() == 1500
    today = date.today()
    _, rows = query(
        cfg,
        "SELECT count(*), count(DISTINCT partition), sum(value_num IS NOT NULL) FROM signals",
        today - timedelta(days=1),
        today + timedelta(days=1),
    )
    sigs = make_signals(1500, seed=5)
    numeric = sum(1 for s in sigs if isinstance(s.value, int | float))
    parts = len({keys.partition_of(s.machine, P) for s in sigs})
    assert rows == [(1500, parts, numeric)]


def test_trimming_keeps_what_the_history_has_not_stored(
    redis_url: str, redis_client: Any, cfg: RepsysConfig, tmp_path: Path
) -> None:
    """The collector's trim guards the history group as it guards the rules group."""
    from collector.metrics import CollectorMetrics
    from collector.trim import Trimmer

    push(redis_client, make_signals(6000, seed=6), P)
    writer = writer_for(cfg, redis_url)
    writer.ensure_groups()  # the history has seen nothing yet; the rules group is absent
    for p in range(P):  # the rules engine has read and acknowledged everything
        stream = keys.signal_stream(p)
        redis_client.xgroup_create(stream, keys.RULES_GROUP, id="$")
    trimmer = Trimmer(redis_client, CollectorMetrics(new_registry()), partitions=P, max_len=1000)
    assert trimmer.trim(retention_s=0) == 0  # over max_len, yet nothing may go
    assert writer.drain() == 6000
    assert trimmer.trim(retention_s=0) > 0  # stored and acknowledged: now it may
    assert len(stored_ids(tmp_path / "store")) == 6000
