"""Realistic input from the simulated plant: each fault gives one episode, a clean shift none.

``sim.plant.model.Plant`` produces the signals the collector would write (same seed, same
signals). Faults go through the whole path: the partition streams in Redis, a worker,
the database; the fault-free shift runs through the engine alone (the same code the
worker runs), sped up, with every rule type armed.
"""

from __future__ import annotations

import dataclasses

import pytest

from core.config import parse_config
from rules.engine import Program
from rules.replay import DEFAULT_MACHINES, replay
from sim.plant.model import Plant, default_specs
from sim.plant.scenario import Fault, FaultKind, Scenario
from tests.rules.helpers import ALL_RULES, episodes, make_worker, pending, push, tickets

P = 4
IDS = ["cnc101", "cnc102", "cnc103", "cnc120"]

#: The simulator reports the tool number at the end of a cut, not while it cuts, so its
#: spindle load is the machine's, not a tool's (see rules/README.md, spindle_load_drift).
RULES_SECTION = {"defaults": {"load_by_tool": False}, "rules": ALL_RULES}

FAULTS = [
    (Fault(600, FaultKind.PREMATURE_TOOL_CHANGE, machine="cnc103", tool="T1"),
     "tool_life_short", "T1"),
    (Fault(600, FaultKind.COUNTER_JUMP, machine="cnc103", tool="T1"), "counter_jump", "T1"),
    (Fault(600, FaultKind.COUNTER_ROLLBACK, machine="cnc103", tool="T1", amount=3),
     "counter_rollback", "T1"),
    (Fault(600, FaultKind.PALLET_LOOPED_OUT, machine="cnc103", pallet=2),
     "pallet_looped_out", "2"),
    (Fault(600, FaultKind.TOOL_WEAR_DRIFT, machine="cnc103", tool="T1", rate=2.0),
     "spindle_load_drift", "spindle"),
    (Fault(600, FaultKind.MACHINE_DOWN, machine="cnc103", duration_s=600), "downtime", ""),
    (Fault(600, FaultKind.STUCK_PALLET, machine="cnc103", duration_s=600), "downtime", ""),
]  # fmt: skip


@pytest.mark.parametrize(
    ("fault", "rule", "subject"), FAULTS, ids=[f[0].kind.value for f in FAULTS]
)
def test_each_injected_fault_gives_exactly_one_episode_and_one_ticket(
    make_config, redis_client, sqlite_engine, fault: Fault, rule: str, subject: str
) -> None:
    cfg = make_config({"machines": DEFAULT_MACHINES, "streams": {"partitions": P},
                       "rules": RULES_SECTION})  # fmt: skip
    plant = Plant(default_specs(IDS), Scenario(faults=(fault,)), seed=7)
    signals = plant.advance(1800.0)
    push(redis_client, signals, P)
    stats = make_worker(cfg, redis_client, sqlite_engine).once(now=plant.now_ts)
    assert stats.entries == len(signals)
    assert pending(redis_client, P) == 0

    [ep] = episodes(sqlite_engine)
    assert (ep.machine_id, ep.rule, ep.subject) == ("cnc103", rule, subject)
    assert ep.started_at.timestamp() >= plant.start_ts + fault.at_s
    [ticket] = tickets(sqlite_engine)
    assert (ticket.episode_id, ticket.machine_id, ticket.workcenter_key) == (ep.id, "cnc103", 61324)


def test_a_fault_free_shift_of_50_machines_gives_no_episode() -> None:
    ids = [f"m{i:02d}" for i in range(50)]
    machines = [
        {"id": i, "pcn": 123681, "workcenter_key": 60000 + n, "workcenter_code": i}
        for n, i in enumerate(ids)
    ]
    program = Program(parse_config({"machines": machines, "rules": RULES_SECTION}))
    # An 8-hour shift, sped up: cuts of 60 to 90 s (the cycle baselines still learn within
    # the shift) and spindle load sampled every 10 s instead of every second.
    specs = [
        dataclasses.replace(s, cycle_time_s=60.0 + 10.0 * (n % 4), sample_interval_s=10.0)
        for n, s in enumerate(default_specs(ids))
    ]
    plant = Plant(specs, seed=11)
    result = replay(program, plant.advance(8 * 3600.0))

    assert result.ledger.rows() == []
    assert not [key for key in result.stats if key[1] in ("firing", "inhibited", "silenced")]
    # The rules were armed, not idle: baselines learned, tools tracked, forecasts made.
    for m in result.engine.machines.values():
        baselines = m.rules["cycle_time"]["base"]
        assert all("mean" in b for b in baselines.values()), m.id
        assert m.rules["spindle_load_drift"]["spindle"][0] >= 30  # its level is set
        assert {"T1", "T2", "T3"} <= set(m.tools)
        assert m.fastest and m.fastest_cycle
    # The forecast's fastest cycle is the plants' (start to start on one pallet, two cuts
    # on these machines), so fewer tools fall within its 480-minute horizon.
    assert len([v for v in result.forecasts.values() if v is not None]) >= 30
    assert result.engine.signals > 300_000
