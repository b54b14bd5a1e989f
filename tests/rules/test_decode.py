"""``Signal.from_fields``'s fast path decodes exactly as its plain rendering did.

The rules worker decodes every entry it reads, so ``from_fields`` is written for speed
(caches of ``x`` and ``a`` texts, fields read where they are checked). What it accepts,
what it builds and which error it raises must stay those of the plain version below (the
code before the fast path, kept verbatim): hypothesis draws entries, good and broken, and
both must agree, first decode and cached decode alike.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import model
from core.model import DecodeError, Quality, Signal


def _text(fields: dict[str, str], key: str) -> str:
    try:
        return fields[key]
    except KeyError:
        raise DecodeError(f"field {key!r} is missing", reason="missing_field") from None


def _timestamp(fields: dict[str, str], key: str) -> float:
    raw = _text(fields, key)
    try:
        ts = float(raw)
    except ValueError:
        raise DecodeError(f"field {key!r} is not a timestamp", reason="bad_field") from None
    if not math.isfinite(ts):
        raise DecodeError(f"field {key!r} is not finite", reason="bad_field")
    return ts


def plain_from_fields(fields: dict[str, str]) -> Signal:
    """The decoder before its fast path: the specification of the checks and errors."""
    version = fields.get("v")
    if version != "1":
        raise DecodeError(f"unknown signal version {version!r}", reason="unknown_version")
    try:
        value = json.loads(_text(fields, "x"))
    except ValueError:
        raise DecodeError("field 'x' is not JSON", reason="bad_field") from None
    if isinstance(value, list | dict):
        raise DecodeError("field 'x' is not a scalar", reason="bad_field")
    try:
        quality = Quality(_text(fields, "q"))
    except ValueError:
        raise DecodeError("field 'q' is not a quality", reason="bad_field") from None
    attrs: dict[str, str] = {}
    if "a" in fields:
        try:
            raw_attrs = json.loads(fields["a"])
        except ValueError:
            raise DecodeError("field 'a' is not JSON", reason="bad_field") from None
        if not isinstance(raw_attrs, dict):
            raise DecodeError("field 'a' is not an object", reason="bad_field")
        attrs = {str(k): str(v) for k, v in raw_attrs.items()}
    machine = _text(fields, "m")
    name = _text(fields, "n")
    if not machine or not name:
        raise DecodeError("machine and name must not be empty", reason="bad_field")
    return Signal(
        machine=machine,
        name=name,
        value=value,
        quality=quality,
        source_ts=_timestamp(fields, "ts"),
        receive_ts=_timestamp(fields, "rts"),
        subject=fields.get("s", ""),
        attrs=attrs,
    )


def _outcome(decode: Callable[[Any], Signal], entry: Any) -> tuple[str, str, str]:
    """What ``decode(entry)`` gives, comparable: (kind, repr or message, reason)."""
    try:
        sig = decode(entry)
    except DecodeError as err:
        return ("error", str(err), err.reason)
    # repr tells 1 from 1.0 from True (== does not) and shows NaN equal to NaN.
    return ("signal", repr(sig), type(sig.value).__name__)


def _plain_outcome(fields: dict[str, str]) -> tuple[str, str, str]:
    return _outcome(plain_from_fields, fields)


def _fields_outcome(fields: dict[str, str]) -> tuple[str, str, str]:
    return _outcome(Signal.from_fields, fields)


def _flat_outcome(flat: list[str]) -> tuple[str, str, str]:
    return _outcome(Signal.from_flat, flat)


# Texts each field is drawn from: good ones, near misses, and anything at all.
_JSON_SCALARS = st.floats(allow_nan=False) | st.integers() | st.text(max_size=8)
_X = st.sampled_from(
    ['"executing"', "12", "-3", "1.5", "1e3", "true", "false", "null", '""', "NaN",
     "Infinity", "01", "1.", "[1]", '{"a":1}', "", "nope", " 7 ", '"T1"', "1_0"]
) | st.builds(json.dumps, _JSON_SCALARS)  # fmt: skip
_Q = st.sampled_from(["good", "uncertain", "bad", "no_data", "GOOD", "", "ok"])
_TS = st.sampled_from(
    ["1700000000.0", "1700000000.25", "0", "-1.5", "nan", "inf", "-inf", "", "x", " 3 ", "1_0"]
) | st.floats(allow_nan=False).map(repr)  # fmt: skip
_A = st.sampled_from(
    ['{"limit":"198","warning":"178"}', '{"n":1,"b":true,"z":null}', "{}", "[]", "1",
     '"x"', "{", "", '{"n":NaN}', '{"big":123456789012345678901234567890}',
     '{"s":"\\ud800"}', '{"f":1e400}', '{"k":1,"k":2}']  # orjson refuses or differs
) | st.dictionaries(st.text(max_size=4), st.text(max_size=4)).map(json.dumps)  # fmt: skip
_TEXT = st.sampled_from(["m001", "spindle_load", "", "T12"]) | st.text(max_size=6)
_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "v": st.sampled_from(["1", "1", "1", "2", "", "01"]),
        "m": _TEXT,
        "n": _TEXT,
        "x": _X,
        "q": _Q,
        "ts": _TS,
        "rts": _TS,
        "s": _TEXT,
        "a": _A,
        "zz": st.text(max_size=3),
    },
)


@settings(max_examples=3000, deadline=None)
@given(_FIELDS)
def test_fast_path_decodes_as_the_plain_path(fields: dict[str, str]) -> None:
    expected = _plain_outcome(fields)
    assert _fields_outcome(fields) == expected
    assert _fields_outcome(fields) == expected  # again, from the caches


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {"v": st.just("1"), "m": _TEXT, "n": _TEXT, "x": _X, "q": _Q, "ts": _TS, "rts": _TS}
    )
)
def test_complete_entries_agree(fields: dict[str, str]) -> None:
    # Every field present: the draws reach the value, quality and timestamp checks.
    assert _fields_outcome(fields) == _plain_outcome(fields)
    assert _fields_outcome(fields) == _plain_outcome(fields)


@settings(max_examples=3000, deadline=None)
@given(_FIELDS, st.booleans())
def test_fields_as_redis_sends_them_decode_as_the_plain_path(
    fields: dict[str, str], reverse: bool
) -> None:
    # In drawing order the complete entries have the collector's layout (the positional
    # path); reversed they take the dict path. Either way: the plain path's outcome.
    items = list(fields.items())
    if reverse:
        items.reverse()
    flat = [x for kv in items for x in kv]
    expected = _plain_outcome(fields)
    assert _flat_outcome(flat) == expected
    assert _flat_outcome(flat) == expected  # again, from the caches


@settings(max_examples=500, deadline=None)
@given(
    st.fixed_dictionaries(
        {"v": st.just("1"), "m": _TEXT, "n": _TEXT, "x": _X, "q": _Q, "ts": _TS, "rts": _TS},
        optional={"s": _TEXT, "a": _A},
    )
)
def test_the_collectors_layout_decodes_as_the_plain_path(fields: dict[str, str]) -> None:
    flat = [x for kv in fields.items() for x in kv]
    assert _flat_outcome(flat) == _plain_outcome(fields)
    assert _flat_outcome(flat) == _plain_outcome(fields)


@pytest.mark.parametrize("by_position", [False, True])
def test_a_decoded_signal_owns_its_attrs(by_position: bool) -> None:
    fields = Signal("m1", "tool_life", 3, subject="T1", attrs={"limit": "9"}).to_fields()
    flat = [x for kv in fields.items() for x in kv]
    assert flat[14::2] == ["s", "a"]  # the collector's layout, attrs last
    for _ in range(3):  # the first decode fills the cache, the next ones read it
        sig = Signal.from_flat(flat) if by_position else Signal.from_fields(fields)
        assert sig.attrs == {"limit": "9"}
        sig.attrs["limit"] = "changed by a rule"


def test_the_caches_stay_bounded() -> None:
    for n in range(model._CACHE_MAX + 500):
        sig = Signal("m1", "spindle_load", n + 0.5, attrs={"k": str(n)})
        assert Signal.from_fields(sig.to_fields()) == sig
    assert len(model._VALUES) <= model._CACHE_MAX
    assert len(model._ATTRS) <= model._CACHE_MAX
