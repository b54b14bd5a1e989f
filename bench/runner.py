"""Report runner: the TB pipeline over a million balance rows, and the mutex hand-over.

1. A seeded ledger of one PCN with about a million closed-period balance rows (5,000
   cost-center accounts over fiscal 2009 to 2024) behind the real SQLite ODBC driver, the
   simulated Plex for the open period, a fresh SQLite warehouse. One trial balance on the
   empty warehouse recalculates the whole history (step 5 finds no anchor), so every row
   goes through extraction, load, the YTD walk and the load of the result. The baseline,
   measured in the same run on the same rows in the same database: SQLite computing the
   same year-to-date amounts (with the revenue/expense reset) itself, with window
   functions, into a table, committed as each step's load is (the median of three runs).
   The pipeline's target is within 1.5x of that (issue 23). The simulated Plex runs in a process of
   its own (forked once the ledger is built): Plex is a remote server, and in this
   process the simulator's CPU (building 4814's answer) was charged to the pipeline it
   serves, both taking turns on the GIL. Its time to answer (~0.3-0.8 s) still counts
   where the pipeline waits for it, as a real Plex's would (step 7 asks while step 6
   runs: runner/tb/prefetch.py).
2. The mutex hand-over between two runner processes: from the moment one releases to the
   moment the waiting one holds it (p50, p99), beside the Redis round trip (PING) p99
   measured in the same run, the floor any hand-over through Redis pays.

Bounded: a minute or two on a quiet machine; loopback only.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import redis
from pydantic import SecretStr
from sqlalchemy import select, text

from core.config import parse_config
from core.config.sim_plex import SimPlexConfig
from core.db import make_engine, session_factory, upgrade
from core.db.schema import StepRun
from core.lifecycle import Stopper
from core.logs import configure_logging
from core.metrics import new_registry
from repsys.servers import RedisServer
from runner.metrics import RunnerMetrics
from runner.mutex import Mutex
from runner.requests import submit
from runner.services import build_services
from runner.worker import Runner
from sim.accounting.ledger import Ledger
from sim.accounting.odbc import build_database, connection_string
from sim.plex.server import PlexSimServer

PCN = 123681
PASSWORD_ENV = "REPSYS_BENCH_PLEX_PASSWORD"
HANDOVERS = 300
#: The baseline is run this many times and its median taken: a single run of it swung
#: between 5.8 and 8.2 s on the shared machine, as much as the pipeline's own spread.
BASELINE_RUNS = 3

#: The database's own aggregation: YTD per account with the revenue/expense yearly reset.
BASELINE_TABLE = """
CREATE TABLE bench_ytd (
  pcn INTEGER NOT NULL, account_no VARCHAR(32) NOT NULL, period INTEGER NOT NULL,
  debit_micros BIGINT, credit_micros BIGINT, ytd_debit_micros BIGINT, ytd_credit_micros BIGINT,
  PRIMARY KEY (pcn, period, account_no))
"""
BASELINE_SQL = """
INSERT INTO bench_ytd
SELECT b.pcn, b.account_no, b.period, b.debit_micros, b.credit_micros,
       SUM(b.debit_micros) OVER w AS ytd_debit_micros,
       SUM(b.credit_micros) OVER w AS ytd_credit_micros
FROM tb_balances b
JOIN tb_account_year_category_type y
  ON y.pcn = b.pcn AND y.account_no = b.account_no AND y.year = b.period / 100
WINDOW w AS (
  PARTITION BY b.pcn, b.account_no,
               CASE WHEN y.revenue_or_expense THEN b.period / 100 ELSE 0 END
  ORDER BY b.period ROWS UNBOUNDED PRECEDING)
"""


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _took(step: StepRun) -> float:
    assert step.finished_at is not None
    return (step.finished_at - step.started_at).total_seconds()


def _serve_plex(cfg: SimPlexConfig, ledger: Ledger, conn: Connection) -> None:
    """The forked child: serve the simulated Plex until the parent says stop or goes."""
    configure_logging("console", "WARNING")
    # The ledger indexes its million postings by account on first use (~0.5-0.9 s); a real
    # Plex answers from indexed tables, so the index is built before the Plex is "up".
    # Another period than the pipeline's: nothing of its answer is computed ahead.
    ledger.account_activity_summary([PCN], 200901, 200901)
    with PlexSimServer(cfg, ledger=ledger.account_activity_summary) as sim:
        conn.send(sim.url)
        with suppress(EOFError):  # the parent closed its end: stop as well
            conn.recv()


@contextmanager
def _plex_process(cfg: SimPlexConfig, ledger: Ledger) -> Iterator[str]:
    """The simulated Plex in a forked process (it inherits the built ledger); its URL."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve_plex, args=(cfg, ledger, child), daemon=True)
    proc.start()
    child.close()
    try:
        if not parent.poll(60):
            raise RuntimeError("the simulated Plex process did not start in 60 s")
        url: str = parent.recv()
        yield url
    finally:
        with suppress(OSError):  # it is gone already
            parent.send("stop")
        parent.close()
        proc.join(10)
        if proc.is_alive():
            proc.terminate()
            proc.join(5)


def tb_benchmark(workdir: Path, redis_url: str) -> None:
    started = time.monotonic()
    ledger = Ledger.generate(
        1,
        pcns=(PCN,),
        first_year=2009,
        last_year=2024,
        thirteen=(2012, 2016, 2020),
        closed_through=202406,
        last_active=202407,
        extra_accounts=5000,
        entries_per_period=40,
    )
    closed_rows = sum(1 for (_, _, period) in ledger.postings if period <= 202406)
    odbc_path = build_database(ledger, workdir / "accounting.db")
    print(
        f"ledger: {len(ledger.accounts)} accounts, {closed_rows:,} closed-period balance "
        f"rows, built in {time.monotonic() - started:.1f} s",
        flush=True,
    )
    os.environ[PASSWORD_ENV] = "bench-secret"
    sim_cfg = SimPlexConfig.model_validate({"username": "bench"}).model_copy(
        update={"password": SecretStr("bench-secret")}
    )
    with _plex_process(sim_cfg, ledger) as sim_url:
        cfg = parse_config(
            {
                "machines": [
                    {"id": "cnc1", "pcn": PCN, "workcenter_key": 1, "workcenter_code": "cnc1"}
                ],
                "redis": {"url": redis_url},
                "database": {"url": f"sqlite:///{workdir / 'warehouse.db'}"},
                "logging": {"format": "console", "level": "WARNING"},
                "plex": {
                    "endpoint": sim_url,
                    "environment": "simulator",
                    "username": "bench",
                    "password": {"env": PASSWORD_ENV},
                    "operation_timeout_s": 60,
                },
                "runner": {
                    "output_dir": str(workdir / "out"),
                    "lease_ttl_s": 60,
                    "tb": {
                        "pcns": [PCN],
                        "odbc": {"connection_string": connection_string(odbc_path)},
                    },
                },
            }
        )
        engine = make_engine(cfg.database)
        upgrade(engine)
        sessions = session_factory(engine)
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        runner = Runner(
            cfg,
            sessions=sessions,
            redis_client=client,
            services=build_services(cfg, client),
            metrics=RunnerMetrics(new_registry()),
            stopper=Stopper(),
            consumer="bench",
        )
        row = submit(
            sessions,
            client,
            cfg,
            kind="tb",
            params={"start": 202406, "end": 202407},
            requester="bench",
        )
        t0 = time.perf_counter()
        cpu0, children0 = time.process_time(), _children_cpu()
        runner.work(burst=True)
        pipeline_s = time.perf_counter() - t0
        # CPU besides wall time: on a shared machine the wall ratio moves with the
        # neighbours; CPU seconds much less. The ODBC reader child is joined by step 6,
        # so its CPU is in RUSAGE_CHILDREN; the simulated Plex (a server) is not counted.
        pipeline_cpu = time.process_time() - cpu0
        reader_cpu = _children_cpu() - children0
        with sessions() as s:
            steps = s.scalars(
                select(StepRun).where(StepRun.request_id == row.id).order_by(StepRun.id)
            ).all()
        assert all(x.status == "completed" for x in steps), [(x.step, x.error) for x in steps]
        for step in steps:
            took = _took(step)
            print(f"  {step.step:<20} {took:7.2f} s  {step.rows or 0:>9,} rows")
        with engine.connect() as conn:
            # The pipeline's writes are in the WAL; fold them into the database first so
            # the baseline reads the same rows from the same place the pipeline did.
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        baselines = []
        baseline_cpus = []
        for _ in range(BASELINE_RUNS):
            with engine.connect() as conn:
                conn.execute(text(BASELINE_TABLE))  # the pipeline's table's primary key
                conn.commit()
                t0, cpu0 = time.perf_counter(), time.process_time()
                conn.execute(text(BASELINE_SQL))
                conn.commit()  # committed, as each step's load is
                baselines.append(time.perf_counter() - t0)
                baseline_cpus.append(time.process_time() - cpu0)
                counted = conn.execute(text("SELECT COUNT(*) FROM bench_ytd")).scalar_one()
                conn.execute(text("DROP TABLE bench_ytd"))
                conn.commit()
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        baseline_s = statistics.median(baselines)
        engine.dispose()
        client.close()
    recreate_s = sum(_took(x) for x in steps if x.step in ("recreate_closed", "recreate_open"))
    print(
        f"TB pipeline, {closed_rows:,} balance rows: {pipeline_s:.2f} s "
        f"(rows/s {closed_rows / pipeline_s:,.0f})"
    )
    print(
        f"baseline: SQLite window-function YTD of the same {counted:,} rows, committed: "
        f"{baseline_s:.2f} s (median of {', '.join(f'{b:.2f}' for b in baselines)})"
    )
    print(f"ratio pipeline / baseline: {pipeline_s / baseline_s:.2f}x (target within 1.5x)")
    print(f"ratio recreate steps / baseline: {recreate_s / baseline_s:.2f}x")
    baseline_cpu = statistics.median(baseline_cpus)
    print(
        f"CPU seconds: pipeline {pipeline_cpu + reader_cpu:.2f} (this process "
        f"{pipeline_cpu:.2f}, ODBC reader {reader_cpu:.2f}), baseline {baseline_cpu:.2f}; "
        f"ratio {(pipeline_cpu + reader_cpu) / baseline_cpu:.2f}x, "
        f"this process alone {pipeline_cpu / baseline_cpu:.2f}x"
    )


def _handover_worker(redis_url: str, rounds: int, out: Any, start: Any) -> None:
    configure_logging("console", "WARNING")
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    mutex = Mutex(client, "bench", ttl_s=10)
    stopper = Stopper()
    start.wait()
    events = []
    for _ in range(rounds):
        lease = mutex.acquire(stopper, poll_s=1.0)
        assert lease is not None
        acquired = time.monotonic_ns()
        time.sleep(0.002)  # the holder's work
        released = time.monotonic_ns()
        lease.release()
        events.append((acquired, released, os.getpid()))
        time.sleep(0.004)  # let the other runner take its turn
    out.put(events)


def handover_benchmark(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    pings = []
    for _ in range(2000):
        t0 = time.perf_counter()
        client.ping()
        pings.append(time.perf_counter() - t0)
    client.close()
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    start = ctx.Event()
    procs = [
        ctx.Process(target=_handover_worker, args=(redis_url, HANDOVERS, out, start))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    start.set()
    events = sorted(e for _ in procs for e in out.get(timeout=300))
    for p in procs:
        p.join(30)
    handovers = [
        (nxt[0] - cur[1]) / 1e6 for cur, nxt in itertools.pairwise(events) if nxt[2] != cur[2]
    ]
    q = statistics.quantiles(handovers, n=100)
    ping = statistics.quantiles([p * 1000 for p in pings], n=100)
    print(
        f"mutex hand-over between two runner processes ({len(handovers)} hand-overs): "
        f"p50 {statistics.median(handovers):.2f} ms, p99 {q[98]:.2f} ms"
    )
    print(
        f"baseline: Redis PING round trip p99 {ping[98]:.3f} ms; "
        f"ratio hand-over p99 / PING p99: {q[98] / ping[98]:.1f}x"
    )


def main() -> None:
    configure_logging("console", "WARNING")
    with tempfile.TemporaryDirectory(prefix="repsys-bench-runner-") as tmp:
        workdir = Path(tmp)
        server = RedisServer(workdir / "redis")
        server.start()
        try:
            if os.environ.get("REPSYS_BENCH_RUNNER", "tb,mutex") != "mutex":
                tb_benchmark(workdir, server.url)
            if os.environ.get("REPSYS_BENCH_RUNNER", "tb,mutex") != "tb":
                handover_benchmark(server.url)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
    sys.exit(0)
