"""Signal codec: round trips, and every bad entry gets DecodeError with its reason."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.model import DecodeError, Quality, ReportRequest, Signal

GOOD = Signal(
    machine="cnc103",
    name="tool_life",
    value=212,
    quality=Quality.GOOD,
    source_ts=1700000000.25,
    receive_ts=1700000000.5,
    subject="T1",
    attrs={"limit": "348"},
)


def test_signal_round_trip() -> None:
    assert Signal.from_fields(GOOD.to_fields()) == GOOD


def test_signal_fields_are_strings_and_versioned() -> None:
    fields = GOOD.to_fields()
    assert fields["v"] == "1"
    assert all(isinstance(v, str) for v in fields.values())


def test_non_finite_values_cannot_be_written() -> None:
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        Signal(machine="m", name="n", value=math.nan).to_fields()


@pytest.mark.parametrize(
    ("change", "reason", "message"),
    [
        ({"v": "2"}, "unknown_version", "unknown signal version '2'"),
        ({"v": None}, "unknown_version", "unknown signal version None"),
        ({"m": None}, "missing_field", "field 'm' is missing"),
        ({"x": "{not json"}, "bad_field", "field 'x' is not JSON"),
        ({"x": "[1, 2]"}, "bad_field", "field 'x' is not a scalar"),
        ({"q": "great"}, "bad_field", "field 'q' is not a quality"),
        ({"ts": "yesterday"}, "bad_field", "field 'ts' is not a timestamp"),
        ({"ts": "inf"}, "bad_field", "field 'ts' is not finite"),
        ({"a": "[]"}, "bad_field", "field 'a' is not an object"),
        ({"m": ""}, "bad_field", "machine and name must not be empty"),
    ],
)
def test_bad_entries_are_rejected_with_a_reason(
    change: dict[str, str | None], reason: str, message: str
) -> None:
    fields = GOOD.to_fields()
    for key, value in change.items():
        if value is None:
            fields.pop(key, None)
        else:
            fields[key] = value
    with pytest.raises(DecodeError) as err:
        Signal.from_fields(fields)
    assert err.value.reason == reason
    assert str(err.value) == message


@given(
    st.dictionaries(
        st.sampled_from(["v", "m", "n", "x", "q", "ts", "rts", "s", "a", "zz"]),
        st.text(max_size=30),
    )
)
def test_decoder_never_fails_other_than_decode_error(fields: dict[str, str]) -> None:
    try:
        signal = Signal.from_fields(fields)
    except DecodeError as err:
        assert err.reason in {"unknown_version", "missing_field", "bad_field"}
    else:
        assert signal.machine and signal.name


@given(
    st.one_of(
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(),
        st.booleans(),
        st.none(),
    )
)
def test_any_scalar_value_round_trips(value: float | int | str | bool | None) -> None:
    sig = Signal(machine="m", name="n", value=value, source_ts=1.0, receive_ts=2.0)
    assert Signal.from_fields(sig.to_fields()).value == value


def test_report_request_round_trip_and_version_check() -> None:
    req = ReportRequest(
        id="r1",
        kind="tb",
        params={"start": 202401, "end": 202412},
        requester="dan",
        requested_at=datetime(2026, 1, 5, tzinfo=UTC),
    )
    assert ReportRequest.from_fields(req.to_fields()) == req
    with pytest.raises(DecodeError, match="unknown report request version '9'"):
        ReportRequest.from_fields({"v": "9", "body": "{}"})
    with pytest.raises(DecodeError) as err:
        ReportRequest.from_fields({"v": "1", "body": '{"id": ""}'})
    assert err.value.reason == "bad_field"
