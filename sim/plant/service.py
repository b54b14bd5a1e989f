"""``repsys sim plant`` at run time: the model on a real-time clock, behind its servers.

Every ``tick_s`` the plant model advances by the real time elapsed times ``speed``; its
signals go to the OPC UA server and the MQTT publisher (and, for the machines listed
there, the Okuma UDP sender and the Sparkplug B edge node), and transport faults that came
due are acted out (server restart, silent subscriptions, broker outage). Machines come
from ``sim.plant.machines`` or, when that is empty, from every configured machine with
the default specs of :func:`sim.plant.model.default_specs`.
"""

from __future__ import annotations

import time
from pathlib import Path

from core.config import RepsysConfig
from core.config.sim_plant import SimMachine
from core.lifecycle import Stopper
from core.logs import get_logger
from sim.plant.ledger import write_ledger
from sim.plant.model import MachineSpec, Plant, ToolSpec, default_specs
from sim.plant.mqtt_publisher import PlantPublisher
from sim.plant.opcua_server import PlantServer
from sim.plant.scenario import FaultKind, Scenario, fault_from_dict
from sim.plant.sparkplug_publisher import SparkplugPublisher
from sim.plant.udp_sender import UdpSender

log = get_logger(__name__)


def spec_of(m: SimMachine) -> MachineSpec:
    kwargs = {}
    if m.tools:
        kwargs["tools"] = tuple(
            ToolSpec(t.number, t.life, t.warning, t.increment, tuple(t.pallets), t.start)
            for t in m.tools
        )
    return MachineSpec(
        id=m.id,
        pallets=m.pallets,
        cycle_time_s=m.cycle_time_s,
        cycle_noise=m.cycle_noise,
        load_time_s=m.load_time_s,
        program=m.program,
        parts_per_cycle=m.parts_per_cycle,
        spindle_base=m.spindle_base,
        spindle_wear=m.spindle_wear,
        tool_share=m.tool_share,
        **kwargs,  # type: ignore[arg-type]  # only tools, typed above
    )


def machine_specs(cfg: RepsysConfig) -> list[MachineSpec]:
    sim = cfg.sim.plant
    if sim.machines:
        return [spec_of(m) for m in sim.machines]
    return default_specs([m.id for m in cfg.machines])


def scenario_of(cfg: RepsysConfig) -> Scenario:
    sc = cfg.sim.plant.scenario
    faults = tuple(
        fault_from_dict(f.model_dump(), f"sim.plant.scenario.faults[{i}]")
        for i, f in enumerate(sc.faults)
    )
    return Scenario(name=sc.name, faults=faults)


class SimPlant:
    """The running simulated plant."""

    def __init__(
        self, cfg: RepsysConfig, scenario: Scenario | None = None, *, ledger: Path | None = None
    ) -> None:
        self.cfg = cfg
        self.ledger_path = ledger  # the ground truth, written as JSON lines at stop
        sim = cfg.sim.plant
        self.specs = machine_specs(cfg)
        self.scenario = scenario if scenario is not None else scenario_of(cfg)
        self.opcua = PlantServer(sim.opcua, self.specs) if sim.opcua.enabled else None
        ids = {s.id for s in self.specs}
        machines = [m for m in cfg.machines if m.id in ids]
        self.mqtt = (
            PlantPublisher(
                sim.mqtt,
                machines,
                cfg.plant.timezone,
                udp=frozenset(sim.udp.machines if sim.udp.enabled else ()),
                sparkplug=frozenset(sim.sparkplug.machines if sim.sparkplug.enabled else ()),
            )
            if sim.mqtt.enabled
            else None
        )
        # Some machines also speak the Okuma UDP datagrams or Sparkplug B (a switch per
        # machine: the transport's machines list).
        self.udp = UdpSender(sim.udp, machines) if sim.udp.enabled else None
        self.sparkplug = SparkplugPublisher(sim.sparkplug) if sim.sparkplug.enabled else None
        self.plant: Plant | None = None

    async def start(self) -> None:
        if self.opcua is not None:
            await self.opcua.start()
        if self.mqtt is not None:
            self.mqtt.start()
        if self.udp is not None:
            self.udp.start()
        if self.sparkplug is not None:
            self.sparkplug.start()
        self.plant = Plant(
            self.specs, self.scenario, seed=self.cfg.sim.plant.seed, start_ts=time.time()
        )

    async def stop(self) -> None:
        if self.ledger_path is not None and self.plant is not None:
            n = write_ledger(self.ledger_path, self.plant.ledger)
            log.info("sim_plant_ledger_written", path=str(self.ledger_path), faults=n)
        if self.mqtt is not None:
            self.mqtt.stop()
        if self.udp is not None:
            self.udp.stop()
        if self.sparkplug is not None:
            self.sparkplug.stop()
        if self.opcua is not None:
            await self.opcua.stop()

    async def step(self, seconds: float) -> int:
        """Advance the model ``seconds`` of simulated time and serve what it produced."""
        assert self.plant is not None
        signals = self.plant.advance(seconds)
        if self.opcua is not None:
            await self.opcua.apply(signals)
        if self.mqtt is not None:
            self.mqtt.publish(signals)
        if self.udp is not None:
            self.udp.publish(signals)
        if self.sparkplug is not None:
            self.sparkplug.publish(signals)
        for fault in self.plant.take_transport_faults():
            await self._transport(fault.kind, fault.effective_duration_s)
        return len(signals)

    async def _transport(self, kind: FaultKind, duration_s: float) -> None:
        log.info("sim_plant_fault", kind=kind.value)
        if kind is FaultKind.SERVER_RESTART and self.opcua is not None:
            await self.opcua.restart()
        elif kind is FaultKind.SILENT_SUBSCRIPTION and self.opcua is not None:
            await self.opcua.silence_subscriptions()
        elif kind is FaultKind.BROKER_OUTAGE and self.mqtt is not None:
            self.mqtt.outage(duration_s / self.cfg.sim.plant.speed)

    async def run(self, stopper: Stopper, *, duration_s: float | None = None) -> None:
        """Run until stopped (or ``duration_s`` of simulated time has passed)."""
        await self.start()
        speed, tick = self.cfg.sim.plant.speed, self.cfg.sim.plant.tick_s
        simulated = 0.0
        last = time.monotonic()
        log.info("sim_plant_started", machines=len(self.specs), scenario=self.scenario.name)
        try:
            while not stopper.stopped:
                now = time.monotonic()
                step = (now - last) * speed
                last = now
                if duration_s is not None:
                    step = min(step, duration_s - simulated)
                await self.step(step)
                simulated += step
                if duration_s is not None and simulated >= duration_s:
                    break
                await stopper.wait_async(tick)
        finally:
            await self.stop()
            log.info("sim_plant_stopped", simulated_s=round(simulated, 1))
