"""Scale-out of the rules stage: one worker process, then two, over the same partitions.

Part of ``bench.e2e --scale-out``, after the end-to-end run on the same servers. The
partitions are preloaded with ``--scale-out-signals`` signals of the run's mix (the
simulated plant's own signals of every machine, topped up with the same 1 Hz telemetry
values the run's plant published), then drained by ``repsys rules`` processes started
together: once one, once two (a fresh keyspace and database each time, so both drain
the very same entries from the same state). The figure is signals/s from the first
entry read to the last one checkpointed, and the ratio two / one. Two workers share the
8 partitions by lease (4 each once the second one's heartbeat is seen, within a renew
interval): the ratio includes that hand-over, as a plant's scale-out would.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import time
from dataclasses import dataclass
from typing import Any

import yaml

from core import keys
from core.config import parse_config
from core.model import Signal
from repsys.procstat import sample
from repsys.servers import free_port
from sim.plant.model import Plant, default_specs


def _load(r: Any, machines: list[str], rate: float, total: int, telemetry: int,
          partitions: int) -> int:  # fmt: skip
    """Preload about ``total`` signals of the run's mix, a simulated minute at a time (a
    few million signals do not fit in this process at once); the number loaded."""
    seconds = total / (len(machines) * rate)
    start = time.time() - seconds
    plant = Plant(default_specs(machines), seed=3, start_ts=start)
    pipe = r.pipeline(transaction=False)
    loaded = 0
    for t0 in range(0, math.ceil(seconds), 60):
        span = min(60.0, seconds - t0)
        out = plant.advance(span)
        for s in range(t0, t0 + math.ceil(span)):
            ts = start + s
            out.extend(Signal(m, f"tel{j}", float((s + j) % 97), source_ts=ts, receive_ts=ts)
                       for m in machines for j in range(telemetry))  # fmt: skip
        out.sort(key=lambda sig: sig.source_ts)
        for n, sig in enumerate(out, 1):
            pipe.xadd(keys.signal_stream(keys.partition_of(sig.machine, partitions)),
                      sig.to_fields())  # fmt: skip
            if n % 10_000 == 0:
                pipe.execute()
        pipe.execute()
        loaded += len(out)
    return loaded


@dataclass
class Drain:
    """One drain: its rates, where the cores went, and when the partitions were split."""

    workers: int
    total: int
    read_s: float  # first entry read -> last entry read
    tail_s: float  # last entry read -> last one checkpointed (acknowledged)
    split_s: float  # first entry read -> every worker holding its share
    steady: float  # signals/s read from the split to the last read
    cpu: dict[str, float]  # CPU seconds from the split to the last read, by process
    cpu_s: float  # that window's length

    @property
    def rate(self) -> float:
        return self.total / self.read_s

    def line(self) -> str:
        cores = {n: c / self.cpu_s for n, c in self.cpu.items()}
        per_k = {n: cores[n] / self.steady * 1000 for n in self.cpu}
        parts = ", ".join(f"{n} {per_k[n]:.4f} s ({cores[n]:.2f} core)" for n in self.cpu)
        return (
            f"scale-out: {self.workers} rules worker(s) read {self.total:,} preloaded signals "
            f"at {self.rate:,.0f} signals/s (first to last entry read), steady "
            f"{self.steady:,.0f}/s once every worker held its share ({self.split_s:.2f} s in); "
            f"last checkpoint {self.tail_s:.2f} s after the last read\n"
            f"  steady window, CPU s per 1,000 signals (cores busy): {parts}"
        )

    def worker_cores(self) -> float:
        return sum(c for n, c in self.cpu.items() if n.startswith("scale-")) / self.cpu_s

    def other_cores(self) -> float:
        return sum(c for n, c in self.cpu.items() if not n.startswith("scale-")) / self.cpu_s


def _owners(r: Any, partitions: int) -> list[str | None]:
    pipe = r.pipeline(transaction=False)
    for p in range(partitions):
        pipe.get(keys.rules_lease(p))
    return list(pipe.execute())


def _drain(node: Any, workers: int, total: int, partitions: int) -> Drain:
    """Start ``workers`` rules processes and follow their drain of ``total`` entries.

    Every 50 ms: entries read, entries still pending, and who holds each partition (the
    lease keys); CPU of every worker, of redis-server, of PostgreSQL and of this poller,
    from the first entry read to the last one checkpointed.
    """
    from bench.e2e import StageBehindError, _streams  # noqa: PLC0415 - avoids an import cycle

    cfg = yaml.safe_load(node.config.read_text())
    cfg["database"]["url"] = node.pg.create_database(f"scale{workers}_{int(time.time())}")
    path = node.workdir / f"scale-{workers}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    subprocess.run([*node.repsys()[:4], str(path), "db", "upgrade"], check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    names = [f"scale-{workers}-rules-{w + 1}" for w in range(workers)]
    for name in names:
        argv = [*node.repsys()[:4], str(path), "--http-port", str(free_port()), "rules"]
        node.children.start(name, argv, node.env)
    pids = {n: (node.children.procs[n].pid, False) for n in names}
    pids["redis-server"] = (node.redis_srv.proc.pid, False)
    pids["postgresql"] = (node.pg.proc.pid, True)
    pids["poller"] = (os.getpid(), False)

    def cpu_now() -> dict[str, Any]:
        return {n: sample(pid, tree=tree) for n, (pid, tree) in pids.items()}

    deadline = time.monotonic() + total / 2000 + 120
    first = split = last_read = 0.0
    cpu_split: dict[str, Any] = {}
    cpu_last: dict[str, Any] = {}
    share = -(-partitions // workers)
    timeline: list[tuple[float, int]] = []
    while True:
        node.children.check()
        _, read, pending = _streams(node.redis)
        now = time.monotonic()
        if read and not first:
            # From the first entry read: the processes' start-up (imports, connections,
            # a second of CPU each) is not the rules' work.
            first = now
        if first:
            timeline.append((now, read))
            if not split:
                held = _owners(node.redis, partitions)
                counts = [held.count(h) for h in {h for h in held if h}]
                if len(counts) == workers and all(c <= share for c in counts):
                    split, cpu_split = now, cpu_now()
        if read >= total and not last_read:
            last_read, cpu_last = now, cpu_now()
        if read >= total and not pending:
            break
        if now > deadline:
            raise StageBehindError(f"{workers} rules worker(s) read {read:,} of {total:,} in time")
        time.sleep(0.05)  # the drain poll (50 ms of error on seconds)
    node.children.stop(names)
    cpu = {n: cpu_last[n].cpu_s - cpu_split[n].cpu_s
           for n in pids if cpu_split.get(n) and cpu_last.get(n)}  # fmt: skip
    at_split = next(n for t, n in timeline if t >= split)
    steady = (total - at_split) / (last_read - split) if last_read > split else float("nan")
    return Drain(workers, total, last_read - first, now - last_read, split - first, steady,
                 cpu, last_read - split)  # fmt: skip


def scale_out(node: Any, args: argparse.Namespace) -> None:
    node.children.stop([n for n in list(node.children.procs) if n != "sim-plex"])
    listed = yaml.safe_load(node.config.read_text())["machines"]
    machines = [m["id"] for m in listed]
    from bench._e2e_plant import telemetry_values  # noqa: PLC0415

    cfg = parse_config({"machines": listed})
    k = telemetry_values(args.rate_per_machine, cfg)
    partitions = int(yaml.safe_load(node.config.read_text())["streams"]["partitions"])
    drains: dict[int, Drain] = {}
    for workers in (1, 2):
        node.redis.flushall()
        total = _load(node.redis, machines, args.rate_per_machine, args.scale_out_signals, k,
                      partitions)  # fmt: skip
        drains[workers] = d = _drain(node, workers, total, partitions)
        print(d.line(), flush=True)
    one, two = drains[1], drains[2]
    cores = os.cpu_count() or 1
    # The ceiling from CPU per signal (what a neighbour's load does not change, unlike a
    # rate): one worker goes at most as fast as its one core allows; two share the cores
    # with redis-server, PostgreSQL and this poller, whose CPU per signal rises with the
    # rate they serve (measured in the same window).
    c1 = one.worker_cores() / one.steady
    c2 = two.worker_cores() / two.steady
    o2 = two.other_cores() / two.steady
    o1 = one.other_cores() / one.steady
    r1, r2 = min(1.0 / c1, cores / (c1 + o1)), cores / (c2 + o2)
    print(
        f"scale-out ratio, two workers / one: {two.steady / one.steady:.2f} steady, "
        f"{two.rate / one.rate:.2f} first to last read (on {cores} cores shared with "
        f"redis-server; cores busy in the steady window: one worker "
        f"{one.worker_cores():.2f}, two {two.worker_cores():.2f}, the others "
        f"{one.other_cores():.2f} and {two.other_cores():.2f})\n"
        f"  ceiling from CPU per signal (µs: one worker {c1 * 1e6:.2f}; two workers "
        f"{c2 * 1e6:.2f} in all; redis-server, PostgreSQL and the poller beside two "
        f"{o2 * 1e6:.2f}): one worker at most {r1:,.0f} signals/s (its core), two at most "
        f"{r2:,.0f} ({cores} cores less the others' share): {r2 / r1:.2f}x",
        flush=True,
    )
