"""Step 6's ODBC read in a child process, and its rows handed to step 8 in memory.

The child's batches are the direct read's; a failure in the child fails the read with the
child's message; a child that dies silently fails it with its exit status; no child
outlives the read (the reader stopped early, or the parent process killed). A run that
goes straight on (step 8 takes step 6's batches) and a resumed one (step 8 reads the
warehouse back) write identical period balances. The bulk (arrow-odbc) read turns amounts
into exact micros as :func:`runner.tb.money.to_micros` does.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core.config.infra import DatabaseConfig
from core.db import make_engine, session_factory, upgrade
from core.db.warehouse import TBAccountPeriodBalance
from repsys.servers import wait_until
from runner.errors import SourceError
from runner.registry import build_pipeline
from runner.services import build_tb_sources
from runner.steps import StepContext, StepResult
from runner.tb.common import period_range
from runner.tb.loaded import remember_loaded, take_loaded
from runner.tb.money import arrow_micros
from runner.tb.reader import balances_in_child
from runner.tb.source import AccountingSource, BalanceBatch, OdbcAccountingSource
from tests.runner.conftest import Accounting, Harness

PCN = 123681
ROOT = Path(__file__).resolve().parents[2]


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"  # a zombie no longer runs


def small_batches(odbc: str) -> Callable[[], AccountingSource]:
    def factory() -> AccountingSource:
        source = OdbcAccountingSource(odbc)
        source.fetch_size = 7  # many batches, more than the queue holds
        return source

    return factory


def rows(batches: list[BalanceBatch]) -> list[tuple[str, int, int, int]]:
    return [
        row for b in batches for row in zip(b.accounts, b.periods, b.debits, b.credits, strict=True)
    ]


def test_child_read_gives_the_direct_reads_batches_and_leaves_no_child(
    seeded: Accounting,
) -> None:
    direct = small_batches(seeded.odbc)()
    try:
        expected = list(direct.balances(PCN, 202001, 202406))
    finally:
        direct.close()
    with balances_in_child(small_batches(seeded.odbc), PCN, 202001, 202406) as batches:
        got = list(batches)
        assert len(multiprocessing.active_children()) == 1
    assert len(got) > 8
    assert got == expected
    assert multiprocessing.active_children() == []


def test_reader_stopped_early_ends_the_child(seeded: Accounting) -> None:
    with balances_in_child(small_batches(seeded.odbc), PCN, 202001, 202406) as batches:
        first = next(iter(batches))
        # The child is blocked on the full queue: it must not be left behind.
        (child,) = multiprocessing.active_children()
        pid = child.pid
        assert pid is not None and not _gone(pid)
    assert len(first.accounts) == 7
    assert _gone(pid)
    assert multiprocessing.active_children() == []


def test_child_failure_fails_the_read_with_the_childs_error() -> None:
    def factory() -> AccountingSource:
        return OdbcAccountingSource("DRIVER={No Such Driver};Database=/nowhere.db")

    with (
        pytest.raises(SourceError) as err,
        balances_in_child(factory, PCN, 202001, 202406) as batches,
    ):
        list(batches)
    assert str(err.value).startswith("cannot open the ODBC source: ")
    assert err.value.reason == "odbc"
    assert multiprocessing.active_children() == []


def test_unexpected_error_in_child_names_its_type() -> None:
    def factory() -> AccountingSource:
        raise ValueError("driver returned garbage")

    with (
        pytest.raises(SourceError, match=r"^ValueError: driver returned garbage$"),
        balances_in_child(factory, PCN, 202001, 202406) as batches,
    ):
        list(batches)


def test_child_dying_silently_fails_the_read_with_its_status() -> None:
    def factory() -> AccountingSource:
        os._exit(3)

    with (
        pytest.raises(SourceError) as err,
        balances_in_child(factory, PCN, 202001, 202406) as batches,
    ):
        list(batches)
    assert str(err.value) == (
        "the ODBC reader process ended with status 3 before the read was complete"
    )


PARENT = textwrap.dedent(
    """
    import sys, time
    from runner.tb.reader import balances_in_child

    def factory():
        print("child", __import__("os").getpid(), flush=True)
        time.sleep(120)  # stuck in the driver

    with balances_in_child(factory, 1, 1, 1) as batches:
        next(iter(batches))
    """
)


def test_child_dies_with_a_killed_parent() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline().split()
        assert line[0] == "child", line
        child = int(line[1])
        assert not _gone(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        wait_until(lambda: _gone(child), timeout=10, what="the reader child to die with its parent")
    finally:
        parent.kill()
        parent.wait(10)


# --- step 8: in memory when the run goes straight on, read back when resumed --------


class Probe:
    """Before step 8: records whether step 6's batches are there; ``forget`` drops them,
    as a resumed run (step 6 skipped) would find nothing."""

    name = "probe"

    def __init__(self, *, forget: bool) -> None:
        self.forget = forget
        self.had: list[bool] = []

    def run(self, ctx: StepContext) -> StepResult:
        with ctx.sessions() as session:
            rng = period_range(session, ctx, PCN)
            start, end = rng.start_closed, rng.end_closed
        assert start is not None and end is not None
        loaded = take_loaded(ctx, PCN, start, end)  # what step 8 would take
        self.had.append(loaded is not None)
        if not self.forget and loaded is not None:
            remember_loaded(ctx, loaded.pcn, loaded.start, loaded.end, loaded.batches)
        return StepResult(0)


def _balances(harness: Harness) -> list[tuple[Any, ...]]:
    with harness.sessions() as s:
        return [
            (
                r.period,
                r.account_no,
                r.debit_cents,
                r.credit_cents,
                r.ytd_debit_cents,
                r.ytd_credit_cents,
                r.ytd_balance_cents,
                r.closed,
                r.source_update,
            )
            for r in s.scalars(
                select(TBAccountPeriodBalance)
                .where(TBAccountPeriodBalance.pcn == PCN)
                .order_by(TBAccountPeriodBalance.period, TBAccountPeriodBalance.account_no)
            )
        ]


def _pipeline(harness_cfg: Any, probe: Probe, redis_client: Any) -> Iterator[Any]:
    sources = build_tb_sources(harness_cfg, redis_client)
    for step in build_pipeline(harness_cfg.runner, "tb", sources):
        if step.name == "recreate_closed":
            yield probe
        yield step


def test_step_8_in_memory_and_read_back_write_identical_balances(
    seeded: Accounting,
    runner_config: Callable[..., Any],
    make_runner: Callable[..., Harness],
    tmp_path: Path,
    redis_client: Any,
) -> None:
    # Two warehouses: each run recalculates the whole history from an empty one.
    engine = make_engine(DatabaseConfig(url=f"sqlite:///{tmp_path / 'other.db'}"))
    upgrade(engine)
    cfg = runner_config(seeded, runner={"tb": {"pcns": [PCN]}})
    clock = {"clock": lambda: datetime(2024, 7, 7, 9, 30, tzinfo=UTC)}
    straight, resumed = Probe(forget=False), Probe(forget=True)

    first = make_runner(
        cfg, pipelines={"tb": list(_pipeline(cfg, straight, redis_client))}, **clock
    )
    done = first.run_tb(202301, 202403)
    assert done.state == "completed", done.error
    in_memory = _balances(first)

    second = make_runner(
        cfg,
        consumer="again",
        db=session_factory(engine),
        pipelines={"tb": list(_pipeline(cfg, resumed, redis_client))},
        **clock,
    )
    done = second.run_tb(202301, 202403)
    assert done.state == "completed", done.error
    read_back = _balances(second)
    engine.dispose()

    assert straight.had == [True]  # step 8 found step 6's batches
    assert resumed.had == [True]  # and this run dropped them: step 8 read the warehouse
    assert len(in_memory) > 500
    assert in_memory == read_back


def test_bulk_read_amounts_become_micros_as_to_micros_makes_them() -> None:
    import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type information

    floats = pa.array([12.34, -0.01, 1e9 + 0.07, 0.015, -0.005], type=pa.float64())
    with_null = pa.array([12.34, None], type=pa.float64())
    decimals = pa.array([Decimal("1.00500"), Decimal("-2.00001"), None], type=pa.decimal128(18, 5))
    text = pa.array(["0.015", " -0.00001 ", ""], type=pa.string())
    assert arrow_micros(floats) == [12_340_000, -10_000, 1_000_000_000_070_000, 15_000, -5_000]
    assert arrow_micros(with_null) == [12_340_000, 0]
    assert arrow_micros(decimals) == [1_005_000, -2_000_010, 0]  # exact, no rounding
    assert arrow_micros(text) == [15_000, -10, 0]
