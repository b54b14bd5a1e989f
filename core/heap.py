"""The cycle collector's settings for a long-running process that decodes a stream.

A rules worker allocates several container objects for every entry it reads (the reply's
lists, the ``Signal``, derived signals), a collector for every message (paho's message,
the decoded rows), and each keeps almost none of them. Python's default
threshold runs a young-generation pass every 700 net container allocations, a pass every
hundred-odd entries, each also promoting what it finds alive for the older passes to scan
again. Reference counting frees these objects anyway; the collector is only there for
cycles, which the hot path does not make. So, once the process has built what it keeps:

- ``gc.freeze()``: everything alive now (modules, configuration, the compiled rules,
  almost every object of the process) is left out of every later pass. Full passes over
  it stalled a worker's loop for 100-300 ms each (the XADD → episode p99 of
  ``bench/rules.py``). Frozen objects are still freed by reference counting.
- a young generation of 50,000 allocations (and 20 young passes per middle one): measured
  in ``bench/rules.py``'s drain, interleaved runs on one machine, 25-32k signals/s at the
  default against 31-41k; the bare ``XREADGROUP`` loop beside it gains more (about 52k →
  80k), since it does little else. In ``bench/collector.py`` (MQTT, interleaved rounds)
  the collector's CPU per message fell from 77-96 us to 44-77 us, and its median ratio to
  the raw paho loop (settled the same way) from 0.59-0.61 to 0.72-0.75. Memory between
  passes grows by at most the young objects themselves, a few megabytes.

Called by ``RulesWorker.run`` and ``Collector.run``; the benchmarks call it before both
of their loops, so each side runs under the same settings.
"""

from __future__ import annotations

import gc

#: Container allocations between young-generation passes (Python's default: 700).
YOUNG = 50_000


def settle() -> None:
    """Collect once, freeze what is alive, and widen the young generation (see above)."""
    gc.collect()
    gc.freeze()
    _, _, old = gc.get_threshold()
    gc.set_threshold(YOUNG, 20, old)
