"""The Sparkplug B payload as a protobuf message class, built from the schema in code.

The schema is Eclipse Tahu's ``sparkplug_b.proto`` (``org.eclipse.tahu.protobuf.Payload``,
proto2), written out here field by field for the part a collector reads: the payload's
``timestamp``, ``metrics``, ``seq``, ``uuid``, ``body`` and each metric's ``name``,
``alias``, ``timestamp``, ``datatype``, flags and scalar ``value`` oneof. Fields left out
(metadata, properties, data sets, templates, extensions) keep their field numbers free:
protobuf skips them as unknown fields, so a payload carrying them still parses. Building
the descriptor in code spares a generated ``_pb2`` module and a ``protoc`` step; the
parsing itself is the protobuf runtime's (C, upb).

The classes live in a private descriptor pool, so another library's copy of the same
schema in the default pool cannot clash with this one.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto

#: Sparkplug B data types (the ``datatype`` of a metric) by number.
DATA_TYPES: dict[int, str] = {
    1: "Int8", 2: "Int16", 3: "Int32", 4: "Int64", 5: "UInt8", 6: "UInt16", 7: "UInt32",
    8: "UInt64", 9: "Float", 10: "Double", 11: "Boolean", 12: "String", 13: "DateTime",
    14: "Text", 15: "UUID", 16: "DataSet", 17: "Bytes", 18: "File", 19: "Template",
    20: "PropertySet", 21: "PropertySetList",
}  # fmt: skip
BOOLEAN = 11


def _field(
    msg: descriptor_pb2.DescriptorProto,
    name: str,
    number: int,
    kind: int,
    *,
    repeated: bool = False,
    type_name: str = "",
    oneof: int | None = None,
) -> None:
    f = msg.field.add(name=name, number=number, type=kind)
    f.label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
    if type_name:
        f.type_name = type_name
    if oneof is not None:
        f.oneof_index = oneof


def _file() -> descriptor_pb2.FileDescriptorProto:
    fd = descriptor_pb2.FileDescriptorProto(
        name="repsys_sparkplug_b.proto", package="org.eclipse.tahu.protobuf", syntax="proto2"
    )
    payload = fd.message_type.add(name="Payload")
    metric = payload.nested_type.add(name="Metric")
    metric.oneof_decl.add(name="value")
    for name, number, kind in (
        ("name", 1, _F.TYPE_STRING),
        ("alias", 2, _F.TYPE_UINT64),
        ("timestamp", 3, _F.TYPE_UINT64),
        ("datatype", 4, _F.TYPE_UINT32),
        ("is_historical", 5, _F.TYPE_BOOL),
        ("is_transient", 6, _F.TYPE_BOOL),
        ("is_null", 7, _F.TYPE_BOOL),
    ):
        _field(metric, name, number, kind)
    for name, number, kind in (
        ("int_value", 10, _F.TYPE_UINT32),
        ("long_value", 11, _F.TYPE_UINT64),
        ("float_value", 12, _F.TYPE_FLOAT),
        ("double_value", 13, _F.TYPE_DOUBLE),
        ("boolean_value", 14, _F.TYPE_BOOL),
        ("string_value", 15, _F.TYPE_STRING),
        ("bytes_value", 16, _F.TYPE_BYTES),
    ):
        _field(metric, name, number, kind, oneof=0)
    _field(payload, "timestamp", 1, _F.TYPE_UINT64)
    _field(
        payload,
        "metrics",
        2,
        _F.TYPE_MESSAGE,
        repeated=True,
        type_name=".org.eclipse.tahu.protobuf.Payload.Metric",
    )
    _field(payload, "seq", 3, _F.TYPE_UINT64)
    _field(payload, "uuid", 4, _F.TYPE_STRING)
    _field(payload, "body", 5, _F.TYPE_BYTES)
    return fd


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())
#: ``Payload`` message class: ``Payload.FromString(data)``, ``Payload(...).SerializeToString()``.
Payload: Any = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName("org.eclipse.tahu.protobuf.Payload")
)


def rebirth_request(timestamp_ms: int) -> bytes:
    """An NCMD payload asking an edge node to publish its births again."""
    p = Payload(timestamp=timestamp_ms)
    m = p.metrics.add()
    m.name = "Node Control/Rebirth"
    m.datatype = BOOLEAN
    m.timestamp = timestamp_ms
    m.boolean_value = True
    return bytes(p.SerializeToString())


def state_payload(online: bool, timestamp_ms: int) -> bytes:
    """The Sparkplug 3.0 STATE body of a primary host application (JSON)."""
    return b'{"online":%s,"timestamp":%d}' % (b"true" if online else b"false", timestamp_ms)
