"""``repsys soak --chaos``: the seeded plans, the verdict, and a CI-size run of real processes.

The CI-size run (10 machines, 190 s of plant on the wall clock, every chaos event
kind once: 3.7 minutes with start-up and drain) fails on any false, missed or
duplicate ticket, any ticket not filed exactly once in the simulated Plex, any operator
double submit not filed exactly once, and any chaos event not recovered within its bound.
``make soak-chaos`` runs the full size (decision 0400).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from repsys.chaos import RECOVERY_BOUND_S, failed, run_chaos, table
from repsys.chaos_node import machine_ids
from repsys.chaos_schedule import PROCESSES, SERVER_EVENTS, chaos_events, plant_scenario

SECONDS = 190.0


def test_the_plans_are_repeated_by_their_seed_and_cover_every_kind() -> None:
    ids = machine_ids(10)
    assert plant_scenario(ids, SECONDS, 1) == plant_scenario(ids, SECONDS, 1)
    assert chaos_events(SECONDS, 1) == chaos_events(SECONDS, 1)
    assert chaos_events(SECONDS, 1) != chaos_events(SECONDS, 2)
    events = chaos_events(SECONDS, 3)
    assert sorted(e.target for e in events if e.kind == "kill") == sorted(PROCESSES)
    assert {e.kind for e in events} == {"kill", "double_submit", *SERVER_EVENTS}
    faults = plant_scenario(ids, SECONDS, 3).faults
    assert sorted(f.machine for f in faults) == ids  # one fault per machine
    assert len({f.kind for f in faults}) == 5


def _result(**over: Any) -> dict[str, Any]:
    counts = dict.fromkeys(
        ("true_positives", "false_positives", "missed", "duplicates", "plex_duplicates",
         "not_filed_in_plex", "unknown_in_plex", "operator_submits_not_once"), 0
    )  # fmt: skip
    chaos = [{"kind": "kill", "target": "collector", "recovery_s": 4.0}]
    return {"counts": counts | over.pop("counts", {}), "chaos": over.pop("chaos", chaos)}


def test_the_verdict_fails_on_a_wrong_ticket_or_an_unrecovered_event() -> None:
    assert failed(_result()) == []
    assert failed(_result(counts={"duplicates": 1})) == ["duplicates"]
    assert failed(_result(counts={"plex_duplicates": 2})) == ["plex_duplicates"]
    slow = [{"kind": "redis_failover", "target": "", "recovery_s": RECOVERY_BOUND_S + 1}]
    assert failed(_result(chaos=slow)) == [
        f"not recovered within {RECOVERY_BOUND_S:g} s: redis_failover"
    ]
    never = [{"kind": "kill", "target": "rules-1", "recovery_s": None}]
    assert failed(_result(chaos=never)) == [
        f"not recovered within {RECOVERY_BOUND_S:g} s: kill rules-1"
    ]


@pytest.mark.slow
@pytest.mark.chaos
def test_ci_size_chaos_soak_files_one_ticket_per_fault_and_recovers(tmp_path: Path) -> None:
    result = run_chaos(SECONDS / 60.0, seed=1, machines=10, workdir=str(tmp_path))
    report = table(result)
    assert failed(result) == [], report
    c = result["counts"]
    # Every machine's fault was seen (none left out as not shown), and the operator's
    # double submits each made one ticket.
    assert c["true_positives"] == 10, report
    assert c["operator_submits"] == 1, report
    assert len(result["chaos"]) == len(chaos_events(SECONDS, 1)), report
    assert result["signals"]["lost"] == 0, report
