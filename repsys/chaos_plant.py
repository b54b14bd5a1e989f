"""The chaos soak's plant: the simulated plant over MQTT in real time, with its ground truth.

A child process of ``repsys soak --chaos`` (``python -m repsys.chaos_plant CONFIG OUTDIR
SECONDS SEED``). The plant model (``sim.plant.model.Plant``, the soak's machines and the
chaos scenario of :func:`repsys.chaos_schedule.plant_scenario`) advances on the wall
clock; its signals go to the broker in the plants' MQTT formats (QoS 1, paho's queue
unbounded, so a broker restart delays messages and loses none on this side).

Each message is also put through the collector's own decoder here, so the plant knows
exactly which signals it offered: ``OUTDIR/plant.json`` (rewritten every second: signals
and messages offered) and, at the end, ``OUTDIR/offered.json`` (the count of each signal's
key, :func:`signal_key`) and ``OUTDIR/ledger.jsonl`` (every fault injected). The harness
compares the offered keys with the stream entries it saw: the signals lost.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from collector.mqtt.decode import MessageDecoder
from core.config import load_config
from core.config.collector import MqttSource
from core.model import Signal
from sim.plant.ledger import write_ledger
from sim.plant.model import Plant, default_specs
from sim.plant.mqtt_publisher import PlantPublisher

TICK_S = 0.25
#: The receive time the plant decodes with: a signal that keeps it had no timestamp.
NO_TS = -1.0


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


def run(config: Path, outdir: Path, seconds: float, seed: int) -> None:
    from repsys.chaos_schedule import plant_scenario  # noqa: PLC0415 - the harness's module

    cfg = load_config(config)
    ids = [m.id for m in cfg.machines]
    machines = list(cfg.machines)
    publisher = PlantPublisher(cfg.sim.plant.mqtt, machines, cfg.plant.timezone)
    [source] = [s for s in cfg.collector.sources if isinstance(s, MqttSource)]
    decoder = MessageDecoder(source, machines, cfg.plant.timezone)
    stopping = False

    def on_term(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    publisher.start()
    if not publisher.connected.wait(30):
        raise SystemExit("plant: the broker did not accept the connection in 30 s")
    started = time.time()
    plant = Plant(
        default_specs(ids), plant_scenario(ids, seconds, seed), seed=seed, start_ts=started
    )
    offered: Counter[str] = Counter()
    messages = 0
    last = started
    last_info = None
    tick = 0
    status = outdir / "plant.json"
    next_status = started
    while not stopping and last - started < seconds:
        now = time.time()
        for topic, payload, retain in publisher.messages(plant.advance(now - last)):
            last_info = publisher.client.publish(topic, payload, qos=1, retain=retain)
            messages += 1
            for sig in decoder.decode(topic, payload.encode(), NO_TS):
                offered[signal_key(sig)] += 1
        last = now
        plant.take_transport_faults()  # the chaos schedule acts on the servers instead
        if now >= next_status:
            _write(status, {"signals": sum(offered.values()), "messages": messages, "t": now})
            next_status += 1.0
        tick += 1
        wait = started + tick * TICK_S - time.time()
        if wait > 0:
            time.sleep(wait)  # the plant's clock: publish on schedule, not a test wait
    if last_info is not None:
        # Everything handed to paho reaches the broker before the counts are final.
        last_info.wait_for_publish(timeout=120)
    publisher.stop()
    write_ledger(outdir / "ledger.jsonl", plant.ledger)
    _write(outdir / "offered.json", dict(offered))
    _write(status, {"signals": sum(offered.values()), "messages": messages, "t": last,
                    "done": True})  # fmt: skip


if __name__ == "__main__":
    a = sys.argv[1:]
    run(Path(a[0]), Path(a[1]), float(a[2]), int(a[3]))
