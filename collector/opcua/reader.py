"""The OPC UA reader: subscriptions (or polling) with a data watchdog, via asyncua.

On every connect the reader resolves its nodes afresh (:mod:`collector.opcua.resolve`),
then creates one subscription with every node (publishing interval, sampling interval
and queue size from config) and, when configured, event monitored items for alarms.
Notifications are taken from asyncua's iterator queue (no task per notification) and
handed to the sink in batches every :data:`FLUSH_S`.

Watchdog: a subscription can die without the connection dropping (a server that lost
its monitored items, a gateway whose device went away). When no data notification has
arrived for ``watchdog_factor`` times the expected interval, the reader deletes and recreates
the subscription; if data is still missing after as long again, it raises
``SourceUnavailableError(reason="watchdog")`` and the supervisor reconnects. A source
whose values never change will be resubscribed periodically (harmless: the server resends
current values); set ``watchdog_factor: 0`` to turn the watchdog off for it.

Heartbeat: a subscription reports changes only, so a stopped machine whose values stay
put sends nothing, and ``no_data`` would read the stop as a dead link (and inhibit
``downtime``): the chaos soak found it on the machines it serves over OPC UA. While the
subscription delivers data (any node of the source within the watchdog's limit, or two
heartbeats), each machine of the source gets a ``source_alive`` signal (value 1) every
``heartbeat_s``. A machine whose device is gone shows it in its status codes (bad
quality, which ``no_data`` fires on at once); a source gone quiet as a whole gets no
heartbeat, and the watchdog acts.

Status codes become qualities (:func:`quality_of`); the server's source timestamp is
kept (server timestamp, then receive time, when the server sends none).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.events import get_filter_from_event_type
from asyncua.common.subscription import DataChangeEvent, OpcEvent, OverflowPolicy, Subscription
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaError

from collector.convert import convert
from collector.errors import PayloadRejectedError, SourceUnavailableError, rejection
from collector.metrics import CollectorMetrics
from collector.opcua.conditions import condition_filter, condition_refresh, condition_signal
from collector.opcua.resolve import Resolved, Resolver, connect, resolve_addresses, resolve_nodes
from collector.reader import Sink
from collector.rows import Row, signal_row
from core.config import RepsysConfig
from core.config.base import type_tag
from core.config.collector import OpcuaEvents, OpcuaSource
from core.lifecycle import Stopper
from core.logs import get_logger
from core.model import Quality, Signal

log = get_logger(__name__)

#: The registry key, config ``type`` and metric label: the source model's ``type``.
KIND = type_tag(OpcuaSource)
GOOD = Quality.GOOD
FLUSH_S = 0.05
#: The heartbeat's signal name (module docstring).
HEARTBEAT_SIGNAL = "source_alive"
#: Keep-alive count requested: a publish response at least every 10 intervals when idle.
#: asyncua recreates a subscription silent for 1.5 keep-alive periods on its own; ours
#: (data, ``watchdog_factor``) is the one that counts, so asyncua's must be the later.
KEEPALIVE_COUNT = 10

_NO_DATA = {
    StatusCodes.BadNoData,
    StatusCodes.BadWaitingForInitialData,
    StatusCodes.BadNoCommunication,
    StatusCodes.BadNotConnected,
    StatusCodes.BadOutOfService,
    StatusCodes.BadServerNotConnected,
}


def quality_of(status: ua.StatusCode | None) -> Quality:
    """OPC UA status → quality: severity bits, with "no data" codes of their own."""
    if status is None:
        return Quality.GOOD
    code = status.value
    if code in _NO_DATA:
        return Quality.NO_DATA
    severity = code >> 30
    if severity == 0:
        return Quality.GOOD
    if severity == 1:
        return Quality.UNCERTAIN
    return Quality.BAD


def _ts(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


class OpcuaReader:
    """Reads one OPC UA server (see the module docstring)."""

    kind = KIND

    @classmethod
    def from_config(
        cls, source: OpcuaSource, cfg: RepsysConfig, sink: Sink, metrics: CollectorMetrics
    ) -> OpcuaReader:
        """The reader of ``source`` as ``collector.service`` builds it."""
        return cls(source, sink, metrics)

    def __init__(self, source: OpcuaSource, sink: Sink, metrics: CollectorMetrics) -> None:
        self.source = source
        self.name = source.name
        self.sink = sink
        self.metrics = metrics
        self._by_id: dict[ua.NodeId, Resolved] = {}
        self._events: list[tuple[ua.NodeId, OpcuaEvents]] = []
        self._pending: list[Row] = []
        self.last_data = time.monotonic()
        self.notifications = 0

    # --- values -> signals --------------------------------------------------------

    def _signal(self, r: Resolved, dv: ua.DataValue, receive_ts: float) -> Signal | None:
        quality = quality_of(dv.StatusCode)
        raw = dv.Value.Value if dv.Value is not None else None
        try:
            value = convert(raw, r.spec) if quality is not Quality.NO_DATA else None
        except PayloadRejectedError as exc:
            self.sink.dead_letter(
                KIND,
                source=self.name,
                reason=exc.reason,
                error=str(exc),
                where=r.node_id.to_string(),
                payload=repr(raw).encode(),
            )
            return None
        source_ts = _ts(dv.SourceTimestamp) or _ts(dv.ServerTimestamp) or receive_ts
        return Signal(
            machine=r.spec.machine,
            name=r.spec.signal,
            value=value,
            quality=quality,
            source_ts=source_ts,
            receive_ts=receive_ts,
            subject=r.spec.subject,
            attrs=r.attrs,
        )

    def _row(self, known: _Known, dv: ua.DataValue, receive_ts: float) -> Row | None:
        """:meth:`_signal` as a row (:mod:`collector.rows`), without a Signal when it can.

        A good finite float of a plain node (no map or scaling) is written as it is;
        anything else goes through :meth:`_signal`. A property test holds the two equal.
        """
        r, plain, attrs = known
        raw = dv.Value.Value if dv.Value is not None else None
        if plain and type(raw) is float and raw - raw == 0.0 and quality_of(dv.StatusCode) is GOOD:
            source_ts = _ts(dv.SourceTimestamp) or _ts(dv.ServerTimestamp) or receive_ts
            spec = r.spec
            x = float.__repr__(raw)
            return [
                spec.machine,
                spec.signal,
                x,
                "good",
                repr(source_ts),
                repr(receive_ts),
                spec.subject,
                attrs,
            ]
        sig = self._signal(r, dv, receive_ts)
        return None if sig is None else signal_row(sig)

    def _event_spec(self, fields: dict[str, Any]) -> OpcuaEvents | None:
        # Events bubble up to the Server object: match the emitter first, then the event's
        # SourceName against the machine id, then the only configured emitter.
        source_node = fields.get("SourceNode")
        source_name = fields.get("SourceName")
        node = source_node.Value if source_node is not None else None
        name = source_name.Value if source_name is not None else None
        for emitter, spec in self._events:
            if emitter == node:
                return spec
        for _, spec in self._events:
            if spec.machine == name:
                return spec
        return self._events[0][1] if len(self._events) == 1 else None

    def _event_signal(self, event: Any, receive_ts: float) -> Signal | None:
        fields = event.get_event_props_as_fields_dict()
        spec = self._event_spec(fields)
        if spec is None:
            return None
        code = fields.get(spec.code_field.rpartition(":")[2]) if spec.code_field else None
        message = fields.get("Message")
        text = message.Value.Text if message is not None and message.Value is not None else ""
        severity = fields.get("Severity")
        time_field = fields.get("Time")
        source_ts = _ts(time_field.Value) if time_field is not None else None
        if spec.conditions:
            value = code.Value if code is not None else None
            return condition_signal(spec, fields, value, source_ts or receive_ts, receive_ts)
        return Signal(
            machine=spec.machine,
            name=spec.signal,
            value=code.Value if code is not None and code.Value is not None else text,
            source_ts=source_ts or receive_ts,
            receive_ts=receive_ts,
            attrs={
                "text": str(text or ""),
                "severity": str(severity.Value if severity is not None else ""),
            },
        )

    def _flush(self) -> None:
        if self._pending:
            batch, self._pending = self._pending, []
            by_machine: dict[str, list[Row]] = {}  # each machine's rows in their order
            for row in batch:
                rows = by_machine.get(row[0])
                if rows is None:
                    by_machine[row[0]] = [row]
                else:
                    rows.append(row)
            for machine, rows in by_machine.items():
                self.sink.submit_rows(KIND, machine, rows)

    # --- subscribe mode -------------------------------------------------------------

    async def _subscribe(self, client: Client, nodes: list[Resolved]) -> Subscription:
        params = ua.CreateSubscriptionParameters()
        params.RequestedPublishingInterval = float(self.source.publishing_interval_ms)
        params.RequestedMaxKeepAliveCount = KEEPALIVE_COUNT
        params.RequestedLifetimeCount = KEEPALIVE_COUNT * 10
        params.MaxNotificationsPerPublish = 0  # no limit
        params.PublishingEnabled = True
        params.Priority = 0
        sub = await client.create_subscription(
            params,
            None,
            queue_maxsize=max(10_000, 4 * len(nodes)),
            overflow=OverflowPolicy.WARN,
        )
        if nodes:
            results = await sub.subscribe_data_change(
                [client.get_node(r.node_id) for r in nodes],
                queuesize=self.source.queue_size,
                sampling_interval=ua.Double(self.source.sampling_interval_ms),
            )
            self._refused(nodes, results)
        self._events = []
        if self.source.events:
            resolver = Resolver(self.source, await client.get_namespace_array())
            emitters = await resolve_addresses(
                client, resolver, [e.emitter for e in self.source.events]
            )
            for spec, emitter in zip(self.source.events, emitters, strict=True):
                if emitter is None:
                    log.warning("opcua_emitter_unresolved", source=self.name, emitter=spec.emitter)
                    continue
                evfilter = await self._event_filter(client, resolver, spec)
                evtype = (
                    ObjectIds.AlarmConditionType if spec.conditions else ObjectIds.BaseEventType
                )
                await sub.subscribe_events(emitter, evtype, evfilter=evfilter)
                self._events.append((emitter, spec))
            if any(spec.conditions for _, spec in self._events):
                # Alarms that stood before this connect send no event by themselves.
                try:
                    await condition_refresh(client, sub.subscription_id)
                except UaError as exc:
                    # A server without the method (or asyncua's, which sends the states
                    # and then answers BadNothingToDo) still sends live transitions:
                    # reconnecting would not make it answer better.
                    log.warning("opcua_condition_refresh_refused", source=self.name, error=str(exc))
        self.last_data = time.monotonic()
        return sub

    def _refused(self, nodes: list[Resolved], results: list[int | ua.StatusCode]) -> None:
        """Log and count the items the server would not monitor (a node id it lacks).

        asyncua answers one handle or one bad status code per node, in order, and raises
        nothing: without this a mistyped node id was dropped with no word.
        """
        for r, result in zip(nodes, results, strict=True):
            if not isinstance(result, ua.StatusCode):
                continue
            status = result.name
            self.metrics.items_refused.labels(KIND, self.name, status).inc()
            log.warning(
                "opcua_item_refused",
                source=self.name,
                machine=r.spec.machine,
                signal=r.spec.signal,
                node=r.node_id.to_string(),
                status=status,
            )

    async def _event_filter(
        self, client: Client, resolver: Resolver, spec: OpcuaEvents
    ) -> ua.EventFilter:
        # BaseEventType's fields plus the alarm-code property of the subtype the server
        # fires ("alias:Name", or "Name" in namespace 0); servers evaluate it on each
        # event's real type and send null where the event has no such property.
        if spec.conditions:
            evfilter = await condition_filter(client)
        else:
            base = client.get_node(ua.NodeId(ua.Int32(ObjectIds.BaseEventType)))
            evfilter = await get_filter_from_event_type([base])
        if not spec.code_field:
            return evfilter
        alias, sep, name = spec.code_field.rpartition(":")
        op = ua.SimpleAttributeOperand()
        op.TypeDefinitionId = ua.NodeId(ua.Int32(ObjectIds.BaseEventType))
        op.AttributeId = AttributeIds.Value
        ns = resolver.ns(alias) if sep else 0
        op.BrowsePath = [ua.QualifiedName(name, ua.UInt16(ns))]
        evfilter.SelectClauses.append(op)
        return evfilter

    async def _consume(self, sub: Subscription) -> None:
        # The subscription's Node objects (one per monitored item, for its lifetime) →
        # what decides their rows: hashing a NodeId per notification cost more than the
        # rest of its row. Keyed by id() with the node kept alive in the value.
        known: dict[int, tuple[Any, _Known | None]] = {}
        async for ev in sub:
            now = time.time()
            try:
                if isinstance(ev, DataChangeEvent):
                    node = ev.node
                    hit = known.get(id(node))
                    if hit is None:
                        r = self._by_id.get(node.nodeid)
                        hit = known[id(node)] = (node, None if r is None else _known(r))
                    if hit[1] is None:
                        continue
                    row = self._row(hit[1], ev.data.monitored_item.Value, now)
                elif isinstance(ev, OpcEvent):
                    row = self._event_row(ev.event, now)
                else:
                    continue
            except Exception as exc:  # a value no converter foresaw must not end the intake
                self._internal_error(ev, exc)
                continue
            self.notifications += 1
            self.last_data = time.monotonic()
            self.metrics.last_message.seen(KIND, self.name, now)
            if row is not None:
                self._pending.append(row)

    def _internal_error(self, ev: Any, exc: Exception) -> None:
        """Dead-letter a notification whose conversion raised what it should not have."""
        reason, error = rejection(exc)
        node = getattr(ev, "node", None)
        where = node.nodeid.to_string() if node is not None else type(ev).__name__
        data = getattr(getattr(ev, "data", None), "monitored_item", None)
        self.sink.dead_letter(
            KIND,
            source=self.name,
            reason=reason,
            error=error,
            where=where,
            payload=_raw_repr(data.Value if data is not None else getattr(ev, "event", None)),
        )

    def _event_row(self, event: Any, receive_ts: float) -> Row | None:
        sig = self._event_signal(event, receive_ts)
        if sig is None:
            return None
        try:
            return signal_row(sig)
        except ValueError as exc:  # a NaN or infinite alarm code: the codec refuses it
            self.sink.dead_letter(
                KIND,
                source=self.name,
                reason="not_finite",
                error=str(exc),
                where=sig.machine,
                payload=repr(sig.value).encode(),
            )
            return None

    def _quiet_limit(self) -> float:
        interval = max(self.source.publishing_interval_ms, self.source.sampling_interval_ms)
        return self.source.watchdog_factor * interval / 1000.0

    async def _run_subscribed(self, client: Client, stopper: Stopper) -> None:
        nodes = list(self._by_id.values())
        sub = await self._subscribe(client, nodes)
        consumer = asyncio.ensure_future(self._consume(sub))
        resubscribed_at: float | None = None
        beat = self.source.heartbeat_s
        next_beat = time.monotonic() + beat
        try:
            while not await stopper.wait_async(FLUSH_S):
                self._flush()
                if consumer.done():
                    consumer.result()  # re-raise what killed it
                    raise SourceUnavailableError("subscription ended", reason="session")
                if client.state.name not in ("CONNECTED",):
                    raise SourceUnavailableError(
                        f"connection {client.state.name}", reason="session"
                    )
                limit = self._quiet_limit()
                quiet = time.monotonic() - self.last_data
                if beat > 0 and time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + beat
                    if quiet < max(limit, 2 * beat):
                        self._heartbeat()
                if limit <= 0 or quiet < limit:
                    resubscribed_at = None
                    continue
                if resubscribed_at is None:
                    self.metrics.watchdog.labels(self.name, "resubscribe").inc()
                    log.warning(
                        "opcua_watchdog_resubscribe", source=self.name, quiet_s=round(quiet, 1)
                    )
                    consumer.cancel()
                    try:
                        await sub.delete()
                    except Exception as exc:  # the old subscription may be gone already
                        log.info("opcua_delete_subscription_failed", error=str(exc))
                    sub = await self._subscribe(client, nodes)
                    consumer = asyncio.ensure_future(self._consume(sub))
                    resubscribed_at = time.monotonic()
                    self.last_data = resubscribed_at - limit / 2  # give it half a period
                else:
                    self.metrics.watchdog.labels(self.name, "reconnect").inc()
                    raise SourceUnavailableError("no data after resubscribing", reason="watchdog")
        finally:
            consumer.cancel()
            self._flush()

    def _heartbeat(self) -> None:
        """A ``source_alive`` signal for each machine of the source (module docstring)."""
        now = repr(time.time())
        machines = sorted({r.spec.machine for r in self._by_id.values()})
        self._pending.extend([m, HEARTBEAT_SIGNAL, "1", "good", now, now, "", ""] for m in machines)
        self._flush()

    # --- poll mode -----------------------------------------------------------------

    async def _read_round(self, client: Client) -> list[Signal]:
        nodes = list(self._by_id.values())
        if not nodes:
            return []
        params = ua.ReadParameters()
        for r in nodes:
            rv = ua.ReadValueId()
            rv.NodeId = r.node_id
            rv.AttributeId = AttributeIds.Value
            params.NodesToRead.append(rv)
        params.TimestampsToReturn = ua.TimestampsToReturn.Both
        values = await client.uaclient.read(params)
        now = time.time()
        out = []
        for r, dv in zip(nodes, values, strict=True):
            try:
                sig = self._signal(r, dv, now)
            except Exception as exc:  # as in _consume: one value must not stop the round
                reason, error = rejection(exc)
                self.sink.dead_letter(
                    KIND,
                    source=self.name,
                    reason=reason,
                    error=error,
                    where=r.node_id.to_string(),
                    payload=_raw_repr(dv),
                )
                continue
            if sig is not None:
                out.append(sig)
        return out

    async def _run_polled(self, client: Client, stopper: Stopper) -> None:
        while not stopper.stopped:
            started = time.monotonic()
            signals = await self._read_round(client)
            self.notifications += len(signals)
            if signals:
                self.metrics.last_message.seen(KIND, self.name, time.time())
            self.sink.submit(KIND, signals)
            elapsed = time.monotonic() - started
            await stopper.wait_async(max(0.0, self.source.poll_interval_s - elapsed))

    # --- Reader ---------------------------------------------------------------------

    async def _open(self) -> Client:
        client = await connect(self.source)
        try:
            nodes = await resolve_nodes(client, self.source)
        except Exception:
            await _disconnect(client)
            raise
        self._by_id = {r.node_id: r for r in nodes}
        return client

    async def run(self, stopper: Stopper) -> None:
        """Connect, resolve, read until stopped; raise SourceUnavailableError when lost."""
        client = await self._open()
        self.metrics.connected.labels(KIND, self.name).set(1)
        # Intake is judged stalled from here when nothing follows.
        self.metrics.last_message.seen(KIND, self.name, time.time())
        log.info("opcua_connected", source=self.name, nodes=len(self._by_id))
        try:
            if self.source.mode == "poll":
                await self._run_polled(client, stopper)
            else:
                await self._run_subscribed(client, stopper)
        except (OSError, TimeoutError, UaError) as exc:
            raise SourceUnavailableError(f"session lost: {exc}", reason="session") from exc
        finally:
            self.metrics.connected.labels(KIND, self.name).set(0)
            await _disconnect(client)

    def healthy(self) -> tuple[bool, str]:
        """Always: a stalled subscription is the watchdog's (it reconnects), see above."""
        return True, ""

    async def read_once(self, seconds: float) -> list[Signal]:
        """Connect, read every node once, disconnect."""
        client = await asyncio.wait_for(self._open(), seconds)
        try:
            return await asyncio.wait_for(self._read_round(client), seconds)
        finally:
            await _disconnect(client)


#: A configured node, whether its value can be taken as it is, its attributes' JSON.
_Known = tuple[Resolved, bool, str]


def _known(r: Resolved) -> _Known:
    spec = r.spec
    plain = (
        not spec.map and spec.type in ("auto", "float") and spec.scale == 1.0 and spec.offset == 0.0
    )
    attrs = r.attrs and Signal(spec.machine, spec.signal, None, attrs=r.attrs).to_fields()["a"]
    return r, plain, attrs or ""


def _raw_repr(value: Any) -> bytes:
    """A dead letter's payload: the raw value as text, whatever it is."""
    try:
        raw = value.Value.Value if isinstance(value, ua.DataValue) and value.Value else value
        return repr(raw).encode("utf-8", errors="replace")
    except Exception as exc:  # a repr that raises: say so instead
        return f"<{type(value).__name__}: repr failed: {exc}>".encode()


async def _disconnect(client: Client) -> None:
    try:
        await asyncio.wait_for(client.disconnect(), 2.0)
    except Exception as exc:  # the server may already be gone: nothing to close
        log.debug("opcua_disconnect_failed", error=str(exc))
