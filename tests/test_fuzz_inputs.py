"""Fuzzing every outside input: the only outcomes allowed are a value or a classified rejection.

Arbitrary bytes and JSON through every MQTT payload format the plants use (the sample's
value, FOCAS, machining-history and tool-life topics, whose numbers reach the converter:
``1e400`` killed intake before issue 14), arbitrary OPC UA variant values through the
converter under every value map, arbitrary report-request parameters, and arbitrary
fields in the operator's ticket and the supervisor's silence forms. Whatever
decodes must survive the trip through a stream entry. ``tests/rules/test_decode.py``
fuzzes stream entries through ``Signal.from_flat`` the same way.

``REPSYS_FUZZ_EXAMPLES`` sets the examples per test (``make fuzz``: 10,000; the default
keeps ``make test`` quick).
"""

from __future__ import annotations

import json
import math
import os
import re
from datetime import UTC, datetime
from typing import Any

import yaml
from asyncua import ua
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.convert import convert
from collector.errors import PayloadRejectedError
from collector.mqtt.decode import MessageDecoder
from core.config import parse_config
from core.config.collector import MqttSource, ValueMap
from core.model import Signal
from runner.errors import BadRequest
from runner.params import normalize
from tests.conftest import REPO
from web.errors import FormError
from web.forms import parse_silence, parse_ticket

EXAMPLES = int(os.environ.get("REPSYS_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: Every reason a payload may be refused with (collector/errors.py's rejections).
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

SAMPLE = parse_config(
    yaml.safe_load((REPO / "collector" / "mqtt" / "sample.yaml").read_text()), file="sample"
)


def _only_mqtt_source() -> MqttSource:
    [source] = SAMPLE.collector.sources
    assert isinstance(source, MqttSource)
    return source


SOURCE = _only_mqtt_source()
DECODER = MessageDecoder(SOURCE, SAMPLE.machines, SAMPLE.plant.timezone)

TOPICS = [
    "plant/123681/cnc103/run_state",
    "plant/123681/cnc101/spindle_load",
    "plant/1/nobody/x",
    "focas/gw1",
    "InsAssemblyMachiningHistory",
    "InsToolLifeHistoryV2",
    "somewhere/else",
]
#: The keys the plants' formats read, and a few they do not.
KEYS = [
    "WorkCenter", "TransDate", "Cycle_Counter_Shift_SL", "PCN", "Workcenter_Key",
    "End_Time", "Start_Time", "Current_Value", "Tool_Var", "Pallet_No", "Running_Total",
    "Run_Date", "Run_Quantity", "other",
]  # fmt: skip
#: JSON texts a generator would not write but a gateway may: overflow, non-finite, huge.
ODD_NUMBERS = [
    "1e400", "-1e400", "NaN", "Infinity", "-Infinity", "9" * 400, "-" + "9" * 40, "1e-400",
    "0.1e1", "61324", "61324.0", "1E3", "-0",
]  # fmt: skip
MACHINE_NAMES = ["cnc103", "cnc101", "61324", "61101", "Honda", ""]
TIMES = ["2024-05-01 06:00:00", "2024-03-10 02:30:00", "2024-13-01 00:00:00", "yesterday", ""]


def _text(value: str) -> str:
    return json.dumps(value)


scalar_json = st.one_of(
    st.sampled_from(ODD_NUMBERS),
    st.integers().map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(MACHINE_NAMES + TIMES).map(_text),
    st.text(max_size=12).map(_text),
    st.sampled_from(["true", "false", "null"]),
)
any_json = st.recursive(
    scalar_json,
    lambda children: (
        st.lists(children, max_size=3).map(lambda xs: "[" + ",".join(xs) + "]")
        | st.dictionaries(st.sampled_from(KEYS), children, max_size=3).map(
            lambda d: "{" + ",".join(f"{_text(k)}:{v}" for k, v in d.items()) + "}"
        )
    ),
    max_leaves=8,
)
objects = st.dictionaries(st.sampled_from(KEYS), any_json, max_size=len(KEYS)).map(
    lambda d: "{" + ",".join(f"{_text(k)}:{v}" for k, v in d.items()) + "}"
)


def _decodes_or_is_rejected(topic: str, payload: bytes) -> None:
    try:
        signals = DECODER.decode(topic, payload, 1_700_000_000.0)
    except PayloadRejectedError as exc:
        assert exc.reason in REASONS, exc
    else:
        for signal in signals:
            assert Signal.from_fields(signal.to_fields()) == signal
            assert math.isfinite(signal.source_ts)
    # The reader's hot path decodes to rows: the same outcomes.
    try:
        DECODER.decode_rows(topic, payload, 1_700_000_000.0)
    except PayloadRejectedError as exc:
        assert exc.reason in REASONS, exc


@FUZZ
@given(st.sampled_from(TOPICS), objects)
def test_json_objects_in_every_plant_format_decode_or_are_rejected(topic: str, text: str) -> None:
    _decodes_or_is_rejected(topic, text.encode())


@FUZZ
@given(st.sampled_from(TOPICS), any_json | st.binary(max_size=120).map(repr))
def test_any_json_or_bytes_in_every_plant_format_decode_or_are_rejected(
    topic: str, text: str
) -> None:
    _decodes_or_is_rejected(topic, text.encode())


@FUZZ
@given(st.sampled_from(TOPICS), st.binary(max_size=200))
def test_raw_bytes_in_every_plant_format_decode_or_are_rejected(topic: str, payload: bytes) -> None:
    _decodes_or_is_rejected(topic, payload)


#: Python values asyncua hands over for OPC UA variants of every built-in type.
opcua_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(),
    st.text(max_size=20),
    st.binary(max_size=20),
    st.datetimes(timezones=st.just(UTC)),
    st.uuids(),
    st.builds(ua.LocalizedText, st.text(max_size=8)),
    st.builds(ua.QualifiedName, st.text(max_size=8), st.integers(0, 3)),
    st.builds(ua.NodeId, st.integers(0, 1000), st.integers(0, 3)),
    st.builds(ua.StatusCode, st.integers(0, 2**32 - 1)),
    st.lists(st.integers() | st.floats(), max_size=4),
)
value_maps = st.builds(
    ValueMap,
    type=st.sampled_from(["auto", "float", "int", "str", "bool"]),
    scale=st.sampled_from([1.0, 0.001, 1e308, -2.5]),
    offset=st.sampled_from([0.0, 1e308, -273.15]),
    map=st.sampled_from([{}, {"1": "executing", "0": "stopped"}, {"True": "on"}]),
)


@FUZZ
@given(opcua_values, value_maps)
def test_opcua_variant_values_convert_or_are_rejected(raw: Any, vm: ValueMap) -> None:
    try:
        value = convert(raw, vm)
    except PayloadRejectedError as exc:
        assert exc.reason in REASONS, exc
        return
    assert value is None or isinstance(value, bool | int | float | str)
    if isinstance(value, float):
        assert math.isfinite(value)
    signal = Signal("cnc103", "x", value, source_ts=1.0, receive_ts=1.0)
    assert Signal.from_fields(signal.to_fields()) == signal


RUNNER_CFG = parse_config(
    {
        "machines": [
            {"id": "cnc103", "pcn": 123681, "workcenter_key": 61324, "workcenter_code": "cnc103"}
        ],
        "runner": {"tb": {"pcns": [123681, 300758]}},
    },
    file="fuzz",
)
param_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["202401", "202413", "202400", "123681,300758", "2024-05-01T06:00", "1"]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children)
    ),
    max_leaves=6,
)
PARAM_KEYS = ["start", "end", "pcns", "shift", "window_minutes", "x", ""]


@FUZZ
@given(
    st.sampled_from([*RUNNER_CFG.runner.pipelines, "nope"]),
    st.dictionaries(st.sampled_from(PARAM_KEYS) | st.text(max_size=6), param_values, max_size=4)
    | param_values,
    st.sampled_from([lambda _pcn: None, lambda _pcn: {202401, 202412}, lambda _pcn: set()]),
)
def test_report_request_parameters_normalize_or_are_rejected(
    kind: str, params: Any, calendars: Any
) -> None:
    try:
        norm = normalize(RUNNER_CFG, kind, params, calendars)
    except BadRequest as exc:
        assert str(exc) and exc.reason == "bad_request"
        return
    # What is accepted is stored as JSON and queued: it must be plain data.
    json.dumps(norm.params, allow_nan=False)


#: What a browser or an API client may post: text of any kind, or JSON values.
form_values = (
    st.text(max_size=40)
    | st.sampled_from(["cnc103", "tooling", "high", "2", "0", "-1", "1e400", "nan", "\x00"])
    | param_values
)
FORM_KEYS = ["machine", "category", "severity", "description", "badge", "rule", "hours", "reason"]
forms = st.dictionaries(st.sampled_from(FORM_KEYS) | st.text(max_size=6), form_values, max_size=8)


@FUZZ
@given(forms, st.none() | st.text(max_size=8))
def test_web_form_fields_parse_or_are_rejected(data: dict[str, Any], badge: str | None) -> None:
    for parse in (
        lambda: parse_ticket(RUNNER_CFG, data, badge=badge),
        lambda: parse_silence(RUNNER_CFG, data, now=datetime(2024, 5, 1, tzinfo=UTC)),
    ):
        try:
            parsed = parse()
        except FormError as exc:
            assert exc.reason == "bad_input" and exc.errors, exc
            continue
        # What is accepted goes into the database and to Plex: no control characters.
        for value in vars(parsed).values():
            if isinstance(value, str):
                assert not CONTROL.search(value), value


CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def test_the_fuzz_covers_every_plant_topic() -> None:
    # Every topic pattern of the sample is reached by a topic above.
    patterns = {t.pattern for t in SOURCE.topics}
    assert patterns == {
        "plant/{pcn}/{machine}/{signal}",
        "focas/+",
        "InsAssemblyMachiningHistory",
        "InsToolLifeHistoryV2",
    }
