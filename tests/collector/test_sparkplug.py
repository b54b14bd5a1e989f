"""Sparkplug B: Eclipse Tahu's JavaScript edge node through a real mosquitto into Redis."""

from __future__ import annotations

import math
import queue
import shutil
import struct
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from collector.errors import PayloadRejectedError
from collector.rows import rows_fields
from collector.sparkplug.decode import SparkplugDecoder, float32
from collector.sparkplug.proto import Payload
from core import keys
from core.config import RepsysConfig
from core.config.collector_sparkplug import SparkplugSource
from core.metrics import sample
from core.model import Quality, Signal
from repsys.servers import wait_until
from tests.collector.conftest import InThread, run_collector, stream_signals
from tests.conftest import REPO

PEER = REPO / "tests" / "peers" / "sparkplug"
NODE = shutil.which("node")

#: What the edge node's DBIRTH carries: signal -> (value, Python type).
BIRTH = {
    "part_count": (100, int),
    "spindle_load": (42.5, float),
    "spindle_speed": (8000.25, float),
    "execution": ("ACTIVE", str),
    "door_open": (False, bool),
    "temperature_offset": (-7, int),
    "cycle_count": (4_000_000_000, int),
    "last_cycle_end": (1_733_580_000_000, int),
}


def sparkplug_source(port: int, group: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "sparkplug",
        "name": "ignition",
        "port": port,
        "groups": [group],
        "host_id": f"repsys-{group}",
        "rebirth_min_interval_s": 0.2,
        "nodes": [{"group": group, "edge_node": "edge1", "device": "okuma1", "machine": "cnc101"}],
        "metrics": [
            {"name": "Production/PartCount", "signal": "part_count"},
            {"name": "Spindle/Load", "signal": "spindle_load"},
        ],
        "unmapped": "snake",
        **extra,
    }


class EdgeNode:
    """``tests/peers/sparkplug/edge.js`` (Tahu's client) in a child process."""

    def __init__(self, port: int, group: str) -> None:
        assert NODE is not None
        self.proc = subprocess.Popen(
            [NODE, "edge.js", f"mqtt://127.0.0.1:{port}", group, "edge1", "okuma1"],
            cwd=PEER,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def expect(self, wanted: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while wanted not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"edge node never said {wanted!r}; it said {self.seen}")
            try:
                self.seen.append(self.lines.get(timeout=left))
            except queue.Empty:
                continue

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        if command == "kill":
            self.proc.wait(10)  # it exits before it could say so
        else:
            self.expect(f"sent {command}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def edge_nodes() -> Any:
    started: list[EdgeNode] = []
    yield started
    for e in started:
        e.stop()


def _need_peer() -> None:
    if NODE is None or not (PEER / "node_modules" / "sparkplug-client").is_dir():
        pytest.fail("Tahu's sparkplug-client is not installed: run make setup")


def _cnc101(client: redis.Redis) -> list[Any]:
    return [s for _, _, s in stream_signals(client, 4) if s.machine == "cnc101"]


def _events(registry: Any, kind: str) -> float:
    return (
        sample(
            registry,
            "repsys_collector_sparkplug_events_total",
            {"source": "ignition", "kind": kind},
        )
        or 0.0
    )


def test_tahu_edge_node_birth_data_gap_rebirth_and_deaths(
    make_config: Callable[..., RepsysConfig],
    mqtt_port: int,
    redis_client: redis.Redis,
    started: list[InThread],
    edge_nodes: list[EdgeNode],
) -> None:
    _need_peer()
    group = f"plant-{uuid.uuid4().hex[:6]}"
    cfg = make_config(collector={"sources": [sparkplug_source(mqtt_port, group)]})
    _, registry, coll = run_collector(cfg)
    started.append(coll)
    wait_until(
        lambda: (
            sample(
                registry,
                "repsys_collector_source_connected",
                {"reader": "sparkplug", "source": "ignition"},
            )
            == 1
        ),
        timeout=10,
        what="subscribed",
    )
    edge = EdgeNode(mqtt_port, group)
    edge_nodes.append(edge)
    edge.expect("birth 1")
    wait_until(lambda: len(_cnc101(redis_client)) >= len(BIRTH), timeout=10, what="birth values")
    born = {s.name: s.value for s in _cnc101(redis_client)}
    assert born == {name: value for name, (value, _) in BIRTH.items()}
    for name, (_, kind) in BIRTH.items():
        assert type(born[name]) is kind, name

    edge.send("data")
    wait_until(
        lambda: any(s.name == "part_count" and s.value == 101 for s in _cnc101(redis_client)),
        timeout=10,
        what="DDATA by alias",
    )
    last = {s.name: s.value for s in _cnc101(redis_client)}
    assert last["spindle_load"] == 3.14 and last["temperature_offset"] == -32768
    assert _events(registry, "seq_gap") == 0

    edge.send("gap")
    edge.expect("ncmd rebirth")
    edge.expect("birth 2")
    # Both 102s (the DDATA after the gap, then the DBIRTH the rebirth brought): waiting
    # for the first alone raced the second.
    wait_until(
        lambda: [s.value for s in _cnc101(redis_client) if s.name == "part_count"].count(102) >= 2,
        timeout=10,
        what="the rebirth's values",
    )
    assert _events(registry, "seq_gap") == 1
    assert _events(registry, "rebirth_requested") == 1
    # The message after the gap was decoded too (its values were valid): 102 twice, once
    # from the DDATA and once from the DBIRTH that the rebirth brought.
    assert [s.value for s in _cnc101(redis_client) if s.name == "part_count"] == [
        100, 101, 102, 102,
    ]  # fmt: skip

    edge.send("data")
    wait_until(
        lambda: [s.value for s in _cnc101(redis_client) if s.name == "part_count"][-1] == 103,
        timeout=10,
        what="data after the rebirth",
    )
    assert _events(registry, "seq_gap") == 1  # the birth reset the sequence

    before = len(_cnc101(redis_client))
    edge.send("ddeath")
    wait_until(lambda: len(_cnc101(redis_client)) == before + len(BIRTH), timeout=10, what="DDEATH")
    dead = _cnc101(redis_client)[before:]
    assert {s.name for s in dead} == set(BIRTH)
    assert all(s.quality is Quality.NO_DATA and s.value is None for s in dead)

    before = len(_cnc101(redis_client))
    edge.send("kill")  # no NDEATH of its own: the broker publishes the will
    wait_until(
        lambda: len(_cnc101(redis_client)) == before + len(BIRTH), timeout=15, what="the will"
    )
    assert all(s.quality is Quality.NO_DATA for s in _cnc101(redis_client)[before:])
    assert _events(registry, "stale_death") == 0
    assert redis_client.xlen(keys.COLLECTOR_DEAD_LETTERS) == 0

    # The primary host's STATE is retained online while the collector runs.
    got: queue.Queue[bytes] = queue.Queue()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"state-{uuid.uuid4().hex[:6]}")
    sub.on_message = lambda _c, _u, msg: got.put(bytes(msg.payload))
    sub.on_connect = lambda c, *_: c.subscribe(f"spBv1.0/STATE/repsys-{group}", 1)
    sub.connect("127.0.0.1", mqtt_port, 30)
    sub.loop_start()
    try:
        assert got.get(timeout=10).startswith(b'{"online":true,')
    finally:
        sub.disconnect()
        sub.loop_stop()


def test_a_collector_started_after_the_birth_asks_for_one(
    make_config: Callable[..., RepsysConfig],
    mqtt_port: int,
    redis_client: redis.Redis,
    started: list[InThread],
    edge_nodes: list[EdgeNode],
) -> None:
    _need_peer()
    group = f"plant-{uuid.uuid4().hex[:6]}"
    edge = EdgeNode(mqtt_port, group)
    edge_nodes.append(edge)
    edge.expect("birth 1")  # nobody listens: the births are gone
    cfg = make_config(collector={"sources": [sparkplug_source(mqtt_port, group)]})
    _, registry, coll = run_collector(cfg)
    started.append(coll)
    wait_until(
        lambda: (
            sample(
                registry,
                "repsys_collector_source_connected",
                {"reader": "sparkplug", "source": "ignition"},
            )
            == 1
        ),
        timeout=10,
        what="subscribed",
    )
    edge.send("data")
    edge.expect("ncmd rebirth")
    edge.expect("birth 2")
    wait_until(lambda: len(_cnc101(redis_client)) >= len(BIRTH), timeout=10, what="births")
    assert {s.name for s in _cnc101(redis_client)} == set(BIRTH)
    entries: Any = redis_client.xrange(keys.COLLECTOR_DEAD_LETTERS)
    # The DDATA and NDATA that came before any birth, each with its reason.
    assert [f["reason"] for _, f in entries] == ["no_birth", "no_birth"]
    assert _events(registry, "rebirth_requested") == 1  # rate-limited per node


# --- the decoder alone --------------------------------------------------------------------


def _decoder(**extra: Any) -> tuple[SparkplugDecoder, list[str], list[tuple[str, str]]]:
    events: list[str] = []
    rebirths: list[tuple[str, str]] = []
    source = SparkplugSource.model_validate(sparkplug_source(1883, "g", **extra))
    dec = SparkplugDecoder(
        source,
        {"cnc101", "cnc102"},
        events=events.append,
        request_rebirth=lambda g, n: rebirths.append((g, n)),
    )
    return dec, events, rebirths


def _payload(seq: int, *metrics: dict[str, Any]) -> bytes:
    p = Payload(timestamp=1_000_000, seq=seq)
    for m in metrics:
        p.metrics.add(**m)
    return bytes(p.SerializeToString())


def test_signed_types_unsupported_types_and_stale_deaths() -> None:
    dec, events, rebirths = _decoder()
    dec.decode(
        "spBv1.0/g/NBIRTH/edge1",
        _payload(0, {"name": "bdSeq", "datatype": 8, "long_value": 3}),
        1.0,
    )
    rows = dec.decode(
        "spBv1.0/g/DBIRTH/edge1/okuma1",
        _payload(
            1,
            {"name": "a", "alias": 1, "datatype": 1, "int_value": 0xFFFFFFFF},  # Int8 -1
            {"name": "b", "alias": 2, "datatype": 4, "long_value": 2**64 - 2},  # Int64 -2
            {"name": "c", "alias": 3, "datatype": 7, "int_value": 7},  # UInt32 in int_value
            {"name": "d", "alias": 4, "datatype": 17, "bytes_value": b"x"},  # Bytes: skipped
            {"name": "e", "alias": 5, "datatype": 10, "is_null": True},
        ),
        2.0,
    )
    assert [(r[1], r[2], r[3]) for r in rows[0][1]] == [
        ("a", "-1", "good"),
        ("b", "-2", "good"),
        ("c", "7", "good"),
        ("e", "null", "bad"),
    ]
    assert rows[0][1][0][4] == "1000.0"  # the payload's time, in seconds
    assert events == ["unsupported_type"]
    with pytest.raises(PayloadRejectedError) as err:
        dec.decode("spBv1.0/g/DDATA/edge1/okuma1", _payload(2, {"alias": 99, "int_value": 1}), 3.0)
    assert err.value.reason == "unknown_alias" and rebirths == [("g", "edge1")]
    # A will of an older session (bdSeq 2) arrives late: the session (bdSeq 3) lives on.
    assert (
        dec.decode("spBv1.0/g/NDEATH/edge1", _payload(0, {"name": "bdSeq", "long_value": 2}), 4.0)
        == []
    )
    assert events[-1] == "stale_death"
    assert dec.decode(
        "spBv1.0/g/DDATA/edge1/okuma1", _payload(3, {"alias": 3, "long_value": 8}), 5.0
    )
    with pytest.raises(PayloadRejectedError) as err:
        dec.decode("spBv1.0/g/DBIRTH/edge1/lathe9", _payload(4, {"name": "x", "datatype": 3}), 6.0)
    assert err.value.reason == "unknown_machine"


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False, width=32))
def test_float32_is_the_shortest_text_of_the_same_float32(v: float) -> None:
    got = float32(v)
    assert struct.pack("<f", got) == struct.pack("<f", v)
    assert len(repr(got)) <= len(repr(v))


@settings(max_examples=1000, deadline=None)
@given(
    topic=st.sampled_from(
        [
            "spBv1.0/g/NBIRTH/edge1",
            "spBv1.0/g/DBIRTH/edge1/okuma1",
            "spBv1.0/g/DDATA/edge1/okuma1",
            "spBv1.0/g/NDATA/edge1",
            "spBv1.0/g/NDEATH/edge1",
            "spBv1.0/g/DDEATH/edge1/okuma1",
            "spBv1.0/g/XDATA/edge1",
            "spBv1.0/STATE/h",
            "other/x",
        ]
    ),
    data=st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda seq, ms: _payload(seq, *ms),
            st.integers(0, 300),
            st.lists(
                st.fixed_dictionaries(
                    {"datatype": st.integers(0, 40)},
                    optional={
                        "name": st.sampled_from(
                            ["a", "bdSeq", "Node Control/Rebirth", "Spindle/Load", "Ünï"]
                        ),
                        "alias": st.integers(0, 20),
                        "int_value": st.integers(0, 2**32 - 1),
                        "long_value": st.integers(0, 2**64 - 1),
                        "float_value": st.floats(width=32),
                        "double_value": st.floats(),
                        "string_value": st.text(max_size=5),
                        "is_null": st.booleans(),
                    },
                ),
                max_size=5,
            ),
        ),
    ),
)
def test_the_decoder_raises_nothing_but_rejections(topic: str, data: bytes) -> None:
    dec, _, _ = _decoder()
    dec.decode("spBv1.0/g/NBIRTH/edge1", _payload(0, {"name": "a", "alias": 1, "datatype": 3}), 1.0)
    try:
        batches = dec.decode(topic, data, 2.0)
    except PayloadRejectedError:
        return
    for _machine, rows in batches:
        for fields in rows_fields(rows):  # full rows or a group: entries of strings
            assert all(isinstance(x, str) for x in fields.values())
            assert Signal.from_fields(fields).to_fields() == fields


#: Metrics of the reference test: birth name -> (alias, data type, signal, subject).
_REF_METRICS = {
    "Spindle/Load": (1, 10, "spindle_load", ""),
    "Tool/Life": (2, 10, "tool_life", "T1"),
    "Count": (3, 3, "count", ""),
    "Run": (4, 11, "run", ""),
    "Mode": (5, 12, "mode", ""),
}
_ref_metric = st.fixed_dictionaries(
    {
        "name": st.sampled_from(sorted(_REF_METRICS)),
        "by_name": st.booleans(),
        "value": st.one_of(
            st.floats(), st.integers(0, 2**32 - 1), st.booleans(), st.text(max_size=4)
        ),
        "is_null": st.booleans(),
        "timestamp": st.one_of(st.none(), st.integers(0, 2**40)),
        "datatype": st.sampled_from([None, None, None, 0, 10, 3]),
    }
)


def _ref_value(datatype: int, value: Any) -> tuple[Any, str] | None:
    """(value, quality) as the module docstring reads a metric; None: not a signal.

    The value is whichever field holds it; its data type (Int32 here) only decides the
    sign of an integer; a non-finite Double has no value that can be carried.
    """
    if not 1 <= datatype <= 15:
        return None
    if type(value) is int and datatype == 3:
        v = value & 0xFFFFFFFF
        return (v - 2**32 if v >= 2**31 else v), "good"
    if isinstance(value, float) and not math.isfinite(value):
        return None, "bad"
    return value, "good"


@settings(max_examples=500, deadline=None)
@given(metrics=st.lists(_ref_metric, min_size=1, max_size=8))
def test_data_decodes_as_the_plain_reference(metrics: list[dict[str, Any]]) -> None:
    # Each value the decoder writes (a group row when all fit one, else full rows) is the
    # entry a plain reading of the birth and the metric gives.
    source = {
        "metrics": [
            {"name": n, "signal": sig, "subject": subj}
            for n, (_a, _t, sig, subj) in _REF_METRICS.items()
        ]
    }
    dec, _, _ = _decoder(**source)
    dec.decode("spBv1.0/g/NBIRTH/edge1", _payload(0, {"name": "bdSeq", "long_value": 0}), 1.0)
    birth = [{"name": n, "alias": a, "datatype": t} for n, (a, t, _s, _j) in _REF_METRICS.items()]
    dec.decode("spBv1.0/g/DBIRTH/edge1/okuma1", _payload(1, *birth), 1.0)
    sent: list[dict[str, Any]] = []
    want = []
    for m in metrics:
        alias, born_type, signal, subject = _REF_METRICS[m["name"]]
        pm: dict[str, Any] = {"name": m["name"]} if m["by_name"] else {"alias": alias}
        datatype = born_type if m["datatype"] is None else m["datatype"]
        if m["datatype"] is not None:
            pm["datatype"] = m["datatype"]
        if m["timestamp"] is not None:
            pm["timestamp"] = m["timestamp"]
        v = m["value"]
        field = {float: "double_value", bool: "boolean_value", str: "string_value"}.get(
            type(v), "int_value"
        )
        pm[field] = v
        if m["is_null"]:
            pm["is_null"] = True
        sent.append(pm)
        got = _ref_value(datatype, None if m["is_null"] else v)
        if got is not None and got[0] is None:
            got = (None, "bad")
        if got is None:
            continue  # an unsupported type (0)
        ts = m["timestamp"] / 1000.0 if m["timestamp"] is not None else 1000.0
        want.append(("cnc101", signal, got[0], got[1], ts, subject))
    batches = dec.decode("spBv1.0/g/DDATA/edge1/okuma1", _payload(2, *sent), 5.0)
    signals = [Signal.from_fields(f) for _m, rows in batches for f in rows_fields(rows)]
    assert [
        (s.machine, s.name, s.value, s.quality.value, s.source_ts, s.subject) for s in signals
    ] == want
    assert all(s.receive_ts == 5.0 for s in signals)
