"""OPC UA Alarms & Conditions: condition state in events, and ConditionRefresh.

A condition (an ``AlarmConditionType`` instance on the server) reports each change of
its state as an event carrying that state: ``ActiveState/Id``, ``AckedState/Id``,
``ConfirmedState/Id``, ``Severity``, ``Message``, ``SourceNode``/``SourceName``,
``ConditionName``, ``Retain`` and the condition's own node id. A client that connects
while an alarm is already active would never hear of it: events are only sent on
changes. ``ConditionRefresh`` (OPC 10000-9, 5.5.7) asks the server to send the current
state of every retained condition to one subscription, between a RefreshStart and a
RefreshEnd event; the reader calls it after every (re)connect, once its event items
exist, so an alarm standing before the connect is reported after it.

Each condition event becomes one alarm signal: value = the configured code field, else
the condition's name; attrs ``active`` (``true``/``false``: a cleared alarm is a signal
too), ``acked``, ``confirmed``, ``severity``, ``text`` (the message), ``source`` (the
source's name), ``condition`` (the condition's node id) and ``retain``.
"""

from __future__ import annotations

from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.events import get_filter_from_event_type
from asyncua.ua.object_ids import ObjectIds

from core.config.collector import OpcuaEvents
from core.model import Signal


async def condition_filter(client: Client) -> ua.EventFilter:
    """Select AlarmConditionType's fields (and the condition's node id), of that type."""
    alarm = client.get_node(ua.NodeId(ua.Int32(ObjectIds.AlarmConditionType)))
    return await get_filter_from_event_type([alarm])


async def condition_refresh(client: Client, subscription_id: int | None) -> None:
    """Ask the server for the state of every retained condition on ``subscription_id``."""
    if subscription_id is None:
        return  # asyncua sets it when the subscription is created: never None here
    condition_type = client.get_node(ua.NodeId(ua.Int32(ObjectIds.ConditionType)))
    await condition_type.call_method(
        ua.NodeId(ua.Int32(ObjectIds.ConditionType_ConditionRefresh)),
        ua.Variant(subscription_id, ua.VariantType.UInt32),
    )


def _value(fields: dict[str, Any], name: str) -> Any:
    v = fields.get(name)
    return None if v is None else v.Value


def _flag(value: Any) -> str:
    return "" if value is None else ("true" if value else "false")


def condition_signal(
    spec: OpcuaEvents, fields: dict[str, Any], code: Any, source_ts: float, receive_ts: float
) -> Signal | None:
    """The alarm signal of one condition event (None for a refresh's start or end)."""
    active = _value(fields, "ActiveState/Id")
    name = _value(fields, "ConditionName")
    if active is None and name is None:
        return None  # RefreshStart/RefreshEnd, or an event that is no condition's
    message = _value(fields, "Message")
    text = message.Text if message is not None else ""
    condition = _value(fields, "NodeId")
    return Signal(
        machine=spec.machine,
        name=spec.signal,
        value=code if code is not None else (name or text or ""),
        source_ts=source_ts or receive_ts,
        receive_ts=receive_ts,
        attrs={
            "active": _flag(active),
            "acked": _flag(_value(fields, "AckedState/Id")),
            "confirmed": _flag(_value(fields, "ConfirmedState/Id")),
            "severity": str(_value(fields, "Severity") or ""),
            "text": str(text or ""),
            "source": str(_value(fields, "SourceName") or ""),
            "condition": condition.to_string() if isinstance(condition, ua.NodeId) else "",
            "retain": _flag(_value(fields, "Retain")),
        },
    )
