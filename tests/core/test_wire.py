"""The wire format has one owner (core.wire): its Lua and Python writers agree field for field.

What ``XADD_SCRIPT`` stores in a real Redis for a signal's row is, pair by pair and in
order, what ``Signal.to_fields`` writes; a snapshot group's entries are those of the
signals it stands for. Every constant the writers and readers use comes from the tuples.
"""

from __future__ import annotations

from typing import Any, get_args

import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.batch import dumps_rows
from collector.rows import rows_fields, signal_row
from core import keys, wire
from core.model import Quality, ReportRequest, Signal

signals = st.builds(
    Signal,
    machine=st.text(min_size=1, max_size=5),
    name=st.text(min_size=1, max_size=5),
    value=st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    quality=st.sampled_from(list(Quality)),
    source_ts=st.floats(allow_nan=False, allow_infinity=False),
    receive_ts=st.floats(allow_nan=False, allow_infinity=False),
    subject=st.text(max_size=3),
    attrs=st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
)


def _stored(client: redis.Redis, rows: list[Any]) -> list[list[tuple[str, str]]]:
    stream = keys.signal_stream(0)
    client.delete(stream)
    client.eval(wire.XADD_SCRIPT, 1, stream, dumps_rows(rows))
    entries: Any = client.xrange(stream)
    return [list(f.items()) for _, f in entries]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sigs=st.lists(signals, min_size=1, max_size=5))
def test_the_script_writes_what_to_fields_writes(
    sigs: list[Signal], redis_client: redis.Redis
) -> None:
    stored = _stored(redis_client, [signal_row(s) for s in sigs])
    assert stored == [list(s.to_fields().items()) for s in sigs]
    assert [Signal.from_fields(dict(f)) for f in stored] == sigs


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    machine=st.text(min_size=1, max_size=4),
    ts=st.floats(allow_nan=False, allow_infinity=False),
    rts=st.floats(allow_nan=False, allow_infinity=False),
    values=st.dictionaries(
        st.text(min_size=1, max_size=4), st.floats(allow_nan=False, allow_infinity=False)
    ),
)
def test_a_group_writes_what_its_signals_to_fields_write(
    machine: str, ts: float, rts: float, values: dict[str, float], redis_client: redis.Redis
) -> None:
    names = list(values)
    group = [machine, repr(ts), repr(rts), names, [repr(values[n]) for n in names]]
    expected = [
        list(Signal(machine, n, values[n], Quality.GOOD, ts, rts).to_fields().items())
        for n in names
    ]
    if names:
        assert _stored(redis_client, [group]) == expected
    assert [list(f.items()) for f in rows_fields([group])] == expected


def test_the_version_and_layout_come_from_one_tuple() -> None:
    fields = Signal("m", "n", 1, subject="T1", attrs={"k": "v"}).to_fields()
    assert tuple(fields) == wire.SIGNAL_FIELDS
    assert fields[wire.V] == str(wire.SIGNAL_VERSION)
    assert next(iter(ReportRequest.model_fields)) == "v"
    assert get_args(ReportRequest.model_fields["v"].annotation) == (wire.REPORT_REQUEST_VERSION,)
    assert wire.SIGNAL_FIELDS[1:] == wire.ROW_FIELDS
    for k in wire.SIGNAL_FIELDS[: wire.SIGNAL_REQUIRED]:
        assert f"'{k}'" in wire.XADD_SCRIPT
