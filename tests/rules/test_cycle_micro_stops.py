"""Micro-stops are micro_stop's, not a slow cycle: cycle_time judges the time a cycle ran.

The soak (``repsys soak``, the ``micro_stops`` fault) found it: twelve 20 s feed holds
four minutes apart on a 35 s cycle filed "cycle time out of control (slow): 61.94 s
against a baseline of 34.86 s" next to the micro-stop ticket, two tickets for one
problem, the second one wrong (the cuts were not slower). A pause shorter than
``stop_min_s`` kept the cycle whole; now the time paused is taken out of it.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from core.model import Signal
from repsys.soak import soak_config
from rules.engine import Program
from rules.replay import replay
from sim.plant.model import Plant, default_specs
from sim.plant.scenario import Fault, FaultKind, Scenario

RULES = """
group_wait_s: 0
rules:
  - {name: downtime, type: downtime, for_s: 60}
  - {name: micro_stop, type: micro_stop}
  - {name: cycle_time, type: cycle_time, warmup_cycles: 60}
"""
START = 1_700_000_000.0


def _cfg(tmp_path: Path, ids: list[str]) -> Program:
    (tmp_path / "rules.yaml").write_text(RULES)
    return Program(soak_config(default_specs(ids), tmp_path / "rules.yaml"))


def test_micro_stops_file_a_micro_stop_ticket_and_no_slow_cycle(tmp_path: Path) -> None:
    # cnc204: 35 s cuts, the slowest default machine (the soak's cnc203/cnc215 case); its
    # neighbour runs slow cycles at the same time, which cycle_time must still see.
    ids = ["cnc201", "cnc202", "cnc203", "cnc204"]
    faults = (
        Fault(4000.0, FaultKind.MICRO_STOPS, machine="cnc204", duration_s=2880.0),
        Fault(4000.0, FaultKind.SLOW_CYCLES, machine="cnc203", duration_s=1800.0, rate=0.1),
    )
    plant = Plant(default_specs(ids), Scenario(faults=faults), seed=1, start_ts=START)
    result = replay(_cfg(tmp_path, ids), plant.advance(4000.0 + 2880.0 + 1800.0))
    fired = sorted((r["machine"], r["rule"]) for r in result.ledger.rows())
    assert fired == [("cnc203", "cycle_time"), ("cnc204", "micro_stop")]


def _sig(t: float, name: str, value: float | str) -> Signal:
    return Signal(
        machine="cnc201", name=name, value=value, source_ts=START + t, receive_ts=START + t
    )


def test_the_time_paused_is_taken_out_of_the_cycle(tmp_path: Path) -> None:
    """Cycles of 30 s; the 70th holds 20 s of pause in it: judged as 30 s, not 50 s."""
    rules = "group_wait_s: 0\nrules:\n  - {name: cycle_time, type: cycle_time, warmup_cycles: 60}\n"
    (tmp_path / "rules.yaml").write_text(rules)
    program = Program(soak_config(default_specs(["cnc201"]), tmp_path / "rules.yaml"))
    signals = [_sig(0.0, "run_state", "executing"), _sig(0.0, "operation_mode", "processing")]
    signals.append(_sig(0.0, "program", "O1000"))
    t = 0.0
    for n in range(80):
        if n == 70:
            signals.append(_sig(t + 10.0, "run_state", "interrupted"))
            signals.append(_sig(t + 30.0, "run_state", "executing"))
            t += 20.0
        # Alternating 29.5 and 30.5 s: a baseline of 30 +- 1 s (moving ranges of 1 s).
        t += 29.5 if n % 2 else 30.5
        signals.append(_sig(t, "part_count", n + 1))
    result = replay(program, signals)
    assert [r["rule"] for r in result.ledger.rows()] == []
    # The reference, written plainly: a cycle is the time between two parts, less the
    # seconds of the pause (from "interrupted" to "executing") that fall inside it.
    ends = [s.source_ts for s in signals if s.name == "part_count"]
    stop = next(s.source_ts for s in signals if s.value == "interrupted")
    pause = (stop, stop + 20.0)
    ran = [
        (b - a) - max(0.0, min(b, pause[1]) - max(a, pause[0])) for a, b in itertools.pairwise(ends)
    ]
    assert max(ran) <= 30.5
    state = result.engine.machines["cnc201"].rules["cycle_time"]
    assert [p[1] for p in state["pts"]["O1000"]][-12:] == [round(x, 3) for x in ran[-12:]]
