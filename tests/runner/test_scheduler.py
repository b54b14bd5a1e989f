"""The scheduler: one leader at a time, one request per fire time, missed fire times caught
up within their grace and logged as misfires beyond it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core import keys
from core.config import RepsysConfig
from core.db.schema import ReportRequestRow
from core.lifecycle import Stopper
from core.metrics import CollectorRegistry, new_registry, sample
from runner.metrics import SchedulerMetrics
from runner.scheduler import Scheduler, last_fire_time, request_id

SCHEDULES = [
    {"name": "tb_monthly", "kind": "tb", "cron": "0 5 2 * *"},
    {
        "name": "escalation_first",
        "kind": "escalation",
        "cron": "0 14 * * *",
        "misfire_grace_s": 300,
    },
    {"name": "tool_check", "kind": "tool_check", "cron": "*/15 * * * *", "misfire_grace_s": 120},
]


@pytest.fixture
def cfg(runner_config: Callable[..., RepsysConfig]) -> RepsysConfig:
    return runner_config(runner={"scheduler": {"schedules": SCHEDULES, "lease_ttl_s": 2}})


@pytest.fixture
def make_scheduler(
    cfg: RepsysConfig, sessions: sessionmaker[Session], redis_client: redis.Redis
) -> Iterator[Callable[..., Scheduler]]:
    made: list[Scheduler] = []

    def factory(registry: CollectorRegistry | None = None) -> Scheduler:
        metrics = SchedulerMetrics(registry or new_registry())
        scheduler = Scheduler(
            cfg, sessions=sessions, redis_client=redis_client, metrics=metrics, stopper=Stopper()
        )
        made.append(scheduler)
        return scheduler

    yield factory
    for scheduler in made:
        scheduler._stop_jobs()


def test_one_leader_and_a_takeover(
    make_scheduler: Callable[..., Scheduler], redis_client: redis.Redis
) -> None:
    registry = new_registry()
    a, b = make_scheduler(registry), make_scheduler()
    assert a.tick() is True
    assert b.tick() is False
    assert a.tick() is True  # renewed
    assert sample(registry, "repsys_scheduler_leader") == 1
    jobs = {job.id: job for job in a._aps.get_jobs()}  # type: ignore[union-attr]
    assert set(jobs) == {"tb_monthly", "escalation_first", "tool_check"}
    assert jobs["tool_check"].next_run_time.minute % 15 == 0
    # The leader disappears (its lease is gone): the standby takes over, the old leader
    # notices at its next tick and stops firing.
    redis_client.delete(keys.SCHEDULER_LEASE)
    assert b.tick() is True
    assert a.tick() is False
    assert a._aps is None
    assert sample(registry, "repsys_scheduler_leader") == 0


def test_each_fire_time_is_one_request(
    make_scheduler: Callable[..., Scheduler],
    sessions: sessionmaker[Session],
    redis_client: redis.Redis,
) -> None:
    s1, s2 = make_scheduler(), make_scheduler()
    fire_time = datetime(2024, 7, 8, 14, 0, tzinfo=UTC)
    first = s1.fire("escalation_first", fire_time)
    second = s2.fire("escalation_first", fire_time)  # a second scheduler during a hand-over
    assert first is not None and second is not None
    assert first.id == second.id == "sched-escalation_first-20240708T1400"
    assert first.params == {"end": "2024-07-08T14:00:00+00:00"}  # the shift ending then
    assert first.requester == "scheduler"
    assert redis_client.xlen(keys.REPORT_QUEUE) == 1


def test_missed_fire_times_are_caught_up_within_grace_and_misfires_beyond(
    make_scheduler: Callable[..., Scheduler],
    sessions: sessionmaker[Session],
) -> None:
    registry = new_registry()
    scheduler = make_scheduler(registry)
    # 14:02: escalation_first (14:00, grace 300 s) is caught up; tool_check's 14:00 is
    # 122 s late with a grace of 120 s: a misfire; tb_monthly's last fire (July 2nd) is
    # beyond the two days a new leader looks back: neither fired nor counted.
    scheduler.catch_up(now=datetime(2024, 7, 8, 14, 2, 2, tzinfo=UTC))
    with sessions() as s:
        ids = s.scalars(select(ReportRequestRow.id)).all()
    assert ids == ["sched-escalation_first-20240708T1400"]
    assert sample(registry, "repsys_scheduler_misfires_total", {"schedule": "tool_check"}) == 1
    assert sample(registry, "repsys_scheduler_misfires_total", {"schedule": "tb_monthly"}) == 0
    assert sample(registry, "repsys_scheduler_fired_total", {"schedule": "escalation_first"}) == 1
    # Caught up once: a second leader at 14:03 finds the request and fires nothing.
    scheduler.catch_up(now=datetime(2024, 7, 8, 14, 3, tzinfo=UTC))
    assert sample(registry, "repsys_scheduler_fired_total", {"schedule": "escalation_first"}) == 1


def test_apscheduler_misfire_events_are_counted(make_scheduler: Callable[..., Scheduler]) -> None:
    registry = new_registry()
    scheduler = make_scheduler(registry)
    scheduler._on_event(
        JobExecutionEvent(
            EVENT_JOB_MISSED, "tool_check", "default", datetime(2024, 7, 8, 14, 0, tzinfo=UTC)
        )
    )
    assert sample(registry, "repsys_scheduler_misfires_total", {"schedule": "tool_check"}) == 1


def test_last_fire_time_and_request_ids(make_scheduler: Callable[..., Scheduler]) -> None:
    scheduler = make_scheduler()
    trigger = scheduler.trigger(scheduler.schedules["tool_check"])
    now = datetime(2024, 7, 8, 14, 7, tzinfo=UTC)
    assert last_fire_time(trigger, now, timedelta(hours=1)) == datetime(
        2024, 7, 8, 14, 0, tzinfo=UTC
    )
    assert last_fire_time(trigger, now, timedelta(minutes=5)) is None
    assert request_id(scheduler.schedules["tool_check"], now) == "sched-tool_check-20240708T1407"
