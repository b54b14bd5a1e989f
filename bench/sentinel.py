"""Redis Sentinel: what the Sentinel client and WAIT-confirmed writes cost the signal path.

The collector writes signals in pipelined XADD batches. Through a Sentinel group it
should (docs/DEPLOY.md) confirm each batch with WAIT, so that a failover cannot drop
what it already acknowledged upstream. Measured on a local group (master, two replicas,
three sentinels), beside a plain client on the same master in the same run:

* signals/s through ``core.redis.connect_sync`` (Sentinel mode), and with WAIT for both
  replicas after each batch;
* after a planned failover, the time until the first WAIT-confirmed batch on the new
  master, beside the time the sentinels took to promote it: with the client's pooled
  connections kept (they stay on the old master until it is demoted, up to 10 s) and
  with the pool dropped whenever WAIT finds no replica (the next command asks the
  sentinels where the master is).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from core import keys
from core.model import Signal
from core.redis import connect_sync
from tests.deploy.topologies import SentinelGroup

BATCH = 1000
BATCHES = 50
PARTITIONS = 8


def _batches() -> list[list[tuple[str, dict[str, str]]]]:
    out = []
    for b in range(BATCHES):
        batch = []
        for i in range(BATCH):
            machine = f"cnc{(b * BATCH + i) % 300}"
            stream = keys.signal_stream(keys.partition_of(machine, PARTITIONS))
            sig = Signal(machine, "spindle_load", float(i % 97), receive_ts=1.7e9 + i)
            batch.append((stream, sig.to_fields()))
        out.append(batch)
    return out


def _write(client: Any, batches: list[list[tuple[str, dict[str, str]]]], wait: int) -> float:
    """Signals/s of pipelined batches; ``wait``: replicas that must confirm each batch."""
    started = time.perf_counter()
    for batch in batches:
        pipe = client.pipeline(transaction=False)
        for stream, fields in batch:
            pipe.xadd(stream, fields)
        pipe.execute()
        if wait and client.wait(wait, 1000) < wait:
            raise RuntimeError("the replica did not confirm a batch")
    return BATCH * len(batches) / (time.perf_counter() - started)


def _failover_times(group: SentinelGroup, *, rediscover: bool) -> tuple[float, float]:
    """(seconds until the sentinels report the new master, until a confirmed write there).

    A write is confirmed when every replica has it (WAIT <replicas>): the sentinels may
    promote any of them. ``rediscover``: when WAIT falls short, drop the pool's
    connections, so the next command asks the sentinels where the master is instead of
    staying on the old master until it is demoted.
    """
    replicas = len(group.replicas)
    client = connect_sync(group.config())
    batch = _batches()[0][:100]
    before = group.master_port()
    started = time.monotonic()
    with redis.Redis(port=group.sentinels[0].port) as sentinel:
        sentinel.execute_command("SENTINEL", "FAILOVER", "mymaster")
    promoted = confirmed = 0.0
    try:
        while not confirmed:
            now = group.master_port()
            if not promoted and now != before:
                promoted = time.monotonic() - started
            try:
                pipe = client.pipeline(transaction=False)
                for stream, fields in batch:
                    pipe.xadd(stream, fields)
                pipe.execute()
                if client.wait(replicas, 200) < replicas:
                    if rediscover:
                        client.connection_pool.disconnect()
                elif promoted and int(client.info("server")["tcp_port"]) == now:
                    confirmed = time.monotonic() - started
            except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
                time.sleep(0.01)
            if time.monotonic() - started > 60:
                raise RuntimeError("no confirmed write within 60 s of the failover")
    finally:
        client.close()
    return promoted, confirmed


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="repsys-bench-sentinel-") as tmp:
        # Two replicas, as a RedisReplication of three: after a failover the sentinels
        # repoint the other replica at once, so the new master soon has one to confirm.
        group = SentinelGroup(Path(tmp), replicas=2)
        group.start()
        try:
            batches = _batches()
            plain = redis.Redis(port=group.master_port(), decode_responses=True)
            sentinel = connect_sync(group.config())
            _write(plain, batches[:5], wait=0)  # warm-up: the streams exist
            base = _write(plain, batches, wait=0)
            through = _write(sentinel, batches, wait=0)
            confirmed = _write(sentinel, batches, wait=len(group.replicas))
            plain.close()
            sentinel.close()
            print(f"plain client, pipelined XADD   {base:12,.0f} signals/s (baseline)")
            for label, rate in (
                ("Sentinel client (core.redis)  ", through),
                ("Sentinel client + WAIT 2/batch", confirmed),
            ):
                print(f"{label} {rate:12,.0f} signals/s  ratio {rate / base:.2f}")
            for rediscover in (False, True):
                group.wait_replicated()
                promoted, first = _failover_times(group, rediscover=rediscover)
                how = "re-asking the sentinels" if rediscover else "same connections"
                print(
                    f"planned failover, {how}: promoted after {promoted:.2f} s (baseline), "
                    f"first confirmed write after {first:.2f} s  ratio {first / promoted:.2f}"
                )
        finally:
            group.stop()


if __name__ == "__main__":
    main()
