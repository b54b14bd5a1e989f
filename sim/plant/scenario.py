"""Scenarios: the faults a simulated plant injects, and when.

A scenario is a list of :class:`Fault` entries in simulated seconds since the plant
started. Machine faults (tool wear drift, premature tool change, counter jump, counter
roll-back, pallet looped out, stuck pallet, machine down, alarm burst, micro-stops, scrap,
tool not changed, slow cycles) change what the machines do and so what signals
:class:`sim.plant.model.Plant` produces. Transport faults (silent subscription, server
restart with renumbered namespaces, broker outage) change nothing in the machines: the
plant hands them to the OPC UA server and the MQTT publisher, which act them out. The
YAML format is documented in ``sim/README.md``; it is the same whether the scenario sits
in the config (``sim.plant.scenario``) or in a file (``--scenario FILE``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml


class FaultKind(StrEnum):
    """Every fault a scenario can inject (DOMAIN.md section 3 and issue 3)."""

    TOOL_WEAR_DRIFT = "tool_wear_drift"  # spindle load and cycle time drift up on a tool
    PREMATURE_TOOL_CHANGE = "premature_tool_change"  # tool reset well before its life
    COUNTER_JUMP = "counter_jump"  # tool counter advanced by `amount` extra
    COUNTER_ROLLBACK = "counter_rollback"  # tool counter goes back by `amount`
    PALLET_LOOPED_OUT = "pallet_looped_out"  # `pallet` skipped, the other pallet repeats
    STUCK_PALLET = "stuck_pallet"  # pallet changer jams: interrupted, alarm, no cycles
    MACHINE_DOWN = "machine_down"  # stopped with an alarm for `duration`
    ALARM_BURST = "alarm_burst"  # one warning alarm raised `amount` times in `duration`
    MICRO_STOPS = "micro_stops"  # `amount` short stops of `length` s in `duration`
    SCRAP = "scrap"  # a share `rate` of the parts made in `duration` are bad
    TOOL_NOT_CHANGED = "tool_not_changed"  # at its life the tool runs `amount` more uses
    SLOW_CYCLES = "slow_cycles"  # cuts take `rate` longer (relative) for `duration`
    SPINDLE_OVERLOAD = "spindle_overload"  # spindle load at `amount` % for `duration`
    SILENT_SUBSCRIPTION = "silent_subscription"  # OPC UA subscriptions stop publishing
    SERVER_RESTART = "server_restart"  # OPC UA server restarts, namespaces renumbered
    BROKER_OUTAGE = "broker_outage"  # MQTT publisher cut off from the broker


#: Faults acted out by the transports, not by the machines.
TRANSPORT_FAULTS = frozenset(
    {FaultKind.SILENT_SUBSCRIPTION, FaultKind.SERVER_RESTART, FaultKind.BROKER_OUTAGE}
)

#: The rule types that must open an episode for each fault kind (the ground truth the
#: soak matches tickets against, ``repsys soak``). Transport faults change no machine
#: signal: no rule is expected of them (the collector's own health checks see them).
EXPECTED_RULES: dict[FaultKind, tuple[str, ...]] = {
    # The drift slows the cuts with the tool too (0.2 % a cycle): cycle time creeps.
    FaultKind.TOOL_WEAR_DRIFT: ("spindle_load_drift", "cycle_time"),
    FaultKind.PREMATURE_TOOL_CHANGE: ("tool_life_short",),
    FaultKind.COUNTER_JUMP: ("counter_jump",),
    FaultKind.COUNTER_ROLLBACK: ("counter_rollback",),
    FaultKind.PALLET_LOOPED_OUT: ("pallet_looped_out",),
    FaultKind.STUCK_PALLET: ("downtime",),
    FaultKind.MACHINE_DOWN: ("downtime",),
    FaultKind.ALARM_BURST: ("alarm_frequency",),
    FaultKind.MICRO_STOPS: ("micro_stop",),
    FaultKind.SCRAP: ("scrap_rate",),
    FaultKind.TOOL_NOT_CHANGED: ("tool_life_overrun",),
    FaultKind.SLOW_CYCLES: ("cycle_time",),
    FaultKind.SPINDLE_OVERLOAD: ("threshold",),
    FaultKind.SILENT_SUBSCRIPTION: (),
    FaultKind.SERVER_RESTART: (),
    FaultKind.BROKER_OUTAGE: (),
}

#: Rule types that may open an episode for a fault kind without being required to.
OPTIONAL_RULES: dict[FaultKind, tuple[str, ...]] = {
    # An overload far above the load's level is a drift as well to a spindle_load_drift
    # whose for_s is shorter than the overload (the demo's and the soak's 5 s); at its
    # defaults (60 s, decision 0272) it is not.
    FaultKind.SPINDLE_OVERLOAD: ("spindle_load_drift",),
}

#: Defaults of ``amount`` per kind when the scenario does not give one.
DEFAULT_AMOUNT = {
    FaultKind.COUNTER_JUMP: 50,
    FaultKind.COUNTER_ROLLBACK: 3,
    FaultKind.ALARM_BURST: 5,
    FaultKind.MICRO_STOPS: 12,
    FaultKind.TOOL_NOT_CHANGED: 5,
    FaultKind.SPINDLE_OVERLOAD: 140,
}
#: Defaults of ``duration`` for the kinds that spread over a stretch of time (30 s for the
#: others).
DEFAULT_DURATION = {
    FaultKind.ALARM_BURST: 600.0,
    FaultKind.MICRO_STOPS: 2880.0,
    FaultKind.SCRAP: 1800.0,
    FaultKind.SLOW_CYCLES: 1800.0,
}
#: Defaults of ``length``: how long each alarm of a burst stands, each micro-stop lasts.
DEFAULT_LENGTH = {FaultKind.ALARM_BURST: 10.0, FaultKind.MICRO_STOPS: 20.0}


class ScenarioError(ValueError):
    """A scenario that cannot be used; the message names the fault and the key."""


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault of a scenario.

    Attributes:
        at_s: simulated seconds since the plant started when it first happens.
        kind: what happens.
        machine: the machine it happens to ("" for transport faults of the whole plant).
        tool: the tool (``T1``) for tool faults.
        pallet: the pallet for ``pallet_looped_out`` (default 2).
        duration_s: how long it lasts (drift, looped out, stuck, down, silent, outage);
            0 means "until the end" for drift and looped out, and 30 s for the others.
        every_s: repeat every this many seconds (0: once).
        amount: counter jump/roll-back size, in counts; alarms of a burst; micro-stops;
            uses past the life of a tool not changed; spindle load of an overload (%).
        rate: drift strength: extra spindle load (percent points) per cycle; scrap: the
            share of bad parts; slow cycles: how much longer a cut takes (0.1: 10 %).
        length_s: how long each alarm of a burst stands, each micro-stop lasts (0: the
            kind's default, 10 s and 20 s).
    """

    at_s: float
    kind: FaultKind
    machine: str = ""
    tool: str = ""
    pallet: int = 2
    duration_s: float = 0.0
    every_s: float = 0.0
    amount: int = 0
    rate: float = 0.5
    length_s: float = 0.0

    @property
    def transport(self) -> bool:
        return self.kind in TRANSPORT_FAULTS

    @property
    def effective_duration_s(self) -> float:
        if self.duration_s > 0:
            return self.duration_s
        if self.kind in (FaultKind.TOOL_WEAR_DRIFT, FaultKind.PALLET_LOOPED_OUT):
            return float("inf")
        return DEFAULT_DURATION.get(self.kind, 30.0)

    @property
    def effective_length_s(self) -> float:
        return self.length_s or DEFAULT_LENGTH.get(self.kind, 0.0)

    @property
    def effective_amount(self) -> int:
        return self.amount or DEFAULT_AMOUNT.get(self.kind, 0)


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named list of faults, in any order (the plant sorts them)."""

    name: str = "normal"
    faults: tuple[Fault, ...] = ()


_KEYS = {
    "at", "kind", "machine", "tool", "pallet", "duration", "every", "amount", "rate", "length"
}  # fmt: skip
_NEEDS_MACHINE = set(FaultKind) - {FaultKind.SERVER_RESTART, FaultKind.BROKER_OUTAGE}
_NEEDS_TOOL = {
    FaultKind.TOOL_WEAR_DRIFT,
    FaultKind.PREMATURE_TOOL_CHANGE,
    FaultKind.COUNTER_JUMP,
    FaultKind.COUNTER_ROLLBACK,
    FaultKind.TOOL_NOT_CHANGED,
}


_SPREAD = {FaultKind.ALARM_BURST, FaultKind.MICRO_STOPS}


def fault_from_dict(data: Any, where: str = "faults[0]") -> Fault:
    """Build a fault from its YAML mapping; raise :class:`ScenarioError` naming ``where``."""
    if not isinstance(data, dict):
        raise ScenarioError(f"{where}: a fault must be a mapping")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise ScenarioError(f"{where}.{unknown[0]}: unknown key")
    try:
        kind = FaultKind(str(data.get("kind")))
    except ValueError:
        kinds = ", ".join(k.value for k in FaultKind)
        raise ScenarioError(f"{where}.kind: must be one of {kinds}") from None
    try:
        fault = Fault(
            at_s=float(data.get("at", 0.0)),
            kind=kind,
            machine=str(data.get("machine", "")),
            tool=str(data.get("tool", "")),
            pallet=int(data.get("pallet", 2)),
            duration_s=float(data.get("duration", 0.0)),
            every_s=float(data.get("every", 0.0)),
            amount=int(data.get("amount", 0)),
            rate=float(data.get("rate", 0.5)),
            length_s=float(data.get("length", 0.0)),
        )
    except (TypeError, ValueError) as exc:
        raise ScenarioError(f"{where}: {exc}") from None
    if fault.at_s < 0 or fault.duration_s < 0 or fault.every_s < 0 or fault.length_s < 0:
        raise ScenarioError(f"{where}: at, duration, every and length must not be negative")
    if kind in (FaultKind.SCRAP, FaultKind.SLOW_CYCLES) and not 0.0 < fault.rate <= 1.0:
        raise ScenarioError(f"{where}.rate: must be in (0, 1] for {kind.value}")
    if kind in _SPREAD and fault.effective_length_s >= fault.effective_duration_s / max(
        1, fault.effective_amount
    ):
        raise ScenarioError(f"{where}.length: each {kind.value} must end before the next")
    if kind in _NEEDS_MACHINE and not fault.machine:
        raise ScenarioError(f"{where}.machine: required for {kind.value}")
    if kind in _NEEDS_TOOL and not fault.tool:
        raise ScenarioError(f"{where}.tool: required for {kind.value}")
    return fault


def scenario_from_dict(data: Any, *, name: str = "scenario") -> Scenario:
    """``{name: ..., faults: [...]}`` → :class:`Scenario`."""
    if data is None:
        return Scenario(name=name)
    if not isinstance(data, dict) or set(data) - {"name", "faults"}:
        raise ScenarioError("a scenario is a mapping with 'name' and 'faults'")
    raw = data.get("faults") or []
    if not isinstance(raw, list):
        raise ScenarioError("faults: must be a list")
    faults = tuple(fault_from_dict(item, f"faults[{i}]") for i, item in enumerate(raw))
    return Scenario(name=str(data.get("name", name)), faults=faults)


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario YAML file. Raises :class:`ScenarioError` with the file name."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{p}: cannot read scenario: {exc}") from exc
    try:
        return scenario_from_dict(data, name=p.stem)
    except ScenarioError as exc:
        raise ScenarioError(f"{p}: {exc}") from None
