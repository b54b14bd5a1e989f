"""Cycle-time baselines on the machines board, read from the rules engine's checkpoints.

The rules worker checkpoints each machine's state as one JSON blob in its partition's
state hash (``keys.rules_state``). A ``cycle_time`` rule keeps there, per program, either
its phase I stretch (``warm``: the cycles collected so far) or its baseline (``mean``,
``sigma``, ``n`` cycles, ``removed`` screened out): see ``rules/types/cycle_time.py``. The
board shows each program's baseline size and spread, or how far its phase I got, so a
quality engineer sees what the charts compare with.

Cost: one pipelined ``HGET`` per machine shown (a blob is about 6 KB), once per board
load. A blob that does not parse is skipped and logged, never an error page.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from core import keys
from core.config import RepsysConfig
from core.logs import get_logger
from core.redis import RedisCommands

log = get_logger(__name__)


@dataclass(frozen=True)
class CycleBaseline:
    """One line of a machine's tile: a program and what its baseline is."""

    program: str
    text: str


def _num(value: float) -> str:
    return f"{round(value, 2):g}"


def _line(program: str, b: Any, warmup: int) -> CycleBaseline | None:
    if not isinstance(b, dict):
        return None
    try:
        if "sigma" in b and "n" in b:
            text = f"{_num(b['mean'])} ± {_num(b['sigma'])} s ({int(b['n'])} cycles"
            removed = int(b.get("removed", 0))
            text += f", {removed} screened out)" if removed else ")"
        elif isinstance(b.get("warm"), list):
            text = f"learning: {len(b['warm'])} of {warmup} cycles"
        else:
            return None
    except (TypeError, ValueError, KeyError):
        return None
    return CycleBaseline(program or "(no program)", text)


def cycle_baselines(redis: RedisCommands, cfg: RepsysConfig) -> dict[str, list[CycleBaseline]]:
    """Machine id → its cycle_time baselines, per program (machines without any left out)."""
    rules = [(r.name, r.warmup_cycles) for r in cfg.rules.rules if r.type == "cycle_time"]
    if not rules or not cfg.machines:
        return {}
    pipe = redis.pipeline(transaction=False)
    for m in cfg.machines:
        pipe.hget(keys.rules_state(keys.partition_of(m.id, cfg.streams.partitions)), m.id)
    out: dict[str, list[CycleBaseline]] = {}
    for m, blob in zip(cfg.machines, pipe.execute(), strict=True):
        if not blob:
            continue
        try:
            state = json.loads(blob)["rules"]
        except (ValueError, KeyError, TypeError):
            log.warning("rules_state_unreadable", machine=m.id)
            continue
        lines = []
        for name, warmup in rules:
            base = state.get(name, {}).get("base", {}) if isinstance(state, dict) else {}
            for program, b in sorted(base.items()) if isinstance(base, dict) else ():
                line = _line(program, b, warmup)
                if line is not None:
                    lines.append(line)
        if lines:
            out[m.id] = lines
    return out
