"""Parquet files of the history: their schema, their names, building one from entries.

A file holds one contiguous range of one partition stream's entry ids, all of one plant
date, and is named by that range::

    <prefix>/date=2026-11-03/partition=5/1762142400000-0_1762142459999-3.parquet

The plant date is the date of the entry id's time (when Redis received the entry) in
``plant.timezone``: ids only grow, so a batch splits into contiguous date runs, and a
file's range never overlaps another's. Replaying the same entries after a crash yields
the same name (the writer also finds a file already stored for a range's first id).

Columns are typed: ids as two int64, names as dictionary-encoded strings, numbers as
float64, times as float64 Unix seconds (exact, as the stream carries them; DuckDB:
``to_timestamp(source_ts)``). ``x`` and ``a`` keep the entry's own JSON text, so a
replay decodes exactly what the live engine decoded.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type hints
import pyarrow.compute as pc  # type: ignore[import-untyped]  # (same)
import pyarrow.parquet as pq  # type: ignore[import-untyped]  # (same)

from core.model import DecodeError, Quality, Signal

SCHEMA = pa.schema(
    [
        ("id_ms", pa.int64()),
        ("id_seq", pa.int64()),
        ("machine", pa.dictionary(pa.int32(), pa.string())),
        ("name", pa.dictionary(pa.int32(), pa.string())),
        ("subject", pa.dictionary(pa.int32(), pa.string())),
        ("quality", pa.dictionary(pa.int8(), pa.string())),
        ("value_num", pa.float64()),
        ("x", pa.string()),
        ("source_ts", pa.float64()),
        ("receive_ts", pa.float64()),
        ("a", pa.string()),
    ]
)
_NAME = re.compile(r"^(\d+)-(\d+)_(\d+)-(\d+)\.parquet$")


@dataclass(frozen=True, slots=True, order=True)
class EntryId:
    """A stream entry id as numbers (so it orders correctly)."""

    ms: int
    seq: int

    @classmethod
    def parse(cls, text: str) -> EntryId:
        ms, _, seq = text.partition("-")
        return cls(int(ms), int(seq))

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}"


def plant_date(entry: EntryId, zone: ZoneInfo) -> date:
    """The plant date an entry belongs to: its id's time, in the plant's zone."""
    return datetime.fromtimestamp(entry.ms / 1000, zone).date()


def folder(prefix: str, day: date, partition: int) -> str:
    return f"{prefix}/date={day.isoformat()}/partition={partition}/"


def file_key(prefix: str, day: date, partition: int, first: EntryId, last: EntryId) -> str:
    """The object key of the file holding ``first``..``last`` of ``partition``."""
    return f"{folder(prefix, day, partition)}{first}_{last}.parquet"


def range_of(key: str) -> tuple[EntryId, EntryId] | None:
    """The id range a file's key names, or None when it is not a history file."""
    match = _NAME.match(key.rpartition("/")[2])
    if match is None:
        return None
    a, b, c, d = (int(g) for g in match.groups())
    return EntryId(a, b), EntryId(c, d)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


#: A JSON number, as the stream's ``x`` field writes one (``json.dumps`` of int or float).
_NUMBER = r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?$"
_QUALITY_NAMES = frozenset(q.value for q in Quality)


def _columns_fast(entries: Sequence[tuple[str, dict[str, str]]]) -> dict[str, Any] | None:
    """The columns built a column at a time, or None when any entry looks unusual.

    Every field is taken as text and converted by Arrow in one call per column; an entry
    of another version, with a field missing, an unknown quality or a time that is not a
    number sends the whole batch to :func:`_columns_decoded` (the live decoder, entry by
    entry), which keeps what decodes and counts the rest.
    """
    try:
        fields = [f for _, f in entries]
        if any(f["v"] != "1" for f in fields):
            return None
        quality = [f["q"] for f in fields]
        if not _QUALITY_NAMES.issuperset(quality):
            return None
        x = pa.array([f["x"] for f in fields], pa.string())
        ids = [i.partition("-") for i, _ in entries]
        numeric = pc.match_substring_regex(x, _NUMBER)
        return {
            "id_ms": pa.array([int(ms) for ms, _, _ in ids], pa.int64()),
            "id_seq": pa.array([int(seq) for _, _, seq in ids], pa.int64()),
            "machine": [f["m"] for f in fields],
            "name": [f["n"] for f in fields],
            "subject": [f.get("s", "") for f in fields],
            "quality": quality,
            "value_num": pc.if_else(
                numeric, pc.cast(pc.if_else(numeric, x, "0"), pa.float64()), None
            ),
            "x": x,
            "source_ts": pc.cast(pa.array([f["ts"] for f in fields], pa.string()), pa.float64()),
            "receive_ts": pc.cast(pa.array([f["rts"] for f in fields], pa.string()), pa.float64()),
            "a": [f.get("a") for f in fields],
        }
    except (KeyError, ValueError, pa.ArrowInvalid):
        return None


def _columns_decoded(
    entries: Sequence[tuple[str, dict[str, str]]],
) -> tuple[dict[str, Any], int]:
    """The columns from the live decoder, entry by entry; (columns, entries left out)."""
    good: list[tuple[str, dict[str, str], Signal]] = []
    bad = 0
    for entry_id, fields in entries:
        try:
            good.append((entry_id, fields, Signal.from_fields(fields)))
        except DecodeError:
            bad += 1
    ids = [entry_id.partition("-") for entry_id, _, _ in good]
    sigs = [sig for _, _, sig in good]
    cols: dict[str, list[Any]] = {
        "id_ms": [int(ms) for ms, _, _ in ids],
        "id_seq": [int(seq) for _, _, seq in ids],
        "machine": [sig.machine for sig in sigs],
        "name": [sig.name for sig in sigs],
        "subject": [sig.subject for sig in sigs],
        "quality": [sig.quality.value for sig in sigs],
        "value_num": [_number(sig.value) for sig in sigs],
        "x": [fields["x"] for _, fields, _ in good],
        "source_ts": [sig.source_ts for sig in sigs],
        "receive_ts": [sig.receive_ts for sig in sigs],
        "a": [fields.get("a") for _, fields, _ in good],
    }
    return cols, bad


def build(
    entries: Sequence[tuple[str, dict[str, str]]], compression: str
) -> tuple[bytes, int, int]:
    """A Parquet file of ``entries``: (its bytes, rows written, entries that did not decode).

    An entry that does not decode is left out and counted (the rules engine dead-letters
    it; history keeps what can be read).
    """
    cols = _columns_fast(entries)
    bad = 0
    if cols is None:
        cols, bad = _columns_decoded(entries)
    table = pa.Table.from_pydict(cols, schema=SCHEMA)
    sink = io.BytesIO()
    pq.write_table(
        table,
        sink,
        compression=None if compression == "none" else compression,
        use_dictionary=True,
    )
    return sink.getvalue(), table.num_rows, bad


def fields_of(row: dict[str, object]) -> dict[str, str]:
    """A history row back as the stream entry's fields (for ``Signal.from_fields``)."""
    fields = {
        "v": "1",
        "m": str(row["machine"]),
        "n": str(row["name"]),
        "x": str(row["x"]),
        "q": str(row["quality"]),
        "ts": repr(row["source_ts"]),
        "rts": repr(row["receive_ts"]),
    }
    if row["subject"]:
        fields["s"] = str(row["subject"])
    if row["a"] is not None:
        fields["a"] = str(row["a"])
    return fields
