"""The golden trial balance: a small ledger, the expected TB worked out by hand, to the cent.

The ledger is read the way production reads Plex: closed periods through a real ODBC
driver (unixODBC + Debian's SQLite ODBC driver, ``accounting_v_*`` views) and the open
period through SOAP data source 4814 of the simulated Plex, called by the real Plex
client. The expected numbers below are written out by hand from the postings; nothing
here computes them with the code under test. Each golden runs with the ODBC balance view
typed ``REAL`` (doubles), ``DECIMAL`` and text, as a real driver might send amounts; the
second golden has half-cent and five-decimal amounts and the rounding lines of
runner/README.md ("Money and rounding").

Calendar of PCN 123681: fiscal 2022 has 12 periods, 2023 has 13 (the adjustment period
202313), 2024 has 12. Closed through 202402; 202403 onwards open.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from core.db.schema import StepRun
from core.db.warehouse import TBOpenActivity, TBPeriodRange
from core.metrics import sample
from runner.tb.report import COLUMNS
from sim.accounting.chart import Account
from sim.accounting.ledger import Ledger
from sim.accounting.odbc import AMOUNT_TYPES, AmountType
from sim.accounting.periods import fiscal_calendar
from tests.runner.conftest import Accounting, Harness

PCN = 123681
CASH, AP, RE = "10000-000-0000", "20100-000-0000", "39000-000-0000"
SALES, MATERIAL, INSERTS = "40000-000-0000", "50000-000-0000", "52500-000-0000"


def golden_ledger() -> Ledger:
    def account(no: str, name: str, ctype: str, key: int, start: int = 0) -> Account:
        return Account(PCN, no, name, ctype, key, f"{ctype} cat", key, f"{ctype} sub", key, start)

    ledger = Ledger(
        accounts=[
            account(CASH, "Cash", "Asset", 1),
            account(AP, "Accounts Payable", "Liability", 2),
            account(RE, "Retained Earnings", "Equity", 3),
            account(SALES, "Sales", "Revenue", 4),
            account(MATERIAL, "Material", "Expense", 5),
            account(INSERTS, "Tooling - Inserts", "Expense", 6, start=202402),  # new
        ],
        periods=fiscal_calendar(PCN, 2022, 2024, thirteen=[2023], closed_through=202402),
    )
    post = ledger.post
    post(PCN, 202212, CASH, SALES, 100_00)
    post(PCN, 202212, SALES, RE, 100_00)  # 2022 closed in its last period, 202212
    post(PCN, 202301, CASH, SALES, 1000_00)
    post(PCN, 202301, MATERIAL, AP, 400_25)
    post(PCN, 202306, CASH, SALES, 500_50)
    post(PCN, 202311, AP, CASH, 400_25)
    post(PCN, 202311, MATERIAL, CASH, 120_10)
    post(PCN, 202312, CASH, SALES, 300_00)
    post(PCN, 202313, MATERIAL, AP, 50_00)  # year-end accrual in the adjustment period
    post(PCN, 202313, SALES, RE, 1800_50)  # closing: 1000.00 + 500.50 + 300.00
    post(PCN, 202313, RE, MATERIAL, 570_35)  # closing: 400.25 + 120.10 + 50.00
    post(PCN, 202401, CASH, SALES, 200_00)
    post(PCN, 202402, INSERTS, AP, 75_99)
    post(PCN, 202402, MATERIAL, CASH, 10_01)
    post(PCN, 202403, CASH, SALES, 1000_00)  # open period: only data source 4814 has it
    post(PCN, 202403, AP, CASH, 50_00)
    return ledger


# Periods in the order the report must list them: 202212 rolls to 202301, and after the
# adjustment period 202313 comes 202401.
PERIODS = [202212, *range(202301, 202314), *range(202401, 202404)]

# By hand: (current debit-credit, YTD debit-credit) in periods where something happened;
# in the other periods current is 0.00 and YTD carries over, except that a revenue or
# expense account's YTD restarts from its (zero) period amount at 202301 and 202401.
EXPECTED: dict[str, dict[int, tuple[str, str]]] = {
    CASH: {  # balance sheet: YTD never resets
        202212: ("100.00", "100.00"),
        202301: ("1000.00", "1100.00"),
        202306: ("500.50", "1600.50"),
        202311: ("-520.35", "1080.15"),
        202312: ("300.00", "1380.15"),
        202401: ("200.00", "1580.15"),
        202402: ("-10.01", "1570.14"),
        202403: ("950.00", "2520.14"),
    },
    AP: {
        202212: ("0.00", "0.00"),
        202301: ("-400.25", "-400.25"),
        202311: ("400.25", "0.00"),
        202313: ("-50.00", "-50.00"),
        202402: ("-75.99", "-125.99"),
        202403: ("50.00", "-75.99"),
    },
    RE: {
        202212: ("-100.00", "-100.00"),
        202313: ("-1230.15", "-1330.15"),
    },
    SALES: {  # revenue: YTD resets at 202301 and 202401
        202212: ("0.00", "0.00"),
        202301: ("-1000.00", "-1000.00"),
        202306: ("-500.50", "-1500.50"),
        202312: ("-300.00", "-1800.50"),
        202313: ("1800.50", "0.00"),
        202401: ("-200.00", "-200.00"),
        202403: ("-1000.00", "-1200.00"),
    },
    MATERIAL: {  # expense
        202212: ("0.00", "0.00"),
        202301: ("400.25", "400.25"),
        202311: ("120.10", "520.35"),
        202313: ("-520.35", "0.00"),
        202402: ("10.01", "10.01"),
    },
    INSERTS: {  # new in 202402: not in the trial balance before it existed
        202402: ("75.99", "75.99"),
    },
}
REVENUE_EXPENSE = {SALES, MATERIAL, INSERTS}


def expected_lines() -> dict[tuple[int, str], tuple[Decimal, Decimal]]:
    out = {}
    for account, events in EXPECTED.items():
        ytd = Decimal("0.00")
        for period in PERIODS:
            if account == INSERTS and period < 202402:
                continue
            if period in events:
                current, ytd_text = events[period]
                ytd = Decimal(ytd_text)
                out[(period, account)] = (Decimal(current), ytd)
            else:
                if period % 100 == 1 and account in REVENUE_EXPENSE:
                    ytd = Decimal("0.00")
                out[(period, account)] = (Decimal("0.00"), ytd)
    return out


@pytest.mark.parametrize("amounts", AMOUNT_TYPES)
def test_golden_trial_balance_through_odbc_and_4814(
    amounts: AmountType,
    make_accounting: Callable[..., Accounting],
    runner_config: Callable[..., object],
    make_runner: Callable[..., Harness],
) -> None:
    accounting = make_accounting(golden_ledger(), amounts)
    cfg = runner_config(accounting, runner={"tb": {"pcns": [PCN]}})
    harness = make_runner(cfg, clock=lambda: datetime(2024, 7, 7, 9, 30, tzinfo=UTC))

    done = harness.run_tb(202212, 202403)

    assert done.state == "completed", done.error
    assert done.name == "TB_202212_to_202403"
    assert done.result_path is not None
    xlsx = done.result_path
    assert xlsx.endswith("/TB-202212_to_202403_on_07-07_DM.xlsx")

    # The CSV has exact decimals: compare every line, in order.
    csv_path = xlsx[: -len(".xlsx")] + ".csv"
    with open(csv_path, newline="") as handle:
        rows = list(csv.reader(handle))
    assert tuple(rows[0]) == COLUMNS
    got = {(int(r[0].replace("-", "")), r[4]): (Decimal(r[6]), Decimal(r[7])) for r in rows[1:]}
    assert got == expected_lines()
    order = [(int(r[0].replace("-", "")), r[4]) for r in rows[1:]]
    assert order == sorted(order), "ordered by period, then account"
    assert [p for p in dict.fromkeys(k[0] for k in order)] == PERIODS
    cash_202402 = next(r for r in rows if r[0] == "2024-02" and r[4] == CASH)
    assert cash_202402[1:6] == ["Asset", "Asset cat", "Asset sub", CASH, "Cash"]

    # Debits equal credits in every period, current and year-to-date.
    for period in PERIODS:
        lines = [v for (p, _), v in got.items() if p == period]
        assert sum(c for c, _ in lines) == 0
        assert sum(y for _, y in lines) == 0

    # The workbook: a sheet for the PCN, the header bold, bordered and yellow.
    sheet = load_workbook(xlsx)[str(PCN)]
    header = [c.value for c in sheet[1]]
    assert tuple(header) == COLUMNS
    for cell in sheet[1]:
        assert cell.font.bold
        assert cell.fill.start_color.rgb.endswith("FFFF00")
        assert cell.border.top.style == "thin" and cell.border.bottom.style == "thin"
    xl = {(r[0].value, r[4].value): (r[6].value, r[7].value) for r in sheet.iter_rows(min_row=2)}
    assert round(Decimal(str(xl[("2024-03", CASH)][1])), 2) == Decimal("2520.14")
    assert len(xl) == len(got)

    # The open period came from data source 4814 (one call, 202403), whose ending balance
    # agrees with the trial balance's YTD.
    calls = [r for r in accounting.sim.requests() if r.data_source_key == 4814]
    assert len(calls) == 1
    with harness.sessions() as s:
        fetched = set(s.scalars(select(TBOpenActivity.period).where(TBOpenActivity.pcn == PCN)))
    assert fetched == {202403}
    summary = {
        r["Account_No"]: r["Ending_Balance"]
        for r in accounting.ledger.account_activity_summary([PCN], 202403, 202403)
    }
    assert summary[CASH] == "2520.14" and summary[SALES] == "-1200.00"

    # The script history: eleven steps completed, the first run started from 202201.
    with harness.sessions() as s:
        steps = s.scalars(select(StepRun).where(StepRun.request_id == done.id)).all()
        assert [x.status for x in steps] == ["completed"] * 11
        rng = s.get(TBPeriodRange, PCN)
        assert rng is not None
        assert (rng.calc_start, rng.anchor_period) == (202201, 0)
        assert (rng.end_closed, rng.start_open, rng.end_open) == (202402, 202403, 202403)
    assert (
        sample(harness.registry, "repsys_runner_runs_total", {"kind": "tb", "outcome": "completed"})
        == 1
    )


def test_rerun_recalculates_from_a_changed_closed_period(
    make_accounting: Callable[[Ledger], Accounting],
    runner_config: Callable[..., object],
    make_runner: Callable[..., Harness],
) -> None:
    """Step 5: stored balances serve as the anchor only while their Plex period is
    unchanged; a reopened-and-adjusted period moves the recalculation back to it."""
    ledger = golden_ledger()
    accounting = make_accounting(ledger)
    cfg = runner_config(accounting, runner={"tb": {"pcns": [PCN]}})
    harness = make_runner(cfg)
    assert harness.run_tb(202312, 202403).state == "completed"

    # Unchanged Plex: the second run starts at the requested period.
    second = harness.run_tb(202401, 202403)
    assert second.state == "completed", second.error
    with harness.sessions() as s:
        rng = s.get(TBPeriodRange, PCN)
        assert rng is not None and rng.calc_start == 202401

    # Plex adjusts closed period 202306 (10.00 of cash paid in on account) and stamps it.
    ledger.post(PCN, 202306, CASH, AP, 10_00)
    ledger.periods = [
        dataclasses.replace(p, updated=datetime(2024, 7, 1)) if p.period == 202306 else p
        for p in ledger.periods
    ]
    accounting.rebuild()
    third = harness.run_tb(202401, 202403)
    assert third.state == "completed", third.error
    with harness.sessions() as s:
        rng = s.get(TBPeriodRange, PCN)
        assert rng is not None and rng.calc_start == 202306
    with open(str(third.result_path)[:-5] + ".csv", newline="") as handle:
        rows = {(r[0], r[4]): (r[6], r[7]) for r in csv.reader(handle)}
    assert rows[("2024-03", CASH)] == ("950.00", "2530.14")  # 10.00 more since 202306
    assert rows[("2024-03", AP)] == ("50.00", "-85.99")
    assert rows[("2024-03", SALES)] == ("-1000.00", "-1200.00")  # untouched


def sub_cent_ledger() -> Ledger:
    """Half cents and five decimals; the README's worked example is its 202401."""

    def account(no: str, name: str, ctype: str, key: int) -> Account:
        return Account(PCN, no, name, ctype, key, f"{ctype} cat", key, f"{ctype} sub", key)

    ledger = Ledger(
        accounts=[
            account(CASH, "Cash", "Asset", 1),
            account(AP, "Accounts Payable", "Liability", 2),
            account(SALES, "Sales", "Revenue", 4),
            account(MATERIAL, "Material", "Expense", 5),
            account(INSERTS, "Tooling - Inserts", "Expense", 6),
        ],
        periods=fiscal_calendar(PCN, 2024, 2024, closed_through=202402),
    )
    post = ledger.post_micros
    post(PCN, 202401, CASH, SALES, 100_004_000)  # 100.004
    post(PCN, 202401, CASH, AP, 5_000)  # three half cents against one 0.015 credit
    post(PCN, 202401, MATERIAL, AP, 5_000)
    post(PCN, 202401, INSERTS, AP, 5_000)
    post(PCN, 202402, MATERIAL, CASH, 10_000_010)  # 10.00001
    post(PCN, 202402, CASH, SALES, 4_990)  # 0.00499
    post(PCN, 202403, CASH, SALES, 15_000)  # open: data source 4814 sends "0.015"
    post(PCN, 202403, AP, CASH, 5_000)
    post(PCN, 202403, MATERIAL, AP, 14_900)  # AP nets -0.0099: -0.01, though 0.01 - 0.01
    return ledger


# By hand, each figure the exact amount rounded half up; (current, YTD):
#   202401 exact: cash 100.009, AP -0.015, sales -100.004, material 0.005, inserts 0.005;
#          rounded 100.01 - 0.02 - 100.00 + 0.01 + 0.01 = 0.01, so the rounding line -0.01.
#   202402 exact: cash -9.99502 (YTD 90.01398), sales -0.00499 (YTD -100.00899),
#          material 10.00001 (YTD 10.00501): both columns foot without a rounding line.
#   202403 exact: cash 0.010 (YTD 90.02398), AP 0.005 - 0.0149 = -0.0099 (YTD -0.0249),
#          sales -0.015 (YTD -100.02399), material 0.0149 (YTD 10.01991): current
#          0.01 - 0.01 - 0.02 + 0.01 = -0.01, rounding 0.01; YTD 90.02 - 0.02 - 100.02
#          + 10.02 + 0.01 = 0.01, rounding -0.01.
SUB_CENT_EXPECTED = {
    (202401, CASH): ("100.01", "100.01"),
    (202401, AP): ("-0.02", "-0.02"),
    (202401, SALES): ("-100.00", "-100.00"),
    (202401, MATERIAL): ("0.01", "0.01"),
    (202401, INSERTS): ("0.01", "0.01"),
    (202401, "ROUNDING"): ("-0.01", "-0.01"),
    (202402, CASH): ("-10.00", "90.01"),
    (202402, AP): ("0.00", "-0.02"),
    (202402, SALES): ("0.00", "-100.01"),
    (202402, MATERIAL): ("10.00", "10.01"),
    (202402, INSERTS): ("0.00", "0.01"),
    (202403, CASH): ("0.01", "90.02"),
    (202403, AP): ("-0.01", "-0.02"),
    (202403, SALES): ("-0.02", "-100.02"),
    (202403, MATERIAL): ("0.01", "10.02"),
    (202403, INSERTS): ("0.00", "0.01"),
    (202403, "ROUNDING"): ("0.01", "-0.01"),
}


@pytest.mark.parametrize("amounts", AMOUNT_TYPES)
def test_golden_sub_cent_trial_balance_with_rounding_lines(
    amounts: AmountType,
    make_accounting: Callable[..., Accounting],
    runner_config: Callable[..., object],
    make_runner: Callable[..., Harness],
) -> None:
    """The ledger balances exactly, so the TB is produced (rounding each source row to
    cents first made 202401's debits 100.03 against credits 100.02 and refused it)."""
    accounting = make_accounting(sub_cent_ledger(), amounts)
    cfg = runner_config(accounting, runner={"tb": {"pcns": [PCN]}})
    harness = make_runner(cfg, clock=lambda: datetime(2024, 4, 2, 9, 30, tzinfo=UTC))

    done = harness.run_tb(202401, 202403)

    assert done.state == "completed", done.error
    with open(str(done.result_path)[: -len(".xlsx")] + ".csv", newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    assert [(int(r[0].replace("-", "")), r[4]) for r in rows] == list(SUB_CENT_EXPECTED)
    got = {(int(r[0].replace("-", "")), r[4]): (r[6], r[7]) for r in rows}
    assert got == SUB_CENT_EXPECTED
    rounding = next(r for r in rows if r[0] == "2024-01" and r[4] == "ROUNDING")
    assert rounding[1:6] == ["", "", "", "ROUNDING", "Rounding difference (cents)"]
