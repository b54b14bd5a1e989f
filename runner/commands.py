"""What ``repsys runner``, ``scheduler``, ``request`` and ``queue`` do (see runner/cli.py).

Loaded only when one of these commands runs, so ``repsys`` starts quickly for the others.

* ``repsys runner [--burst]``: take requests off the queue and run their pipelines.
  ``--burst`` handles what is waiting (including requests of dead runners due for
  reclaim), prints a summary and exits: the one-shot mode of tests and operators.
* ``repsys scheduler [--fire NAME] [--list]``: enqueue requests from the schedules, one
  active instance; ``--fire NAME`` enqueues one schedule's request now and exits.
* ``repsys request KIND [--start P --end P] [--pcn N ...] [--shift S] [--param k=v]
  [--wait]``: make a request; ``--wait`` prints live progress until it ends.
* ``repsys queue [--cancel ID] [--show ID]``: the queue like a print queue.

Exit codes: 0 success, 1 failure (a request failed or was cancelled, a run failed), 2 bad
configuration, usage or request.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import redis
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core import keys
from core.cli import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_OK,
    config_from_args,
    setup_process,
    start_observability,
)
from core.config import RepsysConfig
from core.db import make_engine, session_factory
from core.db.schema import ReportRun, StepRun
from core.lifecycle import Stopper, install_signal_handlers
from core.logs import configure_logging
from core.metrics import new_registry
from core.model import ReportState
from core.redis import RedisCommands, connect_sync
from core.sources import SignalArchive
from runner import history
from runner.errors import BadRequest, QueueUnavailable
from runner.metrics import RunnerMetrics, SchedulerMetrics
from runner.requests import Progress, cancel, get_request, list_queue, submit
from runner.scheduler import Scheduler
from runner.services import build_services
from runner.worker import Runner

FINAL = (ReportState.COMPLETED.value, ReportState.FAILED.value, ReportState.CANCELLED.value)


@contextmanager
def _signals(stopper: Stopper) -> Iterator[None]:
    """SIGTERM/SIGINT stop the one-shot run gracefully; the caller's handlers come back
    afterwards (the command may run inside another program, a test for one)."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    install_signal_handlers(stopper)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _sessions(cfg: RepsysConfig) -> sessionmaker[Session]:
    return session_factory(make_engine(cfg.database))


def build_runner(
    cfg: RepsysConfig,
    *,
    registry: Any,
    stopper: Stopper,
    consumer: str | None = None,
    archive: SignalArchive | None = None,
) -> Runner:
    client = connect_sync(cfg.redis)
    services = build_services(cfg, client)
    services.archive = archive
    return Runner(
        cfg,
        sessions=_sessions(cfg),
        redis_client=client,
        services=services,
        metrics=RunnerMetrics(registry),
        stopper=stopper,
        consumer=consumer,
    )


def runner(args: argparse.Namespace) -> int:
    if args.burst:
        cfg = config_from_args(args)
        configure_logging(cfg.logging.format, cfg.logging.level)
        registry = new_registry()
    else:
        cfg, registry = setup_process(args)
    stopper = Stopper()
    # The signal history, supplied by the composition root (runner imports no reader).
    make_archive = getattr(args, "history_archive", None)
    archive = make_archive(cfg) if make_archive is not None else None
    runner = build_runner(
        cfg, registry=registry, stopper=stopper, consumer=args.consumer, archive=archive
    )
    history.prune(runner.sessions, keep_days=cfg.runner.keep_runs_days)
    if args.burst:
        with _signals(stopper):
            handled = runner.work(burst=True)
        print(f"{handled} queue entries handled")
        return EXIT_OK
    install_signal_handlers(stopper)

    def ready() -> tuple[bool, str]:
        try:
            runner.redis.ping()
        except redis.RedisError as exc:
            return False, f"redis: {exc}"
        return (runner.ready, "" if runner.ready else "queue group not ready")

    server = start_observability(cfg, registry, ready=ready)
    try:
        runner.work()
    finally:
        server.stop()
    return EXIT_OK


def scheduler(args: argparse.Namespace) -> int:
    if args.list or args.fire:
        cfg = config_from_args(args)
        configure_logging(cfg.logging.format, cfg.logging.level)
        registry = new_registry()
    else:
        cfg, registry = setup_process(args)
    stopper = Stopper()
    scheduler = Scheduler(
        cfg,
        sessions=_sessions(cfg),
        redis_client=connect_sync(cfg.redis),
        metrics=SchedulerMetrics(registry),
        stopper=stopper,
    )
    if args.list:
        for s in cfg.runner.scheduler.schedules:
            nxt = scheduler.trigger(s).get_next_fire_time(None, datetime.now(scheduler.tz))
            print(f"{s.name:<24} {s.kind:<12} {s.cron:<16} next {nxt:%Y-%m-%d %H:%M %Z}")
        return EXIT_OK
    if args.fire:
        if args.fire not in scheduler.schedules:
            print(f"repsys: unknown schedule {args.fire!r}", file=sys.stderr)
            return EXIT_CONFIG
        row = scheduler.fire(args.fire)
        if row is None:
            return EXIT_FAILURE
        print(f"{row.id} {row.name} {row.state}")
        return EXIT_OK
    install_signal_handlers(stopper)
    server = start_observability(
        cfg, registry, ready=lambda: (True, "leading" if scheduler.leading else "standby")
    )
    try:
        scheduler.run()
    finally:
        server.stop()
    return EXIT_OK


def _params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in args.param or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise BadRequest(f"--param {item!r} is not NAME=VALUE")
        params[key] = value
    if args.start is not None:
        params["start"] = args.start
    if args.end is not None:
        params["end"] = args.end
    if args.pcn:
        params["pcns"] = args.pcn
    if args.shift:
        params["shift"] = args.shift
    return params


def _wait(
    client: RedisCommands, sessions: sessionmaker[Session], request_id: str, timeout_s: float
) -> str:
    """Print progress until the request ends; returns its final state.

    Progress comes from Pub/Sub; the database is read too, so a message missed (or sent
    before we subscribed) never leaves the wait hanging.
    """
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(keys.REPORT_PROGRESS)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=1.0)
            if message is not None:
                progress = Progress.from_json(message["data"])
                if progress is not None and progress.id == request_id:
                    line = f"{progress.at:%H:%M:%S} {progress.state}" + (
                        f" {progress.step}" if progress.step else ""
                    )
                    print(line, flush=True)
            row = get_request(sessions, request_id)
            if row is None:
                return "missing"
            if row.state in FINAL:
                if row.error:
                    print(f"error: {row.error}")
                if row.result_path:
                    print(f"report: {row.result_path}")
                return row.state
    finally:
        pubsub.close()
    return "timeout"


def request(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    configure_logging(cfg.logging.format, "WARNING")
    client = connect_sync(cfg.redis)
    sessions = _sessions(cfg)
    try:
        row = submit(
            sessions, client, cfg, kind=args.kind, params=_params(args), requester=args.requester
        )
    except BadRequest as exc:
        print(f"repsys: request refused: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except QueueUnavailable as exc:
        print(f"repsys: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"{row.id} {row.name} {row.state}", flush=True)
    if not args.wait:
        return EXIT_OK
    state = _wait(client, sessions, row.id, args.timeout)
    print(state)
    return EXIT_OK if state == ReportState.COMPLETED.value else EXIT_FAILURE


def _show(sessions: sessionmaker[Session], request_id: str) -> int:
    row = get_request(sessions, request_id)
    if row is None:
        print(f"repsys: no request {request_id}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"{row.id} {row.kind} {row.name} {row.state} attempts={row.attempts}")
    if row.error:
        print(f"  error: {row.error}")
    if row.result_path:
        print(f"  report: {row.result_path}")
    with sessions() as session:
        for run in session.scalars(
            select(ReportRun).where(ReportRun.request_id == row.id).order_by(ReportRun.id)
        ):
            print(f"  run {run.id} fence {run.fence} {run.runner} {run.status}")
            for step in session.scalars(
                select(StepRun).where(StepRun.run_id == run.id).order_by(StepRun.id)
            ):
                rows = "" if step.rows is None else f" rows={step.rows}"
                err = f" error={step.error}" if step.error else ""
                print(f"    {step.ordinal:2d} {step.step:<20} {step.status}{rows}{err}")
    return EXIT_OK


def queue(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    configure_logging(cfg.logging.format, "WARNING")
    sessions = _sessions(cfg)
    if args.cancel:
        ok = cancel(sessions, connect_sync(cfg.redis), args.cancel, by=args.requester)
        print("cancelled" if ok else "not pending: nothing to cancel")
        return EXIT_OK if ok else EXIT_FAILURE
    if args.show:
        return _show(sessions, args.show)
    rows = list_queue(sessions, limit=args.limit)
    print(
        f"{'id':<34} {'kind':<10} {'name':<24} {'state':<10} {'step':<20} {'requester':<14} created"
    )
    for r in rows:
        print(
            f"{r.id:<34} {r.kind:<10} {r.name:<24} {r.state:<10} {(r.current_step or ''):<20} "
            f"{r.requester[:14]:<14} {r.created_at:%Y-%m-%d %H:%M:%S}"
        )
    return EXIT_OK


def guard(func: Any) -> Any:
    """Turn a BadRequest that escaped (a malformed --param) into exit status 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            return int(func(args))
        except BadRequest as exc:
            print(f"repsys: {exc}", file=sys.stderr)
            return EXIT_CONFIG

    return run
