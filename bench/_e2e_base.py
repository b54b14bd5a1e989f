"""The bare pipeline beside the end-to-end run: XADD -> XREADGROUP -> XACK, no work.

Two child processes of ``bench.e2e``, so their CPU is read from ``/proc`` like the
pipeline's:

* ``produce URL RATE SECONDS PARTITIONS MAXLEN``: XADDs real stream entries (a sample the
  end-to-end run left in the signal streams) at ``RATE`` a second, pipelined every 10 ms
  into ``repsys:bench:base:{p}`` (``MAXLEN ~`` as the collector trims): the least a
  collector must do per signal.
* ``consume URL PARTITIONS``: ``XREADGROUP`` up to 1,000 entries of every partition, then
  ``XACK`` them, until SIGTERM: the least a rules worker must do per signal.
"""

from __future__ import annotations

import signal
import sys
import time
from typing import Any

import redis

SAMPLE_KEY = "repsys:bench:base:sample"
GROUP = "base"


def stream(p: int) -> str:
    return f"repsys:bench:base:{{{p}}}"


def produce(url: str, rate: float, seconds: float, partitions: int, maxlen: int) -> None:
    r = redis.Redis.from_url(url)
    sample: Any = r.xrange(SAMPLE_KEY)
    fields = [f for _, f in sample]
    if not fields:
        raise SystemExit("baseline: no sample entries")
    tick_s = 0.01
    per_tick = rate * tick_s
    owed = 0.0
    n = 0
    started = time.time()
    tick = 0
    while time.time() - started < seconds:
        owed += per_tick
        pipe = r.pipeline(transaction=False)
        while owed >= 1.0:
            pipe.xadd(stream(n % partitions), fields[n % len(fields)], maxlen=maxlen,
                      approximate=True)  # fmt: skip
            n += 1
            owed -= 1.0
        pipe.execute()
        tick += 1
        wait = started + tick * tick_s - time.time()
        if wait > 0:
            time.sleep(wait)  # the offered rate's clock


def consume(url: str, partitions: int) -> None:
    r = redis.Redis.from_url(url)
    streams = [stream(p) for p in range(partitions)]
    for s in streams:
        r.xgroup_create(s, GROUP, id="0", mkstream=True)
    stopping = False

    def on_term(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    while not stopping:
        reply: Any = r.xreadgroup(GROUP, "c", dict.fromkeys(streams, ">"), count=1000, block=100)
        if not reply:
            continue
        pipe = r.pipeline(transaction=False)
        for name, entries in reply:
            pipe.xack(name, GROUP, *[e[0] for e in entries])
        pipe.execute()


if __name__ == "__main__":
    a = sys.argv[1:]
    if a[0] == "produce":
        produce(a[1], float(a[2]), float(a[3]), int(a[4]), int(a[5]))
    else:
        consume(a[1], int(a[2]))
