"""The cycle collector's settings for a long-running process that decodes a stream.

A rules worker allocates several container objects for every entry it reads (the reply's
lists, the ``Signal``, derived signals), a collector for every message (paho's message,
the decoded rows), and each keeps almost none of them. Python's default
threshold runs a young-generation pass every 700 net container allocations, a pass every
hundred-odd entries, each also promoting what it finds alive for the older passes to scan
again. Reference counting frees these objects anyway; the collector is only there for
cycles, which the hot path does not make. So, once the process has built what it keeps:

- ``gc.freeze()``: everything alive now (modules, configuration, the compiled rules,
  almost every object of the process) is left out of every later pass, whose full scans
  of it stalled a worker's loop. Frozen objects are still freed by reference counting.
- a young generation of 50,000 allocations (and 20 young passes per middle one), so the
  passes that find nothing to collect run rarely. Memory between passes grows by at
  most the young objects themselves, a few megabytes.

The figures (both benchmarks, before and after) are in
docs/decisions/0308-rules-hot-path.md.

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
