"""CPU seconds and resident memory of a harness's child processes, from ``/proc``.

Used by the end-to-end benchmark (``bench/e2e.py``) and the chaos soak (``repsys/chaos.py``).

psutil is not a dependency of RepSys, and ``/proc/<pid>/stat`` and ``/proc/<pid>/status``
say all a harness needs. A *process* here is a tree: PostgreSQL is a postmaster and
a backend per connection, so its CPU is the sum over the live tree plus what its reaped
children used (``cutime``/``cstime``), and its memory is the sum of the tree's PSS
(proportional set size: shared buffers counted once, not once per backend). A single
process (redis-server, a RepSys process) reports its RSS.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sample:
    """One reading of a process tree."""

    cpu_s: float  # user + system, the tree's and its reaped children's
    mem_kb: int  # RSS of the root, or PSS summed over the tree (``tree=True``)


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name sits in parentheses and may hold spaces: split after the last ')'.
    return text[text.rindex(")") + 2 :].split()


def _cpu(fields: list[str], children: bool) -> float:
    # Fields after the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICK


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def descendants(root: int) -> list[int]:
    """``root`` and every live process below it."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None:
                parent[int(entry)] = int(fields[1])
    out = [root]
    frontier = [root]
    while frontier:
        pid = frontier.pop()
        kids = [c for c, p in parent.items() if p == pid]
        out += kids
        frontier += kids
    return out


def sample(pid: int, *, tree: bool = False) -> Sample | None:
    """CPU and memory of ``pid`` (and, with ``tree``, of its descendants); None if gone."""
    root = _stat(pid)
    if root is None:
        return None
    if not tree:
        return Sample(_cpu(root, children=True), _status_kb(pid, "VmRSS:"))
    cpu = 0.0
    mem = 0
    for p in descendants(pid):
        fields = root if p == pid else _stat(p)
        if fields is None:
            continue  # a backend that exited meanwhile: counted in the root's cutime later
        # Only the root's reaped children count: a live child's cutime is also in its own
        # fields once its children are reaped by it, and backends have none.
        cpu += _cpu(fields, children=p == pid)
        mem += _pss_kb(p)
    return Sample(cpu, mem)
