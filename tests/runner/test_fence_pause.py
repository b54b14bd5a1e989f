"""A runner paused (SIGSTOP) past its lease TTL and resumed cannot write: the fence refuses.

Runner A starts a trial balance and blocks inside step 1's ODBC read (the test holds an
exclusive lock on the accounting database, a slow Plex in miniature). A is then frozen
with SIGSTOP. Its lease expires; its queue entry goes idle; runner B reclaims the request
and runs it to completion against a copy of the same data. Then the lock is released and A
resumed: A's read finishes, its load opens the fenced transaction, and the database says
no. A's step is recorded as aborted with the fence error; every warehouse row is B's.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import redis
from sqlalchemy import Engine, select

from core import keys
from core.config import RepsysConfig
from core.db import session_factory
from core.db.schema import ReportRequestRow, ReportRun, StepRun
from core.db.warehouse import TBAccount, TBAccountPeriodBalance, TBAccountYearCategoryType
from repsys.servers import wait_until
from runner.requests import submit
from sim.accounting.odbc import connection_string
from tests.conftest import REPO
from tests.runner.conftest import SIM_PASSWORD, SIM_PASSWORD_ENV, Accounting
from tests.runner.procs import Runners, write_config


def test_paused_runner_is_fenced_off(
    seeded: Accounting,
    redis_url: str,
    redis_client: redis.Redis,
    pg_url: str,
    pg_engine: Engine,
    runner_config: Callable[..., RepsysConfig],
    tmp_path: Path,
) -> None:
    sessions = session_factory(pg_engine)
    cfg_a = write_config(
        tmp_path / "a.yaml",
        redis_url=redis_url,
        db_url=pg_url,
        accounting=seeded,
        output_dir=tmp_path / "out",
    )
    copy = tmp_path / "copy.db"
    shutil.copy(seeded.db_path, copy)
    cfg_b = write_config(
        tmp_path / "b.yaml",
        redis_url=redis_url,
        db_url=pg_url,
        accounting=seeded,
        output_dir=tmp_path / "out",
        runner={"tb": {"odbc": {"connection_string": connection_string(copy)}}},
    )
    test_cfg = runner_config(database={"url": pg_url})
    row = submit(
        sessions,
        redis_client,
        test_cfg,
        kind="tb",
        params={"start": 202401, "end": 202406, "pcns": [123681]},
        requester="dan",
    )

    lock = sqlite3.connect(seeded.db_path, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    runners = Runners(cfg_a, tmp_path / "logs")
    try:
        a = runners.start()

        def a_in_step_one() -> bool:
            with sessions() as s:
                return (
                    s.scalar(
                        select(StepRun.status).where(
                            StepRun.request_id == row.id, StepRun.step == "year_category_types"
                        )
                    )
                    == "running"
                )

        wait_until(a_in_step_one, timeout=60, what="runner A inside step 1")
        a.send_signal(signal.SIGSTOP)

        # A's lease expires and its entry goes idle; then B can take the request over.
        wait_until(
            lambda: not redis_client.exists(keys.report_mutex("tb")),
            timeout=30,
            what="A's lease to expire",
        )

        def entry_idle() -> bool:
            pending = redis_client.xpending_range(
                keys.REPORT_QUEUE, keys.RUNNERS_GROUP, "-", "+", 10
            )
            return bool(pending) and int(pending[0]["time_since_delivered"]) > 3500

        wait_until(entry_idle, timeout=30, what="A's entry idle past claim_idle_s")
        b = subprocess.run(
            [sys.executable, "-m", "repsys", "-c", str(cfg_b), "runner", "--burst"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, SIM_PASSWORD_ENV: SIM_PASSWORD},
        )
        assert b.returncode == 0, b.stdout + b.stderr
        assert "1 queue entries handled" in b.stdout
        with sessions() as s:
            done = s.get(ReportRequestRow, row.id)
            assert done is not None and done.state == "completed"
            runs = s.scalars(
                select(ReportRun).where(ReportRun.request_id == row.id).order_by(ReportRun.id)
            ).all()
            assert [(r.fence, r.status) for r in runs] == [(1, "running"), (2, "completed")]

        # Resume A: its read completes and its load meets the fence.
        lock.execute("ROLLBACK")
        a.send_signal(signal.SIGCONT)

        def a_aborted() -> bool:
            with sessions() as s:
                return s.scalar(select(ReportRun.status).where(ReportRun.fence == 1)) == "aborted"

        wait_until(a_aborted, timeout=60, what="runner A to give up")
        with sessions() as s:
            step = s.scalars(
                select(StepRun).where(StepRun.fence == 1).order_by(StepRun.id.desc())
            ).first()
            assert step is not None
            assert (step.step, step.status) == ("year_category_types", "aborted")
            assert step.error == (
                "fence 1 of kind 'tb' is older than the database's 2: a newer run owns the "
                "data; nothing was written"
            )
            # B's result stands, and A wrote nothing anywhere in the warehouse.
            done = s.get(ReportRequestRow, row.id)
            assert done is not None and done.state == "completed"
            for table in (TBAccountYearCategoryType, TBAccount, TBAccountPeriodBalance):
                fences = set(s.scalars(select(table.fence).distinct()))
                assert fences == {2}, (table.__tablename__, fences)
    finally:
        lock.close()
        runners.stop_all()
