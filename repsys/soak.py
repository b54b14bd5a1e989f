"""``repsys soak``: a simulated plant day through the rules, matched against its ground truth.

The simulated plant (``sim/plant/model.py``) runs ``--hours`` of simulated time for 20
machines, writing the ground truth of every fault it injects (``sim/plant/ledger.py``).
Its signals go through the collector's MQTT decode path (the plant's MQTT formats, the
collector's :class:`collector.mqtt.decode.MessageDecoder`), then through the very rules
engine the worker runs, replayed with the signals' own timestamps: the simulated clock
drives every timer (``for``, repeat, no data, group wait). No process, server, broker or
database runs and nothing waits for real time. ``repsys soak --chaos`` is the other half:
the real processes under a seeded chaos schedule on the wall clock (``repsys/chaos.py``).

The episodes the rules opened are then matched against the ledger
(``repsys/soak_match.py``): true positives, false positives, missed and duplicate
episodes, each with machine, rule and time, and the detection latency per fault kind.

Scenarios: ``plant-day`` (faults of every kind the simulator knows, spread over the three
shifts) and ``clean`` (nothing injected: every ticket is false).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from collector.mqtt.decode import MessageDecoder
from core.config import RepsysConfig, parse_config
from core.config.collector import MqttSource
from core.model import Signal
from repsys.soak_match import Episode, Outcome, latency_by_kind, match
from rules.actions import OpenEpisodes
from rules.engine import Engine, Program
from rules.replay import Ledger
from sim.plant.ledger import Injected, write_ledger
from sim.plant.model import MachineSpec, Plant, ToolSpec, default_specs
from sim.plant.mqtt_publisher import PlantPublisher
from sim.plant.scenario import Fault, FaultKind, Scenario

REPO = Path(__file__).resolve().parent.parent
RULES_FILE = REPO / "config" / "soak-rules.yaml"
ZONE = "America/Chicago"
#: 2023-11-15 06:00 America/Chicago: the plant day starts with the first shift.
DAY_START_TS = 1_700_049_600.0
#: An episode may start this long after its fault stopped showing (a downtime's ``for``,
#: a loop-out's five events, a drift's smoothing all fit well inside it).
GRACE_S = 900.0
#: Faults start this long into a shift: cycle_time learns its baseline from its first
#: 200 cycles (up to 65 s each here), and a drift before that cannot be, and must not be,
#: seen by it.
FIRST_FAULT_S = 4 * 3600.0
SCENARIOS = ("plant-day", "clean")
#: A tool not changed is injected this long into a shift (tool_life_overrun needs no
#: warm-up, and the tool may take up to a whole life to reach it).
OVERRUN_AT_S = 1800.0
#: Cycles run up to this much slower than their nominal time (noise, a drift).
SLOWEST = 0.15
#: A drift lasts this many cycles; the simulator's load time between cuts.
DRIFT_CYCLES = 60
LOAD_S = 5.0

MQTT_SOURCE: dict[str, Any] = yaml.safe_load("""
type: mqtt
name: broker
topics:
  - pattern: focas/+
    machine_field: WorkCenter
    timestamp_field: TransDate
    fields: [{path: Cycle_Counter_Shift_SL, signal: part_count, type: int}]
  - pattern: InsAssemblyMachiningHistory
    machine_field: Workcenter_Key
    timestamp_field: End_Time
    fields:
      - {path: Current_Value, signal: machining_event, type: int, subject: "T{Tool_Var}",
         attrs: {pallet: "{Pallet_No}", tool: "T{Tool_Var}", counter: "{Current_Value}"}}
  - pattern: InsToolLifeHistoryV2
    machine_field: Workcenter_Key
    timestamp_field: Run_Date
    fields: [{path: Run_Quantity, signal: tool_change, type: int, subject: "T{Tool_Var}"}]
  - pattern: alarms/{pcn}/{machine}
    timestamp_field: time
    timestamp_format: epoch_ms
    fields:
      - {path: code, signal: alarm, type: int,
         attrs: {active: "{active}", text: "{text}", severity: "{severity}"}}
  - pattern: plant/{pcn}/{machine}/{signal}
    format: value
""")


def machine_ids(n: int) -> list[str]:
    return [f"cnc{201 + i}" for i in range(n)]


def soak_config(specs: list[MachineSpec], rules_file: Path = RULES_FILE) -> RepsysConfig:
    """The machines, the plant's tool lists (from the simulator's specs) and the rules."""
    return parse_config(soak_config_data(specs, rules_file), file=str(rules_file))


def soak_config_data(specs: list[MachineSpec], rules_file: Path = RULES_FILE) -> dict[str, Any]:
    """:func:`soak_config` before validation (the chaos soak adds its servers to it)."""
    rules = yaml.safe_load(rules_file.read_text(encoding="utf-8"))
    machines = [
        {
            "id": s.id,
            "name": s.id.upper(),
            "pcn": 123681,
            "workcenter_key": 62000 + n,
            "workcenter_code": s.id,
        }
        for n, s in enumerate(specs)
    ]
    rules["machines"] = {
        s.id: {
            "tools": {
                t.name: {
                    "life": t.life,
                    "increment": t.increment,
                    "pallets": len(t.pallets) if t.pallets else s.pallets,
                }
                for t in s.tools
            }
        }
        for s in specs
    }
    return {
        "machines": machines,
        "plant": {"timezone": ZONE},
        "rules": rules,
        # The demo's MQTT source (config/demo.yaml): the plants' formats, every machine.
        "collector": {"sources": [MQTT_SOURCE]},
        # Alarms with their state: on the value topic a clear would count as a raise.
        "sim": {
            "plant": {
                "mqtt": {
                    "value_topic": "plant/{pcn}/{machine}/{signal}",
                    "alarm_topic": "alarms/{pcn}/{machine}",
                }
            }
        },
    }


def plant_day(ids: list[str], hours: float) -> Scenario:
    """Every fault kind the simulator knows, one per machine per shift, all in ``hours``.

    Machine ``n`` gets kind ``(n + 3 s) mod 13`` in shift ``s``, 4 to 5.5 hours into the
    shift (after cycle_time's warm-up: before it the rule has no baseline, by design), so
    faults of one machine are eight hours apart (far beyond any rule's ``keep_firing_for``)
    and every kind runs on several machines. A tool not changed is injected 0.5 to 2 hours
    into the shift instead, on the machine's tool that reaches its life soonest: it shows
    only when that tool next reaches its life, up to one tool life later. The transport
    faults run once each, at plant level. A fault that would not end (with its detection
    grace) inside ``hours`` is left out, so a reduced day is an honest subset.
    """
    day_s = hours * 3600.0
    specs = {s.id: s for s in default_specs(ids)}
    faults: list[Fault] = []
    kinds = [
        # 0.75 points a cycle for 60 cycles (duration set per machine below): 45 points,
        # past spindle_load_drift's 30 but below spindle_overload's 130 (a drift to 150 %
        # is an overload as well); the cuts slow by up to 12 % (0.2 % a cycle).
        (FaultKind.TOOL_WEAR_DRIFT, 0.0, 0.75),
        (FaultKind.PREMATURE_TOOL_CHANGE, 0.0, 0.0),
        (FaultKind.COUNTER_JUMP, 0.0, 0.0),
        (FaultKind.COUNTER_ROLLBACK, 0.0, 0.0),
        (FaultKind.PALLET_LOOPED_OUT, 1200.0, 0.0),
        (FaultKind.STUCK_PALLET, 180.0, 0.0),
        (FaultKind.MACHINE_DOWN, 600.0, 0.0),
        # Five raises of a warning two minutes apart: alarm_frequency's 3 in 10 minutes.
        (FaultKind.ALARM_BURST, 600.0, 0.0),
        # Twelve 20 s stops four minutes apart: micro_stop's 10 in an hour, each under
        # downtime's for (60 s).
        (FaultKind.MICRO_STOPS, 2880.0, 0.0),
        # Three parts in ten bad for half an hour: past scrap_rate's 5 % over an hour.
        (FaultKind.SCRAP, 1800.0, 0.3),
        (FaultKind.TOOL_NOT_CHANGED, 0.0, 0.0),
        # Cuts 10 % slower for half an hour (about 3 sigma of the cut's noise).
        (FaultKind.SLOW_CYCLES, 1800.0, 0.1),
        # The spindle at 140 % for 30 s: past spindle_overload's 130 for its 10 s.
        (FaultKind.SPINDLE_OVERLOAD, 30.0, 0.0),
    ]
    for n, machine in enumerate(ids):
        spec = specs[machine]
        for shift in range(3):
            kind, duration, rate = kinds[(n + 3 * shift) % len(kinds)]
            at = shift * 8 * 3600.0 + FIRST_FAULT_S + (n * 613.0) % 5400.0
            tool = f"T{1 + (n + shift) % 2}"  # T1 and T2 run on both pallets
            shows = 0.0
            if kind is FaultKind.TOOL_WEAR_DRIFT:
                duration = DRIFT_CYCLES * (spec.cycle_time_s + LOAD_S)
            elif kind is FaultKind.TOOL_NOT_CHANGED:
                at -= FIRST_FAULT_S - OVERRUN_AT_S
                tool, cycles = _soonest_life(spec)
                shows = cycles * (spec.cycle_time_s * (1 + SLOWEST) + LOAD_S)
            if at + max(duration, shows) + GRACE_S + 600.0 > day_s:
                continue
            faults.append(
                Fault(at, kind, machine=machine, tool=tool, duration_s=duration, rate=rate or 0.5)
            )
    for k, kind in enumerate(
        (FaultKind.SILENT_SUBSCRIPTION, FaultKind.SERVER_RESTART, FaultKind.BROKER_OUTAGE)
    ):
        at = 3 * 3600.0 + k * 8 * 3600.0
        if at < day_s:
            faults.append(Fault(at, kind, duration_s=60.0))
    return Scenario(name="plant-day", faults=tuple(faults))


def _soonest_life(spec: MachineSpec) -> tuple[str, float]:
    """The tool of ``spec`` with the fewest cycles in one life, and that many cycles."""

    def cycles(t: ToolSpec) -> float:
        share = len(t.pallets) / spec.pallets if t.pallets else 1.0
        return t.life / t.increment / share

    best = min(spec.tools, key=cycles)
    return best.name, cycles(best)


def through_mqtt(cfg: RepsysConfig, signals: Iterable[Signal]) -> Iterator[Signal]:
    """The plant's signals as the collector decodes them from the plant's MQTT formats."""
    machines = list(cfg.machines)
    publisher = PlantPublisher(cfg.sim.plant.mqtt, machines, cfg.plant.timezone)
    [source] = [s for s in cfg.collector.sources if isinstance(s, MqttSource)]
    decoder = MessageDecoder(source, machines, cfg.plant.timezone)
    for sig in signals:
        for topic, payload, _ in publisher.messages([sig]):
            yield from decoder.decode(topic, payload.encode(), sig.receive_ts)


def run_rules(program: Program, signals: Iterable[Signal], end_ts: float) -> list[Episode]:
    """Replay ``signals`` through one engine on their own clock; the episodes it opened.

    Like :func:`rules.replay.replay`, but the actions are taken at every tick, so each
    ticket keeps the engine time at which it was written (the detection time).
    """
    engine = Engine(program)
    ledger = Ledger()
    written: dict[str, float] = {}
    last_tick = 0.0

    def drain() -> None:
        actions, _ = engine.take()
        for a in actions:
            if isinstance(a, OpenEpisodes):
                written[a.ticket_ref] = a.at
        ledger.apply(actions)

    for sig in signals:
        t = sig.receive_ts or sig.source_ts
        if t - last_tick >= 1.0:
            engine.tick(t)
            last_tick = t
            drain()
        engine.process(sig)
    engine.tick(end_ts)
    drain()
    out = []
    for ep in ledger.episodes.values():
        out.append(
            Episode(
                machine=ep["machine"],
                rule=ep["type"],
                subject=ep["subject"],
                started=_ts(ep["started_at"]),
                ticket_at=written[ep["ticket_ref"]],
                ticket_ref=ep["ticket_ref"],
                summary=ep["summary"],
            )
        )
    return out


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def soak(
    scenario: str, hours: float, seed: int, *, machines: int = 20, mqtt: bool = True
) -> dict[str, Any]:
    """Run the soak; the result as a JSON-ready mapping (see :func:`table`)."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}: one of {', '.join(SCENARIOS)}")
    started = time.monotonic()
    ids = machine_ids(machines)
    specs = default_specs(ids)
    cfg = soak_config(specs)
    sc = plant_day(ids, hours) if scenario == "plant-day" else Scenario(name="clean")
    plant = Plant(specs, sc, seed=seed, start_ts=DAY_START_TS)
    end_ts = DAY_START_TS + hours * 3600.0
    counted = {"signals": 0}

    def signals() -> Iterator[Signal]:
        left = hours * 3600.0
        while left > 0:
            step = min(3600.0, left)
            left -= step
            chunk = plant.advance(step)
            counted["signals"] += len(chunk)
            yield from (through_mqtt(cfg, chunk) if mqtt else chunk)

    episodes = run_rules(Program(cfg), signals(), end_ts)
    outcome = match(plant.ledger, episodes, end_ts=end_ts, grace_s=GRACE_S)
    return {
        "scenario": scenario,
        "hours": hours,
        "seed": seed,
        "machines": machines,
        "path": "sim model -> MQTT formats -> collector decoder -> rules replay"
        if mqtt
        else "sim model -> rules replay",
        "signals": counted["signals"],
        "faults": len(plant.ledger),
        "episodes": len(episodes),
        "tickets": len({e.ticket_ref for e in episodes}),
        "wall_s": round(time.monotonic() - started, 1),
        "counts": _counts(outcome),
        "latency_by_kind": latency_by_kind(outcome),
        "true_positives": outcome.true_positives,
        "false_positives": outcome.false_positives,
        "missed": outcome.missed,
        "duplicates": outcome.duplicates,
        "not_shown": outcome.not_shown,
        "not_observable": outcome.not_observable,
        "ledger": [e.to_json() for e in plant.ledger],
    }


def _counts(out: Outcome) -> dict[str, int]:
    return {
        "true_positives": len(out.true_positives),
        "false_positives": len(out.false_positives),
        "missed": len(out.missed),
        "duplicates": len(out.duplicates),
        "not_shown": len(out.not_shown),
        "not_observable": len(out.not_observable),
    }


def table(result: dict[str, Any]) -> str:
    """The result as the terminal table."""
    c = result["counts"]
    lines = [
        f"soak {result['scenario']}: {result['machines']} machines, {result['hours']} h "
        f"simulated, seed {result['seed']}, {result['signals']} signals, "
        f"{result['wall_s']} s wall",
        f"path: {result['path']}",
        f"faults injected {result['faults']}, episodes {result['episodes']}, "
        f"tickets {result['tickets']}",
        "",
        f"{'true positives':<22}{c['true_positives']:>6}",
        f"{'false positives':<22}{c['false_positives']:>6}",
        f"{'missed':<22}{c['missed']:>6}",
        f"{'duplicates':<22}{c['duplicates']:>6}",
        f"{'not shown (no event)':<22}{c['not_shown']:>6}",
        f"{'transport (no rule)':<22}{c['not_observable']:>6}",
        "",
        f"{'fault kind':<24}{'detected':>9}{'p50 s':>9}{'p99 s':>9}",
    ]
    for kind, lat in result["latency_by_kind"].items():
        lines.append(f"{kind:<24}{lat['n']:>9}{lat['p50_s']:>9.1f}{lat['p99_s']:>9.1f}")
    for title, key in (
        ("false positives", "false_positives"),
        ("missed", "missed"),
        ("duplicates", "duplicates"),
    ):
        rows = result[key]
        if rows:
            lines += ["", f"{title}:"]
            for r in rows[:30]:
                lines.append(
                    f"  {r['time']}  {r['machine']:<8} {r['rule']:<20} {r['subject']:<4} "
                    f"{r.get('summary', r.get('kind', ''))}"
                )
            if len(rows) > 30:
                lines.append(f"  ... {len(rows) - 30} more in the JSON")
    return "\n".join(lines)


def _run_chaos(args: argparse.Namespace) -> int:
    from repsys.chaos import failed, run_chaos  # noqa: PLC0415 - servers only for --chaos
    from repsys.chaos import table as chaos_table  # noqa: PLC0415

    result = run_chaos(args.minutes, args.seed, args.machines, args.workdir)
    print(chaos_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    why = failed(result)
    for reason in why:
        print(f"soak --chaos: {reason}", file=sys.stderr)
    return 1 if why else 0


def _run(args: argparse.Namespace) -> int:
    if args.chaos:
        return _run_chaos(args)
    result = soak(
        args.scenario, args.hours, args.seed, machines=args.machines, mqtt=not args.no_mqtt
    )
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    if args.ledger:
        write_ledger(Path(args.ledger), [Injected.from_json(e) for e in result["ledger"]])
    bad = result["counts"]
    failed = bad["false_positives"] or bad["missed"] or bad["duplicates"]
    if failed:
        print("soak: false, missed or duplicate episodes", file=sys.stderr)
    return 1 if failed else 0


def add_commands(sub: Any) -> None:
    """Register ``repsys soak``."""
    p = sub.add_parser(
        "soak", help="a simulated plant day through the rules, matched against its ground truth"
    )
    p.add_argument("--scenario", choices=SCENARIOS, default="plant-day")
    p.add_argument("--hours", type=float, default=24.0, help="simulated hours (default 24)")
    p.add_argument("--seed", type=int, default=1, help="the plant's seed (default 1)")
    p.add_argument("--machines", type=int, default=20, help="machines (default 20)")
    p.add_argument("--json", metavar="FILE", help="write the result as JSON to FILE")
    p.add_argument("--ledger", metavar="FILE", help="write the ground truth as JSON lines")
    p.add_argument(
        "--no-mqtt", action="store_true", help="feed the model's signals straight to the rules"
    )
    chaos = p.add_argument_group("chaos (real processes, wall clock: repsys/chaos.py)")
    chaos.add_argument(
        "--chaos",
        action="store_true",
        help="run every process and server under a seeded chaos schedule instead",
    )
    chaos.add_argument("--minutes", type=float, default=10.0, help="wall minutes of plant")
    chaos.add_argument("--workdir", default="", help="keep servers' files and logs here")
    p.set_defaults(func=_run)
