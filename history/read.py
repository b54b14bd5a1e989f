"""Reading the signal history with DuckDB: replays (per partition, in stream order) and SQL.

DuckDB reads the Parquet files in place when the store is a local folder. From S3 or
Azure the files of the requested window are first copied (streamed) into a temporary
folder, then read the same way: DuckDB's own httpfs/azure extensions are downloaded at
run time, which a plant's locked-down pods cannot do.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb

from core.config import RepsysConfig
from core.model import DecodeError, Signal
from core.sources import HistoryReadError
from core.storage import StorageError, Store, open_store
from history import files

#: The view's columns when the window holds no file (the files' schema, ``files.py``).
EMPTY_COLUMNS = (
    "NULL::BIGINT AS id_ms, NULL::BIGINT AS id_seq, NULL::VARCHAR AS machine, "
    "NULL::VARCHAR AS name, NULL::VARCHAR AS subject, NULL::VARCHAR AS quality, "
    "NULL::DOUBLE AS value_num, NULL::VARCHAR AS x, NULL::DOUBLE AS source_ts, "
    "NULL::DOUBLE AS receive_ts, NULL::VARCHAR AS a, NULL::DATE AS date, "
    "NULL::BIGINT AS partition"
)
#: The view every query sees: one row per stored signal, with its plant date and partition.
VIEW = "signals"


def days(start: date, end: date) -> list[date]:
    """Every plant date from ``start`` to ``end``, both included."""
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


def history_keys(store: Store, prefix: str, start: date, end: date, partition: int) -> list[str]:
    """The files of one partition over the window, in id order."""
    out: list[tuple[files.EntryId, str]] = []
    for day in days(start, end):
        for obj in store.list(files.folder(prefix, day, partition)):
            span = files.range_of(obj.key)
            if span is not None:
                out.append((span[0], obj.key))
    return [key for _, key in sorted(out)]


@contextlib.contextmanager
def local_files(store: Store, keys: list[str]) -> Iterator[list[str]]:
    """Paths DuckDB can open for ``keys``: in place (local store) or copied to a temp folder."""
    if store.local_root is not None:
        yield [str(store.local_root / key) for key in keys]
        return
    with tempfile.TemporaryDirectory(prefix="repsys-history-") as tmp:
        paths = []
        for key in keys:
            # The key's folders (date=…/partition=…) are kept: they are the hive columns.
            path = Path(tmp) / key
            path.parent.mkdir(parents=True, exist_ok=True)
            store.download(key, path)
            paths.append(str(path))
        yield paths


def _where(machines: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
    if not machines:
        return "", {}
    return " WHERE list_contains($machines, machine::VARCHAR)", {"machines": list(machines)}


def rows(
    paths: list[str], machines: tuple[str, ...] = (), batch: int = 65_536
) -> Iterator[dict[str, Any]]:
    """The rows of ``paths`` in stream-id order, as dicts (``files.fields_of`` turns one
    back into the entry's fields)."""
    if not paths:
        return
    where, params = _where(machines)
    con = duckdb.connect()
    try:
        reader = con.sql(
            "SELECT machine, name, subject, quality, x, source_ts, receive_ts, a "  # noqa: S608 - placeholders only
            f"FROM read_parquet($paths){where} ORDER BY id_ms, id_seq",
            params={"paths": paths, **params},
        ).to_arrow_reader(batch)
        assert reader is not None  # a SELECT always has a result
        for record in reader:
            cols = record.to_pydict()
            names = list(cols)
            for values in zip(*cols.values(), strict=True):
                yield dict(zip(names, values, strict=True))
    finally:
        con.close()


@dataclass(frozen=True)
class HistorySource:
    """The signal history as a :class:`core.sources.SignalSource` (it pickles: config and
    window only; the store and DuckDB are opened where :meth:`read` runs)."""

    cfg: RepsysConfig
    start: date
    end: date
    machines: tuple[str, ...] = ()

    def _store(self) -> Store:
        return open_store(self.cfg.storage, default_root=self.cfg.runner.output_dir)

    def partitions(self) -> list[int]:
        store = self._store()
        found = set()
        for p in range(self.cfg.streams.partitions):
            if history_keys(store, self.cfg.history.prefix, self.start, self.end, p):
                found.add(p)
        return sorted(found)

    def read(self, partition: int) -> Iterator[Signal | DecodeError]:
        store = self._store()
        keys = history_keys(store, self.cfg.history.prefix, self.start, self.end, partition)
        with local_files(store, keys) as paths:
            for row in rows(paths, self.machines):
                try:
                    yield Signal.from_fields(files.fields_of(row))
                except DecodeError as exc:
                    yield exc


def query(
    cfg: RepsysConfig, sql: str, start: date, end: date
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run ``sql`` over the view ``signals`` (every partition, the window's plant dates).

    The view adds ``date`` and ``partition`` to the file columns. Returns column names and
    rows.
    """
    store = open_store(cfg.storage, default_root=cfg.runner.output_dir)
    keys = [
        key
        for p in range(cfg.streams.partitions)
        for key in history_keys(store, cfg.history.prefix, start, end, p)
    ]
    con = duckdb.connect()
    try:
        with local_files(store, keys) as paths:
            if paths:
                # A view cannot take parameters: the list is written as literals (paths
                # are ours, quotes doubled all the same).
                listed = ", ".join("'" + path.replace("'", "''") + "'" for path in paths)
                con.execute(
                    f"CREATE VIEW {VIEW} AS SELECT * FROM "  # noqa: S608 - see above
                    f"read_parquet([{listed}], hive_partitioning=true)"
                )
            else:
                # No file in the window: the same columns, no row (a query naming any
                # column still binds and answers nothing).
                con.execute(f"CREATE VIEW {VIEW} AS SELECT {EMPTY_COLUMNS} WHERE false")
            cursor = con.execute(sql)
            names = [d[0] for d in cursor.description or []]
            return names, cursor.fetchall()
    finally:
        con.close()


@dataclass(frozen=True)
class HistoryArchive:
    """The history as a :class:`core.sources.SignalArchive`: what a report reads when the
    capped stream no longer reaches back to the start of its window."""

    cfg: RepsysConfig

    def __call__(
        self, partition: int, start_ms: int, end_ms: int
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        zone = ZoneInfo(self.cfg.plant.timezone)
        first = files.plant_date(files.EntryId(start_ms, 0), zone)
        last = files.plant_date(files.EntryId(max(end_ms - 1, start_ms), 0), zone)
        store = open_store(self.cfg.storage, default_root=self.cfg.runner.output_dir)
        keys = history_keys(store, self.cfg.history.prefix, first, last, partition)
        if not keys:
            return
        with local_files(store, keys) as paths:
            con = duckdb.connect()
            try:
                reader = con.sql(
                    "SELECT id_ms, id_seq, machine, name, subject, quality, x, source_ts, "
                    "receive_ts, a FROM read_parquet($paths) "
                    "WHERE id_ms >= $start AND id_ms < $end ORDER BY id_ms, id_seq",
                    params={"paths": paths, "start": start_ms, "end": end_ms},
                ).to_arrow_reader(65_536)
                assert reader is not None  # a SELECT always has a result
                for record in reader:
                    for row in record.to_pylist():
                        yield f"{row['id_ms']}-{row['id_seq']}", files.fields_of(row)
            finally:
                con.close()


@dataclass(frozen=True)
class HistorySeries:
    """The history as a :class:`core.sources.SeriesArchive`: a machine page's chart over
    a window longer than the streams hold. The filter runs in DuckDB (one machine, a few
    signal names), so only the chart's own rows leave the files."""

    cfg: RepsysConfig

    def __call__(
        self, partition: int, machine: str, names: tuple[str, ...], start_ms: int, end_ms: int
    ) -> dict[str, list[tuple[float, float]]]:
        zone = ZoneInfo(self.cfg.plant.timezone)
        first = files.plant_date(files.EntryId(start_ms, 0), zone)
        last = files.plant_date(files.EntryId(max(end_ms - 1, start_ms), 0), zone)
        out: dict[str, list[tuple[float, float]]] = {}
        try:
            store = open_store(self.cfg.storage, default_root=self.cfg.runner.output_dir)
            keys = history_keys(store, self.cfg.history.prefix, first, last, partition)
            if not keys:
                return out
            with local_files(store, keys) as paths:
                con = duckdb.connect()
                try:
                    rows = con.execute(
                        "SELECT name::VARCHAR, source_ts, value_num FROM read_parquet($paths) "
                        "WHERE machine = $machine AND list_contains($names, name::VARCHAR) "
                        "AND subject = '' AND value_num IS NOT NULL AND isfinite(value_num) "
                        "AND id_ms >= $start AND id_ms < $end ORDER BY id_ms, id_seq",
                        {"paths": paths, "machine": machine, "names": list(names),
                         "start": start_ms, "end": end_ms},
                    ).fetchall()  # fmt: skip
                finally:
                    con.close()
        except (StorageError, duckdb.Error) as exc:
            raise HistoryReadError(f"the signal history could not be read: {exc}") from exc
        for name, ts, value in rows:
            out.setdefault(name, []).append((ts, value))
        return out
