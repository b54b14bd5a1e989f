"""Three runners, ten trial balances, runners killed with SIGKILL in the middle of steps.

In the end every request is Completed, each by exactly one completed run, and the step
records show that no two pipeline runs overlapped: ordered by fencing number, every run's
steps start after the previous run's last step began and ended. Killed runners are
replaced so three keep running; their requests are reclaimed and resumed.
"""

from __future__ import annotations

import functools
import os
import random
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine, select

from core.config import RepsysConfig
from core.db import session_factory
from core.db.schema import ReportRequestRow, ReportRun, StepRun
from repsys.servers import wait_until
from runner.requests import submit
from tests.runner.conftest import Accounting
from tests.runner.procs import Runners, write_config

KILLS = 4
WINDOWS = [
    (202401, 202406),
    (202312, 202406),
    (202311, 202405),
    (202401, 202403),
    (202310, 202404),
]


@pytest.mark.slow
def test_kill_9_runners_during_steps(
    seeded: Accounting,
    redis_url: str,
    redis_client: redis.Redis,
    pg_url: str,
    pg_engine: Engine,
    runner_config: Callable[..., RepsysConfig],
    tmp_path: Path,
) -> None:
    rng = random.Random(7)
    sessions = session_factory(pg_engine)
    config = write_config(
        tmp_path / "runner.yaml",
        redis_url=redis_url,
        db_url=pg_url,
        accounting=seeded,
        output_dir=tmp_path / "out",
    )
    test_cfg = runner_config(database={"url": pg_url})
    ids = []
    for i in range(10):
        start, end = WINDOWS[i % len(WINDOWS)]
        pcn = [123681, 300758][i // len(WINDOWS)]
        ids.append(
            submit(
                sessions,
                redis_client,
                test_cfg,
                kind="tb",
                params={"start": start, "end": end, "pcns": [pcn]},
                requester=f"user{i}",
            ).id
        )
    runners = Runners(config, tmp_path / "logs")
    killed: list[tuple[str, str]] = []
    dead: set[int] = set()
    try:
        for _ in range(3):
            runners.start()

        def kill_one_in_step(min_ordinal: int) -> bool:
            """SIGKILL the runner whose run is inside a step numbered min_ordinal or later."""
            with sessions() as s:
                found = s.execute(
                    select(StepRun, ReportRun)
                    .join(ReportRun, ReportRun.id == StepRun.run_id)
                    .where(
                        StepRun.status == "running",
                        StepRun.ordinal >= min_ordinal,
                        ReportRun.status == "running",
                    )
                    .order_by(StepRun.id.desc())
                ).first()
            if found is None:
                return False
            step, run = found
            pid = int(run.runner.rsplit("-", 1)[1])
            proc = runners.by_pid(pid)
            if proc is None or pid in dead:  # a run killed earlier keeps "running" forever
                return False
            os.kill(pid, signal.SIGKILL)
            proc.wait(10)
            dead.add(pid)
            killed.append((step.request_id, step.step))
            return True

        for _ in range(KILLS):
            ordinal = rng.randint(2, 10)
            wait_until(
                functools.partial(kill_one_in_step, ordinal),
                timeout=120,
                what="a runner inside a step",
                interval=0.02,
            )
            runners.start()  # keep three alive

        def all_completed() -> bool:
            with sessions() as s:
                states = s.scalars(select(ReportRequestRow.state)).all()
            return len(states) == 10 and all(st == "completed" for st in states)

        wait_until(all_completed, timeout=240, what="every request completed", interval=0.5)
    except Exception:
        print(runners.logs())
        raise
    finally:
        runners.stop_all()

    assert len(killed) == KILLS
    with sessions() as s:
        runs = s.scalars(select(ReportRun).order_by(ReportRun.fence)).all()
        steps = s.scalars(select(StepRun).order_by(StepRun.id)).all()
        requests = s.scalars(select(ReportRequestRow)).all()
    # Completed exactly once each.
    for request in requests:
        completed = [r for r in runs if r.request_id == request.id and r.status == "completed"]
        assert len(completed) == 1, request.id
        assert request.result_path and Path(request.result_path).exists()
    # Killed runs stay "running" forever in the history; every kill left one.
    assert sum(1 for r in runs if r.status == "running") >= KILLS
    # No overlap: by fence, each run's steps begin after the previous run's steps.
    by_run: dict[int, list[StepRun]] = {}
    for step in steps:
        by_run.setdefault(step.run_id, []).append(step)
    previous_end = None
    for run in runs:
        own = [x for x in by_run.get(run.id, []) if x.status != "skipped"]
        if not own:
            continue
        first_start = min(x.started_at for x in own)
        if previous_end is not None:
            assert first_start >= previous_end, f"run {run.id} (fence {run.fence}) overlaps"
        previous_end = max(x.finished_at or x.started_at for x in own)
