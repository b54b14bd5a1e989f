"""``repsys rules backtest``: what the configured rules would have fired on recorded signals.

A plant tunes thresholds before go-live by replaying what its machines sent: a JSON-lines
file (the golden-case input format) or a range of the partition streams, through the same
engine the worker runs (``rules/replay.py``), and reading per rule and machine how many
episodes would have opened, stayed open, repeated and escalated, and what was held back by
inhibition and silences. A backtest only reads: it consumes nothing from the streams.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

from core import keys
from core.config import RepsysConfig
from core.model import DecodeError, Signal
from core.redis import RedisCommands
from core.sources import SignalSource
from rules.engine import Program
from rules.replay import Ledger, Replay, replay, signals_from_entries


def stream_items(
    redis: RedisCommands,
    partitions: list[int],
    start: str = "-",
    end: str = "+",
    page: int = 10_000,
) -> Iterator[Signal | DecodeError]:
    """Signals recorded in the partition streams, merged by entry time."""
    ranges: list[tuple[tuple[int, int], int, dict[str, str]]] = []
    for p in partitions:
        cursor = start
        while True:
            chunk = redis.xrange(keys.signal_stream(p), min=cursor, max=end, count=page)
            for entry_id, fields in chunk:
                ms, _, seq = entry_id.partition("-")
                ranges.append(((int(ms), int(seq)), p, fields))
            if len(chunk) < page:
                break
            cursor = "(" + chunk[-1][0]
    ranges.sort(key=lambda r: r[0])  # stable: each partition's order is kept
    yield from signals_from_entries(fields for _, _, fields in ranges)


@dataclass
class Merged:
    """The replays of several partitions, merged (what ``backtest_report`` reads)."""

    ledger: Ledger = field(default_factory=Ledger)
    stats: dict[tuple[str, str], int] = field(default_factory=dict)
    forecasts: dict[tuple[str, str], int | None] = field(default_factory=dict)
    signals: int = 0
    bad: int = 0


def _replay_partition(job: tuple[RepsysConfig, str, SignalSource, int]) -> Merged:
    """One partition through its own engine, as one live worker holds one partition."""
    cfg, file, source, partition = job
    program = Program(cfg, file=file)
    out = Merged()

    def items() -> Iterator[Signal]:
        for item in source.read(partition):
            if isinstance(item, DecodeError):
                out.bad += 1
                continue
            yield item

    result = replay(program, items())
    out.ledger, out.stats, out.forecasts = result.ledger, result.stats, result.forecasts
    out.signals = result.engine.signals
    return out


def replay_partitions(
    cfg: RepsysConfig, source: SignalSource, *, file: str = "", processes: int = 0
) -> Merged:
    """Replay every partition of ``source`` in parallel processes, then merge.

    The live engine keeps one engine (and its state) per partition, and a machine's
    signals are always in one partition, so partitions replay independently: the merged
    episodes are those of one engine per partition, exactly as the live workers'.
    """
    parts = source.partitions()
    jobs = [(cfg, file, source, p) for p in parts]
    n = min(len(jobs), processes or os.cpu_count() or 1)
    if n <= 1:
        results = [_replay_partition(job) for job in jobs]
    else:
        with ProcessPoolExecutor(max_workers=n) as pool:
            results = list(pool.map(_replay_partition, jobs))
    merged = Merged()
    for r in results:
        merged.ledger.episodes.update(r.ledger.episodes)
        merged.ledger.tickets.update(r.ledger.tickets)
        for key, count in r.stats.items():
            merged.stats[key] = merged.stats.get(key, 0) + count
        merged.forecasts.update(r.forecasts)
        merged.signals += r.signals
        merged.bad += r.bad
    return merged


def backtest_report(result: Replay | Merged, *, limit: int = 50) -> str:
    """What would have fired, per rule and machine, then the episodes themselves."""
    table: dict[tuple[str, str], dict[str, int]] = {}
    for ep in result.ledger.rows():
        row = table.setdefault((ep["rule"], ep["machine"]), {})
        row["episodes"] = row.get("episodes", 0) + 1
        row["repeats"] = row.get("repeats", 0) + ep["repeat_count"]
        row["escalations"] = row.get("escalations", 0) + ep["escalation_level"]
        row["open"] = row.get("open", 0) + (ep["state"] == "firing")
    rules_total: dict[str, dict[str, int]] = {}
    for (rule, state), n in result.stats.items():
        rules_total.setdefault(rule, {})[state] = n
    cols = ("episodes", "open", "repeats", "escalations")
    lines = [f"{'rule':<24} {'machine':<16} " + " ".join(f"{c:>11}" for c in cols)]
    for (rule, machine), row in sorted(table.items()):
        lines.append(f"{rule:<24} {machine:<16} " + " ".join(f"{row.get(c, 0):>11}" for c in cols))
    if len(lines) == 1:
        lines.append("(nothing would have fired)")
    held = {
        rule: (s.get("inhibited", 0), s.get("silenced", 0))
        for rule, s in rules_total.items()
        if s.get("inhibited") or s.get("silenced")
    }
    if held:
        lines.append("")
        parts = [f"{rule} inhibited {i}, silenced {s}" for rule, (i, s) in sorted(held.items())]
        lines.append("held back: " + "; ".join(parts))
    rows = result.ledger.rows()
    lines.append("")
    lines.append(f"{len(rows)} episodes" + (f" (first {limit})" if len(rows) > limit else ""))
    for ep in rows[:limit]:
        lines.append(
            f"{ep['started_at']}  {ep['machine']:<10} {ep['rule']:<20} {ep['state']:<8} "
            f"{ep['summary']}"
        )
    return "\n".join(lines)
