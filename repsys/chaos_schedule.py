"""The chaos soak's two seeded plans: the plant's faults and the chaos events.

Pure functions of the seed, the run's length and the machines, so a run is repeated by
its seed alone (``repsys soak --chaos --seed S``) and the plan is printed before it runs.

**The plant's faults** are the kinds a rule sees within a minute or two of wall time
(counter jump and roll-back, premature tool change, a breakdown, a jammed pallet), one per
machine, after a warm-up in which the counter rules see every tool's first uses. The
slow kinds (wear drift over 60 cycles, a loop-out over five events, cycle time after its
200-cycle baseline) need hours of plant time: the simulated-time soak (``repsys soak``)
measures them; real processes run on the wall clock.

**The chaos events**: kill -9 of every process kind, a Redis master crash with a Sentinel
failover, a Redis master restart without persistence (its replica then resyncs to an empty
dataset), a PostgreSQL fast restart (open transactions aborted), a mosquitto restart, Plex
outage, latency, 429s and late commits for a window each, and operator-form double submits
during the Plex latency; spread over the chaos window in a shuffled order, one per slot
(a Plex window that would overlap the one before starts after it).

**The inputs** (:func:`transports`): most machines publish over MQTT; the first machine of
each downtime kind and one more with a counter fault serve their values over OPC UA
(:data:`OPCUA_TAGS`; alarms and the tool tracker stay on MQTT), and the first machine with
a counter fault sends its machining events as Okuma UDP datagrams, so a fault of each
path's kind shows through that path.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

from sim.plant.model import Plant, default_specs
from sim.plant.scenario import Fault, FaultKind, Scenario

#: Seconds of plant time before the first fault: every tool has been used (and a counter
#: rule has its last value per pallet) before its counter is tampered with.
WARMUP_S = 60.0
#: Seconds left after the last fault starts, for it to show (the tool's next use, up to
#: two cycles) and be ticketed (group wait, ``for``) while the plant still runs.
DETECT_S = 100.0
#: A breakdown or jammed pallet lasts this long: past downtime's ``for: 60`` and its
#: group wait, so its ticket is written while it lasts (within ``DETECT_S``).
STOP_S = 80.0
#: How long a Plex fault window lasts.
PLEX_WINDOW_S = 20.0
#: How long a killed process stays down before it is started again (a pod's restart).
RESTART_AFTER_S = 3.0

#: The signals an OPC UA machine serves from the simulated server's Kepware-style tags
#: (``<id>.<id>.<tag>``); its other signals (alarms, mode, good and bad counts, the tool
#: tracker) have no tag there and go on over MQTT.
OPCUA_TAGS = {
    "run_state": "RunState",
    "program": "Program",
    "spindle_load": "SpindleLoad",
    "part_count": "PartCounter",
}
COUNTER_KINDS = (
    FaultKind.COUNTER_JUMP,
    FaultKind.PREMATURE_TOOL_CHANGE,
    FaultKind.COUNTER_ROLLBACK,
)
DOWN_KINDS = (FaultKind.MACHINE_DOWN, FaultKind.STUCK_PALLET)

FAULT_KINDS = (
    FaultKind.COUNTER_JUMP,
    FaultKind.PREMATURE_TOOL_CHANGE,
    FaultKind.COUNTER_ROLLBACK,
    FaultKind.MACHINE_DOWN,
    FaultKind.STUCK_PALLET,
)

#: The process kinds every run kills once (names of the harness's children).
PROCESSES = (
    "collector",
    "rules-1",
    "rules-2",
    "plex-sender-1",
    "plex-sender-2",
    "runner",
    "scheduler",
    "web",
)
#: Server and Plex events, one each per run.
SERVER_EVENTS = (
    "redis_failover",
    "redis_restart_empty",
    "postgres_restart",
    "mosquitto_restart",
    "plex_outage",
    "plex_latency",
    "plex_429",
    "plex_commit_late",
)


@dataclass(frozen=True, slots=True)
class ChaosEvent:
    """One chaos event: at ``at_s`` wall seconds after the plant started."""

    at_s: float
    kind: str  # "kill" or one of SERVER_EVENTS or "double_submit"
    target: str = ""  # the process killed
    duration_s: float = 0.0  # a Plex fault window; a killed process's time down

    def describe(self) -> str:
        what = f"kill -9 {self.target}" if self.kind == "kill" else self.kind
        extra = f" for {self.duration_s:g} s" if self.duration_s else ""
        return f"t+{self.at_s:6.1f} s  {what}{extra}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def plant_scenario(machines: list[str], seconds: float, seed: int) -> Scenario:
    """One fault per machine at a seeded moment between the warm-up and the detection tail.

    Kinds go round the machines in a seeded order, so every kind runs once per five
    machines; the tool (T1 or T2, both on every pallet) is seeded too.
    """
    rng = random.Random(seed)  # noqa: S311 - a repeatable plan, not a secret
    last = seconds - DETECT_S
    if last <= WARMUP_S:
        raise ValueError(f"a run of {seconds:g} s leaves no time for faults: give it more")
    kinds = list(FAULT_KINDS)
    rng.shuffle(kinds)
    specs = {s.id: s for s in default_specs(machines)}
    ready = tools_ready(machines, seconds, seed)
    faults = []
    for n, machine in enumerate(machines):
        kind = kinds[n % len(kinds)]
        tools = sorted(specs[machine].tools[:2], key=lambda t: ready.get((machine, t.name), 1e9))
        tool = tools[rng.randrange(2)].name
        if ready.get((machine, tool), 1e9) + 1.0 > last:
            tool = tools[0].name  # the other tool is not on both pallets in time
        first = max(WARMUP_S, ready.get((machine, tool), WARMUP_S) + 1.0)
        if first > last:
            raise ValueError(f"a run of {seconds:g} s is too short for {machine}'s warm-up")
        at = round(rng.uniform(first, last), 1)
        duration = STOP_S if kind in (FaultKind.MACHINE_DOWN, FaultKind.STUCK_PALLET) else 0.0
        # A roll-back of one: on the fresh tools of a short run a larger one waits for a
        # reading that is not a tool change (sim/plant/model.py) and may not show in time.
        amount = 1 if kind is FaultKind.COUNTER_ROLLBACK else 0
        faults.append(
            Fault(at, kind, machine=machine, tool=tool, duration_s=duration, amount=amount)
        )
    return Scenario(name="chaos", faults=tuple(sorted(faults, key=lambda f: f.at_s)))


def transports(machines: list[str], seconds: float, seed: int) -> dict[str, str]:
    """Each machine's input: ``mqtt``, ``opcua`` (its :data:`OPCUA_TAGS`) or ``udp``.

    Chosen from the plan so that each path carries a fault it shows: UDP carries machining
    events (a counter fault), OPC UA the run state (a breakdown, a jammed pallet) and,
    on one more machine, the values of a machine whose counter fault comes over MQTT.
    """
    kinds = {f.machine: f.kind for f in plant_scenario(machines, seconds, seed).faults}
    out = dict.fromkeys(machines, "mqtt")
    counters = [m for m in machines if kinds.get(m) in COUNTER_KINDS]
    if counters:
        out[counters[0]] = "udp"
    opcua = [next((m for m in machines if kinds.get(m) is k), "") for k in DOWN_KINDS]
    opcua += counters[1:2]
    for m in opcua:
        if m:
            out[m] = "opcua"
    return out


def tools_ready(machines: list[str], seconds: float, seed: int) -> dict[tuple[str, str], float]:
    """When each machine's tool has been used on two pallets (the plant without faults).

    A counter fault before that falls on a tool's first event on a pallet, which the
    plants' rules judge without a reading on that pallet ("the jump test cannot run": a
    jump is then a roll-back, by design): the plan is for the rules as they are.
    """
    plant = Plant(default_specs(machines), seed=seed, start_ts=0.0)
    pallets: dict[tuple[str, str], set[str]] = {}
    out: dict[tuple[str, str], float] = {}
    for sig in plant.advance(seconds):
        if sig.name == "machining_event":
            key = (sig.machine, sig.subject)
            pallets.setdefault(key, set()).add(sig.attrs.get("pallet", ""))
            if len(pallets[key]) >= 2 and key not in out:
                out[key] = sig.source_ts
    return out


def chaos_events(seconds: float, seed: int) -> list[ChaosEvent]:
    """Every event kind once (double submits twice), shuffled into equal slots.

    The window runs from 15 s before the first fault to 60 s before the plant stops, so
    the last event's recovery is seen while the plant still publishes.
    """
    rng = random.Random(seed * 7919 + 1)  # noqa: S311 - a repeatable plan, not a secret
    start, end = WARMUP_S - 15.0, seconds - 60.0
    todo: list[tuple[str, str]] = [("kill", p) for p in PROCESSES]
    todo += [(k, "") for k in SERVER_EVENTS]
    rng.shuffle(todo)
    slot = (end - start) / len(todo)
    events = []
    plex_free = 0.0  # Plex windows one after another: each fault at its full rate
    for i, (kind, target) in enumerate(todo):
        at = round(start + i * slot + rng.uniform(0.0, slot * 0.5), 1)
        duration = RESTART_AFTER_S if kind == "kill" else 0.0
        if kind.startswith("plex_"):
            duration = PLEX_WINDOW_S
            at = max(at, plex_free)
            plex_free = at + duration + 1.0
        events.append(ChaosEvent(at, kind, target, duration))
        if kind == "plex_latency":
            # The operator's form submitted twice while Plex is slow, and once more later.
            events.append(ChaosEvent(round(at + 2.0, 1), "double_submit"))
    return sorted(events, key=lambda e: e.at_s)
