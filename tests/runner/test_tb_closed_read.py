"""Step 6's read: closed-period balances through the real SQLite ODBC driver, in batches
by column, hold exactly the ledger's closed-period amounts as integer micros.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from runner.tb.source import OdbcAccountingSource
from sim.accounting.ledger import Ledger
from sim.accounting.odbc import AMOUNT_TYPES, AmountType
from tests.runner.conftest import Accounting

PCN = 123681


@pytest.mark.parametrize("amounts", AMOUNT_TYPES)
def test_balances_read_in_batches_through_odbc_are_the_ledgers_to_the_micro(
    amounts: AmountType, make_accounting: Callable[..., Accounting]
) -> None:
    """Five-decimal amounts, whichever type the view gives them (issue 21: typed REAL, 48
    of 583 rows came out a cent off)."""
    seeded = make_accounting(Ledger.seeded(sub_cent=True), amounts)
    ledger: Ledger = seeded.ledger
    assert any(d % 10_000 for d, _ in ledger.postings.values())  # sub-cent amounts
    closed = {p.period for p in ledger.periods_of(PCN) if p.closed}
    expected = {
        (account_no, period): (d, c)
        for (pcn, account_no, period), (d, c) in ledger.postings.items()
        if pcn == PCN and period in closed
    }
    source = OdbcAccountingSource(seeded.odbc)
    source.fetch_size = 7  # many batches, the last one short
    try:
        batches = list(source.balances(PCN, min(closed), max(closed)))
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


def test_balances_come_in_key_order_and_another_pcn_reads_nothing(
    seeded: Accounting,
) -> None:
    # Key order (period, account) is the warehouse's insert order; the PCN, written into
    # the query's text, still scopes it.
    ledger: Ledger = seeded.ledger
    closed = sorted(p.period for p in ledger.periods_of(PCN) if p.closed)
    source = OdbcAccountingSource(seeded.odbc)
    source.fetch_size = 5
    try:
        batches = source.balances(PCN, closed[0], closed[-1])
        first = next(batches)
        assert len(first.accounts) == 5
        assert first.periods == [closed[0]] * 5  # in key order, as the warehouse stores it
        assert list(source.balances(PCN + 1, closed[0], closed[-1])) == []
    finally:
        source.close()


def test_the_balances_query_takes_integers_only() -> None:
    from runner.tb.source import _BALANCES

    text = _BALANCES.format(pcn=123681, start=202301, end=202312)
    assert "?" not in text
    assert "plexus_customer_no = 123681 AND period BETWEEN 202301 AND 202312" in text
    with pytest.raises(ValueError, match="Unknown format code 'd'"):
        _BALANCES.format(pcn="123681 OR 1=1", start=202301, end=202312)
