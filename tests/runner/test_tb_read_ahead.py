"""Steps 6 and 8 read a year of periods at a time, ahead of the load on a helper thread.

The helper (:func:`runner.tb.prefetch.prefetched`) must hand over every batch in order,
raise the source's error where the load is, and stop and join its thread when the load
gives up, closing the source's cursor on the thread that used it. The year slices must
cover exactly the requested periods, and the batches read through the real SQLite ODBC
driver must hold exactly the ledger's closed-period amounts; and step 8's walk a year at a
time must give exactly the numbers of one walk over the whole window.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pytest

from runner.errors import SourceError
from runner.tb.extract import year_slices
from runner.tb.prefetch import prefetched
from runner.tb.source import OdbcAccountingSource
from runner.tb.transform import Window, recreate
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


def test_recreating_a_year_at_a_time_equals_the_whole_window() -> None:
    """Step 8 walks a year of periods at a time, each from the previous year's last YTD:
    the same numbers as one walk over the whole window (period 13, resets, anchor)."""
    periods = [202211, 202212, *range(202301, 202314), 202401, 202402, 202403]
    accounts = ["a", "b", "c", "d"]
    whole = Window.empty(accounts, periods, [p % 100 == 1 for p in periods])
    rng = np.random.default_rng(7)
    whole.debit[:] = rng.integers(0, 10**9, size=whole.debit.shape)
    whole.credit[:] = rng.integers(0, 10**9, size=whole.credit.shape)
    # b is revenue/expense throughout, c only from 2024 (its category changed), d never.
    whole.revenue_or_expense[1, :] = True
    whole.revenue_or_expense[2, [j for j, p in enumerate(periods) if p >= 202401]] = True
    whole.anchor_ytd_debit[:] = [5, 6, 7, 8]
    whole.anchor_ytd_credit[:] = [1, 2, 3, 4]
    expected = recreate(whole)

    assert whole.year_parts() == [(0, 2), (2, 15), (15, 18)]
    ytd_debit, ytd_credit = whole.anchor_ytd_debit, whole.anchor_ytd_credit
    got_debit, got_credit = [], []
    for lo, hi in whole.year_parts():
        part = whole.part(lo, hi)
        assert not part.debit.any()  # a part comes without amounts: fill adds them
        part.debit[:], part.credit[:] = whole.debit[:, lo:hi], whole.credit[:, lo:hi]
        part.anchor_ytd_debit, part.anchor_ytd_credit = ytd_debit, ytd_credit
        out = recreate(part)
        ytd_debit, ytd_credit = out.ytd_debit[:, -1], out.ytd_credit[:, -1]
        got_debit.append(out.ytd_debit)
        got_credit.append(out.ytd_credit)
    assert np.array_equal(np.hstack(got_debit), expected.ytd_debit)
    assert np.array_equal(np.hstack(got_credit), expected.ytd_credit)
    # The reset happened where it should: b's 2023 YTD starts again at 202301.
    assert expected.ytd_debit[1, 2] == whole.debit[1, 2]
