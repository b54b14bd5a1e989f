"""The end-to-end benchmark's own machinery (``bench/e2e.py``): what it reads from ``/proc``
is what the processes used, and a stage that falls behind stops the run with its name."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.e2e import Reading, StageBehindError, _check_backlog, _Mosquitto
from repsys.procstat import descendants, sample
from repsys.servers import port_open

#: A child that burns CPU until its own clock says 0.3 s, prints that, then waits.
BURN = (
    "import sys, time\n"
    "while time.process_time() < 0.3: pass\n"
    "print(time.process_time(), flush=True)\n"
    "sys.stdin.read()\n"
)


def test_a_tree_counts_its_childrens_cpu_and_the_root_alone_does_not() -> None:
    # The shell is the root (like the postmaster); the Python child does the work.
    root = subprocess.Popen(
        ["/bin/sh", "-c", f'{sys.executable} -c "$0"; true', BURN],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert root.stdout is not None
        child_cpu = float(root.stdout.readline())  # the child's own figure: the reference
        assert len(descendants(root.pid)) == 2
        tree, alone = sample(root.pid, tree=True), sample(root.pid)
        assert tree is not None and alone is not None
        # /proc counts in clock ticks (10 ms): the tree holds the child's CPU within two.
        assert tree.cpu_s == pytest.approx(child_cpu, abs=0.05)
        assert alone.cpu_s < 0.1
        assert tree.mem_kb > 0 and alone.mem_kb > 0
    finally:
        assert root.stdin is not None
        root.stdin.close()
        root.wait(10)
    assert sample(root.pid) is None  # gone: no figure rather than a stale one


def _reading(offered: int, added: int, read: int, pending: int, behind: float = 0.0) -> Reading:
    plant = {"signals": offered, "behind_s": behind}
    return Reading(time.monotonic(), plant, added, read, pending, 0, {})


@pytest.mark.parametrize(
    ("reading", "stage"),
    [
        (_reading(400_000, 99_999, 99_999, 0), "the collector fell behind"),
        (_reading(400_000, 400_000, 99_999, 0), "the rules workers fell behind"),
        (_reading(400_000, 400_000, 400_000, 300_001), "the rules workers fell behind"),
        (_reading(400_000, 400_000, 400_000, 0, behind=31.0), "the plant simulator runs"),
    ],
)
def test_a_stage_past_its_backlog_bound_is_named(reading: Reading, stage: str) -> None:
    with pytest.raises(StageBehindError, match=stage):
        _check_backlog(reading, rate=10_000, limit_s=30)


def test_a_backlog_within_the_bound_goes_on() -> None:
    _check_backlog(_reading(400_000, 200_001, 100_002, 1), rate=10_000, limit_s=30)


def test_the_bench_broker_saves_as_mosquitto_does_by_default(tmp_path: Path) -> None:
    """Decision 0492: the plant's broker is not saved every second (the tests' setting)."""
    broker = _Mosquitto(tmp_path, 1800)
    broker.start(timeout=30)
    try:
        conf = (tmp_path / "mosquitto.conf").read_text().splitlines()
        assert [line for line in conf if line.startswith("autosave_interval")] == [
            "autosave_interval 1800"
        ]
        assert "persistence true" in conf  # QoS 1 sessions as before
        assert port_open(broker.port)
    finally:
        broker.stop()
