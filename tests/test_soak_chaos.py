"""``repsys soak --chaos``: the seeded plans, the verdict, and a CI-size run of real processes.

The CI-size run (10 machines, 190 s of plant on the wall clock, every chaos event
kind once: 3.7 minutes with start-up and drain) fails on any false, missed or
duplicate ticket, any ticket not filed exactly once in the simulated Plex, any operator
double submit not filed exactly once, any chaos event not recovered within its bound, any
signal lost beyond the documented loss (UDP and OPC UA in a collector outage, decision
0470) and any poison value not dead-lettered with its reason. ``make soak-chaos`` runs
the full size (decisions 0400, 0470).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from collector.convert import convert
from collector.errors import rejection
from collector.mqtt.decode import MessageDecoder
from collector.udp.decode import DatagramDecoder
from core.config import parse_config
from core.config.collector import MqttSource, OpcuaSource
from core.config.collector_udp import UdpSource
from repsys import chaos_poison as poisons
from repsys.chaos import (
    AFTER_LOSS_S,
    RECOVERY_BOUND_S,
    failed,
    losses,
    run_chaos,
    sort_outcome,
    table,
)
from repsys.chaos_node import PASSWORD_ENV, config_data, machine_ids
from repsys.chaos_plant import udp_key
from repsys.chaos_schedule import (
    COUNTER_KINDS,
    DOWN_KINDS,
    PROCESSES,
    SERVER_EVENTS,
    chaos_events,
    plant_scenario,
    transports,
)
from repsys.soak_match import Episode, match
from sim.plant.ledger import Injected

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


def test_each_input_carries_a_fault_it_shows() -> None:
    ids = machine_ids(10)
    for seed in (1, 2, 3):
        paths = transports(ids, SECONDS, seed)
        kinds = {f.machine: f.kind for f in plant_scenario(ids, SECONDS, seed).faults}
        [udp] = [m for m, p in paths.items() if p == "udp"]
        assert kinds[udp] in COUNTER_KINDS  # its machining events come as datagrams
        opcua = [m for m, p in paths.items() if p == "opcua"]
        assert {kinds[m] for m in opcua} >= set(DOWN_KINDS)  # the run state over OPC UA
        assert sum(1 for p in paths.values() if p == "mqtt") == 6


def _config(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv(PASSWORD_ENV, "test")
    urls = {"redis": {"url": "redis://127.0.0.1:1"}, "db": "sqlite://", "mqtt": 1883,
            "plex": 1, "opcua": 4840, "udp": 2222}  # fmt: skip
    return parse_config(config_data(10, urls, transports(machine_ids(10), SECONDS, 1)))


def test_every_poison_is_refused_by_the_collectors_decoder_with_its_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = _config(monkeypatch)
    sources = {s.type: s for s in cfg.collector.sources}
    mqtt, udp, opcua = sources["mqtt"], sources["udp"], sources["opcua"]
    assert isinstance(mqtt, MqttSource) and isinstance(udp, UdpSource)
    assert isinstance(opcua, OpcuaSource)
    [poison_node] = [n for n in opcua.nodes if n.node_id.endswith(poisons.OPCUA_TAG)]
    m = cfg.machines[5]
    for n, kind in enumerate(poisons.KINDS, start=1):
        p = poisons.make(n, kind, (m.id, m.workcenter_code, m.workcenter_key),
                         udp.workcenters[0].key)  # fmt: skip
        with pytest.raises(Exception) as caught:  # any exception: its reason says which
            if p.path == "mqtt":
                MessageDecoder(mqtt, list(cfg.machines), cfg.plant.timezone).decode(
                    p.topic, p.payload, 1.0
                )
            elif p.path == "udp":
                DatagramDecoder(udp).decode(p.payload, 1.0)
            else:
                convert(p.payload.decode(), poison_node)
        assert isinstance(caught.value, Exception)
        assert rejection(caught.value)[0] == p.reason, kind
        # The dead letter keeps the payload (as text; OPC UA: the value's repr): the marker.
        kept = repr(p.payload.decode()) if p.path == "opcua" else p.payload.decode(
            "utf-8", errors="replace")  # fmt: skip
        assert p.marker in kept, kind
        assert poisons.found(p.to_json(), [{"reader": p.path, "payload": kept}])
        assert not poisons.found(p.to_json(), [{"reader": "other", "payload": kept}])
    plan = poisons.plan(SECONDS, {"mqtt", "udp", "opcua"})
    assert {k for _, k in plan} == set(poisons.KINDS)  # every kind at least once in CI size


def test_losses_on_udp_and_opcua_inside_an_outage_are_documented_beyond_it_they_fail() -> None:
    paths = {"cnc301": "udp", "cnc302": "opcua", "cnc305": "mqtt"}
    windows = {"udp": [(100.0, 110.0)], "opcua": [(100.0, 110.0)], "mqtt": [(100.0, 110.0)]}
    lost_in = udp_key("cnc301", 1, 41)
    lost_out = udp_key("cnc301", 1, 45)
    opc_in = "cnc302|spindle_load||35.5|105.25"
    mqtt_in = "cnc305|part_count||7|105.0"
    kept = udp_key("cnc301", 1, 40)
    offered = Counter({lost_in: 2, lost_out: 1, opc_in: 1, mqtt_in: 1, kept: 2})
    seen = Counter({kept: 3})
    at = {lost_in: [104.0, 104.0], lost_out: [130.0], opc_in: [105.25], kept: [90.0, 90.0]}
    by_path, lost_at = losses(offered, seen, at, paths, windows)
    assert by_path["udp"] == {"offered": 5, "in_streams": 3, "lost_in_outage": 2,
                              "lost_in_redis_wipe": 0, "lost": 1, "redelivered": 1}  # fmt: skip
    assert by_path["opcua"]["lost_in_outage"] == 1
    assert by_path["mqtt"]["lost"] == 1  # MQTT never loses: an outage explains nothing
    assert set(lost_at) == {lost_in, opc_in}
    # A Redis restart without persistence explains a loss on any input, in its window only.
    wiped, _ = losses(offered, seen, at | {mqtt_in: [105.0]}, paths, {}, wipes=[(104.5, 105.5)])
    assert wiped["mqtt"]["lost_in_redis_wipe"] == 1 and wiped["mqtt"]["lost"] == 0
    assert wiped["udp"]["lost"] == 3  # 104.0 and 130.0: outside the wipe
    # A miss whose evidence fell in the outage is "not shown"; one whose did not is missed.
    shown_late = Injected("cnc301", "counter_rollback", "T1", 100.0, 104.5, 104.5,
                          ("counter_rollback",))  # fmt: skip
    elsewhere = Injected("cnc301", "counter_jump", "T1", 120.0, 130.0, 130.0,
                         ("counter_jump",))  # fmt: skip
    false_after = Episode("cnc301", "counter_rollback", "T1", 104.0 + AFTER_LOSS_S - 1,
                          104.0 + AFTER_LOSS_S, "", "")  # fmt: skip
    false_other = Episode("cnc301", "counter_rollback", "T2", 150.0, 151.0, "", "")
    outcome = match([shown_late, elsewhere], [false_after, false_other], end_ts=400.0,
                    grace_s=1.0)  # fmt: skip
    assert len(outcome.missed) == 2 and len(outcome.false_positives) == 2
    not_shown, after_loss = sort_outcome(outcome, [shown_late, elsewhere], lost_at, paths)
    assert [r["kind"] for r in not_shown] == ["counter_rollback"]
    assert [r["kind"] for r in outcome.missed] == ["counter_jump"]
    assert [r["subject"] for r in after_loss] == ["T1"]
    assert [r["subject"] for r in outcome.false_positives] == ["T2"]


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
    assert failed(_result(counts={"poison_missing": 1})) == ["poison_missing"]
    assert failed(_result(counts={"intake_stopped": 1})) == ["intake_stopped"]
    assert failed(_result(counts={"poison_not_received": 2, "not_shown_outage": 1})) == []
    lost = _result() | {"signals": {"lost": 3}}
    assert failed(lost) == ["signals lost beyond the documented loss"]


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
    # Every input carried traffic, and poison on each went to the dead letters.
    for path in ("mqtt", "opcua", "udp"):
        assert result["signals"]["by_path"][path]["in_streams"] > 0, report
    assert c["poison_sent"] >= len(poisons.KINDS), report
    assert c["poison_dead_lettered"] + c["poison_not_received"] == c["poison_sent"], report
