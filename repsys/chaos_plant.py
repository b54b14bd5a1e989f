"""The chaos soak's plant: the simulated plant in real time on three inputs, with its ground truth.

A child process of ``repsys soak --chaos`` (``python -m repsys.chaos_plant CONFIG OUTDIR
SECONDS SEED``). The plant model (``sim.plant.model.Plant``, the soak's machines and the
chaos scenario of :func:`repsys.chaos_schedule.plant_scenario`) advances on the wall
clock. Each machine's signals take the input :func:`repsys.chaos_schedule.transports`
gives it: MQTT in the plants' formats (QoS 1, paho's queue unbounded, so a broker restart
delays messages and loses none on this side); OPC UA, the simulated plant's asyncua server
(``sim/plant/opcua_server.py``), for the :data:`~repsys.chaos_schedule.OPCUA_TAGS` of its
OPC UA machines (their other signals on MQTT); Okuma UDP datagrams
(``sim/plant/udp_sender.py``) for the UDP machine's machining events. The OPC UA server is
up at once (the collector is not ready without it); the clock starts when the harness
creates ``OUTDIR/go``. Every :data:`repsys.chaos_poison.EVERY_S` the plant also sends a
poison value on one input (:mod:`repsys.chaos_poison`).

The plant records exactly which signals it offered, as the collector would decode them:
MQTT messages through the collector's own decoder; OPC UA values when they change (the
server notifies a subscription of changes only), keyed with the source time as the
collector reads it back; datagrams as the UDP decoder keys their machining events.
``OUTDIR/plant.json`` (rewritten every second: signals and messages offered) and, at the
end, ``OUTDIR/offered.json`` (the count of each signal's key, :func:`signal_key`),
``OUTDIR/offered_at.json`` (when each key was offered: OPC UA and UDP lose what comes
while no collector listens, and a Redis restart without persistence what the harness had
not read yet; the harness checks the losses against those windows),
``OUTDIR/poison.json`` and ``OUTDIR/ledger.jsonl`` (every fault injected). The harness
compares the offered keys with the stream entries it saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import sys
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.ua.object_ids import ObjectIds

from collector.mqtt.decode import MessageDecoder
from core.config import load_config
from core.config.collector import MqttSource, OpcuaSource
from core.config.machines import Machine
from core.model import Signal, Value
from repsys import chaos_poison as poisons
from repsys.chaos_schedule import OPCUA_TAGS
from sim.plant.ledger import write_ledger
from sim.plant.model import Plant, default_specs
from sim.plant.mqtt_publisher import PlantPublisher
from sim.plant.opcua_server import PlantServer
from sim.plant.udp_sender import UdpSender

TICK_S = 0.25
#: The receive time the plant decodes with: a signal that keeps it had no timestamp.
NO_TS = -1.0
#: The start gate: the OPC UA server serves at once, the clock runs once this file exists.
GO_FILE = "go"


def signal_key(sig: Signal) -> str:
    """One signal's identity on both sides of the pipeline: what, its value and source time.

    A message without a timestamp of its own (the plain value topics) takes the collector's
    receive time as its source time, which the plant cannot know: such a signal is keyed
    without it (``source_ts == receive_ts``), and counted as a multiset of equal keys.
    """
    value = json.dumps(sig.value, allow_nan=False)
    ts = "" if sig.source_ts == sig.receive_ts else repr(sig.source_ts)
    return f"{sig.machine}|{sig.name}|{sig.subject}|{value}|{ts}"


def _write(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)  # the harness never reads half a file


def opcua_key(sig: Signal, value: Value) -> str:
    """An OPC UA value's key as the collector reads it back: the source time through a
    ``datetime`` (microseconds, as OPC UA's DateTime carries it)."""
    ts = datetime.fromtimestamp(sig.source_ts, UTC).timestamp()
    return signal_key(Signal(sig.machine, sig.name, value, source_ts=ts, receive_ts=NO_TS,
                             subject=sig.subject))  # fmt: skip


def udp_key(machine: str, tool_var: int, counter: int) -> str:
    """A datagram's machining event key (a datagram has no time: the receive time)."""
    return signal_key(Signal(machine, "machining_event", counter, source_ts=NO_TS,
                             receive_ts=NO_TS, subject=f"T{tool_var}"))  # fmt: skip


def _served(sig: Signal) -> Value:
    """The value the server holds after writing ``sig`` (its Double tags take floats)."""
    if sig.name == "spindle_load" and isinstance(sig.value, int | float):
        return float(sig.value)
    return sig.value


class Offered:
    """What the plant offered: keys counted, and when, for the paths that can lose."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.at: dict[str, list[float]] = defaultdict(list)

    def add(self, key: str, at: float | None = None) -> None:
        self.counts[key] += 1
        if at is not None:
            self.at[key].append(round(at, 3))


class Inputs:
    """The plant's three inputs and its poison, with the record of what each offered."""

    def __init__(self, cfg: Any, seconds: float) -> None:
        self.cfg = cfg
        sim = cfg.sim.plant
        machines: list[Machine] = list(cfg.machines)
        self.machines = {m.id: m for m in machines}
        self.udp_machines = frozenset(sim.udp.machines if sim.udp.enabled else ())
        opc_sources = [s for s in cfg.collector.sources if isinstance(s, OpcuaSource)]
        self.opcua_machines = frozenset(
            n.machine for s in opc_sources for n in s.nodes if n.signal in OPCUA_TAGS
        )
        self.publisher = PlantPublisher(sim.mqtt, machines, cfg.plant.timezone,
                                        udp=self.udp_machines)  # fmt: skip
        [source] = [s for s in cfg.collector.sources if isinstance(s, MqttSource)]
        self.decoder = MessageDecoder(source, machines, cfg.plant.timezone)
        specs = [s for s in default_specs(list(self.machines)) if s.id in self.opcua_machines]
        self.server = PlantServer(sim.opcua, specs) if specs else None
        # What each OPC UA tag holds (the server's initial values): a write of the same
        # value notifies no subscription, so it is offered only when it changes.
        self.tags: dict[tuple[str, str], Value] = {}
        for spec in specs:
            initial: dict[str, Value] = {"run_state": "executing", "program": spec.program,
                                         "spindle_load": 0.0, "part_count": 0}  # fmt: skip
            for name in OPCUA_TAGS:
                self.tags[(spec.id, name)] = initial[name]
        self.udp = UdpSender(sim.udp, machines) if self.udp_machines else None
        self.udp_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.offered = Offered()
        self.messages = 0
        self.last_info: Any = None
        paths = {"mqtt"} | ({"opcua"} if self.server else set()) | (
            {"udp"} if self.udp else set())  # fmt: skip
        self.poison_plan = poisons.plan(seconds, paths)
        self.poisons: list[dict[str, Any]] = []
        self.poison_node: ua.NodeId | None = None

    async def start(self) -> None:
        self.publisher.start()
        if self.server is not None:
            await self.server.start()
            await self._poison_node()

    async def _poison_node(self) -> None:
        """A variable under the first OPC UA machine's device whose DataType says Double
        and whose value is a string (a gateway serving a tag of the wrong type).

        It holds a string from the start: asyncua refuses a write whose variant type
        differs from the value's, so a Double value could never become a string.
        """
        assert self.server is not None and self.server.server is not None
        server = self.server.server
        kep = await server.get_namespace_index(self.server.cfg.kepware_namespace)
        m = sorted(self.opcua_machines)[0]
        device = server.get_node(ua.NodeId(ua.String(f"{m}.{m}"), ua.Int16(kep)))
        node_id = ua.NodeId(ua.String(f"{m}.{m}.{poisons.OPCUA_TAG}"), ua.Int16(kep))
        first = poisons.make(0, "opcua_wrong_type", (m, "", 0), 0)
        var = await device.add_variable(
            node_id,
            ua.QualifiedName(poisons.OPCUA_TAG, kep),
            ua.Variant(first.payload.decode(), ua.VariantType.String),
            datatype=ua.NodeId(ua.Int32(ObjectIds.Double)),
        )
        self.poison_node = var.nodeid
        self.poisons.append({**first.to_json(), "at": round(time.time(), 3)})

    async def stop(self) -> None:
        if self.last_info is not None:
            # Everything handed to paho reaches the broker before the counts are final.
            self.last_info.wait_for_publish(timeout=120)
        self.publisher.stop()
        self.udp_sock.close()
        if self.server is not None:
            await self.server.stop()

    async def step(self, signals: list[Signal], now: float) -> None:
        served = self.opcua_machines
        opc = [s for s in signals if s.machine in served and s.name in OPCUA_TAGS and not s.subject]
        mqtt = [s for s in signals if not (s.machine in served and s.name in OPCUA_TAGS
                                           and not s.subject)]  # fmt: skip
        for topic, payload, retain in self.publisher.messages(mqtt):
            self.last_info = self.publisher.client.publish(topic, payload, qos=1, retain=retain)
            self.messages += 1
            for sig in self.decoder.decode(topic, payload.encode(), NO_TS):
                self.offered.add(signal_key(sig), now)
        if self.server is not None and opc:
            await self.server.apply(opc)
            for sig in opc:
                value = _served(sig)
                if self.tags.get((sig.machine, sig.name)) != value:
                    self.tags[(sig.machine, sig.name)] = value
                    self.offered.add(opcua_key(sig, value), now)
        if self.udp is not None:
            target = (self.udp.cfg.host, self.udp.cfg.port)
            for sig in signals:
                for fields, data in self.udp.datagrams([sig]):
                    with contextlib.suppress(OSError):  # UDP: nobody listening is no error
                        self.udp_sock.sendto(data, target)
                    self.offered.add(udp_key(sig.machine, fields[2], fields[3]), time.time())

    async def poison(self, n: int, kind: str) -> None:
        """Send the ``n``-th poison (``kind``) on its input, and record it."""
        names = sorted(self.machines)
        others = self.opcua_machines | self.udp_machines
        m = self.machines[next((m for m in names if m not in others), names[0])]
        udp = sorted(self.udp_machines)
        key = self.machines[udp[0]].workcenter_key if udp else 0
        p = poisons.make(n, kind, (m.id, m.workcenter_code, m.workcenter_key), key)
        if p.path == "mqtt":
            self.last_info = self.publisher.client.publish(p.topic, p.payload, qos=1)
        elif p.path == "udp" and self.udp is not None:
            with contextlib.suppress(OSError):
                self.udp_sock.sendto(p.payload, (self.udp.cfg.host, self.udp.cfg.port))
        elif p.path == "opcua":
            await self._send_opcua(p)
            return
        self.poisons.append({**p.to_json(), "at": round(time.time(), 3)})

    async def _send_opcua(self, p: poisons.Poison) -> None:
        assert self.server is not None and self.server.server is not None
        assert self.poison_node is not None
        dv = ua.DataValue(ua.Variant(p.payload.decode(), ua.VariantType.String))
        await self.server.server.write_attribute_value(self.poison_node, dv)
        self.poisons.append({**p.to_json(), "at": round(time.time(), 3)})


async def run(config: Path, outdir: Path, seconds: float, seed: int) -> None:
    from repsys.chaos_schedule import plant_scenario  # noqa: PLC0415 - the harness's module

    cfg = load_config(config)
    ids = [m.id for m in cfg.machines]
    inputs = Inputs(cfg, seconds)
    stopping = False

    def on_term(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    await inputs.start()
    if not inputs.publisher.connected.wait(30):
        raise SystemExit("plant: the broker did not accept the connection in 30 s")
    gate = outdir / GO_FILE
    while not gate.exists() and not stopping:  # noqa: ASYNC110 - a file from another process
        await asyncio.sleep(0.1)  # the harness's gate: the clock starts when it opens
    started = time.time()
    plant = Plant(
        default_specs(ids), plant_scenario(ids, seconds, seed), seed=seed, start_ts=started
    )
    last = started
    tick = 0
    status = outdir / "plant.json"
    next_status = started
    todo = list(inputs.poison_plan)
    sent = 0
    while not stopping and last - started < seconds:
        now = time.time()
        await inputs.step(plant.advance(now - last), now)
        last = now
        plant.take_transport_faults()  # the chaos schedule acts on the servers instead
        while todo and now - started >= todo[0][0]:
            sent += 1
            await inputs.poison(sent, todo.pop(0)[1])
        if now >= next_status:
            total = sum(inputs.offered.counts.values())
            _write(status, {"signals": total, "messages": inputs.messages, "t": now})
            next_status += 1.0
        tick += 1
        wait = started + tick * TICK_S - time.time()
        if wait > 0:
            await asyncio.sleep(wait)  # the plant's clock: publish on schedule, not a test wait
    await inputs.stop()
    write_ledger(outdir / "ledger.jsonl", plant.ledger)
    _write(outdir / "offered.json", dict(inputs.offered.counts))
    _write(outdir / "offered_at.json", dict(inputs.offered.at))
    _write(outdir / "poison.json", inputs.poisons)
    _write(status, {"signals": sum(inputs.offered.counts.values()), "messages": inputs.messages,
                    "t": last, "done": True})  # fmt: skip


if __name__ == "__main__":
    a = sys.argv[1:]
    asyncio.run(run(Path(a[0]), Path(a[1]), float(a[2]), int(a[3])))
