"""A part-count cycle that spans a stop is not a cycle time (the stop is downtime's).

The soak (``repsys soak``) found it: after each simulated breakdown the cycle_time rule
filed "out of control (fast)" within minutes. The interval between two part counts around
a 10-minute stop entered the EWMA and CUSUM as a 600-sigma cycle, and both stayed past
their limits for dozens of normal cycles.
"""

from __future__ import annotations

from pathlib import Path

from repsys.soak import soak_config
from rules.engine import Program
from rules.replay import replay
from sim.plant.model import Plant, default_specs
from sim.plant.scenario import Fault, FaultKind, Scenario

RULES = """
group_wait_s: 0
rules:
  - {name: downtime, type: downtime, for_s: 60}
  - {name: cycle_time, type: cycle_time, warmup_cycles: 30}
"""


def test_a_breakdown_is_downtime_not_a_cycle_time_out_of_control(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(RULES)
    specs = default_specs(["cnc201", "cnc202"])
    cfg = soak_config(specs, tmp_path / "rules.yaml")
    down = (
        Fault(2400.0, FaultKind.MACHINE_DOWN, machine="cnc201", duration_s=600.0),
        Fault(2400.0, FaultKind.STUCK_PALLET, machine="cnc202", duration_s=180.0),
    )
    plant = Plant(specs, Scenario(faults=down), seed=1)
    result = replay(Program(cfg), plant.advance(5400.0))
    fired = sorted((r["machine"], r["rule"]) for r in result.ledger.rows())
    assert fired == [("cnc201", "downtime"), ("cnc202", "downtime")]
