"""The Sparkplug B reader: a host application on an MQTT broker, through paho-mqtt 2.

It subscribes to ``spBv1.0/<group>/#`` and decodes births, data and deaths
(:mod:`collector.sparkplug.decode`). It publishes two things: Rebirth requests (``NCMD``
with ``Node Control/Rebirth = true``) when a node's sequence has a gap or its data cannot
be resolved, at most one per node per ``rebirth_min_interval_s``; and, with a
``host_id``, its primary-host ``STATE`` (``spBv1.0/STATE/<host_id>``, retained, JSON
``online``), online after each connect and offline as its will, so that edge nodes
configured to wait for their primary host publish.

The session is clean: a node's aliases and sequence live in this process, so DATA queued
for a previous session could not be resolved anyway; after a (re)connect the first
message of each node without a birth triggers a Rebirth request, and the node's births
bring the state back. QoS 1 messages are acknowledged once their rows (or dead letter)
are written, as in the MQTT reader.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from collector.errors import rejection
from collector.metrics import CollectorMetrics
from collector.reader import Sink
from collector.rows import rows_fields
from collector.sparkplug.decode import NAMESPACE, SparkplugDecoder
from collector.sparkplug.proto import rebirth_request, state_payload
from core.config import RepsysConfig
from core.config.collector_sparkplug import SparkplugSource
from core.lifecycle import Stopper
from core.logs import get_logger
from core.model import Signal

log = get_logger(__name__)

KIND = "sparkplug"


class SparkplugReader:
    """Reads one broker's Sparkplug B edge nodes (see the module docstring)."""

    kind = KIND

    @classmethod
    def from_config(
        cls, source: SparkplugSource, cfg: RepsysConfig, sink: Sink, metrics: CollectorMetrics
    ) -> SparkplugReader:
        """The reader of ``source`` as ``collector.service`` builds it."""
        return cls(
            source,
            {m.id for m in cfg.machines},
            sink,
            metrics,
            collector_name=cfg.collector.name,
            reconnect_max_s=cfg.collector.reconnect_max_s,
        )

    def __init__(
        self,
        source: SparkplugSource,
        machines: set[str],
        sink: Sink,
        metrics: CollectorMetrics,
        *,
        collector_name: str = "collector",
        reconnect_max_s: float = 10.0,
    ) -> None:
        self.source = source
        self.name = source.name
        self.sink = sink
        self.metrics = metrics
        events = metrics.sparkplug_events
        self.decoder = SparkplugDecoder(
            source,
            machines,
            events=lambda kind: events.labels(source.name, kind).inc(),
            request_rebirth=self._rebirth,
        )
        self.client_id = source.client_id or f"repsys-{collector_name}-{source.name}"
        self.reconnect_max_s = reconnect_max_s
        self.connected = threading.Event()
        self._client: mqtt.Client | None = None
        self._generation = 0
        self._last_rebirth: dict[tuple[str, str], float] = {}
        self._network: threading.Thread | None = None

    @property
    def state_topic(self) -> str:
        return f"{NAMESPACE}/STATE/{self.source.host_id}"

    def _build(self, client_id: str) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=True,
            protocol=MQTTProtocolVersion.MQTTv311,
            manual_ack=True,
        )
        if self.source.username:
            secret = self.source.password
            client.username_pw_set(
                self.source.username, secret.get_secret_value() if secret else None
            )
        if self.source.host_id:
            client.will_set(
                self.state_topic, state_payload(False, int(time.time() * 1000)), 1, retain=True
            )
        client.reconnect_delay_set(1, max(1, int(self.reconnect_max_s)))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    # --- paho callbacks (paho's network thread) --------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.warning("sparkplug_connect_refused", source=self.name, reason=str(reason))
            return
        self._generation += 1
        if self._generation > 1:
            self.metrics.reconnects.labels(KIND, self.name, "connect").inc()
        self._last_rebirth.clear()
        client.subscribe([(f, int(self.source.qos)) for f in self.decoder.filters])
        if self.source.host_id:
            body = state_payload(True, int(time.time() * 1000))
            client.publish(self.state_topic, body, qos=1, retain=True)
        log.info("sparkplug_connected", source=self.name, filters=self.decoder.filters)

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _m: int, reasons: Any, _p: Any) -> None:
        failed = [str(r) for r in reasons if r.is_failure]
        if failed:
            log.error("sparkplug_subscribe_refused", source=self.name, reasons=failed)
            return
        self.metrics.connected.labels(KIND, self.name).set(1)
        self.metrics.last_message.seen(KIND, self.name, time.time())
        self.connected.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.connected.clear()
        self.metrics.connected.labels(KIND, self.name).set(0)
        log.warning("sparkplug_disconnected", source=self.name, reason=str(reason))

    def _on_message(self, client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        ack = None if msg.qos == 0 else self._ack_for(client, msg)
        payload = bytes(msg.payload)
        now = time.time()
        self.metrics.last_message.seen(KIND, self.name, now)
        try:
            batches = self.decoder.decode(msg.topic, payload, now)
        except Exception as exc:  # nothing may escape into paho's thread: it would die
            reason, error = rejection(exc)
            self.sink.dead_letter(
                KIND,
                source=self.name,
                reason=reason,
                error=error,
                where=msg.topic,
                payload=payload,
                ack=ack,
            )
            return
        if not batches:
            if ack is not None:
                ack()
            return
        last = len(batches) - 1
        for i, (machine, rows) in enumerate(batches):
            # A death covers several machines: the message is acknowledged with its last.
            self.sink.submit_rows(KIND, machine, rows, ack if i == last else None)

    def _ack_for(self, client: mqtt.Client, msg: mqtt.MQTTMessage) -> Any:
        generation, mid, qos = self._generation, msg.mid, msg.qos

        def ack() -> None:
            if generation == self._generation:
                client.ack(mid, qos)

        return ack

    def _rebirth(self, group: str, node: str) -> None:
        """Ask an edge node for its births (rate-limited per node)."""
        client = self._client
        now = time.monotonic()
        last = self._last_rebirth.get((group, node))
        if client is None or (last is not None and now - last < self.source.rebirth_min_interval_s):
            return
        self._last_rebirth[(group, node)] = now
        topic = f"{NAMESPACE}/{group}/NCMD/{node}"
        client.publish(topic, rebirth_request(int(time.time() * 1000)), qos=0)
        self.metrics.sparkplug_events.labels(self.name, "rebirth_requested").inc()
        log.info("sparkplug_rebirth_requested", source=self.name, group=group, node=node)

    # --- Reader -------------------------------------------------------------------

    async def run(self, stopper: Stopper) -> None:
        """Connect (paho reconnects by itself) and read until the stopper is set."""
        client = self._client = self._build(self.client_id)
        client.connect_async(self.source.host, self.source.port, self.source.keepalive_s)
        client.loop_start()
        self._network = client._thread
        try:
            await stopper.wait_async()
        finally:
            self._network = None
            if self.source.host_id:
                # A clean stop says offline itself (the will is only for a lost connection).
                info = client.publish(
                    self.state_topic, state_payload(False, int(time.time() * 1000)), 1, True
                )
                await asyncio.to_thread(info.wait_for_publish, 2.0)
            client.disconnect()
            await asyncio.to_thread(client.loop_stop)
            self._client = None
            self.metrics.connected.labels(KIND, self.name).set(0)

    def healthy(self) -> tuple[bool, str]:
        """Unhealthy when paho's network thread died while the session runs."""
        thread = self._network
        if thread is not None and not thread.is_alive():
            return False, f"sparkplug source {self.name}: the network thread died"
        return True, ""

    async def read_once(self, seconds: float) -> list[Signal]:
        """Listen for ``seconds`` (a node without a birth is asked for one) and return."""
        got: list[Signal] = []
        lock = threading.Lock()

        class _Collect:
            def submit_rows(
                self, _reader: str, _machine: str, rows: list[Any], ack: Any = None
            ) -> None:
                with lock:
                    got.extend(Signal.from_fields(f) for f in rows_fields(rows))
                if ack is not None:
                    ack()

            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

        real = self.sink
        self.sink = _Collect()
        client = self._client = self._build(f"{self.client_id}-once")
        client.connect_async(self.source.host, self.source.port, self.source.keepalive_s)
        client.loop_start()
        try:
            await asyncio.sleep(seconds)  # one round of MQTT is a listening window
        finally:
            self.sink = real
            client.disconnect()
            await asyncio.to_thread(client.loop_stop)
            self._client = None
        with lock:
            return list(got)
