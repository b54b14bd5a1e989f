"""The plant model: deterministic, realistic cycles, and every machine fault visible."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from core.model import Signal
from sim.plant.model import (
    ALARM_COOLANT_LOW,
    ALARM_PALLET_CHANGER,
    ALARM_SPINDLE_DRIVE,
    DEFAULT_START_TS,
    MachineSpec,
    Plant,
    ToolSpec,
    default_specs,
)
from sim.plant.scenario import (
    Fault,
    FaultKind,
    Scenario,
    ScenarioError,
    scenario_from_dict,
)

ONE = MachineSpec(
    "cnc103",
    cycle_time_s=20.0,
    tools=(ToolSpec(1, life=10), ToolSpec(2, life=100, increment=2, pallets=(1,))),
)


def events(signals: list[Signal], tool: str) -> list[Signal]:
    return [s for s in signals if s.name == "machining_event" and s.subject == tool]


def test_same_seed_and_scenario_give_the_same_signals_in_any_slicing() -> None:
    scenario = Scenario(faults=(Fault(60, FaultKind.COUNTER_JUMP, machine="cnc102", tool="T1"),))
    a = Plant(default_specs(["cnc101", "cnc102"]), scenario, seed=3).advance(600)
    b_plant = Plant(default_specs(["cnc101", "cnc102"]), scenario, seed=3)
    b = [s for _ in range(60) for s in b_plant.advance(10)]
    assert a == b
    c = Plant(default_specs(["cnc101", "cnc102"]), scenario, seed=4).advance(600)
    assert a != c
    assert [s.source_ts for s in a] == sorted(s.source_ts for s in a)


def test_adding_a_machine_does_not_change_the_others() -> None:
    alone = Plant(default_specs(["cnc101"]), seed=1).advance(300)
    both = Plant([*default_specs(["cnc101"]), MachineSpec("cnc999")], seed=1).advance(300)
    assert [s for s in both if s.machine == "cnc101"] == alone


def test_cycles_alternate_pallets_and_tools_count_per_pallet_and_change_at_life() -> None:
    signals = Plant([ONE], seed=1).advance(600)
    t1 = events(signals, "T1")
    assert [e.attrs["pallet"] for e in t1[:4]] == ["1", "2", "1", "2"]
    assert [e.value for e in t1[:12]] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1, 2]
    # T2 cuts on pallet 1 only and counts by 2.
    t2 = events(signals, "T2")
    assert {e.attrs["pallet"] for e in t2} == {"1"}
    assert [e.value for e in t2[:3]] == [2, 4, 6]
    changes = [s for s in signals if s.name == "tool_change"]
    assert changes[0].subject == "T1" and changes[0].value == 10
    assert changes[0].attrs == {"reason": "life"}
    life = next(s for s in signals if s.name == "tool_life" and s.subject == "T1")
    assert life.attrs == {"limit": "10", "warning": "9", "increment": "1", "counting": "up"}
    cycle_times = [s.value for s in signals if s.name == "cycle_time"]
    assert all(isinstance(v, float) and 20 < v < 30 for v in cycle_times)
    assert signals[0].source_ts == DEFAULT_START_TS


@pytest.mark.parametrize("share", [0.5, 0.8, 1.0])
def test_each_tool_has_its_own_start_and_end_inside_the_pallets_cut(share: float) -> None:
    spec = MachineSpec(
        "cnc103",
        cycle_time_s=30.0,
        tools=(ToolSpec(1, life=998), ToolSpec(2, life=998), ToolSpec(3, life=998, pallets=(1,))),
        tool_share=share,
    )
    signals = Plant([spec], seed=2).advance(600)
    starts = [s.source_ts for s in signals if s.name == "cycle_start"]
    ends = [s.source_ts for s in signals if s.name == "part_count"][1:]  # [0]: the snapshot
    cuts = list(zip(starts, ends, strict=False))
    assert len(cuts) >= 15
    for lo, hi in cuts:
        inside = [s for s in signals if s.name == "machining_event" and lo <= s.source_ts <= hi]
        pallet = {s.attrs["pallet"] for s in inside}
        assert len(pallet) == 1
        expected_tools = ["T1", "T2", "T3"] if pallet == {"1"} else ["T1", "T2"]
        assert [s.subject for s in inside] == expected_tools
        slot = (hi - lo) / len(inside)
        previous_end = lo
        for s in inside:
            start, end = float(s.attrs["start"]), float(s.attrs["end"])
            # Each tool cuts `share` of its slot, one after the other, inside the cut.
            assert previous_end <= start < end == s.source_ts <= hi
            assert end - start == pytest.approx(slot * share)
            previous_end = end


def test_a_machine_down_in_a_cut_finishes_the_cut_on_the_same_pallet() -> None:
    spec = MachineSpec("cnc103", cycle_time_s=30.0, tools=(ToolSpec(1, life=998), ToolSpec(2)))
    # Cuts of about 30 s after 5 s loads: at 50 s the machine is in its second cut.
    fault = Fault(50, FaultKind.MACHINE_DOWN, machine="cnc103", duration_s=60)
    signals = Plant([spec], Scenario(faults=(fault,)), seed=1).advance(400)
    for tool in ("T1", "T2"):
        pallets = [e.attrs["pallet"] for e in events(signals, tool)]
        assert all(a != b for a, b in itertools.pairwise(pallets)), (tool, pallets)
        values = [e.value for e in events(signals, tool)]
        assert values == list(range(1, len(values) + 1))


def test_premature_tool_change_resets_the_counter_early() -> None:
    spec = MachineSpec("cnc103", tools=(ToolSpec(1, life=198),))
    fault = Fault(100, FaultKind.PREMATURE_TOOL_CHANGE, machine="cnc103", tool="T1")
    signals = Plant([spec], Scenario(faults=(fault,)), seed=1).advance(300)
    change = next(s for s in signals if s.name == "tool_change")
    assert change.attrs == {"reason": "premature"}
    assert isinstance(change.value, int) and 0 < change.value < 198
    after = [e.value for e in events(signals, "T1") if e.source_ts >= change.source_ts]
    assert after[:2] == [1, 2]


@pytest.mark.parametrize(
    ("kind", "amount", "delta"),
    [
        (FaultKind.COUNTER_JUMP, 50, 51),
        (FaultKind.COUNTER_ROLLBACK, 3, -3),
        (FaultKind.COUNTER_JUMP, 0, 51),  # the defaults (README): 50 and 3
        (FaultKind.COUNTER_ROLLBACK, 0, -3),
    ],
)
def test_counter_jump_and_rollback(kind: FaultKind, amount: int, delta: int) -> None:
    spec = MachineSpec("cnc103", tools=(ToolSpec(1, life=998),))
    fault = Fault(300, kind, machine="cnc103", tool="T1", amount=amount)
    values = [e.value for e in events(Plant([spec], Scenario(faults=(fault,))).advance(600), "T1")]
    steps = [b - a for a, b in itertools.pairwise(values)]  # type: ignore[operator]  # ints here
    assert delta in steps
    assert [s for s in steps if s != 1] == [delta]


def test_a_rollback_on_a_fresh_tool_waits_for_a_reading_that_is_not_a_tool_change() -> None:
    """Injected when T1 has counted 1 (its increment), a roll-back of 3 would land on 0,
    which the plants' rule reads as a tool change: it waits until the counter is high
    enough, and its ground truth starts there (the chaos soak's short run found this)."""
    spec = MachineSpec("cnc103", tools=(ToolSpec(1, life=998),))
    first = events(Plant([spec], Scenario(faults=())).advance(200), "T1")[0]
    assert first.value == 1
    at = first.source_ts - DEFAULT_START_TS + 1  # just after the tool's first reading
    fault = Fault(at, FaultKind.COUNTER_ROLLBACK, machine="cnc103", tool="T1", amount=3)
    plant = Plant([spec], Scenario(faults=(fault,)))
    signals = events(plant.advance(900), "T1")
    values = [int(e.value) for e in signals]  # type: ignore[arg-type]  # counts here
    steps = [b - a for a, b in itertools.pairwise(values)]
    assert [s for s in steps if s != 1] == [-3]  # it went back 3, once
    back = steps.index(-3) + 1
    assert values[back] > 2  # not 0, 1 or 2: not a tool change by the rule
    [entry] = plant.ledger
    assert entry.start_ts == signals[back].source_ts  # the truth shows where the signals do


def test_pallet_looped_out_runs_one_pallet_only() -> None:
    fault = Fault(200, FaultKind.PALLET_LOOPED_OUT, machine="cnc103", pallet=2, duration_s=300)
    signals = Plant([ONE], Scenario(faults=(fault,))).advance(1000)
    during = [
        e.attrs["pallet"]
        for e in events(signals, "T1")
        if DEFAULT_START_TS + 230 < e.source_ts < DEFAULT_START_TS + 500
    ]
    assert set(during) == {"1"} and len(during) >= 5
    after = [
        e.attrs["pallet"] for e in events(signals, "T1") if e.source_ts > DEFAULT_START_TS + 560
    ]
    assert set(after) == {"1", "2"}


@pytest.mark.parametrize(
    ("kind", "state", "code"),
    [
        (FaultKind.MACHINE_DOWN, "stopped", ALARM_SPINDLE_DRIVE),
        (FaultKind.STUCK_PALLET, "interrupted", ALARM_PALLET_CHANGER),
    ],
)
def test_down_and_stuck_stop_cycles_raise_and_clear_an_alarm(
    kind: FaultKind, state: str, code: int
) -> None:
    fault = Fault(100, kind, machine="cnc103", duration_s=120)
    signals = Plant([ONE], Scenario(faults=(fault,))).advance(400)
    states = [(s.source_ts - DEFAULT_START_TS, s.value) for s in signals if s.name == "run_state"]
    assert states == [(0.0, "executing"), (100.0, state), (220.0, "executing")]
    alarms = [(s.value, s.attrs["active"]) for s in signals if s.name == "alarm"]
    assert alarms == [(code, "true"), (code, "false")]
    quiet = [
        s
        for s in signals
        if s.name == "part_count" and DEFAULT_START_TS + 100 < s.source_ts < DEFAULT_START_TS + 220
    ]
    assert quiet == []
    # Spindle load still reports (0 %) while down: "stopped" is not "no data".
    loads = [
        s.value
        for s in signals
        if s.name == "spindle_load"
        and DEFAULT_START_TS + 101 < s.source_ts < DEFAULT_START_TS + 219
    ]
    assert loads and set(loads) == {0.0}


def test_tool_wear_drift_raises_spindle_load() -> None:
    spec = MachineSpec("cnc103", tools=(ToolSpec(1, life=5000),))
    drift = Fault(0, FaultKind.TOOL_WEAR_DRIFT, machine="cnc103", tool="T1", rate=2.0)

    def mean_load(signals: list[Signal], lo: float, hi: float) -> float:
        vals = [
            s.value
            for s in signals
            if s.name == "spindle_load"
            and isinstance(s.value, float)
            and lo <= s.source_ts - DEFAULT_START_TS < hi
            and s.value > 5
        ]
        return sum(vals) / len(vals)

    normal = Plant([spec]).advance(1800)
    drifting = Plant([spec], Scenario(faults=(drift,))).advance(1800)
    assert mean_load(drifting, 1200, 1800) > mean_load(normal, 1200, 1800) + 20


def test_transport_faults_are_handed_out_once_and_repeat() -> None:
    faults = (
        Fault(10, FaultKind.SERVER_RESTART, every_s=100),
        Fault(20, FaultKind.SILENT_SUBSCRIPTION, machine="cnc103", duration_s=5),
    )
    plant = Plant([ONE], Scenario(faults=faults))
    plant.advance(50)
    assert Counter(f.kind for f in plant.take_transport_faults()) == {
        FaultKind.SERVER_RESTART: 1,
        FaultKind.SILENT_SUBSCRIPTION: 1,
    }
    assert plant.take_transport_faults() == []
    plant.advance(200)
    assert [f.kind for f in plant.take_transport_faults()] == [FaultKind.SERVER_RESTART] * 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"faults": [{"at": 1, "kind": "meltdown", "machine": "cnc103"}]},
            "faults[0].kind: must be one of tool_wear_drift, premature_tool_change, counter_jump,"
            " counter_rollback, pallet_looped_out, stuck_pallet, machine_down, alarm_burst,"
            " micro_stops, scrap, tool_not_changed, slow_cycles, spindle_overload,"
            " silent_subscription,"
            " server_restart, broker_outage",
        ),
        (
            {"faults": [{"at": 1, "kind": "counter_jump", "machine": "cnc103"}]},
            "faults[0].tool: required for counter_jump",
        ),
        (
            {"faults": [{"at": 1, "kind": "machine_down"}]},
            "faults[0].machine: required for machine_down",
        ),
        (
            {"faults": [{"at": 1, "kind": "machine_down", "machine": "a", "when": 3}]},
            "faults[0].when: unknown key",
        ),
        (
            {"faults": [{"at": -1, "kind": "server_restart"}]},
            "faults[0]: at, duration, every and length must not be negative",
        ),
        (
            {"faults": [{"at": 1, "kind": "scrap", "machine": "a", "rate": 1.5}]},
            "faults[0].rate: must be in (0, 1] for scrap",
        ),
        (
            {"faults": [{"kind": "micro_stops", "machine": "a", "duration": 60, "amount": 4}]},
            "faults[0].length: each micro_stops must end before the next",
        ),
        (
            {"faults": [{"at": 1, "kind": "tool_not_changed", "machine": "a"}]},
            "faults[0].tool: required for tool_not_changed",
        ),
    ],
)
def test_bad_scenarios_name_the_fault_and_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(ScenarioError) as err:
        scenario_from_dict(data)
    assert str(err.value) == message


def test_plant_rejects_faults_on_unknown_machines_and_tools() -> None:
    with pytest.raises(ValueError, match="unknown machine 'nope'"):
        Plant([ONE], Scenario(faults=(Fault(1, FaultKind.MACHINE_DOWN, machine="nope"),)))
    with pytest.raises(ValueError, match="cnc103 has no tool T9"):
        Plant(
            [ONE], Scenario(faults=(Fault(1, FaultKind.COUNTER_JUMP, machine="cnc103", tool="T9"),))
        )


def _at(signals: list[Signal], name: str) -> list[tuple[float, object]]:
    return [(s.source_ts - DEFAULT_START_TS, s.value) for s in signals if s.name == name]


def test_an_alarm_burst_raises_and_clears_one_warning_while_the_machine_runs() -> None:
    fault = Fault(100, FaultKind.ALARM_BURST, machine="cnc103", duration_s=500, amount=5)
    plant = Plant([ONE], Scenario(faults=(fault,)))
    signals = plant.advance(900)
    alarms = [
        (s.source_ts - DEFAULT_START_TS, s.value, s.attrs["active"])
        for s in signals
        if s.name == "alarm"
    ]
    raised = [(100.0 + 100 * k, ALARM_COOLANT_LOW, "true") for k in range(5)]
    cleared = [(110.0 + 100 * k, ALARM_COOLANT_LOW, "false") for k in range(5)]
    assert alarms == sorted(raised + cleared)
    assert _at(signals, "run_state") == [(0.0, "executing")]  # a warning: it runs on
    [entry] = plant.ledger
    assert (entry.kind, entry.subject, entry.rules) == ("alarm_burst", "3001", ("alarm_frequency",))
    assert (entry.start_ts, entry.end_ts) == (DEFAULT_START_TS + 100, DEFAULT_START_TS + 510)


def test_micro_stops_hold_the_machine_and_it_goes_on_where_it_stopped() -> None:
    fault = Fault(100, FaultKind.MICRO_STOPS, machine="cnc103", duration_s=400, amount=4)
    plant = Plant([ONE], Scenario(faults=(fault,)), seed=2)
    signals = plant.advance(1200)
    held = [(100.0 + 100 * k, "interrupted") for k in range(4)]
    back = [(120.0 + 100 * k, "executing") for k in range(4)]
    assert _at(signals, "run_state") == sorted([(0.0, "executing"), *held, *back])
    assert [s for s in signals if s.name == "alarm"] == []
    # Nothing is cut twice or skipped: T1 counts 1, 2, 3 ... across every hold.
    t1 = [e.value for e in events(signals, "T1")]
    assert t1 == [n % 10 or 10 for n in range(1, len(t1) + 1)]
    # A cycle with a hold in it is that much longer: less the hold, a normal cycle.
    holds = [(100.0 + 100 * k, 120.0 + 100 * k) for k in range(4)]
    net = []
    for end, cycle in _at(signals, "cycle_time"):
        start = end - float(cycle)  # type: ignore[arg-type]
        paused = sum(max(0.0, min(end, b) - max(start, a)) for a, b in holds)
        net.append((paused, float(cycle) - paused))  # type: ignore[arg-type]
    assert sorted(p for p, _ in net if p) == [20.0] * 4
    assert all(22.0 < x < 28.0 for _, x in net)  # 20 s cuts +- 3 %, 5 s loads
    [entry] = plant.ledger
    assert (entry.start_ts, entry.end_ts) == (DEFAULT_START_TS + 100, DEFAULT_START_TS + 420)
    assert entry.rules == ("micro_stop",)


def test_scrap_makes_every_nth_part_bad_and_counts_good_and_bad_apart() -> None:
    fault = Fault(300, FaultKind.SCRAP, machine="cnc103", duration_s=600, rate=0.25)
    plant = Plant([ONE], Scenario(faults=(fault,)), seed=1)
    signals = plant.advance(1500)
    assert _at(signals, "part_count_bad")[0] == (0.0, 0)  # known from the start
    parts = [(s.source_ts, s.name, s.value) for s in signals if s.name.startswith("part_count")]
    made = [t for t, name, _ in parts if name == "part_count" and t > DEFAULT_START_TS]
    during = [t for t in made if DEFAULT_START_TS + 300 <= t < DEFAULT_START_TS + 900]
    bad_at = [t for t, name, v in parts if name == "part_count_bad" and v]
    assert bad_at == during[3::4]  # every fourth part made during the spell
    last = {name: float(v) for _, name, v in parts if isinstance(v, int | float)}
    assert last["part_count"] == last["part_count_good"] + last["part_count_bad"] == len(made)
    [entry] = plant.ledger
    assert (entry.start_ts, entry.end_ts, entry.rules) == (bad_at[0], bad_at[-1], ("scrap_rate",))


def test_a_tool_not_changed_runs_past_its_life_then_is_changed() -> None:
    fault = Fault(0, FaultKind.TOOL_NOT_CHANGED, machine="cnc103", tool="T1", amount=3)
    plant = Plant([ONE], Scenario(faults=(fault,)), seed=1)
    signals = plant.advance(900)
    t1 = events(signals, "T1")
    assert [e.value for e in t1[:16]] == [*range(1, 14), 1, 2, 3]
    [change, *_] = [s for s in signals if s.name == "tool_change" and s.subject == "T1"]
    assert change.value == 13 and change.source_ts == t1[12].source_ts
    [entry] = plant.ledger
    assert (entry.start_ts, entry.end_ts) == (t1[10].source_ts, change.source_ts)  # 11, 13
    assert (entry.subject, entry.rules) == ("T1", ("tool_life_overrun",))


def test_slow_cycles_lengthen_the_cuts_for_their_duration() -> None:
    fault = Fault(600, FaultKind.SLOW_CYCLES, machine="cnc103", duration_s=600, rate=0.5)
    plant = Plant([ONE], Scenario(faults=(fault,)), seed=1)
    slow = _at(plant.advance(1800), "cycle_time")
    normal = _at(Plant([ONE], seed=1).advance(1800), "cycle_time")

    def mean(xs: list[tuple[float, object]], lo: float, hi: float) -> float:
        vals = [float(v) for t, v in xs if lo <= t < hi]  # type: ignore[arg-type]
        return sum(vals) / len(vals)

    assert mean(slow, 700, 1200) > mean(normal, 700, 1200) + 8  # 20 s cuts, 50 % longer
    assert abs(mean(slow, 1300, 1800) - mean(normal, 1300, 1800)) < 2
    [entry] = plant.ledger
    assert entry.end_ts == DEFAULT_START_TS + 1200 and entry.rules == ("cycle_time",)


def test_a_spindle_overload_holds_the_load_for_its_duration() -> None:
    fault = Fault(300, FaultKind.SPINDLE_OVERLOAD, machine="cnc103", duration_s=30, amount=140)
    plant = Plant([ONE], Scenario(faults=(fault,)), seed=1)
    loads = _at(plant.advance(600), "spindle_load")
    over = [(t, v) for t, v in loads if float(v) > 120]  # type: ignore[arg-type]
    assert [t for t, _ in over] == [float(t) for t in range(300, 330)]
    assert all(abs(float(v) - 140) < 8 for _, v in over)  # type: ignore[arg-type]
    [entry] = plant.ledger
    assert (entry.start_ts, entry.end_ts) == (DEFAULT_START_TS + 300, DEFAULT_START_TS + 329)
    assert (entry.rules, entry.optional) == (("threshold",), ("spindle_load_drift",))
