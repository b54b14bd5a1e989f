"""Rows (collector.rows): the hot path writes exactly the entries of Signal.to_fields.

Three links of one chain, each property-tested: the MQTT decoder's rows stand for the
same entries as its signals; a signal's row stands for its ``to_fields``; and what
``XADD_SCRIPT`` stores in a real Redis is what :func:`rows_fields` says.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from asyncua import ua
from asyncua.ua.status_codes import StatusCodes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.batch import dumps_rows
from collector.errors import PayloadRejectedError
from collector.metrics import CollectorMetrics
from collector.mqtt.decode import MessageDecoder, float_texts
from collector.opcua.intake import Intake, known
from collector.opcua.resolve import Resolved
from collector.rows import XADD_SCRIPT, Row, rows_fields, rows_size, signal_row
from core import keys
from core.config.collector import MqttSource, OpcuaNode, OpcuaSource
from core.config.machines import Machine
from core.metrics import new_registry
from core.model import Quality, Signal

MACHINES = [Machine(id="cnc103", pcn=1, workcenter_key=61324, workcenter_code="cnc103")]
KEYS = ["a", "b", "c", "d", "e", "ts"]


def decoder(fields: list[dict[str, Any]]) -> MessageDecoder:
    topics = [
        {
            "pattern": "p/{machine}",
            "timestamp_field": "ts",
            "timestamp_format": "epoch_s",
            "fields": fields,
        }
    ]
    source = MqttSource.model_validate({"type": "mqtt", "name": "b", "topics": topics})
    return MessageDecoder(source, MACHINES)


#: A snapshot of plain float fields: the one-call path of decode_rows.
SNAPSHOT = decoder([{"path": k, "signal": f"s_{k}", "type": "float"} for k in KEYS[:5]])
#: Plain and other fields mixed: the loop path, groups broken by full rows.
MIXED = decoder(
    [
        {"path": "a", "signal": "s_a"},
        {"path": "b", "signal": "s_b", "type": "float"},
        {"path": "c", "signal": "s_c", "type": "int", "scale": 2},
        {"path": "d", "signal": "s_d", "optional": True, "subject": "T{a}"},
        {"path": "e.0", "signal": "s_e", "optional": True},
        {"path": "a", "signal": "s_{c}", "attrs": {"x": "{b}"}, "optional": True},
    ]
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats()
    | st.text(max_size=6)
)
payloads = st.dictionaries(
    st.sampled_from(KEYS),
    scalars | st.lists(scalars, max_size=2),
    max_size=6,
) | st.fixed_dictionaries({k: st.floats(allow_nan=False) for k in KEYS})


def _same(d: MessageDecoder, body: Any) -> None:
    payload = json.dumps(body, allow_nan=True).encode()
    try:
        signals = d.decode("p/cnc103", payload, 7.25)
    except PayloadRejectedError as exc:
        with pytest.raises(PayloadRejectedError) as got:
            d.decode_rows("p/cnc103", payload, 7.25)
        assert (got.value.reason, str(got.value)) == (exc.reason, str(exc))
        return
    machine, rows = d.decode_rows("p/cnc103", payload, 7.25)
    assert machine == "cnc103"
    assert [list(f.items()) for f in rows_fields(rows)] == [
        list(s.to_fields().items()) for s in signals
    ]
    assert rows_size(rows) == len(signals)


@settings(max_examples=400, deadline=None)
@given(payloads)
def test_decoded_rows_are_the_decoded_signals_entries(body: Any) -> None:
    _same(SNAPSHOT, body)
    _same(MIXED, body)


def test_a_snapshot_is_one_group_and_a_mixed_message_keeps_its_order() -> None:
    body = {"a": 1.5, "b": 2.0, "c": 3.25, "d": -4.0, "e": 5e-324, "ts": 100.5}
    _, rows = SNAPSHOT.decode_rows("p/cnc103", json.dumps(body).encode(), 7.25)
    names = ["s_a", "s_b", "s_c", "s_d", "s_e"]
    xs = ["1.5", "2.0", "3.25", "-4.0", "5e-324"]
    assert rows == [["cnc103", "100.5", "7.25", names, xs]]
    body = {"a": 1, "b": 2.5, "c": 3, "d": 4.0, "ts": 100.5}
    _, rows = MIXED.decode_rows("p/cnc103", json.dumps(body).encode(), 7.25)
    assert rows == [
        ["cnc103", "100.5", "7.25", ["s_a", "s_b"], ["1", "2.5"]],
        ["cnc103", "s_c", "6", "good", "100.5", "7.25", "", ""],
        ["cnc103", "s_d", "4.0", "good", "100.5", "7.25", "T1", ""],
        ["cnc103", "s_3", "1", "good", "100.5", "7.25", "", '{"x":"2.5"}'],
    ]


signals = st.builds(
    Signal,
    machine=st.text(min_size=1, max_size=5),
    name=st.text(min_size=1, max_size=5),
    value=scalars,
    quality=st.sampled_from(list(Quality)),
    source_ts=st.floats(allow_nan=False, allow_infinity=False),
    receive_ts=st.floats(allow_nan=False, allow_infinity=False),
    subject=st.text(max_size=3),
    attrs=st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
)
texts = st.text(max_size=8)
groups = st.integers(min_value=1, max_value=4).flatmap(
    lambda n: st.tuples(
        texts,
        texts,
        texts,
        st.lists(texts, min_size=n, max_size=n),
        st.lists(texts, min_size=n, max_size=n),
    ).map(list)
)


def _row(signal: Signal) -> Row | None:
    try:
        return signal_row(signal)
    except ValueError:  # NaN and infinities: the codec refuses them too
        with pytest.raises(ValueError):
            signal.to_fields()
        return None


@settings(max_examples=300, deadline=None)
@given(signals)
def test_a_signals_row_stands_for_its_to_fields(signal: Signal) -> None:
    row = _row(signal)
    if row is not None:
        assert [list(f.items()) for f in rows_fields([row])] == [list(signal.to_fields().items())]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(
        signals.map(_row).filter(lambda r: r is not None) | groups, min_size=1, max_size=6
    )
)
def test_the_script_stores_what_rows_fields_says(
    rows: list[Row], redis_client: redis.Redis
) -> None:
    stream = keys.signal_stream(0)
    redis_client.delete(stream)
    n = redis_client.eval(XADD_SCRIPT, 1, stream, dumps_rows(rows))  # the sink's own encoder
    entries: Any = redis_client.xrange(stream)
    assert n == rows_size(rows) == len(entries)
    # Field order too: the entries' fields as Redis returns them, pair by pair.
    assert [list(f.items()) for _, f in entries] == [list(f.items()) for f in rows_fields(rows)]


@given(rows=st.lists(st.lists(st.text(), max_size=8), max_size=4))
def test_the_batch_argument_is_the_compact_json_text(rows: list[Row]) -> None:
    out = dumps_rows(rows)
    assert isinstance(out, bytes)  # orjson's path
    assert out.decode() == json.dumps(rows, ensure_ascii=False, separators=(",", ":"))


def test_a_string_orjson_refuses_goes_through_json() -> None:
    lone_surrogate = chr(0xD800)  # possible in a server's text; not valid UTF-8
    rows: list[Row] = [["cnc103", "program", f"O{lone_surrogate}"]]
    assert dumps_rows(rows) == json.dumps(rows, ensure_ascii=False, separators=(",", ":"))


class _Letters:
    """A sink seam that only records dead letters (the intake's only call here)."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def submit(self, reader: str, signals: Any, ack: Any = None) -> None:
        raise AssertionError("not called by Intake.row")

    def submit_rows(self, reader: str, machine: str, rows: Any, ack: Any = None) -> None:
        raise AssertionError("not called by Intake.row")

    def submit_groups(
        self, reader: str, groups: Any, ack: Any = None, *, keep_all: bool = True
    ) -> None:
        raise AssertionError("not called by _row")

    def dead_letter(self, reader: str, **kw: Any) -> None:
        self.reasons.append(kw["reason"])


OPCUA_SOURCE = OpcuaSource.model_validate(
    {"type": "opcua", "name": "s", "endpoint": "opc.tcp://127.0.0.1:4840/x"}
)
node_specs = st.fixed_dictionaries(
    {
        "machine": st.just("cnc103"),
        "signal": st.just("spindle_load"),
        "node_id": st.just("ns=2;s=x"),
    },
    optional={
        "type": st.sampled_from(["auto", "float", "int", "str", "bool"]),
        "scale": st.sampled_from([1.0, 2.5]),
        "map": st.just({"1": "on"}),
        "subject": st.text(max_size=3),
        "attrs": st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
    },
)
times = st.none() | st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
statuses = st.sampled_from(
    [0, StatusCodes.GoodClamped, StatusCodes.UncertainLastUsableValue, StatusCodes.BadNoData]
) | st.integers(min_value=0, max_value=2**32 - 1)


@settings(max_examples=400, deadline=None)
@given(spec=node_specs, raw=scalars, status=statuses, source=times, server=times)
def test_an_opcua_value_becomes_the_row_of_its_signal(
    spec: dict[str, Any], raw: Any, status: int, source: Any, server: Any
) -> None:
    resolved = Resolved(
        OpcuaNode.model_validate(spec),
        ua.NodeId(ua.String("x"), ua.Int16(2)),
        spec.get("attrs", {}),
    )
    dv = ua.DataValue(
        ua.Variant(raw),
        ua.StatusCode(ua.UInt32(status)),
        SourceTimestamp=source,
        ServerTimestamp=server,
    )
    letters = _Letters()
    intake = Intake(OPCUA_SOURCE.name, letters, CollectorMetrics(new_registry()))
    try:
        expected = intake.signal(resolved, dv, 7.25)
    except ValueError:  # the Variant of this value cannot exist; not a case
        return
    got = intake.row(known(resolved), dv, 7.25)
    if expected is None:
        assert got is None
        assert len(letters.reasons) == 2  # both rejected it, with a reason
        return
    assert got is not None
    assert [list(f.items()) for f in rows_fields([got])] == [list(expected.to_fields().items())]


#: Around each edge of orjson's float forms: exponents, the decades below 1e-4 where
#: orjson writes ``0.00001`` and repr ``1e-05``, zero, the extremes.
EDGES = [
    0.0,
    -0.0,
    1e-4,
    9.999e-05,
    1e-05,
    1.5e-05,
    1e-07,
    0.00012,
    10.00001,
    1e15,
    1e16,
    9999999999999998.0,
    1.7976931348623157e308,
    5e-324,
    0.1,
    1 / 3,
    -1234.5,
    2.0**63,
]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=12))
def test_float_texts_are_repr(values: list[float]) -> None:
    assert float_texts(tuple(values)) == [repr(v) for v in values]


def test_float_texts_at_the_edges_of_orjsons_forms_and_refusing_non_floats() -> None:
    for v in EDGES:
        assert float_texts((v, 1.5)) == [repr(v), "1.5"], v
    assert float_texts(tuple(EDGES)) == [repr(v) for v in EDGES]
    for not_float in (1, True, None, "1.5"):
        with pytest.raises(TypeError):
            float_texts((1.5, not_float))
