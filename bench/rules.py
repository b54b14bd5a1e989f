"""Rules worker: signals/s with every rule type over 500 machines, and XADD → episode latency.

Two figures, each beside a baseline measured in the same run on the same redis-server:

1. **Throughput**: one worker drains the partition streams, pre-loaded with the simulated
   plant's signals of 500 machines (its real mix: spindle load every second, tool-life,
   machining events, counters, cycles), every rule type active; the baseline is a bare
   ``XREADGROUP`` + ``XACK`` loop over the same entries (another group), the least any
   consumer must do. Ratio = worker / baseline.
2. **Latency**: a producer process writes 10,000 signals/s (the same mix, stamped now) and
   every 100 ms a probe anomaly (an early tool change on a fresh machine and tool); the
   figure is the p99 from the probe's XADD to the commit of its episode and ticket (SQLite,
   the embedded default). The baseline is the p99 of a plain XADD → XREADGROUP round trip
   under the same load.

Runs on loopback only, in about a minute and a half. ``python -m bench.rules``.
"""

from __future__ import annotations

import dataclasses
import gc
import multiprocessing
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from core import heap, keys
from core.config import parse_config
from core.db import make_engine, session_factory, upgrade
from core.logs import configure_logging
from core.metrics import new_registry
from core.model import Signal
from core.redis import connect_sync
from repsys.servers import RedisServer
from rules.actions import Action, OpenEpisodes
from rules.metrics import RulesMetrics
from rules.worker import RulesWorker
from sim.plant.model import Plant, default_specs

MACHINES = 500
PARTITIONS = 8
PRELOAD_SIM_S = 300.0  # simulated seconds of the 500 machines (about 230,000 signals)
RATE = 10_000  # signals a second in the latency phase
LATENCY_S = 28.0
PROBES_PER_S = 10
WARMUP_TICKS = 300  # 3 s of load before the first probe

RULES: list[dict[str, Any]] = [
    {"name": "counter_jump", "type": "counter_jump"},
    {"name": "counter_rollback", "type": "counter_rollback"},
    {"name": "pallet_looped_out", "type": "pallet_looped_out"},
    {"name": "tool_life_short", "type": "tool_life_short"},
    {"name": "tool_life_overrun", "type": "tool_life_overrun"},
    {"name": "tool_change_forecast", "type": "tool_change_forecast"},
    {"name": "spindle_overload", "type": "threshold", "signal": "spindle_load", "above": 130},
    {"name": "no_data", "type": "no_data", "timeout_s": 300},
    {"name": "downtime", "type": "downtime"},
    {"name": "micro_stop", "type": "micro_stop"},
    {"name": "cycle_time", "type": "cycle_time"},
    {"name": "spindle_load_drift", "type": "spindle_load_drift"},
    {"name": "alarm_frequency", "type": "alarm_frequency"},
    {"name": "scrap_rate", "type": "scrap_rate"},
]

IDS = [f"m{i:03d}" for i in range(MACHINES)]


def _config(redis_url: str, db_url: str) -> Any:
    machines = [
        {"id": m, "pcn": 123681, "workcenter_key": 60000 + n, "workcenter_code": m}
        for n, m in enumerate(IDS)
    ]
    return parse_config(
        {
            "machines": machines,
            "redis": {"url": redis_url},
            "database": {"url": db_url},
            "logging": {"format": "json", "level": "ERROR"},
            "streams": {"partitions": PARTITIONS},
            "rules": {"group_wait_s": 0, "rules": RULES},
        }
    )


def _signals(seconds: float, seed: int) -> list[Signal]:
    specs = [dataclasses.replace(s, cycle_noise=0.01) for s in default_specs(IDS)]
    return Plant(specs, seed=seed).advance(seconds)


def _load(redis: Any, signals: list[Signal]) -> None:
    pipe = redis.pipeline(transaction=False)
    for n, sig in enumerate(signals, 1):
        pipe.xadd(keys.signal_stream(keys.partition_of(sig.machine, PARTITIONS)), sig.to_fields())
        if n % 10_000 == 0:
            pipe.execute()
    pipe.execute()


def _baseline_drain(redis: Any, total: int) -> float:
    """Entries/s of a bare XREADGROUP + XACK loop over every partition."""
    streams = [keys.signal_stream(p) for p in range(PARTITIONS)]
    for s in streams:
        redis.xgroup_create(s, "baseline", id="0", mkstream=True)
    seen = 0
    started = time.perf_counter()
    while seen < total:
        reply = redis.xreadgroup("baseline", "b", dict.fromkeys(streams, ">"), count=2000)
        if not reply:
            break
        pipe = redis.pipeline(transaction=False)
        for stream, entries in reply:
            seen += len(entries)
            pipe.xack(stream, "baseline", *[e[0] for e in entries])
        pipe.execute()
    return seen / (time.perf_counter() - started)


def _worker_drain(worker: RulesWorker, total: int) -> float:
    """Signals/s of the rules worker draining the same entries (commit and checkpoints)."""
    worker.round()  # takes every partition (the only worker): not part of the figure
    started = time.perf_counter()
    last_checkpoint = started
    while worker.stats.entries < total:
        if not worker.read_once():
            break
        worker.commit()
        now = time.perf_counter()
        if now - last_checkpoint >= worker.wcfg.checkpoint_interval_s:
            worker.checkpoint_all()
            last_checkpoint = now
    worker.commit()
    worker.checkpoint_all()
    return worker.stats.entries / (time.perf_counter() - started)


def _shifted(sig: Signal, offset: float) -> dict[str, str]:
    """The signal's entry with every time (attrs too) moved by ``offset`` seconds."""
    attrs = dict(sig.attrs)
    for key in ("start", "end"):
        if key in attrs:
            attrs[key] = repr(float(attrs[key]) + offset)
    moved = dataclasses.replace(
        sig, source_ts=sig.source_ts + offset, receive_ts=sig.receive_ts + offset, attrs=attrs
    )
    return moved.to_fields()


def _produce(redis_url: str, seconds: float, out: Any) -> None:
    """Child process: RATE signals/s of a plant, and PROBES_PER_S probe anomalies."""
    redis = connect_sync(parse_config({"redis": {"url": redis_url}}).redis)
    # The plant's own times, moved to start now (they then run ahead of the wall clock:
    # 500 machines make fewer than RATE signals a second of plant time). Probes are
    # stamped with the wall clock: their episode's start is their XADD time.
    plant = _signals(RATE * seconds / 700.0, seed=2)
    offset = time.time() + 2.0 - plant[0].source_ts
    batch = RATE // 100  # every 10 ms
    # Packed once, up front: the producer must not compete with the worker for the CPU.
    conn = redis.connection_pool.get_connection("XADD")
    chunks = []
    for i in range(0, len(plant) - batch + 1, batch):
        args = []
        for sig in plant[i : i + batch]:
            stream = keys.signal_stream(keys.partition_of(sig.machine, PARTITIONS))
            flat = [x for kv in _shifted(sig, offset).items() for x in kv]
            args.append(("XADD", stream, "*", *flat))
        chunks.append(b"".join(conn.pack_commands(args)))
    redis.connection_pool.release(conn)
    probe_n = 0
    started = time.time()
    tick = 0
    while time.time() - started < seconds and tick < len(chunks):
        now = time.time()
        conn = redis.connection_pool.get_connection("XADD")
        conn.send_packed_command([chunks[tick]])
        for _ in range(batch):
            conn.read_response()
        redis.connection_pool.release(conn)
        pipe = redis.pipeline(transaction=False)
        # Probes after a warm-up: the figure is the steady state, not the worker meeting
        # 500 machines for the first time.
        if tick >= WARMUP_TICKS and tick % (100 // PROBES_PER_S) == 0:
            # An early change of a tool no machine has used yet: one new episode each.
            machine = IDS[probe_n % MACHINES]
            tool = f"T9{probe_n // MACHINES}"
            stream = keys.signal_stream(keys.partition_of(machine, PARTITIONS))
            for value, at in ((100, now - 1.0), (0, time.time())):
                sig = Signal(machine, "tool_life", value, source_ts=at, receive_ts=at,
                             subject=tool, attrs={"limit": "348"})  # fmt: skip
                pipe.xadd(stream, sig.to_fields())
            probe_n += 1
        pipe.execute()
        tick += 1
        time.sleep(max(0.0, started + tick * 0.01 - time.time()))
    out.put(probe_n)


def _xadd_roundtrip_p99(redis_url: str) -> float:
    """Baseline under the same load: XADD of a marker to its XREADGROUP by another client."""
    cfg = parse_config({"redis": {"url": redis_url}}).redis
    writer, reader = connect_sync(cfg), connect_sync(cfg)
    stream = "repsys:bench:roundtrip"
    reader.xgroup_create(stream, "g", id="$", mkstream=True)
    samples = []
    for _ in range(200):
        sent = time.time()
        writer.xadd(stream, {"t": repr(sent)})
        reply = reader.xreadgroup("g", "c", {stream: ">"}, count=1, block=1000)
        samples.append(time.time() - float(reply[0][1][0][1]["t"]))
        time.sleep(0.01)
    writer.delete(stream)
    return statistics.quantiles(samples, n=100)[98]


def main() -> None:
    configure_logging("console", "ERROR")
    with tempfile.TemporaryDirectory(prefix="repsys-bench-rules-") as tmp:
        redis_srv = RedisServer(Path(tmp) / "redis")
        redis_srv.start()
        try:
            _run(redis_srv.url, Path(tmp))
        finally:
            redis_srv.stop()


def _run(redis_url: str, tmp: Path) -> None:
    cfg = _config(redis_url, f"sqlite:///{tmp / 'repsys.db'}")
    engine = make_engine(cfg.database)
    upgrade(engine)
    redis = connect_sync(cfg.redis)

    signals = _signals(PRELOAD_SIM_S, seed=1)
    _load(redis, signals)
    # The process as a worker's run() settles it (core/heap.py), for the baseline too:
    # both loops then drain under the same collector settings. Frozen, the preloaded
    # signals (which no worker holds) are left out of the collector's passes.
    heap.settle()
    base = _baseline_drain(redis, len(signals))
    worker = RulesWorker(cfg, redis, session_factory(engine), RulesMetrics(new_registry()))
    rate = _worker_drain(worker, len(signals))
    print(
        f"rules throughput: {rate:,.0f} signals/s per worker ({len(signals):,} signals, "
        f"{MACHINES} machines, {len(RULES)} rule types); bare XREADGROUP+XACK baseline "
        f"{base:,.0f}/s; ratio {rate / base:.2f}",
        flush=True,
    )

    # Latency at RATE signals/s: a fresh keyspace, database and worker (the first phase's
    # machines live in the simulator's past: their silence would read as no data), the
    # worker's loop in a thread of this process, the producer in a process of its own.
    redis.flushall()
    # The first phase's 200,000 signals would otherwise stay alive in this process and
    # lengthen every full garbage collection the worker's thread waits on.
    del signals, worker
    gc.collect()
    cfg = _config(redis_url, f"sqlite:///{tmp / 'latency.db'}")
    engine = make_engine(cfg.database)
    upgrade(engine)
    worker = RulesWorker(cfg, redis, session_factory(engine), RulesMetrics(new_registry()))
    latencies: list[float] = []

    def on_commit(actions: list[Action]) -> None:
        now = time.time()
        for action in actions:
            if isinstance(action, OpenEpisodes):
                latencies.extend(
                    now - d.started for d in action.episodes if d.subject.startswith("T9")
                )

    worker.on_commit = on_commit
    stopper = worker.stopper
    thread = threading.Thread(target=worker.run, args=(stopper,), daemon=True)
    thread.start()
    queue: Any = multiprocessing.get_context("spawn").Queue()
    producer = multiprocessing.get_context("spawn").Process(
        target=_produce, args=(redis_url, LATENCY_S, queue)
    )
    producer.start()
    baseline_p99 = _xadd_roundtrip_p99(redis_url)
    probes = queue.get(timeout=LATENCY_S + 60)
    producer.join(30)
    deadline = time.time() + 30
    while len(latencies) < probes and time.time() < deadline:
        time.sleep(0.1)  # the benchmark's own wait for the last commits, bounded
    stopper.stop()
    thread.join(30)
    if len(latencies) < 20:
        print(f"rules latency: only {len(latencies)} of {probes} probes committed", flush=True)
        return
    p50 = statistics.median(latencies)
    p99 = statistics.quantiles(latencies, n=100)[98]
    print(
        f"rules latency at {RATE:,} signals/s: XADD -> committed episode p50 "
        f"{p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms ({len(latencies)}/{probes} probes); "
        f"plain XADD -> XREADGROUP p99 under the same load {baseline_p99 * 1000:.1f} ms; "
        f"ratio {p99 / baseline_p99:.1f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
