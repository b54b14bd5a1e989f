"""The MQTT reader: a paho-mqtt 2 client with a persistent session and manual acks.

QoS 1 messages are acknowledged to the broker only when the sink has written their
signals to Redis (or their dead letter): paho is built with ``manual_ack=True`` and the
sink calls the ack after the XADD batch succeeded, the habit of Telegraf's and Benthos'
MQTT inputs. A collector killed between receiving and writing never acknowledged, so the
broker sends the message again to the same session (``clean_session=False`` in 3.1.1,
``clean_start=False`` plus a session expiry in MQTT 5). Subscriptions are renewed in
``on_connect`` after every reconnect. The broker sends at most ``max_inflight``
unacknowledged messages (MQTT 5 Receive Maximum), which bounds what the collector holds.

paho's own network thread reconnects with backoff (``reconnect_delay_set``); an ack whose
message arrived on an earlier connection is skipped, because message ids restart per
connection and the broker resends that message anyway.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from collector.errors import rejection
from collector.metrics import CollectorMetrics
from collector.mqtt.decode import MessageDecoder
from collector.reader import Sink
from core.config import RepsysConfig
from core.config.base import type_tag
from core.config.collector import MqttSource
from core.lifecycle import Stopper
from core.logs import get_logger
from core.model import Signal

log = get_logger(__name__)

#: The registry key, config ``type`` and metric label: the source model's ``type``.
KIND = type_tag(MqttSource)


class MqttReader:
    """Reads one broker (see the module docstring)."""

    kind = KIND

    @classmethod
    def from_config(
        cls, source: MqttSource, cfg: RepsysConfig, sink: Sink, metrics: CollectorMetrics
    ) -> MqttReader:
        """The reader of ``source`` as ``collector.service`` builds it."""
        return cls(
            source,
            MessageDecoder(source, cfg.machines, cfg.plant.timezone),
            sink,
            metrics,
            collector_name=cfg.collector.name,
            reconnect_max_s=cfg.collector.reconnect_max_s,
        )

    def __init__(
        self,
        source: MqttSource,
        decoder: MessageDecoder,
        sink: Sink,
        metrics: CollectorMetrics,
        *,
        collector_name: str = "collector",
        reconnect_max_s: float = 10.0,
    ) -> None:
        self.source = source
        self.name = source.name
        self.decoder = decoder
        self.sink = sink
        self.metrics = metrics
        self.client_id = source.client_id or f"repsys-{collector_name}-{source.name}"
        self.reconnect_max_s = reconnect_max_s
        self._generation = 0
        self._connects = 0
        self.connected = threading.Event()
        #: The running session's network thread, for :meth:`healthy` (None when not running).
        self._network: threading.Thread | None = None

    def _client(self, client_id: str, *, persistent: bool) -> mqtt.Client:
        v5 = self.source.protocol == "5"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=None if v5 else not persistent,
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            manual_ack=True,
        )
        if self.source.username:
            password = self.source.password.get_secret_value() if self.source.password else None
            client.username_pw_set(self.source.username, password)
        tls = self.source.tls
        if tls is not None:
            client.tls_set(
                ca_certs=tls.ca_file or None,
                certfile=tls.cert_file or None,
                keyfile=tls.key_file or None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
            client.tls_insecure_set(tls.insecure)
        client.reconnect_delay_set(1, max(1, int(self.reconnect_max_s)))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        return client

    def _connect(self, client: mqtt.Client, *, persistent: bool) -> None:
        properties = None
        if self.source.protocol == "5":
            # paho's Properties constructor is unannotated.
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = self.source.session_expiry_s if persistent else 0
            properties.ReceiveMaximum = min(65535, self.source.max_inflight)
            client.connect_async(
                self.source.host,
                self.source.port,
                self.source.keepalive_s,
                clean_start=not persistent,
                properties=properties,
            )
        else:
            client.connect_async(self.source.host, self.source.port, self.source.keepalive_s)

    # --- paho callbacks (paho's network thread) --------------------------------------

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        if reason.is_failure:
            log.warning("mqtt_connect_refused", source=self.name, reason=str(reason))
            return
        self._generation += 1
        self._connects += 1
        if self._connects > 1:
            self.metrics.reconnects.labels(KIND, self.name, "connect").inc()
        # Renew the subscriptions on every connect: a broker that lost its state (or a
        # session that expired) would otherwise leave us connected and deaf.
        topics: list[tuple[str, int]] = [(f, self.source.qos) for f in self.decoder.filters]
        client.subscribe(topics)
        log.info("mqtt_connected", source=self.name, filters=self.decoder.filters)

    def _on_subscribe(
        self, _client: mqtt.Client, _userdata: Any, _mid: int, reasons: Any, _props: Any
    ) -> None:
        failed = [str(r) for r in reasons if r.is_failure]
        if failed:
            log.error("mqtt_subscribe_refused", source=self.name, reasons=failed)
            return
        # Ready only once the broker confirmed the subscriptions: a message published
        # before that would not be queued for this session.
        self.metrics.connected.labels(KIND, self.name).set(1)
        # Intake is judged stalled from here when no message follows.
        self.metrics.last_message.seen(KIND, self.name, time.time())
        self.connected.set()

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        self.connected.clear()
        self.metrics.connected.labels(KIND, self.name).set(0)
        log.warning("mqtt_disconnected", source=self.name, reason=str(reason))

    def _on_message(self, client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        # paho's network thread: tens of thousands of values a second pass here, so the
        # message goes to the sink as rows (collector.rows), not as Signal objects.
        ack = None if msg.qos == 0 else self._ack_for(client, msg)
        topic = msg.topic
        payload = bytes(msg.payload)  # the same object when paho gave bytes
        now = time.time()
        self.metrics.last_message.seen(KIND, self.name, now)
        try:
            machine, rows = self.decoder.decode_rows(topic, payload, now)
        except Exception as exc:  # nothing may escape into paho's thread: it would die
            reason, error = rejection(exc)
            # Acknowledged once the dead letter is written: it never comes back.
            self.sink.dead_letter(
                KIND,
                source=self.name,
                reason=reason,
                error=error,
                where=topic,
                payload=payload,
                ack=ack,
            )
            return
        self.sink.submit_rows(KIND, machine, rows, ack)

    def _ack_for(self, client: mqtt.Client, msg: mqtt.MQTTMessage) -> Any:
        generation, mid, qos = self._generation, msg.mid, msg.qos

        def ack() -> None:
            if generation == self._generation:
                client.ack(mid, qos)

        return ack

    # --- Reader -------------------------------------------------------------------

    async def run(self, stopper: Stopper) -> None:
        """Connect (paho reconnects by itself) and read until the stopper is set."""
        client = self._client(self.client_id, persistent=True)
        client.on_message = self._on_message
        self._connect(client, persistent=True)
        client.loop_start()
        # paho forgets its thread when it ends (for any reason): keep it to see that.
        self._network = client._thread
        try:
            await stopper.wait_async()
        finally:
            self._network = None
            client.disconnect()
            await asyncio.to_thread(client.loop_stop)
            self.metrics.connected.labels(KIND, self.name).set(0)

    def healthy(self) -> tuple[bool, str]:
        """Unhealthy when paho's network thread died while the session runs.

        Every callback catches what it can, but an exception that is not an ``Exception``
        (or a bug in paho) still ends the thread: nothing is read, acknowledged or
        reconnected any more, and the gauges say "connected". Only a restart helps.
        """
        thread = self._network
        if thread is not None and not thread.is_alive():
            return False, f"mqtt source {self.name}: the network thread died"
        return True, ""

    async def read_once(self, seconds: float) -> list[Signal]:
        """Read for ``seconds`` with a throw-away session (retained messages show up)."""
        got: list[Signal] = []
        lock = threading.Lock()

        def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            try:
                signals = self.decoder.decode(msg.topic, bytes(msg.payload), time.time())
            except Exception as exc:  # as in _on_message
                reason, error = rejection(exc)
                self.sink.dead_letter(
                    KIND,
                    source=self.name,
                    reason=reason,
                    error=error,
                    where=msg.topic,
                    payload=bytes(msg.payload),
                )
                return
            with lock:
                got.extend(signals)

        client = self._client(f"{self.client_id}-once", persistent=False)
        client.on_message = on_message
        self._connect(client, persistent=False)
        client.loop_start()
        try:
            await asyncio.sleep(seconds)  # one round of MQTT is a listening window
        finally:
            client.disconnect()
            await asyncio.to_thread(client.loop_stop)
        with lock:
            return list(got)
