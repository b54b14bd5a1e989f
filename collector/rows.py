"""Signals as rows: the collector's hot-path form of stream entries.

A *row* is one of two JSON-ready lists, each standing for stream entries exactly as
:meth:`core.model.Signal.to_fields` writes them:

- a **full row** ``[m, n, x, q, ts, rts, s, a]`` (eight strings; ``s`` and ``a`` are
  ``""`` when the entry has no subject or attributes, which is exactly when
  ``to_fields`` leaves them out): one entry;
- a **group** ``[m, ts, rts, [n...], [x...]]``: one entry per name, all with quality
  ``good``, no subject and no attributes, in order (a machine's snapshot message).

Readers on a hot path (MQTT) build rows straight from the payload without a
:class:`Signal` in between; the sink sends a partition's rows to Redis as ONE JSON
argument of :data:`XADD_SCRIPT`, which writes the fields in ``to_fields`` order. Both
shortcuts exist because one collector process must carry a plant on two cores: a
``Signal`` per value, a field dict per entry and sixteen bulk strings per XADD were most
of its Python time per signal. :func:`rows_fields` is the same expansion in Python;
``tests/collector/test_rows.py`` holds what Redis stores equal to it, and the
decoder's rows equal to its signals' ``to_fields``.
"""

from __future__ import annotations

from typing import Any

from core.model import Signal

Row = list[Any]

#: Append a run of entries to one partition stream, in order, with one reply.
#: KEYS[1] = the stream. ARGV[1] = a JSON array of rows (full rows and groups, see the
#: module docstring). Writes each entry with the fields of ``Signal.to_fields`` in that
#: order (``v`` = 1) and returns the number of entries. One bulk argument instead of
#: sixteen per entry: Redis decodes it in C (cjson), and the client packs one string.
#: EVAL rather than EVALSHA: Redis caches the compiled script by its digest, and a
#: restarted Redis (with an empty script cache) never sees a NOSCRIPT in mid-batch.
XADD_SCRIPT = """
local rows = cjson.decode(ARGV[1])
local key = KEYS[1]
local n = 0
for i = 1, #rows do
  local r = rows[i]
  if type(r[4]) == 'table' then
    local m, ts, rts, names, xs = r[1], r[2], r[3], r[4], r[5]
    for j = 1, #names do
      redis.call('XADD', key, '*', 'v', '1', 'm', m, 'n', names[j], 'x', xs[j],
        'q', 'good', 'ts', ts, 'rts', rts)
    end
    n = n + #names
  elseif r[7] == '' and r[8] == '' then
    redis.call('XADD', key, '*', 'v', '1', 'm', r[1], 'n', r[2], 'x', r[3], 'q', r[4],
      'ts', r[5], 'rts', r[6])
    n = n + 1
  else
    local f = {'v', '1', 'm', r[1], 'n', r[2], 'x', r[3], 'q', r[4], 'ts', r[5], 'rts', r[6]}
    if r[7] ~= '' then f[#f + 1] = 's'; f[#f + 1] = r[7] end
    if r[8] ~= '' then f[#f + 1] = 'a'; f[#f + 1] = r[8] end
    redis.call('XADD', key, '*', unpack(f))
    n = n + 1
  end
end
return n
"""


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
    fields = {
        "v": "1",
        "m": signal.machine,
        "n": signal.name,
        "x": x,
        "q": signal.quality.value,
        "ts": repr(signal.source_ts),
        "rts": repr(signal.receive_ts),
    }
    if signal.subject:
        fields["s"] = signal.subject
    return fields


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
    return [f["m"], f["n"], f["x"], f["q"], f["ts"], f["rts"], f.get("s", ""), f.get("a", "")]


def rows_size(rows: list[Row]) -> int:
    """How many stream entries ``rows`` stand for."""
    return sum(len(r[3]) if len(r) == 5 else 1 for r in rows)


def row_rts(row: Row) -> str:
    """The receive time (``rts``) of the row's last entry."""
    return str(row[2] if len(row) == 5 else row[5])


def rows_fields(rows: list[Row]) -> list[dict[str, str]]:
    """The stream entries' fields of ``rows``, in order: what :data:`XADD_SCRIPT` writes."""
    out: list[dict[str, str]] = []
    for r in rows:
        if len(r) == 5:
            m, ts, rts, names, xs = r
            out.extend(
                {"v": "1", "m": m, "n": n, "x": x, "q": "good", "ts": ts, "rts": rts}
                for n, x in zip(names, xs, strict=True)
            )
            continue
        m, n, x, q, ts, rts, s, a = r
        fields = {"v": "1", "m": m, "n": n, "x": x, "q": q, "ts": ts, "rts": rts}
        if s:
            fields["s"] = s
        if a:
            fields["a"] = a
        out.append(fields)
    return out
