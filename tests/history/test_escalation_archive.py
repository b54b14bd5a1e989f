"""OEE's signals for a shift the capped stream no longer holds whole, read from history.

The same shift read from a complete stream, and from a stream trimmed past the shift
start with the signal history as the archive, must give the same samples, the same values
before the shift and full coverage; without the archive the figures are partial.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from core import keys
from core.config import RepsysConfig
from core.model import Signal
from history.read import HistoryArchive
from runner.escalation.signals import read_history
from tests.history.test_writer import writer_for

P = 2
START = datetime(2026, 11, 3, 6, 0, tzinfo=UTC)
END = START + timedelta(hours=8)
MACHINES = ["cnc101", "cnc102", "cnc103"]


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _plant(redis: Any) -> None:
    """Program and mode before the shift, part counts every minute from 05:00 to 14:00."""
    at = START - timedelta(hours=2)
    seq: dict[int, int] = {}
    entries: list[tuple[datetime, Signal]] = []
    for n, machine in enumerate(MACHINES):
        entries.append((at + timedelta(seconds=n), Signal(machine, "program", f"O{n}")))
        entries.append(
            (at + timedelta(minutes=30, seconds=n), Signal(machine, "operation_mode", "processing"))
        )
    for minute in range(9 * 60):
        t = START - timedelta(hours=1) + timedelta(minutes=minute)
        for n, machine in enumerate(MACHINES):
            if (minute + n) % 7 == 0:
                continue  # a missed part now and then
            entries.append((t + timedelta(seconds=n), Signal(machine, "part_count", minute)))
    entries.sort(key=lambda e: e[0])
    for when, bare in entries:
        sig = Signal(bare.machine, bare.name, bare.value, source_ts=when.timestamp(),
                     receive_ts=when.timestamp())  # fmt: skip
        p = keys.partition_of(sig.machine, P)
        ms = _ms(when)
        n = seq.get(ms, 0)
        seq[ms] = n + 1
        redis.xadd(keys.signal_stream(p), sig.to_fields(), id=f"{ms}-{n}")


def test_a_trimmed_shift_is_read_whole_from_the_history(
    make_config: Any, redis_url: str, redis_client: Any, tmp_path: Path
) -> None:
    cfg: RepsysConfig = make_config(
        {"streams": {"partitions": P}, "storage": {"type": "local", "root": str(tmp_path)}}
    )
    _plant(redis_client)
    writer_for(cfg, redis_url).drain()
    full = read_history(redis_client, P, START, END, MACHINES)
    assert not full.covered_from and sum(len(m.samples) for m in full.machines.values()) > 1000

    cut = f"{_ms(START + timedelta(hours=2))}-0"
    for p in range(P):
        redis_client.xtrim(keys.signal_stream(p), minid=cut, approximate=False)
    partial = read_history(redis_client, P, START, END, MACHINES)
    assert set(partial.covered_from) == {keys.partition_of(m, P) for m in MACHINES}
    assert partial.machines != full.machines

    filled = read_history(redis_client, P, START, END, MACHINES, archive=HistoryArchive(cfg))
    assert filled == full
