"""Configuration section ``sim.plant:`` (owned by ``sim/plant/``).

The simulated plant of the demo, the tests and the benchmarks: which machines it runs
(ids from the top-level ``machines:``), how they behave, the scenario of faults, and how
it serves them (an OPC UA server, an MQTT publisher, and for some machines Okuma UDP
datagrams or a Sparkplug B edge node). The scenario format is documented in
``sim/README.md``; its fault kinds are listed here so that a typo fails at load time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from pydantic import Field

from core.config.base import Secret, StrictModel
from core.config.collector import Loc

FaultKindName = Literal[
    "tool_wear_drift",
    "premature_tool_change",
    "counter_jump",
    "counter_rollback",
    "pallet_looped_out",
    "stuck_pallet",
    "machine_down",
    "alarm_burst",
    "micro_stops",
    "scrap",
    "tool_not_changed",
    "slow_cycles",
    "spindle_overload",
    "silent_subscription",
    "server_restart",
    "broker_outage",
]


SecurityName = Literal["None", "Basic256Sha256_Sign", "Basic256Sha256_SignAndEncrypt"]


def _only_none() -> list[SecurityName]:
    return ["None"]


class SimTool(StrictModel):
    """A tool of a simulated machine."""

    number: int = Field(ge=1, description="Tool number: the tool is T<number>.")
    life: int = Field(default=198, ge=1, description="Standard tool life in counts.")
    warning: int = Field(default=0, ge=0, description="Warning count; 0: 90 % of life.")
    increment: int = Field(default=1, ge=1, description="Counts per machining event.")
    pallets: list[int] = Field(default_factory=list, description="Pallets it cuts on; []: all.")
    start: int = Field(default=0, ge=0, description="Counter at start.")


class SimMachine(StrictModel):
    """A simulated machine; ``id`` must be in ``machines:``."""

    id: str = Field(description="Machine id from machines:.")
    pallets: int = Field(default=2, ge=1, le=8)
    cycle_time_s: float = Field(default=30.0, gt=0, description="Nominal cutting time.")
    cycle_noise: float = Field(default=0.03, ge=0, le=0.5, description="Relative std dev.")
    load_time_s: float = Field(default=5.0, ge=0, description="Pallet change time.")
    program: str = Field(default="O1000")
    parts_per_cycle: int = Field(default=1, ge=1)
    tools: list[SimTool] = Field(
        default_factory=list, description="Tools; []: T1 198, T2 348, T3 798 by 2."
    )
    spindle_base: float = Field(default=35.0, ge=0, description="Spindle load, fresh tool %.")
    spindle_wear: float = Field(default=25.0, ge=0, description="Added at end of life %.")
    tool_share: float = Field(
        default=0.8, gt=0, le=1, description="Share of its slot of the cut a tool cuts."
    )


class SimFault(StrictModel):
    """One fault of the scenario (see sim/README.md)."""

    at: float = Field(default=0.0, ge=0, description="Simulated seconds after start.")
    kind: FaultKindName
    machine: str = Field(default="", description="Machine id (not for restart/outage).")
    tool: str = Field(default="", description="Tool, e.g. T1, for tool faults.")
    pallet: int = Field(default=2, ge=1, description="Pallet for pallet_looped_out.")
    duration: float = Field(default=0.0, ge=0, description="Seconds; 0: the kind's default.")
    every: float = Field(default=0.0, ge=0, description="Repeat every this many s; 0: once.")
    amount: int = Field(
        default=0,
        ge=0,
        description="Counter jump/roll-back size; alarms of a burst; micro-stops; uses past "
        "the life of a tool not changed; spindle load % of an overload.",
    )
    rate: float = Field(
        default=0.5,
        ge=0,
        description="Drift: extra spindle % per cycle; scrap: share of bad parts; slow "
        "cycles: how much longer a cut takes (0.1: 10 %).",
    )
    length: float = Field(
        default=0.0,
        ge=0,
        description="Seconds each alarm of a burst stands or each micro-stop lasts; 0: the "
        "kind's default (10 s, 20 s).",
    )


class SimScenario(StrictModel):
    """A named list of faults."""

    name: str = "normal"
    faults: list[SimFault] = Field(default_factory=list)


class SimOpcua(StrictModel):
    """The simulated OPC UA server: Kepware-style string nodes and OPC 40501 trees."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=48400, ge=1, le=65535, description="opc.tcp port.")
    kepware_namespace: str = Field(default="urn:repsys:sim:kepware")
    machines_namespace: str = Field(default="urn:repsys:sim:machines")
    security: list[SecurityName] = Field(
        default_factory=_only_none, description="Offered security policies."
    )
    certificate: str = Field(default="", description="Server certificate (for Basic256Sha256).")
    private_key: str = Field(default="", description="Server private key.")
    users: dict[str, Secret] = Field(
        default_factory=dict, description="User -> password; empty: anonymous only."
    )


class SimMqtt(StrictModel):
    """The simulated MQTT publisher: the plants' payload formats."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    client_id: str = "repsys-sim-plant"
    qos: Literal[0, 1] = 1
    value_topic: str = Field(
        default="plant/{pcn}/{machine}/{signal}",
        description="Plain values of every signal without a subject; empty: off.",
    )
    counter_topic: str = Field(
        default="focas/{machine}",
        description="FOCAS-style JSON (PCN, TransDate, WorkCenter, Cycle_Counter_Shift_SL).",
    )
    tool_tracker: bool = Field(
        default=True,
        description="Publish InsAssemblyMachiningHistory and InsToolLifeHistoryV2.",
    )
    alarm_topic: str = Field(
        default="",
        description="Alarms as JSON {code, active, text, severity} (e.g. "
        "alarms/{pcn}/{machine}); empty: on value_topic as a plain code, where a clear "
        "cannot be told from a raise.",
    )


class SimUdp(StrictModel):
    """Okuma machines that send their machining events as M208 UDP datagrams (set 60)."""

    enabled: bool = False
    host: str = Field(default="127.0.0.1", description="Where the collector's UDP reader listens.")
    port: int = Field(default=2222, ge=1, le=65535)
    machines: list[str] = Field(
        default_factory=list,
        description="Machine ids that speak UDP (their workcenter_key is the datagram's key).",
    )


class SimSparkplug(StrictModel):
    """One Sparkplug B edge node with one device per listed machine, on the MQTT broker."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    client_id: str = "repsys-sim-sparkplug"
    group: str = Field(default="Plant", description="Sparkplug group id.")
    edge_node: str = Field(default="sim-plant", description="Edge node id.")
    machines: list[str] = Field(
        default_factory=list,
        description="Machine ids published as devices (device id = machine id); metrics "
        "are their signals without a subject, named as the signals.",
    )


class SimPlantConfig(StrictModel):
    """Settings of the simulated plant. Every key has a default and a description."""

    seed: int = Field(default=0, description="Same seed and scenario: same signals.")
    speed: float = Field(default=1.0, gt=0, le=1000, description="Simulated s per real s.")
    tick_s: float = Field(default=0.2, gt=0, description="Real seconds between model steps.")
    machines: list[SimMachine] = Field(
        default_factory=list, description="Simulated machines; []: every machine, defaults."
    )
    scenario: SimScenario = SimScenario()
    opcua: SimOpcua = SimOpcua()
    mqtt: SimMqtt = SimMqtt()
    udp: SimUdp = SimUdp()
    sparkplug: SimSparkplug = SimSparkplug()

    def machine_refs(self) -> Iterator[tuple[Loc, str]]:
        """Every machine id this section names, with its key path."""
        for i, machine in enumerate(self.machines):
            yield ("sim", "plant", "machines", i, "id"), machine.id
        for i, fault in enumerate(self.scenario.faults):
            if fault.machine:
                yield ("sim", "plant", "scenario", "faults", i, "machine"), fault.machine
        for name, ids in (("udp", self.udp.machines), ("sparkplug", self.sparkplug.machines)):
            for i, machine_id in enumerate(ids):
                yield ("sim", "plant", name, "machines", i), machine_id
