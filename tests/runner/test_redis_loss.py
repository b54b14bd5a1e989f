"""Redis losing data (a restart without persistence, a failover before replication).

The database is the truth: the fence counter is re-seeded above the highest fence the
database has seen, and a request pending in the database whose queue entry was lost is
queued again, by the runners' reconciler or by the next identical request.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import redis
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from core import keys
from core.config import RepsysConfig
from core.db.schema import ReportRequestRow, ReportRun, utcnow
from core.metrics import sample
from runner.fence import current_fence, highest_fence
from runner.mutex import Mutex
from runner.requests import queued_request_ids, submit
from runner.steps import StepContext, StepResult
from tests.runner.conftest import Harness

ETL = {"etl": {"steps": ["load"], "notify": []}}


class Load:
    """One fenced load, like the real ones; remembers the fences it ran under."""

    name = "load"

    def __init__(self) -> None:
        self.fences: list[int] = []

    def run(self, ctx: StepContext) -> StepResult:
        self.fences.append(ctx.fence)
        with ctx.fenced():
            pass
        return StepResult(1)


def _state(sessions: sessionmaker[Session], request_id: str) -> str:
    with sessions() as s:
        row = s.get(ReportRequestRow, request_id)
        assert row is not None
        return row.state


def _forget_everything(client: redis.Redis) -> None:
    """What a Redis restart without persistence leaves: nothing."""
    client.flushall()


def test_the_fence_counter_is_reseeded_from_the_database_after_redis_lost_it(
    runner_config: Callable[..., RepsysConfig],
    make_runner: Callable[..., Harness],
    redis_client: redis.Redis,
) -> None:
    cfg = runner_config(runner={"pipelines": ETL})
    load = Load()
    first = make_runner(cfg, pipelines={"etl": [load]})
    for _ in range(3):
        row = submit(first.sessions, redis_client, cfg, kind="etl", params={}, requester="d")
        assert first.burst() == 1 and _state(first.sessions, row.id) == "completed"
    assert current_fence(first.sessions, "etl") == 3
    _forget_everything(redis_client)
    # A runner (re)started against the empty Redis: its first run must get fence 4, not
    # 1 (which the database refuses: three refusals, and the request failed).
    again = make_runner(cfg, pipelines={"etl": [load]})
    row = submit(again.sessions, redis_client, cfg, kind="etl", params={}, requester="d")
    assert again.burst() == 1
    assert _state(again.sessions, row.id) == "completed"
    assert load.fences == [1, 2, 3, 4]
    assert int(redis_client.get(keys.report_fence("etl")) or 0) == 4
    assert sample(again.registry, "repsys_runner_fence_rejected_total", {"kind": "etl"}) == 0


def test_the_floor_counts_started_runs_too_and_never_lowers_the_counter(
    redis_client: redis.Redis, sessions: sessionmaker[Session]
) -> None:
    floor = [0]
    mutex = Mutex(redis_client, "tb", ttl_s=30, floor=lambda: floor[0])
    lease = mutex.try_acquire()
    assert lease is not None and lease.fence == 1
    lease.release()
    floor[0] = 7  # Redis holds 1, the database saw 7: the next is 8
    lease = mutex.try_acquire()
    assert lease is not None and lease.fence == 8
    lease.release()
    floor[0] = 3  # Redis holds more than the database: it just counts on
    lease = mutex.try_acquire()
    assert lease is not None and lease.fence == 9
    lease.release()
    # The database's highest fence: loads (fences) and runs that started (report_runs).
    assert highest_fence(sessions, "tb") == 0
    with sessions.begin() as s:
        s.add(ReportRequestRow(id="r1", kind="tb", name="tb", params={}, dedupe_key="k"))
        s.flush()
        s.add(ReportRun(request_id="r1", fence=12, runner="x"))
    assert highest_fence(sessions, "tb") == 12
    assert highest_fence(sessions, "other") == 0


def test_a_request_whose_queue_entry_was_lost_is_queued_again_and_runs(
    runner_config: Callable[..., RepsysConfig],
    make_runner: Callable[..., Harness],
    redis_client: redis.Redis,
) -> None:
    cfg = runner_config(runner={"pipelines": ETL})
    load = Load()
    h = make_runner(cfg, pipelines={"etl": [load]})
    row = submit(h.sessions, redis_client, cfg, kind="etl", params={}, requester="d")
    _forget_everything(redis_client)
    assert queued_request_ids(redis_client) == set()
    # Younger than claim_idle_s, it may be a request being submitted right now: left.
    assert h.burst() == 0 and _state(h.sessions, row.id) == "pending"
    with h.sessions.begin() as s:
        s.execute(
            update(ReportRequestRow)
            .where(ReportRequestRow.id == row.id)
            .values(created_at=utcnow() - timedelta(seconds=cfg.runner.claim_idle_s + 1))
        )
    h.runner._next_reconcile = 0.0  # the next look is due (every claim_idle_s)
    assert h.burst() == 1
    assert _state(h.sessions, row.id) == "completed"
    assert sample(h.registry, "repsys_runner_orphans_requeued_total") == 1
    assert queued_request_ids(redis_client) == set()  # done and acknowledged


def test_an_identical_request_does_not_merge_into_an_orphan_forever(
    runner_config: Callable[..., RepsysConfig],
    make_runner: Callable[..., Harness],
    redis_client: redis.Redis,
) -> None:
    cfg = runner_config(runner={"pipelines": ETL})
    h = make_runner(cfg, pipelines={"etl": [Load()]})
    orphan = submit(h.sessions, redis_client, cfg, kind="etl", params={}, requester="d")
    _forget_everything(redis_client)
    same = submit(h.sessions, redis_client, cfg, kind="etl", params={}, requester="e")
    assert same.id == orphan.id  # coalesced, as before ...
    assert queued_request_ids(redis_client) == {orphan.id}  # ... but queued again
    assert h.burst() == 1
    assert _state(h.sessions, orphan.id) == "completed"
    with h.sessions() as s:
        assert s.scalars(select(ReportRequestRow.id)).all() == [orphan.id]
