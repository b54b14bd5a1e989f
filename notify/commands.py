"""The ``notify`` commands (see ``notify/cli.py``)."""

from __future__ import annotations

import argparse
import os
import socket
import time

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core import deliveries as outbox
from core.cli import EXIT_CONFIG, EXIT_OK, config_from_args, setup_process, start_observability
from core.config import RepsysConfig
from core.db import make_engine, session_factory
from core.db.schema import NotifyDelivery, utcnow
from core.lifecycle import Backoff, Stopper, install_signal_handlers
from core.logs import configure_logging, get_logger
from notify.dispatch_job import DispatchJob
from notify.escalation import calendar_from_config
from notify.metrics import NotifyMetrics
from notify.ops import OpsCheck
from notify.sender import DeliverySender
from notify.sweep import EscalationSweep

log = get_logger(__name__)

#: Seconds between passes of the dispatcher and sender when nothing was due.
POLL_S = 1.0


class Jobs:
    """The three jobs of one process and their schedule."""

    def __init__(
        self, cfg: RepsysConfig, sessions: sessionmaker[Session], name: str, metrics: NotifyMetrics
    ) -> None:
        calendar = calendar_from_config(cfg.notify.calendar, cfg.plant.timezone)
        self.cfg = cfg
        self.sessions = sessions
        self.metrics = metrics
        self.sweep = EscalationSweep(cfg.notify.escalation, calendar, sessions)
        self.dispatch = DispatchJob(cfg, calendar, sessions)
        self.sender = DeliverySender(cfg.notify, sessions, name=name, metrics=metrics)
        self.ops = OpsCheck(cfg.notify, sessions)
        self.next_sweep = 0.0

    def pass_once(self, *, send_only: bool = False, force_sweep: bool = False) -> int:
        """One pass; how many deliveries were attempted."""
        if not send_only:
            esc = self.cfg.notify.escalation
            if esc.enabled and (force_sweep or time.monotonic() >= self.next_sweep):
                for raised in self.sweep.run_once():
                    self.metrics.escalations.labels(str(raised.level)).inc()
                self.next_sweep = time.monotonic() + esc.interval_s
            self.dispatch.run_once()
            self.ops.run_once()
        sent = self.sender.run_once()
        self.update_depth()
        return sent

    def update_depth(self) -> None:
        for d in outbox.depth(self.sessions, utcnow()):
            self.metrics.outbox_depth.labels(d.receiver, d.integration).set(d.due)
            self.metrics.outbox_age.labels(d.receiver, d.integration).set(d.oldest_s)


def run(args: argparse.Namespace) -> int:
    """``repsys notify``."""
    if getattr(args, "notify_command", None):
        return EXIT_CONFIG  # a tool without its action: argparse printed the usage
    cfg, registry = setup_process(args)
    metrics = NotifyMetrics(registry)
    sessions = session_factory(make_engine(cfg.database))
    name = args.name or f"{socket.gethostname()}-{os.getpid()}"
    jobs = Jobs(cfg, sessions, name, metrics)
    if args.once:
        sent = 0
        while (n := jobs.pass_once(send_only=args.send_only, force_sweep=True)) > 0:
            sent += n
        print(f"attempted {sent} deliveries")
        return EXIT_OK
    stopper = Stopper()
    install_signal_handlers(stopper)
    healthy = {"ok": False, "why": "starting"}
    http = start_observability(
        cfg, registry, ready=lambda: (healthy["ok"], "" if healthy["ok"] else healthy["why"])
    )
    log.info("notify_started", sender=name, send_only=args.send_only)
    backoff = Backoff(base_s=1.0, cap_s=30.0)
    try:
        while not stopper.stopped:
            try:
                n = jobs.pass_once(send_only=args.send_only)
            except Exception as exc:
                # The database is away: keep the process, retry with backoff.
                healthy.update(ok=False, why=f"{type(exc).__name__}: {exc}")
                delay = backoff.next()
                log.error("notify_loop_failed", error=str(exc), retry_in_s=round(delay, 1))
                stopper.wait(delay)
                continue
            healthy.update(ok=True, why="")
            backoff.reset()
            if n == 0:
                stopper.wait(POLL_S)
    finally:
        jobs.sender.close()
        http.stop()
        log.info("notify_stopped", sender=name)
    return EXIT_OK


def _sessions(args: argparse.Namespace) -> sessionmaker[Session]:
    cfg = config_from_args(args)
    configure_logging(cfg.logging.format, "WARNING")
    return session_factory(make_engine(cfg.database))


def outbox_list(args: argparse.Namespace) -> int:
    """``repsys notify outbox list``."""
    sessions = _sessions(args)
    query = select(NotifyDelivery).order_by(NotifyDelivery.id.desc()).limit(args.limit)
    if args.state:
        query = query.where(NotifyDelivery.state == args.state)
    with sessions() as session:
        for row in session.scalars(query):
            reason = f" {row.last_error_reason}: {row.last_error}" if row.last_error_reason else ""
            print(
                f"{row.id:>6} {row.state:<8} {row.receiver}/{row.integration} "
                f"attempts={row.attempts} {row.group_key}{reason}"
            )
    return EXIT_OK


def outbox_replay(args: argparse.Namespace) -> int:
    """``repsys notify outbox replay``."""
    if not args.ids and not args.dead:
        print("repsys: give delivery ids or --dead")
        return EXIT_CONFIG
    sessions = _sessions(args)
    n = outbox.replay(sessions, None if args.dead else args.ids, utcnow())
    print(f"replayed {n} deliveries")
    return EXIT_OK
