"""The MQTT payload decoder and value conversion: exact results, and a property test."""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.convert import convert
from collector.errors import PayloadRejectedError
from collector.mqtt.decode import MessageDecoder, TopicPattern
from core.config.collector import MqttSource, ValueMap
from core.config.machines import Machine
from core.model import Quality, Signal

MACHINES = [
    Machine(id="cnc103", pcn=123681, workcenter_key=61324, workcenter_code="cnc103"),
    Machine(
        id="cnc362", pcn=123681, workcenter_key=61362, workcenter_code="Honda Civic cnc 359 362"
    ),
]


def decoder(topics: list[dict[str, Any]], tz: str = "America/Chicago") -> MessageDecoder:
    source = MqttSource.model_validate({"type": "mqtt", "name": "b", "topics": topics})
    return MessageDecoder(source, MACHINES, tz)


@pytest.mark.parametrize(
    ("pattern", "topic", "filter_", "expected"),
    [
        (
            "plant/{pcn}/{machine}/{signal}",
            "plant/1/cnc103/run_state",
            "plant/+/+/+",
            {"pcn": "1", "machine": "cnc103", "signal": "run_state"},
        ),
        ("plant/{pcn}/{machine}/{signal}", "plant/1/cnc103", "plant/+/+/+", None),
        ("a/+/{machine}/#", "a/x/cnc103/b/c", "a/+/+/#", {"machine": "cnc103"}),
        ("a/+/{machine}/#", "a/x/cnc103", "a/+/+/#", {"machine": "cnc103"}),
        ("InsToolLifeHistoryV2", "InsToolLifeHistoryV2", "InsToolLifeHistoryV2", {}),
        ("#", "any/thing", "#", {}),
    ],
)
def test_topic_patterns(pattern: str, topic: str, filter_: str, expected: Any) -> None:
    p = TopicPattern(pattern)
    assert p.filter == filter_
    assert p.match(topic) == expected


def test_focas_transdate_is_local_plant_time_and_workcenter_code_names_the_machine() -> None:
    d = decoder(
        [
            {
                "pattern": "focas/+",
                "machine_field": "WorkCenter",
                "timestamp_field": "TransDate",
                "fields": [{"path": "Cycle_Counter_Shift_SL", "signal": "part_count"}],
            }
        ]
    )
    payload = {
        "PCN": 123681,
        "TransDate": "2024-07-01 06:30:00",
        "WorkCenter": "Honda Civic cnc 359 362",
        "Cycle_Counter_Shift_SL": 1234,
    }
    [signal] = d.decode("focas/x", json.dumps(payload).encode(), 1.5)
    local = datetime(2024, 7, 1, 6, 30, tzinfo=ZoneInfo("America/Chicago"))
    assert signal == Signal("cnc362", "part_count", 1234, Quality.GOOD, local.timestamp(), 1.5)
    assert local.timestamp() == datetime.fromisoformat("2024-07-01T11:30:00+00:00").timestamp()


def test_tool_tracker_by_workcenter_key_with_subject_and_attribute_templates() -> None:
    d = decoder(
        [
            {
                "pattern": "InsAssemblyMachiningHistory",
                "machine_field": "Workcenter_Key",
                "fields": [
                    {
                        "path": "Current_Value",
                        "signal": "machining_event",
                        "type": "int",
                        "subject": "T{Tool_Var}",
                        "attrs": {"pallet": "{Pallet_No}", "total": "{Running_Total}"},
                    }
                ],
            }
        ]
    )
    body = {
        "Workcenter_Key": 61324,
        "Pallet_No": 2,
        "Tool_Var": 7,
        "Current_Value": 11.0,
        "Running_Total": 950,
    }
    [signal] = d.decode("InsAssemblyMachiningHistory", json.dumps(body).encode(), 9.0)
    assert (signal.machine, signal.name, signal.value, signal.subject) == (
        "cnc103",
        "machining_event",
        11,
        "T7",
    )
    assert signal.attrs == {"pallet": "2", "total": "950"}
    assert signal.source_ts == 9.0  # no timestamp field: the receive time


@pytest.mark.parametrize(
    ("payload", "value"),
    [(b"1234", 1234), (b" 12.5 ", 12.5), (b"executing", "executing"), (b"true", True)],
)
def test_plain_values(payload: bytes, value: Any) -> None:
    d = decoder([{"pattern": "plant/{pcn}/{machine}/{signal}", "format": "value"}])
    [signal] = d.decode("plant/1/cnc103/x_signal", payload, 1.0)
    assert (signal.name, signal.value) == ("x_signal", value)


@pytest.mark.parametrize(
    ("raw", "vm", "value"),
    [
        (2, {"map": {"2": "stopped"}}, "stopped"),
        (2.0, {"map": {"2": "stopped"}}, "stopped"),
        (True, {"type": "int"}, 1),
        ("7.6", {"type": "int"}, 8),
        (1500, {"scale": 0.1, "unit": "%"}, 150.0),
        (3, {"type": "float"}, 3.0),
        ("ON", {"type": "bool"}, True),
        (12, {"type": "str"}, "12"),
        (None, {}, None),
    ],
)
def test_convert(raw: Any, vm: dict[str, Any], value: Any) -> None:
    got = convert(raw, ValueMap(**vm))
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize(
    ("raw", "vm", "reason", "message"),
    [
        ([1], {}, "bad_value", "a list is not a scalar"),
        (float("nan"), {}, "not_finite", "value is not finite"),
        (1e308, {"scale": 10.0}, "not_finite", "scaled value is not finite"),
        ("maybe", {"type": "bool"}, "bad_value", "'maybe' is not a boolean"),
        (10**400, {"type": "float"}, "not_finite", "value is out of range"),
    ],
)
def test_convert_rejects(raw: Any, vm: dict[str, Any], reason: str, message: str) -> None:
    with pytest.raises(PayloadRejectedError) as err:
        convert(raw, ValueMap(**vm))
    assert (err.value.reason, str(err.value)) == (reason, message)


REASONS = {
    "not_json",
    "not_object",
    "bad_value",
    "not_finite",
    "too_large",
    "unknown_topic",
    "unknown_machine",
    "missing_field",
    "bad_timestamp",
}
PROPERTY_DECODER = decoder(
    [
        {
            "pattern": "json/{machine}",
            "timestamp_field": "ts",
            "timestamp_format": "epoch_ms",
            "fields": [
                {"path": "a.b", "signal": "spindle_load", "type": "float"},
                {"path": "c", "signal": "run_state", "optional": True, "subject": "T{d}"},
            ],
        },
        {"pattern": "v/{machine}/{signal}", "format": "value"},
    ]
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["a", "b", "c", "d", "ts"]), children, max_size=5)
    ),
    max_leaves=20,
)


def _check(topic: str, payload: bytes) -> None:
    try:
        signals = PROPERTY_DECODER.decode(topic, payload, 1.0)
    except PayloadRejectedError as exc:
        assert exc.reason in REASONS
        return
    for signal in signals:
        # Whatever decodes must go onto a stream and come back the same.
        assert Signal.from_fields(signal.to_fields()) == signal
        assert math.isfinite(signal.source_ts)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["json/cnc103", "json/nope", "v/cnc362/x", "v/cnc103/Bad-Name", "zz"]),
    st.binary(max_size=200),
)
def test_random_bytes_decode_or_are_rejected_with_a_reason(topic: str, payload: bytes) -> None:
    _check(topic, payload)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_random_json_decodes_or_is_rejected_with_a_reason(value: Any) -> None:
    _check("json/cnc103", json.dumps(value, allow_nan=True).encode())


STDLIB = json.JSONDecoder()
wide_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**62, max_value=2**70).map(lambda n: n * (-1) ** n)
    | st.floats()
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=3), children, max_size=4)
    ),
    max_leaves=12,
)


def _reference(payload: bytes) -> tuple[str, str]:
    """What Python's json makes of the payload: ("ok", canonical JSON) or ("no", "")."""
    try:
        value = STDLIB.decode(payload.decode("utf-8"))
    except (ValueError, RecursionError):
        return "no", ""
    return "ok", json.dumps(value, allow_nan=True)


def _parsed(payload: bytes) -> tuple[str, str]:
    try:
        value = PARSER._parse(PARSER.topics[0][1], payload)
    except PayloadRejectedError as exc:
        if exc.reason == "not_finite":  # json parses NaN; the decoder refuses it
            return "ok", "NaN-refused"
        return "no", ""
    return "ok", json.dumps(value, allow_nan=True)


PARSER = decoder([{"pattern": "p/{machine}", "fields": [{"path": "", "signal": "x"}]}])


@settings(max_examples=500, deadline=None)
@given(wide_json, st.booleans())
def test_the_fast_json_parse_is_pythons_json(value: Any, spaced: bool) -> None:
    """orjson where it agrees with json, json elsewhere: the same values, types and order."""
    sep = (", ", ": ") if spaced else (",", ":")
    payload = json.dumps(value, allow_nan=True, separators=sep).encode()
    got = _parsed(payload)
    expected = _reference(payload)
    if got[1] == "NaN-refused":
        assert "NaN" in expected[1] or "Infinity" in expected[1]
    else:
        assert got == expected


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=60))
def test_random_bytes_parse_as_pythons_json_or_are_refused_alike(payload: bytes) -> None:
    got = _parsed(payload)
    if got[1] != "NaN-refused":
        assert got == _reference(payload)
