"""The simulated plant's Sparkplug B edge node: one node, one device per listed machine.

What an Ignition edge node publishes (``spBv1.0/<group>/...``): an ``NBIRTH`` (``bdSeq``,
``Node Control/Rebirth``) on connect, with ``NDEATH`` (same ``bdSeq``) as its will; a
``DBIRTH`` per machine (device id = machine id) with every metric it has seen so far by
name, alias and type; then ``DDATA`` by alias. A signal without a subject is a metric
named as the signal (``part_count``, ``run_state``, ``spindle_load``); one seen for the
first time is born by a new ``DBIRTH`` of its device (Sparkplug lets a device be born
again), so births always declare every alias that data uses. ``seq`` runs 0-255 over
every message of the node after its ``NBIRTH``; an ``NCMD`` ``Node Control/Rebirth``
makes the node publish its births again.

The payloads are written here with a few lines of protobuf wire format (the Sparkplug B
``Payload``/``Metric`` fields a host reads: timestamp 1, metrics 2, seq 3; name 1,
alias 2, timestamp 3, datatype 4, long_value 11, double_value 13, boolean_value 14,
string_value 15): ``sim`` may not import the collector's decoder, and a second
descriptor pool for four field types would be more code than the encoding itself.
"""

from __future__ import annotations

import struct
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from core.config.sim_plant import SimSparkplug
from core.logs import get_logger
from core.model import Signal, Value

log = get_logger(__name__)

NAMESPACE = "spBv1.0"
INT64, DOUBLE, BOOLEAN, STRING = 4, 10, 11, 12


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64: two's complement, as protobuf writes it
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _bytes(field: int, data: bytes) -> bytes:
    return _key(field, 2) + _varint(len(data)) + data


def datatype(value: Value) -> int:
    """The Sparkplug type a Python value is published as."""
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, int):
        return INT64
    if isinstance(value, float):
        return DOUBLE
    return STRING


def metric(
    value: Value, kind: int, *, name: str = "", alias: int | None = None, ts_ms: int = 0
) -> bytes:
    """One ``Metric`` message (``value`` converted to ``kind``)."""
    out = bytearray()
    if name:
        out += _bytes(1, name.encode())
    if alias is not None:
        out += _key(2, 0) + _varint(alias)
    if ts_ms:
        out += _key(3, 0) + _varint(ts_ms)
    out += _key(4, 0) + _varint(kind)
    if value is None:
        out += _key(7, 0) + _varint(1)  # is_null
    elif kind == BOOLEAN:
        out += _key(14, 0) + _varint(1 if value else 0)
    elif kind == INT64:
        out += _key(11, 0) + _varint(int(value))
    elif kind == DOUBLE:
        out += _key(13, 1) + struct.pack("<d", float(value))
    else:
        out += _bytes(15, str(value).encode())
    return bytes(out)


def payload(metrics: list[bytes], *, ts_ms: int, seq: int | None) -> bytes:
    """One ``Payload`` message."""
    out = bytearray(_key(1, 0) + _varint(ts_ms))
    for m in metrics:
        out += _bytes(2, m)
    if seq is not None:
        out += _key(3, 0) + _varint(seq)
    return bytes(out)


def _convertible(value: Value, kind: int) -> bool:
    if value is None:
        return True
    if kind == STRING:
        return isinstance(value, str)
    if kind == BOOLEAN:
        return isinstance(value, bool)
    return isinstance(value, int | float) and not isinstance(value, bool)


class SparkplugPublisher:
    """The edge node (see the module docstring). ``publish`` is called by the sim's loop."""

    def __init__(self, cfg: SimSparkplug) -> None:
        self.cfg = cfg
        self.machines = set(cfg.machines)
        self.bd_seq = 0
        self.seq = 0
        #: machine -> metric name -> (alias, type, last value, its time in ms).
        self.metrics: dict[str, dict[str, tuple[int, int, Value, int]]] = {}
        self._next_alias = 1
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cfg.client_id)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.connected = threading.Event()
        self.client.on_disconnect = lambda *_: self.connected.clear()
        self.births = 0
        self.published = 0

    def _topic(self, kind: str, device: str = "") -> str:
        tail = f"/{device}" if device else ""
        return f"{NAMESPACE}/{self.cfg.group}/{kind}/{self.cfg.edge_node}{tail}"

    def start(self) -> None:
        self.client.will_set(self._topic("NDEATH"), self._death(), qos=1)
        self.client.connect_async(self.cfg.host, self.cfg.port, 30)
        self.client.loop_start()

    def stop(self) -> None:
        if self.connected.is_set():  # a clean stop says so itself
            self.client.publish(self._topic("NDEATH"), self._death(), qos=1).wait_for_publish(2)
        self.client.disconnect()
        self.client.loop_stop()

    def _death(self) -> bytes:
        now = int(time.time() * 1000)
        return payload([metric(self.bd_seq, INT64, name="bdSeq")], ts_ms=now, seq=None)

    def _next_seq(self) -> int:
        seq = self.seq
        self.seq = (self.seq + 1) % 256
        return seq

    # --- paho's thread ---------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            return
        client.subscribe(self._topic("NCMD"), qos=1)
        self.connected.set()
        self.births_now()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        # The only command a host sends the node is Rebirth; any NCMD is answered by births.
        log.info("sim_sparkplug_rebirth_requested", topic=msg.topic)
        self.births_now()

    def births_now(self) -> None:
        """Publish NBIRTH and every device's DBIRTH (on connect and on Rebirth)."""
        with self._lock:
            self.seq = 0
            now = int(time.time() * 1000)
            node = [
                metric(self.bd_seq, INT64, name="bdSeq"),
                metric(False, BOOLEAN, name="Node Control/Rebirth"),
            ]
            self._send(self._topic("NBIRTH"), payload(node, ts_ms=now, seq=self._next_seq()))
            for machine in sorted(self.metrics):
                self._device_birth(machine, now)
            self.births += 1

    def _device_birth(self, machine: str, now: int) -> None:
        known = self.metrics[machine]
        body = [
            metric(v, kind, name=name, alias=alias, ts_ms=ts or now)
            for name, (alias, kind, v, ts) in known.items()
        ]
        self._send(self._topic("DBIRTH", machine), payload(body, ts_ms=now, seq=self._next_seq()))

    def _send(self, topic: str, body: bytes) -> None:
        self.client.publish(topic, body, qos=0)
        self.published += 1

    # --- the sim's loop ---------------------------------------------------------------

    def publish(self, signals: list[Signal]) -> None:
        """DDATA per machine for ``signals`` (a DBIRTH first when a metric is new)."""
        by_machine: dict[str, list[Signal]] = {}
        for sig in signals:
            if sig.machine in self.machines and not sig.subject:
                by_machine.setdefault(sig.machine, []).append(sig)
        if not by_machine:
            return
        with self._lock:
            now = int(time.time() * 1000)
            for machine, sigs in by_machine.items():
                known = self.metrics.setdefault(machine, {})
                data: list[bytes] = []
                reborn = False
                for sig in sigs:
                    ts = int(sig.source_ts * 1000)
                    entry = known.get(sig.name)
                    if entry is None or not _convertible(sig.value, entry[1]):
                        # A new metric, or one whose type changed: born (again) below.
                        alias = entry[0] if entry is not None else self._alias()
                        known[sig.name] = (alias, datatype(sig.value), sig.value, ts)
                        reborn = True
                        continue
                    known[sig.name] = (entry[0], entry[1], sig.value, ts)
                    data.append(metric(sig.value, entry[1], alias=entry[0], ts_ms=ts))
                if not self.connected.is_set():
                    continue  # births on (re)connect carry the latest values
                if reborn:
                    self._device_birth(machine, now)  # it carries this round's values too
                    continue
                if data:
                    self._send(
                        self._topic("DDATA", machine),
                        payload(data, ts_ms=now, seq=self._next_seq()),
                    )

    def _alias(self) -> int:
        alias = self._next_alias
        self._next_alias += 1
        return alias
