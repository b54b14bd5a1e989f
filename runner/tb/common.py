"""What the trial balance steps share: the request's PCNs, sources, calendar, ranges, loads."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import islice
from typing import Any

from sqlalchemy import Dialect, Table, insert, literal, select
from sqlalchemy.orm import Session

from core.db.warehouse import TBPeriod, TBPeriodRange
from runner.errors import StepFailed
from runner.steps import StepContext
from runner.tb.fiscal import CalendarPeriod, FiscalCalendar
from runner.tb.source import AccountingSource, TbSources

#: Rows per INSERT batch: large enough to amortize round trips, small enough for memory.
BATCH = 10_000


def request_pcns(ctx: StepContext) -> list[int]:
    pcns = [int(p) for p in ctx.params.get("pcns") or []]
    if not pcns:
        raise StepFailed("the request names no PCN")
    return pcns


class SourcedStep:
    """A trial-balance step that reads Plex: its :class:`TbSources` come in through the
    constructor (``runner/registry.py`` passes the configured ones)."""

    name: str

    def __init__(self, sources: TbSources | None = None) -> None:
        self.sources = sources if sources is not None else TbSources()


@contextmanager
def accounting(sources: TbSources) -> Iterator[AccountingSource]:
    """Open Plex's ODBC source for the step; closed when the step is done with it."""
    if sources.accounting is None:
        raise StepFailed("no ODBC source is configured (runner.tb.odbc.connection_string)")
    source = sources.accounting()
    try:
        yield source
    finally:
        source.close()


def calendar(session: Session, pcn: int) -> FiscalCalendar:
    """The PCN's calendar as step 3 loaded it (ordinal 1)."""
    rows = session.scalars(select(TBPeriod).where(TBPeriod.pcn == pcn, TBPeriod.ordinal == 1)).all()
    if not rows:
        raise StepFailed(f"the fiscal calendar of PCN {pcn} is not loaded (step periods)")
    return FiscalCalendar(
        pcn,
        (
            CalendarPeriod(
                r.period, r.period_display, r.closed, r.begin_date, r.end_date, r.update_date
            )
            for r in rows
        ),
    )


def period_range(session: Session, ctx: StepContext, pcn: int) -> TBPeriodRange:
    """The ranges step 4 stored for this request and PCN."""
    row = session.get(TBPeriodRange, pcn)
    if row is None or row.request_id != ctx.request.id:
        raise StepFailed(
            f"the period ranges of PCN {pcn} are not this request's (step period_ranges)"
        )
    return row


def split_windows(
    cal: FiscalCalendar, calc_start: int, end: int
) -> tuple[int | None, int | None, int | None, int | None]:
    """(start_closed, end_closed, start_open, end_open) of ``calc_start..end``.

    The closed window runs up to the period before the first open one; from there on is
    the open window (a closed period inside it is read from the closed balances).
    """
    periods = cal.between(calc_start, end)
    first_open = next((p for p in periods if not cal[p].closed), None)
    if first_open is None:
        return periods[0], periods[-1], None, None
    if first_open == periods[0]:
        return None, None, first_open, periods[-1]
    return periods[0], cal.previous(first_open), first_open, periods[-1]


def bulk_insert(session: Session, table: Table | Any, rows: Iterable[dict[str, Any]]) -> int:
    """Insert ``rows`` in batches; returns how many."""
    total = 0
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= BATCH:
            session.execute(insert(table), batch)
            total += len(batch)
            batch = []
    if batch:
        session.execute(insert(table), batch)
        total += len(batch)
    return total


def placeholders(session: Session, count: int) -> str:
    """``?, ?, ?`` or ``%s, %s, %s``: positional markers in the driver's paramstyle."""
    style = session.get_bind().dialect.paramstyle
    mark = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(style)
    if mark is None:  # numeric / named drivers: none of the supported targets today
        raise StepFailed(f"the warehouse driver's paramstyle {style!r} is not supported")
    return ", ".join([mark] * count)


def fast_insert(
    session: Session,
    table: Any,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    constants: Mapping[str, int | str] | None = None,
    differences: Mapping[str, tuple[str, str]] | None = None,
) -> int:
    """Insert plain tuples with the driver's executemany, in batches: the path of the big
    tables (a million rows), where building a dict per row would cost more than the load.

    Values must be what the driver takes as is (ints, strings, booleans). Binding a value
    is a good part of a row's cost, so what need not be bound is not:

    - ``constants``: columns with one value for every row (the PCN, the fence, a step 8
      period's own columns) go into the statement as literals, rendered by the dialect.
    - ``differences``: ``column -> (minuend, subtrahend)``, two of ``columns``; SQLite
      computes them from the row's bound values (numbered parameters, ``?2 - ?3``); other
      drivers are sent the difference computed here.

    On SQLite a step 8 row binds 5 values instead of 13, which took the load of a million
    rows from about 6-7 s to 4 s on the benchmark machine.
    """
    name = table.__table__.name if hasattr(table, "__table__") else table.name
    constants = constants or {}
    differences = differences or {}
    dialect = session.get_bind().dialect
    numbered = dialect.name == "sqlite"
    position = {c: i for i, c in enumerate(columns)}
    pairs = [(position[a], position[b]) for a, b in differences.values()]
    if numbered:
        values = [f"?{i + 1}" for i in range(len(columns))]
        values.extend(f"?{a + 1} - ?{b + 1}" for a, b in pairs)
    else:
        values = [placeholders(session, 1)] * (len(columns) + len(pairs))
        if pairs:
            rows = _with_differences(rows, pairs)
    values.extend(_literal(dialect, v) for v in constants.values())
    names = [*columns, *differences, *constants]
    sql = (
        f"INSERT INTO {name} ({', '.join(names)}) "  # noqa: S608 - names from our own models
        f"VALUES ({', '.join(values)})"
    )
    connection = session.connection()
    if numbered:
        # SQLite: one executemany straight over the rows, on the driver's cursor in the
        # session's transaction. Nothing is gained by batches (no round trips), and not
        # copying each batch into a list saves about 6 % of a million-row load; the
        # driver drops each row after binding it, so zip can reuse its tuple.
        cursor = connection.connection.cursor()
        try:
            # The DB-API stub asks for a Sequence; sqlite3 takes any iterable of rows.
            cursor.executemany(sql, rows)  # type: ignore[arg-type]
            return int(cursor.rowcount)
        finally:
            cursor.close()
    total = 0
    iterator = iter(rows)
    while batch := list(islice(iterator, BATCH)):
        connection.exec_driver_sql(sql, batch)
        total += len(batch)
    return total


def _with_differences(
    rows: Iterable[Sequence[Any]], pairs: list[tuple[int, int]]
) -> Iterator[tuple[Any, ...]]:
    for row in rows:
        yield (*row, *(row[a] - row[b] for a, b in pairs))


def _literal(dialect: Dialect, value: int | str) -> str:
    """``value`` as a SQL literal of ``dialect`` (strings quoted and escaped by it)."""
    if not isinstance(value, int | str):  # bool is an int
        raise TypeError(f"a constant column takes an int or a str, not {type(value).__name__}")
    return str(literal(value).compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def describe(pcns: Sequence[int]) -> str:
    return "PCN " + ", ".join(map(str, pcns))
