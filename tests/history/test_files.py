"""The Parquet columns built a column at a time equal those of the live decoder."""

from __future__ import annotations

from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type hints
from hypothesis import given, settings
from hypothesis import strategies as st

from core.model import Quality, Signal
from history.files import SCHEMA, _columns_decoded, _columns_fast

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
signals = st.builds(
    Signal,
    machine=st.sampled_from(["cnc101", "cnc102"]),
    name=st.sampled_from(["tool_life", "spindle_load", "program"]),
    value=values,
    quality=st.sampled_from(list(Quality)),
    source_ts=st.floats(0, 4e9, allow_nan=False),
    receive_ts=st.floats(0, 4e9, allow_nan=False),
    subject=st.sampled_from(["", "T1"]),
    attrs=st.dictionaries(st.sampled_from(["pallet", "limit"]), st.text(max_size=4), max_size=2),
)


def _table(cols: Any) -> Any:
    return pa.Table.from_pydict(cols, schema=SCHEMA)


@settings(max_examples=200, deadline=None)
@given(batch=st.lists(signals, min_size=1, max_size=40))
def test_fast_columns_equal_the_decoders(batch: list[Signal]) -> None:
    entries = [(f"{1764000000000 + i}-{i % 3}", s.to_fields()) for i, s in enumerate(batch)]
    fast = _columns_fast(entries)
    assert fast is not None
    slow, bad = _columns_decoded(entries)
    assert bad == 0
    assert _table(fast).equals(_table(slow))


def test_an_unusual_entry_sends_the_batch_to_the_decoder() -> None:
    good = Signal("cnc101", "tool_life", 12, source_ts=1.0, receive_ts=1.0).to_fields()
    for bad in ({"v": "2", "m": "x"}, {**good, "q": "odd"}, {**good, "ts": "soon"}, {"v": "1"}):
        assert _columns_fast([("1-0", good), ("2-0", bad)]) is None
        cols, dropped = _columns_decoded([("1-0", good), ("2-0", bad)])
        assert dropped == 1 and cols["id_ms"] == [1]
