"""``core.heap.settle``: the collector settings a stream-decoding process runs with."""

from __future__ import annotations

import subprocess
import sys


def test_settle_freezes_what_is_alive_and_widens_the_young_generation() -> None:
    # In a process of its own: settling this one would freeze the test session's heap.
    code = (
        "import gc; from core import heap; print(*gc.get_threshold()); heap.settle(); "
        "print(*gc.get_threshold()); print(gc.get_freeze_count() > 0)"
    )
    before, after, frozen = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    assert before == "700 10 10"  # Python's defaults
    assert after == "50000 20 10"
    assert frozen == "True"
