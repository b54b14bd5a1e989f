"""Event monitored items: alarm events (and Alarms & Conditions) as ``alarm`` signals.

Each configured ``events`` entry names an emitter (a node id or browse path, resolved on
every subscription like the data nodes) and the machine its events belong to. Plain
events select BaseEventType's fields plus the alarm-code property ``code_field``;
condition events (``conditions: true``) select AlarmConditionType's
(:mod:`collector.opcua.conditions`), and after subscribing the reader asks for a
ConditionRefresh so an alarm standing before the connect is reported.
"""

from __future__ import annotations

from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.events import get_filter_from_event_type
from asyncua.common.subscription import Subscription
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.uaerrors import UaError

from collector.errors import PayloadRejectedError
from collector.opcua.conditions import condition_filter, condition_refresh, condition_signal
from collector.opcua.intake import Intake, seconds
from collector.opcua.resolve import Resolver, resolve_addresses
from collector.rows import Row, signal_row
from core.config.collector import OpcuaEvents, OpcuaSource
from core.logs import get_logger
from core.model import Signal

log = get_logger(__name__)


class Events:
    """One source's event items on the current subscription, and their signals."""

    def __init__(self, source: OpcuaSource, intake: Intake) -> None:
        self.source = source
        self.intake = intake
        #: Each subscribed emitter's node id on this connection, with its configuration.
        self.emitters: list[tuple[ua.NodeId, OpcuaEvents]] = []

    async def subscribe(self, client: Client, sub: Subscription) -> None:
        """Resolve the emitters and subscribe their events on ``sub`` (none: a no-op)."""
        self.emitters = []
        if not self.source.events:
            return
        name = self.source.name
        resolver = Resolver(self.source, await client.get_namespace_array())
        emitters = await resolve_addresses(
            client, resolver, [e.emitter for e in self.source.events]
        )
        for spec, emitter in zip(self.source.events, emitters, strict=True):
            if emitter is None:
                log.warning("opcua_emitter_unresolved", source=name, emitter=spec.emitter)
                continue
            evfilter = await self._filter(client, resolver, spec)
            evtype = ObjectIds.AlarmConditionType if spec.conditions else ObjectIds.BaseEventType
            await sub.subscribe_events(emitter, evtype, evfilter=evfilter)
            self.emitters.append((emitter, spec))
        if any(spec.conditions for _, spec in self.emitters):
            # Alarms that stood before this connect send no event by themselves.
            try:
                await condition_refresh(client, sub.subscription_id)
            except UaError as exc:
                # A server without the method (or asyncua's, which sends the states
                # and then answers BadNothingToDo) still sends live transitions:
                # reconnecting would not make it answer better.
                log.warning("opcua_condition_refresh_refused", source=name, error=str(exc))

    async def _filter(
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

    def _spec(self, fields: dict[str, Any]) -> OpcuaEvents | None:
        # Events bubble up to the Server object: match the emitter first, then the event's
        # SourceName against the machine id, then the only configured emitter.
        source_node = fields.get("SourceNode")
        source_name = fields.get("SourceName")
        node = source_node.Value if source_node is not None else None
        name = source_name.Value if source_name is not None else None
        for emitter, spec in self.emitters:
            if emitter == node:
                return spec
        for _, spec in self.emitters:
            if spec.machine == name:
                return spec
        return self.emitters[0][1] if len(self.emitters) == 1 else None

    def signal(self, event: Any, receive_ts: float) -> Signal | None:
        """The alarm signal of one event (``None`` when it is no configured emitter's)."""
        fields = event.get_event_props_as_fields_dict()
        spec = self._spec(fields)
        if spec is None:
            return None
        code = fields.get(spec.code_field.rpartition(":")[2]) if spec.code_field else None
        message = fields.get("Message")
        text = message.Value.Text if message is not None and message.Value is not None else ""
        severity = fields.get("Severity")
        time_field = fields.get("Time")
        source_ts = seconds(time_field.Value) if time_field is not None else None
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

    def row(self, event: Any, receive_ts: float) -> Row | None:
        """:meth:`signal` as a row; a NaN or infinite alarm code is dead-lettered."""
        sig = self.signal(event, receive_ts)
        if sig is None:
            return None
        try:
            return signal_row(sig)
        except ValueError as exc:  # a NaN or infinite alarm code: the codec refuses it
            rejected = PayloadRejectedError(str(exc), reason="not_finite")
            self.intake.reject(rejected, sig.machine, sig.value)
            return None
