"""Sparkplug B messages -> rows, with each edge node's session state.

Topics are ``spBv1.0/<group>/<type>/<edge node>[/<device>]``. Per edge node the decoder
keeps what its births said: the birth/death sequence (``bdSeq``), the last message
sequence (``seq``, 0-255), and its metrics by alias (aliases are unique in a node, across
its devices). Then:

- **NBIRTH** starts the node's session afresh; **DBIRTH** adds a device. Both carry every
  metric's name, alias, data type and current value: the values become signals.
- **NDATA / DDATA** name metrics by alias (or name); the data type is the birth's.
- A **seq** that does not follow the previous one (mod 256) is a gap: counted
  (``seq_gap``), the data still decoded, and a Rebirth requested (``request_rebirth``),
  so the node's state is resynchronised. Data from a node never born (a collector that
  started after the birth), or an alias the birth did not define, is dead-lettered
  (``no_birth``, ``unknown_alias``) and also triggers a Rebirth request.
- **NDEATH** (the node's will, or a clean stop) whose ``bdSeq`` matches the session ends
  it: every metric of the node and its devices gets a sample with quality ``no_data``
  and value null (no data, which is not "machine stopped"). A death with another
  ``bdSeq`` is an older session's will arriving late: counted (``stale_death``), ignored.
  **DDEATH** does the same for one device.

Values keep their Sparkplug type: Int8-Int64 signed (two's complement of their width),
UInt8-UInt64, Float (read back at float32 precision: 3.14, not 3.140000104904175),
Double, Boolean, String/Text/UUID, DateTime (ms since the epoch, an int). Other types
(bytes, data sets, templates, arrays) are skipped and counted (``unsupported_type``);
``Node Control/*``, ``Device Control/*`` and ``bdSeq`` are session metrics, not signals.
The decoder is used from one thread (paho's network thread).
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError

from collector.errors import PayloadRejectedError
from collector.rows import Row, value_json
from collector.sparkplug.proto import Payload
from core.config.collector_sparkplug import SparkplugSource

NAMESPACE = "spBv1.0"
_SESSION_METRICS = ("Node Control/", "Device Control/")
_SIGNED_BITS = {1: 8, 2: 16, 3: 32, 4: 64}
DOUBLE = 10
_F32 = struct.Struct("<f")
_SNAKE = re.compile(r"[^a-z0-9]+")

#: Called with an event kind: seq_gap, unsupported_type, stale_death, no_birth.
EventCounter = Callable[[str], None]
#: Called with (group, edge node) when the node should publish its births again.
RebirthRequest = Callable[[str, str], None]


def _nothing(*_: Any) -> None:
    """No callback wanted."""


@dataclass(slots=True)
class _Metric:
    device: str
    name: str
    datatype: int
    #: (signal, subject), or None when the metric is not a signal: decided at its birth.
    mapped: tuple[str, str] | None = None


@dataclass(slots=True)
class _Node:
    bd_seq: int | None = None
    seq: int | None = None
    #: alias -> metric; and (device, name) -> metric, for metrics sent by name.
    aliases: dict[int, _Metric] = field(default_factory=dict)
    names: dict[tuple[str, str], _Metric] = field(default_factory=dict)


def float32(v: float) -> float:
    """The shortest decimal that reads back as the same float32 (``3.14``, not ``3.1400001``)."""
    if not math.isfinite(v):
        return v
    packed = _F32.pack(v)
    for digits in (6, 7, 8):
        c = float(f"{v:.{digits}g}")
        if _F32.pack(c) == packed:
            return c
    return float(f"{v:.9g}")


#: Data types whose value a signal can carry (numbers, booleans, text, DateTime).
_SCALARS = frozenset({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})


def metric_value(m: Any, datatype: int) -> tuple[bool, Any]:
    """``(supported, value)`` of a metric by its data type (None when ``is_null``).

    The value is read from whichever field of the ``value`` oneof is set: the spec puts
    UInt32 in ``long_value`` and some edge nodes put it in ``int_value``; the data type
    still decides the sign and the float32 precision.
    """
    if datatype not in _SCALARS:
        return False, None
    field_name = m.WhichOneof("value")
    if m.is_null or field_name is None:
        return True, None
    if field_name == "bytes_value":
        return False, None
    v = getattr(m, field_name)
    if field_name == "float_value":
        return True, float32(v)
    bits = _SIGNED_BITS.get(datatype)
    if bits is not None and type(v) is int:
        v &= (1 << bits) - 1
        if v >= 1 << (bits - 1):
            v -= 1 << bits
    return True, v


def _record_birth(
    state: _Node,
    payload: Any,
    device: str,
    signal_of: Callable[[str], tuple[str, str] | None],
) -> None:
    """Remember a birth's metrics by name and alias (and the node's bdSeq)."""
    for m in payload.metrics:
        info = _Metric(device, m.name, m.datatype, signal_of(m.name))
        state.names[(device, m.name)] = info
        if m.HasField("alias"):
            state.aliases[m.alias] = info
        if m.name == "bdSeq" and not device:
            state.bd_seq = m.long_value


def _resolve(state: _Node, m: Any, device: str) -> _Metric | None:
    """The born metric a message's metric stands for (by name, else by alias)."""
    if m.name:
        return state.names.get((device, m.name))
    return state.aliases.get(m.alias) if m.HasField("alias") else None


def _value_text(value: Any) -> tuple[str, str]:
    """(the ``x`` field's JSON text, quality) of a metric value."""
    x = value_json(value)
    if x is not None:
        return x, "good" if value is not None else "bad"
    if isinstance(value, str):
        return json.dumps(value), "good"
    return "null", "bad"  # NaN or an infinity: a value that cannot be carried


class SparkplugDecoder:
    """Decodes one source's Sparkplug messages (see the module docstring)."""

    def __init__(
        self,
        source: SparkplugSource,
        machines: set[str],
        *,
        events: EventCounter = _nothing,
        request_rebirth: RebirthRequest = _nothing,
    ) -> None:
        self.source = source
        self.events = events
        self.request_rebirth = request_rebirth
        self.machines = machines
        self.node_machines = {(n.group, n.edge_node, n.device): n.machine for n in source.nodes}
        self.mapped = {m.name: (m.signal, m.subject) for m in source.metrics}
        self.nodes: dict[tuple[str, str], _Node] = {}
        self._signals: dict[str, tuple[str, str] | None] = {}

    @property
    def filters(self) -> list[str]:
        """The subscription filters: every message type of the configured groups."""
        return [f"{NAMESPACE}/{g}/#" for g in self.source.groups]

    def machine(self, group: str, node: str, device: str) -> str | None:
        """The machine of a node (``device`` empty) or device, or None."""
        m = self.node_machines.get((group, node, device))
        if m is not None:
            return m
        own = device or node
        return own if own in self.machines else None

    def signal_of(self, name: str) -> tuple[str, str] | None:
        """(signal, subject) of a metric name, or None when it is not a signal."""
        if name in self._signals:
            return self._signals[name]
        out: tuple[str, str] | None
        if name == "bdSeq" or name.startswith(_SESSION_METRICS):
            out = None
        elif name in self.mapped:
            out = self.mapped[name]
        elif self.source.unmapped == "snake":
            snake = _SNAKE.sub("_", name.lower()).strip("_")[:64]
            if not snake or not snake[0].isalpha():
                snake = ("m_" + snake)[:64]
            out = (snake, "")
        else:
            out = None
        if len(self._signals) < 100_000:
            self._signals[name] = out
        return out

    def decode(self, topic: str, data: bytes, now: float) -> list[tuple[str, list[Row]]]:
        """Rows by machine of one message; raises :class:`PayloadRejectedError`."""
        parts = topic.split("/")
        if len(parts) < 4 or parts[0] != NAMESPACE or parts[1] == "STATE":
            return []  # another namespace, or a host's STATE: not an edge node's data
        group, kind, node = parts[1], parts[2], parts[3]
        device = parts[4] if len(parts) > 4 else ""
        if kind in ("NCMD", "DCMD"):
            return []  # commands (ours or another host's) carry no machine data
        try:
            payload = Payload.FromString(data)
        except DecodeError as exc:
            raise PayloadRejectedError(
                f"payload is not a Sparkplug B protobuf: {exc}", reason="not_protobuf"
            ) from None
        key = (group, node)
        state = self.nodes.get(key)
        if kind == "NBIRTH":
            state = self.nodes[key] = _Node(seq=payload.seq)
            return self._metrics(group, node, state, payload, now, birth=True, device="")
        if kind == "NDEATH":
            return self._node_death(group, node, state, payload, now)
        if kind not in ("DBIRTH", "DDATA", "NDATA", "DDEATH"):
            raise PayloadRejectedError(f"unknown message type {kind}", reason="unknown_type")
        if state is None or state.seq is None:
            self.events("no_birth")
            self.request_rebirth(group, node)
            raise PayloadRejectedError(
                f"{kind} from edge node {group}/{node} before its NBIRTH", reason="no_birth"
            )
        expected = (state.seq + 1) % 256
        if payload.seq != expected:
            self.events("seq_gap")
            self.request_rebirth(group, node)
        state.seq = payload.seq
        if kind == "DDEATH":
            return self._dead(group, node, state, now, device)
        return self._metrics(
            group, node, state, payload, now, birth=kind == "DBIRTH", device=device
        )

    def _metrics(
        self,
        group: str,
        node: str,
        state: _Node,
        payload: Any,
        now: float,
        *,
        birth: bool,
        device: str,
    ) -> list[tuple[str, list[Row]]]:
        machine = self.machine(group, node, device)
        base_ts = payload.timestamp / 1000.0 if payload.HasField("timestamp") else now
        if birth:
            _record_birth(state, payload, device, self.signal_of)
        if machine is None:
            if device:
                raise PayloadRejectedError(
                    f"device {group}/{node}/{device} is no configured machine",
                    reason="unknown_machine",
                )
            return []  # an edge node that is a gateway, not a machine: its devices are
        return self._rows(group, node, device, machine, state, payload, repr(base_ts), repr(now))

    def _unknown(self, group: str, node: str, device: str, m: Any) -> PayloadRejectedError:
        """A metric its birth did not define: ask for a rebirth; the refusal to raise."""
        self.request_rebirth(group, node)
        what = m.name or f"alias {m.alias}"
        return PayloadRejectedError(
            f"metric {what} of {group}/{node}/{device} was not in its birth",
            reason="unknown_alias",
        )

    def _value(self, m: Any, datatype: int) -> tuple[str, str] | None:
        """(x, quality) of any metric by its data type; None (counted) when unsupported."""
        supported, value = metric_value(m, datatype)
        if not supported:
            self.events("unsupported_type")
            return None
        return _value_text(value)

    def _rows(  # noqa: PLR0912, PLR0917 - one hot loop, its inputs passed (a call per metric costs)
        self,
        group: str,
        node: str,
        device: str,
        machine: str,
        state: _Node,
        payload: Any,
        base: str,
        rts: str,
    ) -> list[tuple[str, list[Row]]]:
        """The rows of a message's metrics: one group row while every one fits it."""
        aliases, names = state.aliases, state.names
        signals, xs = [], []  # the group row's columns
        rows: list[Row] | None = None  # full rows, once a metric does not fit the group
        # The hot loop (each DDATA metric): the upb accessors cost most of it, so a
        # field's presence is asked (HasField) only when its value reads as the default,
        # the one case where present and absent read the same.
        for m in payload.metrics:
            name = m.name
            if name:
                info = names.get((device, name))
            else:
                alias = m.alias
                info = aliases.get(alias) if alias or m.HasField("alias") else None
            if info is None:
                raise self._unknown(group, node, device, m)
            mapped = info.mapped
            if mapped is None:
                continue
            datatype = m.datatype
            if not datatype and not m.HasField("datatype"):
                datatype = info.datatype
            # The common case, a Double as a Double: a double_value that is not 0.0 (NaN
            # included) is the set member of the value oneof, no WhichOneof needed.
            v = m.double_value if datatype == DOUBLE else 0.0
            if v and not m.is_null:
                x, quality = (float.__repr__(v), "good") if v - v == 0.0 else ("null", "bad")
            else:
                text = self._value(m, datatype)
                if text is None:
                    continue
                x, quality = text
            t = m.timestamp
            if t or m.HasField("timestamp"):
                ts = repr(t / 1000.0)
            elif rows is None and quality == "good" and not mapped[1]:
                signals.append(mapped[0])
                xs.append(x)
                continue
            else:
                ts = base
            if rows is None:  # the group so far becomes full rows
                rows = [
                    [machine, n, v, "good", base, rts, "", ""]
                    for n, v in zip(signals, xs, strict=True)
                ]
            rows.append([machine, mapped[0], x, quality, ts, rts, mapped[1], ""])
        if rows is not None:
            return [(machine, rows)]
        # Every signal good, no subject, the payload's time: one group row (collector.rows),
        # the same stream entries at a fraction of the sink's work per value.
        return [(machine, [[machine, base, rts, signals, xs]])] if signals else []

    def _node_death(
        self, group: str, node: str, state: _Node | None, payload: Any, now: float
    ) -> list[tuple[str, list[Row]]]:
        bd_seq = next((m.long_value for m in payload.metrics if m.name == "bdSeq"), None)
        if state is None or (bd_seq is not None and bd_seq != state.bd_seq):
            self.events("stale_death")
            return []
        out: list[tuple[str, list[Row]]] = []
        for device in sorted({info.device for info in state.names.values()}):
            out.extend(self._dead(group, node, state, now, device))
        del self.nodes[(group, node)]
        return out

    def _dead(
        self, group: str, node: str, state: _Node, now: float, device: str
    ) -> list[tuple[str, list[Row]]]:
        machine = self.machine(group, node, device)
        if machine is None:
            return []
        ts = repr(now)
        rows: list[Row] = []
        for (dev, _name), info in state.names.items():
            mapped = info.mapped if dev == device else None
            if mapped is not None:
                rows.append([machine, mapped[0], "null", "no_data", ts, ts, mapped[1], ""])
        return [(machine, rows)] if rows else []
