"""``repsys soak``: the plant's ground truth, the matching, and a CI-size soak.

The CI-size soak runs the clean day (20 machines, 3 simulated hours: no ticket may open)
and a reduced plant day (13 machines, one 8-hour shift: every machine fault kind the
simulator knows, each on one machine) through the collector's MQTT decode path
and the rules, and fails on any false, missed or duplicate episode. ``make soak`` runs
the full size (20 machines, a three-shift day).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from repsys.soak import RULES_FILE, plant_day, run_rules, soak, soak_config, through_mqtt
from repsys.soak_match import Episode, match, percentile
from rules.engine import Program
from sim.plant.ledger import Injected, read_ledger, write_ledger
from sim.plant.model import Plant, default_specs
from sim.plant.scenario import Fault, FaultKind, Scenario
from tests.conftest import REPO

START = 1_700_000_000.0


def test_the_ledger_says_when_each_fault_shows_in_the_signals(tmp_path: Path) -> None:
    faults = (
        Fault(100.0, FaultKind.COUNTER_JUMP, machine="a", tool="T1", amount=50),
        Fault(300.0, FaultKind.MACHINE_DOWN, machine="a", duration_s=120.0),
        Fault(600.0, FaultKind.BROKER_OUTAGE, duration_s=60.0),
    )
    plant = Plant(default_specs(["a"]), Scenario(faults=faults), seed=3, start_ts=START)
    signals = plant.advance(900.0)
    jump, down, outage = plant.ledger
    t1 = [s for s in signals if s.name == "machining_event" and s.subject == "T1"]
    first_after = next(s for s in t1 if s.source_ts >= START + 100.0)
    before = [s for s in t1 if s.source_ts < first_after.source_ts][-1]
    # The jump shows on T1's first event after the injection, 50 counts too high.
    assert jump.start_ts == jump.end_ts == first_after.source_ts
    assert int(first_after.value) == int(before.value) + 1 + 50  # type: ignore[arg-type]
    assert (jump.machine, jump.kind, jump.subject, jump.rules) == (
        "a",
        "counter_jump",
        "T1",
        ("counter_jump",),
    )
    # The stop lasts from the injection to the recovery (run_state back to executing).
    stopped = [s.source_ts for s in signals if s.name == "run_state" and s.value == "stopped"]
    running = [
        s.source_ts
        for s in signals
        if s.name == "run_state" and s.value == "executing" and s.source_ts > START
    ]
    assert (down.start_ts, down.end_ts) == (stopped[0], running[0]) == (START + 300, START + 420)
    assert down.rules == ("downtime",)
    assert (outage.machine, outage.rules, outage.end_ts) == ("", (), START + 660.0)
    path = tmp_path / "ledger.jsonl"
    write_ledger(path, plant.ledger)
    assert read_ledger(path) == plant.ledger


def _fault(machine: str, kind: str, subject: str, start: float, rules: tuple[str, ...]) -> Injected:
    return Injected(machine, kind, subject, start - 5.0, start, start, rules)


def _episode(machine: str, rule: str, subject: str, started: float) -> Episode:
    return Episode(machine, rule, subject, started, started + 2.0, f"{machine}{started}", "")


def test_matching_tells_true_false_missed_and_duplicate_episodes_apart() -> None:
    ledger = [
        _fault("a", "counter_jump", "T1", START + 100, ("counter_jump",)),
        _fault("a", "counter_rollback", "T2", START + 200, ("counter_rollback",)),
        _fault("b", "machine_down", "", START + 100, ("downtime",)),
        Injected("", "server_restart", "", START, START, START, ()),
    ]
    episodes = [
        _episode("a", "counter_jump", "T1", START + 100),  # true
        _episode("a", "counter_jump", "T1", START + 400),  # the same fault again: duplicate
        _episode("a", "counter_rollback", "T1", START + 200),  # wrong tool: false
        _episode("b", "downtime", "", START + 100 + 5000),  # long after the grace: false
    ]
    out = match(ledger, episodes, end_ts=START + 9000, grace_s=900)
    assert [(r["machine"], r["rule"], r["latency_s"]) for r in out.true_positives] == [
        ("a", "counter_jump", 2.0)
    ]
    assert [(r["machine"], r["rule"]) for r in out.duplicates] == [("a", "counter_jump")]
    assert [(r["machine"], r["rule"], r["subject"]) for r in out.false_positives] == [
        ("a", "counter_rollback", "T1"),
        ("b", "downtime", ""),
    ]
    assert [(r["machine"], r["rule"]) for r in out.missed] == [
        ("a", "counter_rollback"),
        ("b", "downtime"),
    ]
    assert [r["kind"] for r in out.not_observable] == ["server_restart"]
    assert not out.clean


def test_an_optional_rule_is_neither_missed_nor_false() -> None:
    """A wear drift cut short by its tool's change: cycle_time may or may not see it."""
    drift = Injected(
        "a", "tool_wear_drift", "T1", START, START, START + 600,
        ("spindle_load_drift",), ("cycle_time",),
    )  # fmt: skip
    seen = match(
        [drift],
        [
            _episode("a", "spindle_load_drift", "spindle", START + 60),
            _episode("a", "cycle_time", "O1000", START + 90),
        ],
        end_ts=START + 9000,
        grace_s=900,
    )
    assert [r["rule"] for r in seen.true_positives] == ["spindle_load_drift", "cycle_time"]
    assert seen.false_positives == seen.missed == []
    unseen = match(
        [drift],
        [_episode("a", "spindle_load_drift", "spindle", START + 60)],
        end_ts=START + 9000,
        grace_s=900,
    )
    assert unseen.missed == [] and len(unseen.true_positives) == 1


def test_a_tool_change_ends_the_wear_drift_of_that_tool() -> None:
    """A new tool is not worn: the drift stops at the change, and the ledger says so."""
    [spec] = default_specs(["a"])
    fault = Fault(0.0, FaultKind.TOOL_WEAR_DRIFT, machine="a", tool="T1", duration_s=1e6, rate=0.1)
    plant = Plant([spec], Scenario(name="x", faults=(fault,)), seed=1, start_ts=START)
    signals = plant.advance(3 * 24 * 3600.0)  # long enough for T1 to reach its life
    changes = [s.source_ts for s in signals if s.name == "tool_change" and s.subject == "T1"]
    assert changes, "T1 never reached its life"
    [entry] = plant.ledger
    assert entry.end_ts == changes[0]  # not the fault's 1e6 s
    assert (entry.rules, entry.optional) == (("spindle_load_drift",), ("cycle_time",))


@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1), st.sampled_from([50, 99]))
def test_percentile_is_the_nearest_rank(values: list[float], q: int) -> None:
    # Nearest rank, written plainly: the smallest value with at least q % at or below it.
    ordered = sorted(values)
    want = next(v for v in ordered if sum(x <= v for x in ordered) >= q / 100 * len(ordered))
    assert percentile(values, q) == want
    assert math.isfinite(percentile(values, q))


def test_a_reduced_plant_day_has_every_machine_fault_kind() -> None:
    kinds = {f.kind for f in plant_day([f"m{n}" for n in range(13)], 8.0).faults}
    machine_kinds = set(FaultKind) - {
        FaultKind.SILENT_SUBSCRIPTION,
        FaultKind.SERVER_RESTART,
        FaultKind.BROKER_OUTAGE,
    }
    assert machine_kinds <= kinds


def test_alarms_keep_their_state_through_the_plants_mqtt_formats() -> None:
    """A clear is not a raise: on the value topic it was, and a burst of alarms counted
    double toward alarm_frequency (its ticket fired at the second raise, not the third)."""
    specs = default_specs(["cnc201"])
    cfg = soak_config(specs)
    burst = Fault(4000.0, FaultKind.ALARM_BURST, machine="cnc201", duration_s=600.0)
    plant = Plant(specs, Scenario(faults=(burst,)), seed=1, start_ts=START)
    signals = plant.advance(5400.0)
    sent = [(s.source_ts, s.value, s.attrs["active"]) for s in signals if s.name == "alarm"]
    # The plain reference of alarm_frequency (DOMAIN.md: alarm frequency; the rule's
    # count 3 in 600 s): the first raise with two more of the same code in the 600 s
    # before it.
    raises = [t for t, _, active in sent if active == "true"]
    due = next(t for t in raises if sum(t - 600.0 < r <= t for r in raises) >= 3)
    episodes = run_rules(Program(cfg), through_mqtt(cfg, signals), START + 5400.0)
    [alarm] = [e for e in episodes if e.rule == "alarm_frequency"]
    assert (alarm.subject, alarm.started) == ("3001", due)
    decoded = list(through_mqtt(cfg, [s for s in signals if s.name == "alarm"]))
    assert [(s.source_ts, s.value, s.attrs.get("active")) for s in decoded] == sent
    assert RULES_FILE.exists()


def test_a_clean_day_files_no_ticket() -> None:
    result = soak("clean", 3.0, seed=1, machines=20)
    assert result["faults"] == 0
    assert result["false_positives"] == []
    assert result["episodes"] == result["tickets"] == 0
    assert result["signals"] > 100_000


def test_a_reduced_plant_day_files_exactly_one_ticket_per_fault() -> None:
    result = soak("plant-day", 8.0, seed=1, machines=13)
    assert result["false_positives"] == []
    assert result["missed"] == []
    assert result["duplicates"] == []
    detected = {row["kind"] for row in result["true_positives"]}
    assert detected == {str(k) for k in FaultKind} - {
        "silent_subscription",
        "server_restart",
        "broker_outage",
    }
    assert result["counts"]["not_shown"] == 0
    assert (REPO / "config" / "soak-rules.yaml").exists()


def _repsys(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "repsys", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def test_sim_plant_writes_its_ledger(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text("faults:\n  - {at: 60, kind: counter_jump, machine: cnc103, tool: T1}\n")
    ledger = tmp_path / "ledger.jsonl"
    cmd = ("-c", "config/example.yaml", "sim", "plant", "--scenario", str(scenario))
    result = _repsys(*cmd, "--print", "300", "--ledger", str(ledger))
    assert result.returncode == 0, result.stderr
    [entry] = read_ledger(ledger)
    events = [json.loads(line) for line in result.stdout.splitlines()]
    shown = next(
        e
        for e in events
        if (e["machine"], e["name"], e["subject"]) == ("cnc103", "machining_event", "T1")
        and e["source_ts"] >= entry.injected_ts
    )
    assert (entry.kind, entry.machine, entry.subject) == ("counter_jump", "cnc103", "T1")
    assert entry.start_ts == shown["source_ts"]


def test_repsys_soak_prints_the_table_and_writes_the_json(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    result = _repsys("soak", "--scenario", "clean", "--hours", "0.5", "--machines", "2",
                     "--json", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["counts"]["false_positives"] == 0
    assert (data["scenario"], data["machines"], data["hours"]) == ("clean", 2, 0.5)
    assert "false positives" in result.stdout
    assert f"{data['signals']} signals" in result.stdout


def test_an_episode_whose_start_came_back_truncated_still_matches_its_fault() -> None:
    """Seen in the chaos soak on OPC UA: the fault injected at ...396.3727682 came back as
    ...396.372768 (OPC UA's DateTime, microseconds in Python), 0.2 us before the fault, and
    was judged a false positive and the fault missed."""
    injected = 1_796_679_396.3727682
    down = Injected("a", "stuck_pallet", "T1", injected, injected, injected + 80, ("downtime",))
    out = match(
        [down], [_episode("a", "downtime", "", 1_796_679_396.372768)], end_ts=injected + 300,
        grace_s=60,
    )  # fmt: skip
    assert (len(out.true_positives), out.false_positives, out.missed) == (1, [], [])
    whole = match(  # the tool tracker's whole seconds
        [down], [_episode("a", "downtime", "", 1_796_679_396.0)], end_ts=injected + 300,
        grace_s=60,
    )  # fmt: skip
    assert (len(whole.true_positives), whole.false_positives, whole.missed) == (1, [], [])
    early = match(
        [down], [_episode("a", "downtime", "", injected - 1.5)], end_ts=injected + 300,
        grace_s=60,
    )  # fmt: skip
    assert len(early.false_positives) == 1  # more than a second before it: not this fault's
