"""Trial balance parts on their own: the fiscal calendar rules, the YTD walk, amounts,
data source 4814 through the constructor seam, and a July-to-June fiscal year end to end."""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from core.config import RepsysConfig
from core.db.schema import ReportRequestRow
from core.db.warehouse import TBPeriod
from plex.errors import PlexDataSourceError
from runner.errors import SourceError, StepFailed
from runner.requests import submit
from runner.tb.fiscal import CalendarPeriod, FiscalCalendar
from runner.tb.money import cents, fmt_micros, micros_column, to_micros
from runner.tb.source import OdbcAccountingSource
from runner.tb.transform import Window, recreate
from sim.accounting.ledger import Ledger
from sim.accounting.periods import fiscal_calendar
from tests.runner.conftest import Accounting, Harness


def calendar(thirteen: tuple[int, ...] = (2023,), start_month: int = 1) -> FiscalCalendar:
    periods = fiscal_calendar(
        1, 2022, 2024, thirteen=thirteen, fiscal_start_month=start_month, closed_through=202402
    )
    return FiscalCalendar(
        1, (CalendarPeriod(p.period, p.display, p.closed, p.begin, p.end) for p in periods)
    )


def test_roll_over_anchor_and_windows() -> None:
    cal = calendar()
    assert cal.next(202211) == 202212
    assert cal.next(202212) == 202301  # 2022 has twelve periods
    assert cal.next(202312) == 202313  # 2023 has an adjustment period
    assert cal.next(202313) == 202401
    assert cal.previous(202401) == 202313  # the anchor of a January start
    assert cal.previous(202301) == 202212
    assert cal.previous(202201) == 0  # before the first period
    assert cal.between(202311, 202402) == [202311, 202312, 202313, 202401, 202402]
    with pytest.raises(StepFailed) as err:
        cal.between(202412, 202413)
    assert str(err.value) == (
        "period 202413 is not in the fiscal calendar of PCN 1 (fiscal 2024 has periods 01 to 12)"
    )
    # The latest window: 13 closed periods, then the open ones up to today's.
    assert cal.latest_window(13, date(2024, 4, 15)) == (202303, 202404)
    assert cal.latest_window(3, date(2030, 1, 1)) == (202313, 202412)


def test_a_july_fiscal_year_is_numbered_from_july() -> None:
    cal = calendar(thirteen=(), start_month=7)
    assert (cal[202401].begin, cal[202401].end) == (date(2023, 7, 1), date(2023, 7, 31))
    assert cal[202412].end == date(2024, 6, 30)
    assert cal.period_at(date(2024, 1, 15)) == 202407
    assert cal.next(202412) == 202501


def window(first: list[bool], rev: bool, debit: list[int], anchor: int = 0) -> Window:
    w = Window.empty(["a"], list(range(len(first))), first)
    w.revenue_or_expense[0, :] = rev
    w.debit[0, :] = debit
    w.anchor_ytd_debit[0] = anchor
    return w


def test_ytd_resets_only_revenue_and_expense_at_the_first_fiscal_period() -> None:
    first = [False, True, False]
    bs = recreate(window(first, False, [10, 20, 30], anchor=100))
    pl = recreate(window(first, True, [10, 20, 30], anchor=100))
    assert bs.ytd_debit.tolist() == [[110, 130, 160]]
    assert pl.ytd_debit.tolist() == [[110, 20, 50]]
    assert pl.ytd_credit.tolist() == [[0, 0, 0]]
    assert pl.ytd_debit.dtype == np.int64


def test_amounts_become_micros_exactly_and_cents_round_half_up() -> None:
    # Beyond the sixth decimal: half up at the sixth, then cents from the micros.
    assert to_micros(Decimal("6353429.89999998")) == 6_353_429_900_000
    assert cents(to_micros(Decimal("6353429.89999998"))) == 635342990
    assert to_micros(1234.56) == 1_234_560_000
    # A float goes through its shortest repr: 0.005 and 1.005 are not below the half cent
    # they print as (1.005 * 100 is 100.49999999999999 in binary).
    assert [cents(to_micros(v)) for v in (0.005, 1.005, 2.675, -0.005)] == [1, 101, 268, -1]
    assert micros_column([0.005, 1.005, 2.675, -0.005]) == [5_000, 1_005_000, 2_675_000, -5_000]
    assert to_micros("-0.005") == -5_000 and cents(-5_000) == -1  # half up, away from zero
    assert cents(4_999) == 0 and cents(-4_999) == 0 and cents(15_000) == 2
    assert to_micros(None) == 0 and to_micros(7) == 7_000_000 and to_micros("") == 0
    assert fmt_micros(-1_234_550_000) == "-1,234.55" and fmt_micros(10) == "0.00001"
    for bad in ("12,00", "NaN", float("inf"), True):
        with pytest.raises(SourceError) as err:
            to_micros(bad)
        assert str(err.value) == f"amount {bad!r} is not a number"
        assert err.value.reason == "bad_amount"


#: Amounts as Plex keeps them (five decimals), up to ten billion: 15 significant digits,
#: so the double a REAL column holds prints back as the same decimal.
plex_amounts = st.decimals(
    min_value=Decimal("-9999999999.99999"),
    max_value=Decimal("9999999999.99999"),
    places=5,
    allow_nan=False,
    allow_infinity=False,
)


@given(st.lists(plex_amounts, min_size=1, max_size=50))
def test_an_amount_is_the_same_micros_as_decimal_float_text_or_int(
    values: list[Decimal],
) -> None:
    exact = [int(v * 1_000_000) for v in values]  # five places: exact in micros
    assert [to_micros(v) for v in values] == exact
    assert [to_micros(str(v)) for v in values] == exact
    assert [to_micros(float(v)) for v in values] == exact
    assert micros_column([float(v) for v in values]) == exact  # the vectorized path
    whole = [int(v) for v in values]
    assert [to_micros(w) for w in whole] == [w * 1_000_000 for w in whole]


@given(st.lists(st.floats(min_value=-1e12, max_value=1e12), min_size=1, max_size=50))
def test_the_vectorized_float_path_equals_the_repr_rule(values: list[float]) -> None:
    """Any double, not only ones printed from five decimals: ``micros_column`` takes its
    fast path only where it gives what ``repr`` then half up at the sixth decimal gives."""
    reference = [
        int(Decimal(repr(v)).quantize(Decimal("0.000001"), ROUND_HALF_UP).scaleb(6)) for v in values
    ]
    assert micros_column(values) == reference


@given(st.integers(-(10**15), 10**15))
def test_cents_are_micros_rounded_half_up_away_from_zero(micros: int) -> None:
    reference = (Decimal(micros) / 1_000_000).quantize(Decimal("0.01"), ROUND_HALF_UP)
    assert Decimal(cents(micros)).scaleb(-2) == reference


def test_a_missing_odbc_driver_is_a_clear_source_error() -> None:
    with pytest.raises(SourceError) as err:
        OdbcAccountingSource("Driver=/nonexistent/libodbc.so;Database=/tmp/x.db")
    assert str(err.value).startswith("cannot open the ODBC source: ")
    assert err.value.reason == "odbc"


@dataclass
class FakeResult:
    rows: list[dict[str, str]]


class FakeDataSource:
    """Data source 4814 through the seam: answers given by the test."""

    def __init__(self, answer: Callable[[Mapping[str, str]], list[dict[str, str]]]) -> None:
        self.answer = answer
        self.calls: list[dict[str, str]] = []

    def execute_data_source(self, key: int, params: Mapping[str, str]) -> FakeResult:
        self.calls.append(dict(params))
        return FakeResult(self.answer(params))

    def close(self) -> None:
        pass


def refuse(params: Mapping[str, str]) -> list[dict[str, str]]:
    raise PlexDataSourceError("data source 4814 failed: ErrorNo 5")


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (
            lambda p: [{"Account_No": "1", "Debit": "2"}],
            "step 'open_activity' failed: data source 4814 returned 2 columns, expected 7",
        ),
        (
            refuse,
            "step 'open_activity' failed: data source 4814 for 202405: data source 4814 failed: "
            "ErrorNo 5",
        ),
    ],
)
def test_data_source_4814_failures_fail_the_step(
    seeded: Accounting,
    runner_config: Callable[..., RepsysConfig],
    make_runner: Callable[..., Harness],
    answer: Callable[..., list[dict[str, str]]],
    error: str,
) -> None:
    fake = FakeDataSource(answer)
    harness = make_runner(runner_config(seeded), data_source=lambda: fake)
    row = submit(
        harness.sessions,
        harness.redis,
        harness.cfg,
        kind="tb",
        params={"start": 202404, "end": 202406, "pcns": [123681]},
        requester="dan",
    )
    assert harness.burst() == 1
    with harness.sessions() as s:
        done = s.get(ReportRequestRow, row.id)
        assert done is not None
    assert (done.state, done.error) == ("failed", error)
    assert fake.calls[0] == {"@PCNs": "123681", "@Period_Start": "202405", "@Period_End": "202405"}


def test_open_periods_are_fetched_one_at_a_time_across_the_year_end(
    seeded: Accounting,
    runner_config: Callable[..., RepsysConfig],
    make_runner: Callable[..., Harness],
) -> None:
    """Through the seam, with the seeded ledger's answers: 202405..202412 are open, and a
    latest-window TB walks them period by period."""
    fake = FakeDataSource(
        lambda p: seeded.ledger.account_activity_summary(
            [int(p["@PCNs"])], int(p["@Period_Start"]), int(p["@Period_End"])
        )
    )
    harness = make_runner(
        runner_config(seeded),
        data_source=lambda: fake,
        clock=lambda: datetime(2030, 1, 1, tzinfo=UTC),
    )
    row = submit(
        harness.sessions,
        harness.redis,
        harness.cfg,
        kind="tb",
        params={"pcns": [300758]},
        requester="dan",
    )
    assert harness.burst() == 1
    with harness.sessions() as s:
        done = s.get(ReportRequestRow, row.id)
        assert done is not None and done.state == "completed", done and done.error
    assert [c["@Period_Start"] for c in fake.calls] == [str(p) for p in range(202405, 202413)]


def test_a_july_to_june_fiscal_year_end_to_end(
    make_accounting: Callable[[Ledger], Accounting],
    runner_config: Callable[..., RepsysConfig],
    make_runner: Callable[..., Harness],
) -> None:
    accounting = make_accounting(Ledger.seeded(fiscal_start_month=7))
    harness = make_runner(runner_config(accounting))
    row = submit(
        harness.sessions,
        harness.redis,
        harness.cfg,
        kind="tb",
        params={"start": 202312, "end": 202402, "pcns": [123681]},
        requester="dan",
    )
    assert harness.burst() == 1
    with harness.sessions() as s:
        done = s.get(ReportRequestRow, row.id)
        assert done is not None and done.state == "completed", done and done.error
        begin = s.scalar(
            select(TBPeriod.begin_date).where(
                TBPeriod.pcn == 123681, TBPeriod.period == 202401, TBPeriod.ordinal == 1
            )
        )
    assert begin == date(2023, 7, 1)
    with open(str(done.result_path)[:-5] + ".csv", newline="") as handle:
        lines = {(r[0], r[4]): r for r in csv.reader(handle)}
    sales = "40000-000-0000"
    # Fiscal 2024 begins in July 2023 (period 202401): sales YTD starts again there.
    assert lines[("2024-01", sales)][6] == lines[("2024-01", sales)][7]
    assert lines[("2024-02", sales)][7] == str(
        Decimal(lines[("2024-01", sales)][7]) + Decimal(lines[("2024-02", sales)][6])
    )
    cash = "10000-000-0000"
    assert lines[("2024-01", cash)][7] == str(
        Decimal(lines[("2023-13", cash)][7]) + Decimal(lines[("2024-01", cash)][6])
    )
