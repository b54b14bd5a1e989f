"""``repsys scheduler``: enqueue report requests from cron schedules, one active instance.

Any number of schedulers may run; the one holding the lease (:data:`core.keys.
SCHEDULER_LEASE`, a token with a TTL renewed by its holder) runs APScheduler 3, the others
wait to take over. Each fire time becomes one request whose id is derived from the
schedule name and the fire time, so two schedulers overlapping during a hand-over, or a
catch-up after one, queue it once.

Misfires: a fire time missed while no scheduler was leading (a hand-over, a restart) is
caught up when a leader starts, if it is younger than the schedule's ``misfire_grace_s``;
an older one is skipped and logged as a misfire, as is a fire time APScheduler itself runs
later than the grace allows (event ``EVENT_JOB_MISSED``).
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import redis
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy.orm import Session, sessionmaker

from core import keys
from core.config import RepsysConfig
from core.config.runner import ScheduleConfig
from core.db.schema import ReportRequestRow, utcnow
from core.lease import RELEASE_LUA, RENEW_LUA
from core.lifecycle import Stopper
from core.logs import get_logger
from core.redis import RedisCommands
from runner.errors import RunnerError
from runner.metrics import SchedulerMetrics
from runner.requests import submit

log = get_logger(__name__)


def request_id(schedule: ScheduleConfig, fire_time: datetime) -> str:
    """The request id of one fire time: the same in every scheduler."""
    return f"sched-{schedule.name}-{fire_time.astimezone(ZoneInfo('UTC')):%Y%m%dT%H%M}"


def last_fire_time(trigger: CronTrigger, now: datetime, horizon: timedelta) -> datetime | None:
    """The latest fire time in ``(now - horizon, now]``, or ``None``."""
    found = None
    probe = trigger.get_next_fire_time(None, now - horizon)
    while probe is not None and probe <= now:
        found = probe
        probe = trigger.get_next_fire_time(probe, probe + timedelta(seconds=1))
    return found


class Scheduler:
    """The leader election and the APScheduler jobs of one scheduler process."""

    def __init__(
        self,
        cfg: RepsysConfig,
        *,
        sessions: sessionmaker[Session],
        redis_client: RedisCommands,
        metrics: SchedulerMetrics,
        stopper: Stopper,
    ) -> None:
        self.cfg = cfg
        self.sessions = sessions
        self.redis = redis_client
        self.metrics = metrics
        self.stopper = stopper
        self.tz = ZoneInfo(cfg.plant.timezone)
        self.token = secrets.token_hex(16)
        self.ttl_ms = round(cfg.runner.scheduler.lease_ttl_s * 1000)
        self._renew = redis_client.register_script(RENEW_LUA)
        self._release = redis_client.register_script(RELEASE_LUA)
        self._aps: BackgroundScheduler | None = None
        self._lock = threading.Lock()
        self.schedules = {s.name: s for s in cfg.runner.scheduler.schedules}

    @property
    def leading(self) -> bool:
        return self._aps is not None

    def trigger(self, schedule: ScheduleConfig) -> CronTrigger:
        return CronTrigger.from_crontab(schedule.cron, timezone=self.tz)

    # --- firing -----------------------------------------------------------------------

    def fire(self, name: str, fire_time: datetime | None = None) -> ReportRequestRow | None:
        """Enqueue the request of ``name`` for ``fire_time`` (default: its latest)."""
        schedule = self.schedules[name]
        now = datetime.now(self.tz)
        if fire_time is None:
            horizon = timedelta(seconds=schedule.misfire_grace_s + 60)
            fire_time = last_fire_time(self.trigger(schedule), now, horizon) or now
        params = dict(schedule.params)
        if schedule.kind == "escalation" and "end" not in params:
            params["end"] = fire_time.isoformat()  # the shift that ended at this fire time
        try:
            row = submit(
                self.sessions,
                self.redis,
                self.cfg,
                kind=schedule.kind,
                params=params,
                requester=self.cfg.runner.scheduler.requester,
                request_id=request_id(schedule, fire_time),
            )
        except (RunnerError, redis.RedisError) as exc:
            reason = getattr(exc, "reason", "redis")
            self.metrics.errors.labels(schedule=name, reason=reason).inc()
            log.error("schedule_not_enqueued", schedule=name, reason=reason, error=str(exc))
            return None
        self.metrics.fired.labels(schedule=name).inc()
        log.info("schedule_fired", schedule=name, request=row.id, fire_time=fire_time.isoformat())
        return row

    def catch_up(self, now: datetime | None = None) -> None:
        """After taking the lead: fire the latest missed time of each schedule if young
        enough, and log older misses."""
        now = now or datetime.now(self.tz)
        for schedule in self.schedules.values():
            trigger = self.trigger(schedule)
            latest = last_fire_time(trigger, now, timedelta(days=2))
            if latest is None:
                continue
            with self.sessions() as session:
                done = session.get(ReportRequestRow, request_id(schedule, latest)) is not None
            if done:
                continue
            late = (now - latest).total_seconds()
            if late <= schedule.misfire_grace_s:
                log.warning("schedule_caught_up", schedule=schedule.name, late_s=round(late))
                self.fire(schedule.name, latest)
            else:
                self.metrics.misfires.labels(schedule=schedule.name).inc()
                log.warning(
                    "schedule_misfired",
                    schedule=schedule.name,
                    fire_time=latest.isoformat(),
                    late_s=round(late),
                )

    # --- leadership -------------------------------------------------------------------

    def _on_event(self, event: JobExecutionEvent) -> None:
        if event.code == EVENT_JOB_MISSED:
            self.metrics.misfires.labels(schedule=event.job_id).inc()
            log.warning(
                "schedule_misfired",
                schedule=event.job_id,
                fire_time=event.scheduled_run_time.isoformat(),
            )
        elif event.exception is not None:
            log.error("schedule_job_failed", schedule=event.job_id, error=str(event.exception))

    def _start_jobs(self) -> None:
        aps = BackgroundScheduler(timezone=self.tz)
        for schedule in self.schedules.values():
            aps.add_job(
                self.fire,
                self.trigger(schedule),
                args=[schedule.name],
                id=schedule.name,
                misfire_grace_time=schedule.misfire_grace_s,
                coalesce=True,
                max_instances=1,
            )
        aps.add_listener(self._on_event, EVENT_JOB_MISSED | EVENT_JOB_ERROR)
        aps.start()
        self._aps = aps
        self.metrics.leader.set(1)
        log.info("scheduler_leading", schedules=sorted(self.schedules))

    def _stop_jobs(self) -> None:
        if self._aps is not None:
            self._aps.shutdown(wait=False)
            self._aps = None
        self.metrics.leader.set(0)

    def tick(self) -> bool:
        """Acquire or renew the lease, start or stop the jobs; returns whether leading."""
        try:
            if self.leading:
                if not self._renew(keys=[keys.SCHEDULER_LEASE], args=[self.token, self.ttl_ms]):
                    log.warning("scheduler_lease_lost")
                    self._stop_jobs()
            elif self.redis.set(
                keys.SCHEDULER_LEASE, self.token, nx=True, px=self.ttl_ms
            ) or self._renew(keys=[keys.SCHEDULER_LEASE], args=[self.token, self.ttl_ms]):
                # (the renewal: the lease is still ours after a Redis hiccup)
                self.catch_up()
                self._start_jobs()
        except redis.RedisError as exc:
            log.warning("scheduler_redis_unavailable", error=str(exc))
            if self.leading:
                # Without a confirmed renewal another scheduler may lead soon: stand down.
                self._stop_jobs()
        return self.leading

    def run(self) -> None:
        """Lead or stand by until the stopper is set; then release the lease."""
        period = self.cfg.runner.scheduler.lease_ttl_s / 3
        try:
            while not self.stopper.stopped:
                self.tick()
                self.stopper.wait(period)
        finally:
            was_leading = self.leading
            self._stop_jobs()
            if was_leading:
                with contextlib.suppress(redis.RedisError):  # it expires by itself anyway
                    self._release(keys=[keys.SCHEDULER_LEASE], args=[self.token])
            log.info("scheduler_stopped", at=utcnow().isoformat())
