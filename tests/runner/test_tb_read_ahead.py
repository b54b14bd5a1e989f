"""Step 6's read: a year of periods a query, read ahead of the load on a helper thread.

The helper (:func:`runner.tb.prefetch.prefetched`) must hand over every batch in order,
raise the source's error where the load is, and stop and join its thread when the load
gives up, closing the source's cursor on the thread that used it. The year slices must
cover exactly the requested periods, and the batches read through the real SQLite ODBC
driver must hold exactly the ledger's closed-period amounts.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from runner.errors import SourceError
from runner.tb.extract import year_slices
from runner.tb.prefetch import prefetched
from runner.tb.source import OdbcAccountingSource
from sim.accounting.ledger import Ledger
from tests.runner.conftest import Accounting

PCN = 123681


def test_every_item_arrives_in_order_from_another_thread() -> None:
    producers: set[str] = set()

    def source() -> Iterator[int]:
        for i in range(50):
            producers.add(threading.current_thread().name)
            yield i

    with prefetched(source(), depth=3) as items:
        assert list(items) == list(range(50))
    assert producers == {"tb-prefetch"}


def test_the_sources_error_is_raised_where_the_load_is() -> None:
    def source() -> Iterator[int]:
        yield 1
        raise SourceError("ODBC read failed: the link dropped", reason="odbc")

    got: list[int] = []
    with pytest.raises(SourceError) as err, prefetched(source()) as items:
        got.extend(items)
    assert got == [1]
    assert str(err.value) == "ODBC read failed: the link dropped"
    assert err.value.reason == "odbc"


def test_a_load_that_gives_up_stops_the_reader_and_closes_its_source() -> None:
    closed_on: list[str] = []
    produced: list[int] = []

    def source() -> Iterator[int]:
        try:
            for i in range(10_000):
                produced.append(i)
                yield i
        finally:
            closed_on.append(threading.current_thread().name)

    with pytest.raises(RuntimeError, match="insert failed"), prefetched(source(), depth=2) as it:
        for item in it:
            if item == 3:
                raise RuntimeError("insert failed")
    # Joined on the way out: the reader is gone, closed where it ran, and it stopped
    # within the queue's depth of where the load gave up (not at the end of the source).
    assert not [t for t in threading.enumerate() if t.name == "tb-prefetch"]
    assert closed_on == ["tb-prefetch"]
    assert len(produced) <= 3 + 1 + 2 + 1


def test_year_slices_cover_exactly_the_requested_periods() -> None:
    assert year_slices(202211, 202402) == [(202211, 202299), (202300, 202399), (202400, 202402)]
    assert year_slices(202401, 202413) == [(202401, 202413)]
    for start, end in [(200901, 202406), (202312, 202401), (202413, 202501)]:
        covered = [p for low, high in year_slices(start, end) for p in range(low, high + 1)]
        assert covered == list(range(start, end + 1))


def test_balances_read_in_batches_through_odbc_are_the_ledgers_to_the_cent(
    seeded: Accounting,
) -> None:
    ledger: Ledger = seeded.ledger
    closed = {p.period for p in ledger.periods_of(PCN) if p.closed}
    expected = {
        (account_no, period): (d, c)
        for (pcn, account_no, period), (d, c) in ledger.postings.items()
        if pcn == PCN and period in closed
    }
    source = OdbcAccountingSource(seeded.odbc)
    source.fetch_size = 7  # many batches, the last one short
    try:
        batches = [
            b
            for low, high in year_slices(min(closed), max(closed))
            for b in source.balances(PCN, low, high)
        ]
    finally:
        source.close()
    assert len(batches) > 3
    assert all(len(b.accounts) <= 7 for b in batches)
    got = {
        (a, p): (d, c)
        for b in batches
        for a, p, d, c in zip(b.accounts, b.periods, b.debits, b.credits, strict=True)
    }
    assert got == expected
    assert all(type(v) is int for b in batches for v in (*b.periods, *b.debits, *b.credits))
