"""Rules worker memory over simulated time: does its heap level off, and what grows if not.

One rules worker (in this process, on a private redis-server and a SQLite file) drains the
end-to-end run's mix (``bench/e2e.py``: the simulated plant's own signals of every
machine, topped up with 1 Hz telemetry values to 20 signals a machine-second), fed a
simulated minute at a time by a child process (so the generator's objects are not in
this process's memory). The worker's clock is the data's, so timers see the plant's time.

After each minute it prints the resident set (``VmRSS``) and the bytes Python's
allocator holds, and, from minute ``--trace-from`` on, the bytes allocated since then
and still alive (``tracemalloc``); at the end, the sites whose memory grew most from the
end of that minute to the last one, by line and then by the traceback's first frames;
and the machines' rule state by part, as its checkpoint serializes it. Growth that
levels off is warm-up (the rule windows filling); growth that does not, named by its
site, is a leak.

``python -m bench.rules_memory --machines 1000 --minutes 10 --trace-from 3``
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import sys
import tempfile
import time
import tracemalloc
from multiprocessing.connection import Connection
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
from rules.metrics import RulesMetrics
from rules.worker import RulesWorker
from sim.plant.model import Plant, default_specs

PARTITIONS = 8


def _ids(n: int) -> list[str]:
    return [f"m{i:04d}" for i in range(n)]


def _config(redis_url: str, db_url: str, machines: int) -> Any:
    from bench.rules import RULES  # noqa: PLC0415 - the benchmark's rules, every type

    listed = [
        {"id": m, "pcn": 123681, "workcenter_key": 60000 + n, "workcenter_code": m}
        for n, m in enumerate(_ids(machines))
    ]
    return parse_config({
        "machines": listed,
        "redis": {"url": redis_url},
        "database": {"url": db_url},
        "logging": {"format": "json", "level": "ERROR"},
        "streams": {"partitions": PARTITIONS},
        # The feeder takes tens of seconds a minute between drains: leases that outlive it,
        # so the worker keeps its engines (a re-take would rebuild them from checkpoints).
        "rules": {"group_wait_s": 0, "rules": RULES,
                  "worker": {"lease_ttl_s": 3600, "worker_ttl_s": 3600}},
    })  # fmt: skip


def _feed(redis_url: str, machines: int, telemetry: int, start: float, conn: Connection) -> None:
    """Child: on each request, the next simulated minute into the streams; replies its
    count and the minute's last source time."""
    r = connect_sync(parse_config({"redis": {"url": redis_url}}).redis)
    ids = _ids(machines)
    plant = Plant(default_specs(ids), seed=3, start_ts=start)
    minute = 0
    while conn.recv():
        out = plant.advance(60.0)
        t0 = start + minute * 60
        for s in range(60):
            ts = t0 + s
            out.extend(Signal(m, f"tel{j}", float((s + j) % 97), source_ts=ts, receive_ts=ts)
                       for m in ids for j in range(telemetry))  # fmt: skip
        out.sort(key=lambda sig: sig.source_ts)
        pipe = r.pipeline(transaction=False)
        for n, sig in enumerate(out, 1):
            stream = keys.signal_stream(keys.partition_of(sig.machine, PARTITIONS))
            pipe.xadd(stream, sig.to_fields())
            if n % 10_000 == 0:
                pipe.execute()
        pipe.execute()
        minute += 1
        conn.send((len(out), t0 + 60))


def _state_sizes(worker: RulesWorker) -> list[tuple[str, int]]:
    """Bytes of each part of the machines' rule state, serialized as its checkpoint is
    (a measure of what it holds), largest first."""
    sizes: dict[str, int] = {}
    for held in worker.held.values():
        for m in held.engine.machines.values():
            for name, value in m.rules.items():
                key = name.split("#")[0]
                sizes[key] = sizes.get(key, 0) + len(json.dumps(value))
            for name in ("tools", "alerts", "occ", "fastest", "fastest_cycle"):
                part = getattr(m, name)
                sizes[name] = sizes.get(name, 0) + len(json.dumps(part, default=repr))
    return sorted(sizes.items(), key=lambda kv: -kv[1])


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _drain(worker: RulesWorker, total: int, now: list[float]) -> None:
    """Read, evaluate, commit, tick and checkpoint until ``total`` entries are in."""
    last_tick = 0.0
    next_round = time.monotonic() + worker.wcfg.renew_interval_s
    while worker.stats.entries < total:
        if time.monotonic() >= next_round:
            worker.round()  # the leases expire in real time, whatever the data's clock
            next_round = time.monotonic() + worker.wcfg.renew_interval_s
        if not worker.read_once():
            break
        worker.commit()
        worker.checkpoints.due(worker.held, now[0])
        if now[0] - last_tick >= worker.wcfg.tick_interval_s:
            worker.tick(now[0])
            last_tick = now[0]
    worker.commit()
    worker.checkpoint_all()


def run(args: argparse.Namespace) -> None:
    configure_logging("json", "ERROR")
    with tempfile.TemporaryDirectory(prefix="repsys-bench-rules-mem-") as tmp:
        srv = RedisServer(Path(tmp) / "redis")
        srv.start()
        try:
            cfg = _config(srv.url, f"sqlite:///{tmp}/rules.db", args.machines)
            engine = make_engine(cfg.database)
            upgrade(engine)
            redis = connect_sync(cfg.redis)
            from bench._e2e_plant import telemetry_values  # noqa: PLC0415

            k = telemetry_values(20.0, cfg)
            start = time.time() - args.minutes * 60
            now = [start]
            worker = RulesWorker(cfg, redis, session_factory(engine),
                                 RulesMetrics(new_registry()), clock=lambda: now[0])  # fmt: skip
            ctx = multiprocessing.get_context("spawn")
            parent, child = ctx.Pipe()
            feeder = ctx.Process(target=_feed, args=(srv.url, args.machines, k, start, child))
            feeder.start()
            worker.round()
            heap.settle()  # as RulesWorker.run does
            total = 0
            first: tracemalloc.Snapshot | None = None
            print(
                f"rules worker memory: {args.machines:,} machines, {k} telemetry values a "
                "machine-second beside the plant's, a simulated minute at a time",
                flush=True,
            )
            for minute in range(1, int(args.minutes) + 1):
                if minute == args.trace_from:
                    tracemalloc.start(args.frames)
                parent.send(True)
                n, now[0] = parent.recv()
                total += n
                started = time.perf_counter()
                _drain(worker, total, now)
                for p in range(PARTITIONS):
                    redis.xtrim(keys.signal_stream(p), maxlen=0)  # acknowledged: Redis's memory
                gc.collect()
                if minute == args.trace_from:
                    # The base: what this minute left alive (its transients are gone).
                    first = tracemalloc.take_snapshot()
                traced = tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else 0
                sizes = _state_sizes(worker)
                rate = n / (time.perf_counter() - started)
                held = sum(len(h.engine.machines) for h in worker.held.values())
                parts = ", ".join(f"{part} {size / 1024:,.0f}" for part, size in sizes[:6])
                print(
                    f"  minute {minute:3d}: {total:>12,} signals, {rate:>9,.0f}/s, "
                    f"RSS {_rss_kb() / 1024:7.1f} MiB, alive since tracing "
                    f"{traced / 2**20:6.2f} MiB, machines held {held}\n"
                    f"      rule state as JSON, KiB: {parts}",
                    flush=True,
                )
            parent.send(False)
            feeder.join(10)
            if first is not None:
                last = tracemalloc.take_snapshot()
                for key in ("lineno", "traceback"):
                    print(f"largest growth since minute {args.trace_from}, by {key}:")
                    for stat in last.compare_to(first, key)[: args.top]:
                        where = stat.traceback.format(limit=args.frames)
                        print(f"  {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+8d} blocks  "
                              + "\n      ".join(where))  # fmt: skip
        finally:
            srv.stop()


#: ``make bench`` (``python -m bench``): a short run; the module's own command line
#: takes the defaults below (1,000 machines, 10 simulated minutes: a few minutes).
SHORT = ["--machines", "300", "--minutes", "5"]


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.rules_memory [options]``; from ``python -m bench``: ``SHORT``."""
    p = argparse.ArgumentParser(
        prog="python -m bench.rules_memory", description=__doc__.split("\n")[0]
    )
    p.add_argument("--machines", type=int, default=1000)
    p.add_argument("--minutes", type=float, default=10.0, help="simulated minutes")
    p.add_argument("--trace-from", type=int, default=3, help="minute tracemalloc starts at")
    p.add_argument("--frames", type=int, default=4, help="traceback frames kept")
    p.add_argument("--top", type=int, default=12)
    run(p.parse_args(SHORT if argv is None else argv))


if __name__ == "__main__":
    main(sys.argv[1:])
