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
import os
import subprocess
import time
from typing import Any

import yaml

from core import keys
from core.config import parse_config
from core.model import Signal
from repsys.procstat import sample
from repsys.servers import free_port
from sim.plant.model import Plant, default_specs


def _signals(machines: list[str], rate: float, total: int, telemetry: int) -> list[Signal]:
    seconds = total / (len(machines) * rate)
    start = time.time() - seconds
    out = Plant(default_specs(machines), seed=3, start_ts=start).advance(seconds)
    for s in range(int(seconds)):
        ts = start + s
        for m in machines:
            out.extend(Signal(m, f"tel{j}", float((s + j) % 97), source_ts=ts, receive_ts=ts)
                       for j in range(telemetry))  # fmt: skip
    out.sort(key=lambda sig: sig.source_ts)
    return out


def _load(r: Any, signals: list[Signal], partitions: int) -> None:
    pipe = r.pipeline(transaction=False)
    for n, sig in enumerate(signals, 1):
        pipe.xadd(keys.signal_stream(keys.partition_of(sig.machine, partitions)), sig.to_fields())
        if n % 10_000 == 0:
            pipe.execute()
    pipe.execute()


def _drain(node: Any, workers: int, total: int, partitions: int) -> tuple[float, float]:
    """Start ``workers`` rules processes; signals/s to drain ``total``, and their CPU s."""
    from bench.e2e import StageBehindError, _streams  # noqa: PLC0415 - avoids an import cycle

    cfg = yaml.safe_load(node.config.read_text())
    cfg["database"]["url"] = node.pg.create_database(f"scale{workers}")
    path = node.workdir / f"scale-{workers}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    subprocess.run([*node.repsys()[:4], str(path), "db", "upgrade"], check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    names = [f"scale-{workers}-rules-{w + 1}" for w in range(workers)]
    for name in names:
        argv = [*node.repsys()[:4], str(path), "--http-port", str(free_port()), "rules"]
        node.children.start(name, argv, node.env)
    pids = [node.children.procs[n].pid for n in names]
    cpu0: list[Any] = []
    deadline = time.monotonic() + total / 2000 + 120
    first = 0.0
    while True:
        node.children.check()
        _, read, pending = _streams(node.redis)
        now = time.monotonic()
        if read and not first:
            # From the first entry read: the processes' start-up (imports, connections,
            # a second of CPU each) is not the rules' work.
            first = now
            cpu0 = [sample(p) for p in pids]
        if read >= total and not pending:
            break
        if now > deadline:
            raise StageBehindError(f"{workers} rules worker(s) read {read:,} of {total:,} in time")
        time.sleep(0.1)  # the drain poll (a 10th of a second of error on tens of seconds)
    elapsed = now - first
    cpu1 = [sample(p) for p in pids]
    cpu = sum(b.cpu_s - a.cpu_s for a, b in zip(cpu0, cpu1, strict=True) if a and b)
    node.children.stop(names)
    return total / elapsed, cpu


def scale_out(node: Any, args: argparse.Namespace) -> None:
    node.children.stop([n for n in list(node.children.procs) if n != "sim-plex"])
    listed = yaml.safe_load(node.config.read_text())["machines"]
    machines = [m["id"] for m in listed]
    from bench._e2e_plant import telemetry_values  # noqa: PLC0415

    cfg = parse_config({"machines": listed})
    k = telemetry_values(args.rate_per_machine, cfg)
    signals = _signals(machines, args.rate_per_machine, args.scale_out_signals, k)
    partitions = int(yaml.safe_load(node.config.read_text())["streams"]["partitions"])
    rates = {}
    for workers in (1, 2):
        node.redis.flushall()
        _load(node.redis, signals, partitions)
        rate, cpu = _drain(node, workers, len(signals), partitions)
        rates[workers] = rate
        print(f"scale-out: {workers} rules worker(s) drained {len(signals):,} preloaded signals "
              f"at {rate:,.0f} signals/s ({cpu / len(signals) * 1000:.3f} CPU s per 1,000)",
              flush=True)  # fmt: skip
    print(
        f"scale-out ratio, two workers / one: {rates[2] / rates[1]:.2f} (on "
        f"{os.cpu_count()} cores shared with redis-server)",
        flush=True,
    )
