"""The stream wire formats, owned in one place: field names, their order, the version.

A signal is one stream entry whose fields are :data:`SIGNAL_FIELDS`, in that order: the
first :data:`SIGNAL_REQUIRED` always, then ``s`` (subject) and ``a`` (attrs) each only
when not empty. A report request is :data:`REPORT_REQUEST_FIELDS`. Every writer and reader
of those entries is built from these constants:

- :meth:`core.model.Signal.to_fields`, ``from_fields`` and ``from_flat`` (the decoder reads
  the collector's layout by the positions computed here);
- the collector's rows (:data:`ROW_FIELDS`, :data:`GROUP_FIELDS`, :func:`signal_fields`
  in ``collector/rows.py``) and :data:`XADD_SCRIPT`, whose Lua text is generated below;
- :class:`core.model.ReportRequest`'s ``to_fields`` / ``from_fields``.

``tests/core/test_wire.py`` holds what the script stores in a real Redis equal, field by
field and in order, to ``Signal.to_fields``. To change a message, see "A message between
processes" under Checklists in docs/ARCHITECTURE.md.
"""

from __future__ import annotations

from typing import Final

#: The signal entry's version: ``v`` on the wire is its text.
SIGNAL_VERSION: Final = 1
SIGNAL_V: Final = str(SIGNAL_VERSION)
#: The report request's version (also the ``v`` of its JSON body, ``ReportRequest.v``).
REPORT_REQUEST_VERSION: Final = 1
REPORT_REQUEST_V: Final = str(REPORT_REQUEST_VERSION)

#: A signal entry's fields in wire order: version, machine, name, value (JSON), quality,
#: source and receive time (``repr`` of the float), then the optional subject and attrs.
SIGNAL_FIELDS: Final = ("v", "m", "n", "x", "q", "ts", "rts", "s", "a")
#: How many of :data:`SIGNAL_FIELDS` every entry has; the rest appear only when not empty.
SIGNAL_REQUIRED: Final = 7
V, M, N, X, Q, TS, RTS, S, A = SIGNAL_FIELDS
#: The report request entry: version and the model's JSON.
REPORT_REQUEST_FIELDS: Final = ("v", "body")
BODY: Final = REPORT_REQUEST_FIELDS[1]

#: A collector *full row*: one entry's values after ``v``, in wire order (``s``/``a`` ``""``
#: when absent).
ROW_FIELDS: Final = SIGNAL_FIELDS[1:]
#: A collector *group*: one entry per name, quality :data:`GROUP_QUALITY`, no ``s``/``a``.
GROUP_FIELDS: Final = (M, TS, RTS, N, X)
GROUP_QUALITY: Final = "good"

_REQUIRED: Final = SIGNAL_FIELDS[:SIGNAL_REQUIRED]
#: Position of each field's value in the flat ``[k1, v1, k2, v2, ...]`` list Redis sends,
#: for the collector's layout (required fields, then ``s``, then ``a``).
FLAT_AT: Final = {k: 2 * i + 1 for i, k in enumerate(SIGNAL_FIELDS)}
#: The flat list's keys of the required fields, in order.
FLAT_REQUIRED_KEYS: Final = list(_REQUIRED)
#: The flat list's length without optional fields, and with all of them.
FLAT_REQUIRED_LEN: Final = 2 * SIGNAL_REQUIRED
FLAT_MAX_LEN: Final = 2 * len(SIGNAL_FIELDS)
#: Which optional keys may follow the required ones, in wire order.
FLAT_TAILS: Final = ([S], [A], [S, A])


def signal_fields(  # noqa: PLR0917 - an entry's values in wire order, as rows hold them
    machine: str, name: str, x: str, q: str, ts: str, rts: str, s: str = "", a: str = ""
) -> dict[str, str]:
    """A signal entry's fields from its encoded values, in wire order.

    Args:
        machine: machine id.
        name: signal name.
        x: the value as JSON text.
        q: quality text.
        ts: source time text.
        rts: receive time text.
        s: subject, left out when empty.
        a: attrs as JSON text, left out when empty.
    """
    fields = dict(zip(_REQUIRED, (SIGNAL_V, machine, name, x, q, ts, rts), strict=True))
    if s:
        fields[S] = s
    if a:
        fields[A] = a
    return fields


def _lua_args(values: dict[str, str]) -> str:
    """``'k1', expr1, 'k2', expr2, ...`` for the required fields, in wire order."""
    return ", ".join(f"'{k}', {values[k]}" for k in _REQUIRED)


def _xadd_script() -> str:
    """:data:`XADD_SCRIPT`'s text, generated from the field tuples above."""
    v = f"'{SIGNAL_V}'"
    row = {k: f"r[{i}]" for i, k in enumerate(ROW_FIELDS, 1)}
    group = {k: f"r[{i}]" for i, k in enumerate(GROUP_FIELDS, 1)}
    in_group = {V: v, M: "m", N: "names[j]", X: "xs[j]", Q: f"'{GROUP_QUALITY}'"}
    in_group |= {TS: "ts", RTS: "rts"}
    full = {V: v} | {k: row[k] for k in _REQUIRED[1:]}
    return f"""
local rows = cjson.decode(ARGV[1])
local key = KEYS[1]
local n = 0
for i = 1, #rows do
  local r = rows[i]
  if type({group[N]}) == 'table' then
    local m, ts, rts, names, xs = {group[M]}, {group[TS]}, {group[RTS]}, {group[N]}, {group[X]}
    for j = 1, #names do
      redis.call('XADD', key, '*', {_lua_args(in_group)})
    end
    n = n + #names
  elseif {row[S]} == '' and {row[A]} == '' then
    redis.call('XADD', key, '*', {_lua_args(full)})
    n = n + 1
  else
    local f = {{{_lua_args(full)}}}
    if {row[S]} ~= '' then f[#f + 1] = '{S}'; f[#f + 1] = {row[S]} end
    if {row[A]} ~= '' then f[#f + 1] = '{A}'; f[#f + 1] = {row[A]} end
    redis.call('XADD', key, '*', unpack(f))
    n = n + 1
  end
end
return n
"""


#: Append a run of entries to one partition stream, in order, with one reply.
#: KEYS[1] = the stream. ARGV[1] = a JSON array of rows (full rows of :data:`ROW_FIELDS`
#: and groups of :data:`GROUP_FIELDS`; ``collector/rows.py``). Writes each entry with the
#: fields of :func:`signal_fields` in that order and returns the number of entries. One
#: bulk argument instead of sixteen per entry: Redis decodes it in C (cjson), and the
#: client packs one string. EVAL rather than EVALSHA: Redis caches the compiled script by
#: its digest, and a restarted Redis (with an empty script cache) never sees a NOSCRIPT
#: in mid-batch.
XADD_SCRIPT: Final = _xadd_script()
