"""The simulated plant's MQTT publisher: the plants' payload formats, through a broker.

* Plain values of every signal without a subject on ``value_topic``
  (``plant/{pcn}/{machine}/{signal}``; numbers as text, states as text).
* FOCAS-style part counters on ``counter_topic`` (``focas/{machine}``):
  ``{"PCN", "TransDate" (local time, no zone), "WorkCenter", "NodeId",
  "Cycle_Counter_Shift_SL"}``, retained, as the Fanuc gateways published them.
* Alarms as JSON on ``alarm_topic`` when it is set (``{"code", "active": "true" or
  "false", "text", "severity"}``); else as plain codes on ``value_topic`` like any other
  value, where a clear looks like a raise.
* The tool tracker's ``InsAssemblyMachiningHistory`` (one per machining event:
  ``Workcenter_Key, Pallet_No, Tool_Var, Current_Value, Running_Total, Start_Time,
  End_Time``) and ``InsToolLifeHistoryV2`` (one per tool change: ``Workcenter_Key,
  Tool_Var, Run_Quantity, Run_Date``).

Machines listed under ``sim.plant.udp`` send their machining events (and so their
tool tracker) as Okuma datagrams instead, and those under ``sim.plant.sparkplug`` their
values as Sparkplug B metrics: neither is published here a second time.

The ``broker_outage`` fault disconnects the publisher for its duration; QoS 1 messages
published meanwhile wait in paho's queue and go out on reconnect.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from datetime import datetime
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from core.config.machines import Machine
from core.config.sim_plant import SimMqtt
from core.logs import get_logger
from core.model import Signal

log = get_logger(__name__)

MACHINING_TOPIC = "InsAssemblyMachiningHistory"
TOOL_LIFE_TOPIC = "InsToolLifeHistoryV2"


class PlantPublisher:
    """Publishes the model's signals in the plants' MQTT formats."""

    def __init__(
        self,
        cfg: SimMqtt,
        machines: list[Machine],
        timezone: str = "UTC",
        *,
        udp: frozenset[str] = frozenset(),
        sparkplug: frozenset[str] = frozenset(),
    ) -> None:
        self.cfg = cfg
        self.machines = {m.id: m for m in machines}
        # A machine that speaks UDP sends its machining events as datagrams, one that
        # speaks Sparkplug B its values as metrics: not a second time over MQTT.
        self.udp = udp
        self.sparkplug = sparkplug
        self.tz = ZoneInfo(timezone)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cfg.client_id)
        self.client.max_queued_messages_set(0)  # unbounded: an outage must not lose QoS 1
        self.connected = threading.Event()
        self.client.on_connect = lambda *_: self.connected.set()
        self.client.on_disconnect = lambda *_: self.connected.clear()
        self._running_total: dict[tuple[str, str], int] = defaultdict(int)
        self.published = 0
        self.outages = 0

    def start(self) -> None:
        self.client.connect_async(self.cfg.host, self.cfg.port, 30)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def outage(self, seconds: float) -> None:
        """Cut the publisher off the broker for ``seconds`` (a fault)."""
        log.info("sim_mqtt_outage", seconds=seconds)
        self.outages += 1
        self.client.disconnect()
        self.client.loop_stop()  # a requested disconnect ends paho's network thread anyway

        def back() -> None:
            self.client.reconnect()
            self.client.loop_start()

        timer = threading.Timer(seconds, back)
        timer.daemon = True
        timer.start()

    def _local(self, ts: float) -> str:
        return datetime.fromtimestamp(ts, self.tz).strftime("%Y-%m-%d %H:%M:%S")

    def _send(self, topic: str, payload: str | bytes, *, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=self.cfg.qos, retain=retain)
        self.published += 1

    def publish(self, signals: list[Signal]) -> None:
        for topic, payload, retain in self.messages(signals):
            self._send(topic, payload, retain=retain)

    def messages(self, signals: list[Signal]) -> list[tuple[str, str, bool]]:
        """The MQTT messages of ``signals``: ``(topic, payload, retain)``, in order.

        No I/O: the tests put the demo plant's messages through the collector's decoder
        without a broker, to see exactly what the rules see in the demo.
        """
        out: list[tuple[str, str, bool]] = []
        for sig in signals:
            machine = self.machines.get(sig.machine)
            if machine is None:
                continue
            values = sig.machine not in self.sparkplug
            if values and self.cfg.alarm_topic and sig.name == "alarm":
                out.append(self._alarm(machine, sig))
                continue
            if values and self.cfg.value_topic and not sig.subject and sig.value is not None:
                topic = self.cfg.value_topic.format(
                    pcn=machine.pcn, machine=machine.id, signal=sig.name
                )
                value = json.dumps(sig.value) if not isinstance(sig.value, str) else sig.value
                out.append((topic, value, False))
            if values and self.cfg.counter_topic and sig.name == "part_count":
                body = {
                    "PCN": machine.pcn,
                    "TransDate": self._local(sig.source_ts),
                    "WorkCenter": machine.workcenter_code,
                    "NodeId": f"ns=2;s={machine.id}.{machine.id}.Cycle_Counter_Shift_SL",
                    "Cycle_Counter_Shift_SL": sig.value,
                }
                topic = self.cfg.counter_topic.format(machine=machine.id)
                out.append((topic, json.dumps(body), True))
            if self.cfg.tool_tracker and sig.machine not in self.udp:
                tracked = self._tool_tracker(machine, sig)
                if tracked is not None:
                    out.append(tracked)
        return out

    def _alarm(self, machine: Machine, sig: Signal) -> tuple[str, str, bool]:
        body = {
            "code": sig.value,
            # When the control raised (or cleared) it, in epoch milliseconds: a message the
            # broker delivers again is then the same raise, not another (alarm_frequency).
            "time": round(sig.source_ts * 1000),
            "active": sig.attrs.get("active", "true"),
            "text": sig.attrs.get("text", ""),
            "severity": sig.attrs.get("severity", ""),
        }
        topic = self.cfg.alarm_topic.format(pcn=machine.pcn, machine=machine.id)
        return topic, json.dumps(body), False

    def _tool_tracker(self, machine: Machine, sig: Signal) -> tuple[str, str, bool] | None:
        if sig.name == "machining_event":
            key = (machine.id, sig.subject)
            self._running_total[key] += int(sig.attrs.get("increment", "1"))
            body = {
                "Workcenter_Key": machine.workcenter_key,
                "Pallet_No": int(sig.attrs.get("pallet", "0")),
                "Tool_Var": int(sig.subject.lstrip("T") or 0),
                "Current_Value": sig.value,
                "Running_Total": self._running_total[key],
                "Start_Time": self._local(float(sig.attrs.get("start", sig.source_ts))),
                "End_Time": self._local(sig.source_ts),
            }
            return MACHINING_TOPIC, json.dumps(body), False
        if sig.name == "tool_change":
            body = {
                "Workcenter_Key": machine.workcenter_key,
                "Tool_Var": int(sig.subject.lstrip("T") or 0),
                "Run_Quantity": sig.value,
                "Run_Date": self._local(sig.source_ts),
            }
            return TOOL_LIFE_TOPIC, json.dumps(body), False
        return None
