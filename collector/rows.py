"""Signals as rows: the collector's hot-path form of stream entries.

A *row* is one of two JSON-ready lists, each standing for stream entries exactly as
:meth:`core.model.Signal.to_fields` writes them (the layouts are ``core.wire``'s
``ROW_FIELDS`` and ``GROUP_FIELDS``):

- a **full row** ``[m, n, x, q, ts, rts, s, a]`` (eight strings; ``s`` and ``a`` are
  ``""`` when the entry has no subject or attributes, which is exactly when
  ``to_fields`` leaves them out): one entry;
- a **group** ``[m, ts, rts, [n...], [x...]]``: one entry per name, all with quality
  ``good``, no subject and no attributes, in order (a machine's snapshot message).

Readers on a hot path (MQTT) build rows straight from the payload without a
:class:`Signal` in between; the sink sends a partition's rows to Redis as ONE JSON
argument of :data:`XADD_SCRIPT` (``core.wire``), which writes the fields in wire order. Both
shortcuts exist because one collector process must carry a plant on two cores: a
``Signal`` per value, a field dict per entry and sixteen bulk strings per XADD were most
of its Python time per signal. :func:`rows_fields` is the same expansion in Python;
``tests/collector/test_rows.py`` holds what Redis stores equal to it, and the
decoder's rows equal to its signals' ``to_fields``.
"""

from __future__ import annotations

from typing import Any

from core.model import Signal
from core.wire import GROUP_FIELDS, GROUP_QUALITY, ROW_FIELDS, RTS, XADD_SCRIPT, N, signal_fields

__all__ = [
    "XADD_SCRIPT",
    "Row",
    "encode_fields",
    "row_rts",
    "rows_fields",
    "rows_size",
    "signal_row",
    "value_json",
]

Row = list[Any]
#: Where a group keeps its names and receive time, and a full row its receive time.
_GROUP_LEN, _GROUP_N, _GROUP_RTS = len(GROUP_FIELDS), GROUP_FIELDS.index(N), GROUP_FIELDS.index(RTS)
_ROW_RTS = ROW_FIELDS.index(RTS)


def encode_fields(signal: Signal) -> dict[str, str]:
    """Exactly :meth:`core.model.Signal.to_fields`, faster for the common values.

    ``json.dumps`` costs more than the rest of an entry for a plain number; for floats,
    ints, booleans and None the JSON text is ``repr``/``true``/``false``/``null``, which
    is what ``json.dumps`` itself writes. Anything else goes through ``to_fields``. A
    property test holds the two equal.
    """
    x = value_json(signal.value)
    if x is None or signal.attrs:
        return signal.to_fields()  # text values and attributes: leave them to the codec
    return signal_fields(
        signal.machine,
        signal.name,
        x,
        signal.quality.value,
        repr(signal.source_ts),
        repr(signal.receive_ts),
        signal.subject,
    )


def value_json(v: object) -> str | None:
    """``json.dumps(v)`` for finite floats, ints, booleans and None; None otherwise."""
    t = type(v)
    if t is float:
        if v - v != 0.0:  # type: ignore[operator]  # NaN and infinities: to_fields refuses
            return None
        return float.__repr__(v)
    if t is int:
        return int.__repr__(v)
    if t is bool:
        return "true" if v else "false"
    if v is None:
        return "null"
    return None


def signal_row(signal: Signal) -> Row:
    """The row of ``signal`` (raises ``ValueError`` for NaN and infinities, as the codec)."""
    f = encode_fields(signal)
    return [f.get(k, "") for k in ROW_FIELDS]


def rows_size(rows: list[Row]) -> int:
    """How many stream entries ``rows`` stand for."""
    return sum(len(r[_GROUP_N]) if len(r) == _GROUP_LEN else 1 for r in rows)


def row_rts(row: Row) -> str:
    """The receive time (``rts``) of the row's last entry."""
    return str(row[_GROUP_RTS] if len(row) == _GROUP_LEN else row[_ROW_RTS])


def rows_fields(rows: list[Row]) -> list[dict[str, str]]:
    """The stream entries' fields of ``rows``, in order: what :data:`XADD_SCRIPT` writes."""
    out: list[dict[str, str]] = []
    for r in rows:
        if len(r) == _GROUP_LEN:
            m, ts, rts, names, xs = r  # GROUP_FIELDS
            out.extend(
                signal_fields(m, n, x, GROUP_QUALITY, ts, rts)
                for n, x in zip(names, xs, strict=True)
            )
            continue
        out.append(signal_fields(*r))
    return out
