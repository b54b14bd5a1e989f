"""The end-to-end benchmark's plant: the simulated plant's MQTT messages, in real time.

A child process of ``bench.e2e`` (``python -m bench._e2e_plant CONFIG STATUS SECONDS
RATE PROBES``). Three kinds of traffic go to the private mosquitto, QoS 1:

* **The simulated plant** (``sim.plant.model.Plant`` on the wall clock, every configured
  machine with ``default_specs``), in the plants' own formats as ``repsys sim plant``
  publishes them (``sim.plant.mqtt_publisher.PlantPublisher.messages``): plain values,
  FOCAS counters, the tool tracker. About 1.4 signals a second per machine: tool
  counters, cycles, pallets and a spindle load every second.
* **Telemetry** to reach ``RATE`` signals a second per machine: one JSON message a second
  per machine (``telemetry/<machine>``) of ``k`` values (axis loads, temperatures: what a
  plant reads at 1 Hz and no rule uses), ``k = RATE - the plant's own rate``.
* **Probes**, ``PROBES`` a second, round robin over the machines, on an MQTT connection of
  their own (not queued behind this process's burst): an early change of a tool no machine
  has (``probe/<machine>``: tool life 100 then 0 of a limit of 348,
  stamped with the wall clock at publication), which ``tool_life_short`` turns into an
  episode and a ticket. Its ``source_ts`` is the episode's ``started_at``: the latency's
  start is in the committed row itself.

Every second it rewrites ``STATUS`` (JSON: signals offered, messages, probes, how far
behind its schedule it runs, its CPU seconds) so the parent can tell a plant that cannot
keep up from a pipeline that cannot.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from core.config import RepsysConfig, load_config
from sim.plant.model import Plant, default_specs
from sim.plant.mqtt_publisher import PlantPublisher

TICK_S = 0.05  # telemetry of 1/20 of the machines each tick: each machine at 1 Hz
#: Simulated seconds from which the plant's own signal rate per machine is estimated.
ESTIMATE_S = 600.0


def plant_rate(publisher: PlantPublisher, ids: list[str]) -> float:
    """Signals a second per machine the simulated plant offers over MQTT (no I/O)."""
    sample = ids[:50]
    plant = Plant(default_specs(sample), seed=99)
    return len(publisher.messages(plant.advance(ESTIMATE_S))) / (len(sample) * ESTIMATE_S)


def telemetry_values(rate: float, cfg: RepsysConfig) -> int:
    """Values of each machine's 1 Hz telemetry message that top the plant up to ``rate``."""
    publisher = PlantPublisher(cfg.sim.plant.mqtt, list(cfg.machines), cfg.plant.timezone)
    return max(0, round(rate - plant_rate(publisher, [m.id for m in cfg.machines])))


def _write_status(path: Path, status: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(status))
    tmp.replace(path)  # the parent never reads half a file


def run(config: Path, status_path: Path, seconds: float, rate: float, probes: float) -> None:
    cfg = load_config(config)
    ids = [m.id for m in cfg.machines]
    publisher = PlantPublisher(cfg.sim.plant.mqtt, list(cfg.machines), cfg.plant.timezone)
    own = plant_rate(publisher, ids)
    k = telemetry_values(rate, cfg)
    client = publisher.client
    client.max_inflight_messages_set(1000)
    publisher.start()
    # Probes on a connection of their own: in the bulk client's queue they would wait
    # behind this process's own burst, a delay of the load generator, not of RepSys. And
    # without a network thread: paho then writes a publish to the socket in the calling
    # thread, at once, where a loop thread would first wait for this busy process's
    # interpreter lock (the load generator's delay again, counted in the first hop).
    # ``prober.loop(0)`` each tick reads its acknowledgements.
    prober = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-e2e-probe")
    prober.connect(cfg.sim.plant.mqtt.host, cfg.sim.plant.mqtt.port)
    if not publisher.connected.wait(30):
        raise SystemExit("plant: the broker did not accept the connection in 30 s")
    stopping = False

    def on_term(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    plant = Plant(default_specs(ids), seed=1, start_ts=time.time())
    groups = [ids[g :: round(1 / TICK_S)] for g in range(round(1 / TICK_S))]
    names = [f"tel{j}" for j in range(k)]
    offered = messages = probe_n = 0
    started = last = time.time()
    next_probe = started + 2.0  # after the collector has seen every machine once
    next_status = started
    tick = 0
    behind = 0.0
    last_info: mqtt.MQTTMessageInfo | None = None
    while not stopping and time.time() - started < seconds:
        now = time.time()
        for topic, payload, retain in publisher.messages(plant.advance(now - last)):
            last_info = client.publish(topic, payload, qos=1, retain=retain)
            messages += 1
            offered += 1
        last = now
        for n, machine in enumerate(groups[tick % len(groups)]):
            body = {"ts": now, **{name: float((tick + n + j) % 97) for j, name in enumerate(names)}}
            last_info = client.publish(f"telemetry/{machine}", json.dumps(body), qos=1)
            messages += 1
            offered += k
        while probes > 0 and now >= next_probe:
            machine = ids[probe_n % len(ids)]
            tool = f"9{probe_n // len(ids)}"
            for value, at in ((100, now - 1.0), (0, time.time())):
                probe: dict[str, Any] = {"ts": at, "tool": tool, "value": value, "limit": 348}
                prober.publish(f"probe/{machine}", json.dumps(probe), qos=1)
                messages += 1
                offered += 1
            probe_n += 1
            next_probe += 1.0 / probes
        prober.loop(timeout=0.0)
        if now >= next_status:
            _write_status(status_path, {"signals": offered, "messages": messages,
                                        "probes": probe_n, "behind_s": behind,
                                        "telemetry_values": k, "plant_rate": own,
                                        "cpu_s": time.process_time(), "done": False})  # fmt: skip
            next_status += 1.0
        tick += 1
        wait = started + tick * TICK_S - time.time()
        behind = max(0.0, -wait)
        if wait > 0:
            time.sleep(wait)  # the plant's clock: publish on schedule, not a test wait
    if last_info is not None:
        # Everything handed to paho reaches the broker before the count is final.
        last_info.wait_for_publish(timeout=60)
    publisher.stop()
    prober.disconnect()
    _write_status(status_path, {"signals": offered, "messages": messages, "probes": probe_n,
                                "behind_s": behind, "telemetry_values": k, "plant_rate": own,
                                "cpu_s": time.process_time(), "done": True})  # fmt: skip


if __name__ == "__main__":
    a = sys.argv[1:]
    run(Path(a[0]), Path(a[1]), float(a[2]), float(a[3]), float(a[4]))
