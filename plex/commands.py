"""The ``plex`` package's commands, imported only when one of them runs (see ``plex/cli.py``).

* ``repsys plex-sender [--once]``: the outbox sender and status follow-up. ``--once``
  sends every due row, runs one status sweep, prints a summary and exits.
* ``repsys outbox list | show | replay | cancel``: the outbox for operations staff.
* ``repsys plex call KEY [@Name=value ...] | template KEY | check-workcenters``: talk to
  the configured Plex by hand (how a plant finds and tries its data sources).

Exit codes: 0 success, 1 failure (Plex refused, a fatal master-data mismatch, an
operator request the row's state does not allow), 2 bad configuration or usage.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

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
from core.db.schema import Ticket, TicketEvent
from core.lifecycle import Backoff, Stopper, install_signal_handlers
from core.logs import configure_logging, get_logger
from core.metrics import new_registry
from core.redis import connect_sync
from plex import outbox
from plex.actions import PlexActions
from plex.client import PlexClient
from plex.errors import PlexError
from plex.followup import FollowUpSender, status_config
from plex.masterdata import workcenter_problems
from plex.metrics import PlexMetrics
from plex.ratelimit import RedisRateLimiter
from plex.sender import Sender, describe
from plex.status import StatusFollowUp

log = get_logger(__name__)


def build_actions(
    cfg: RepsysConfig, *, metrics: PlexMetrics | None = None, stopper: Stopper | None = None
) -> PlexActions:
    """A client with the shared Redis rate limit, wrapped in the configured actions."""
    limiter = RedisRateLimiter(
        connect_sync(cfg.redis), cfg.plex.rate_limit, metrics=metrics, stopper=stopper
    )
    client = PlexClient(cfg.plex, metrics=metrics, limiter=limiter)
    return PlexActions(client, cfg.plex.actions)


def build_sender(
    cfg: RepsysConfig,
    *,
    sessions: sessionmaker[Session] | None = None,
    metrics: PlexMetrics | None = None,
    stopper: Stopper | None = None,
) -> Sender:
    """A ready sender (for ``repsys plex-sender`` and in-process callers such as web)."""
    stopper = stopper or Stopper()
    sessions = sessions or session_factory(make_engine(cfg.database))
    actions = build_actions(cfg, metrics=metrics, stopper=stopper)
    return Sender(cfg, sessions, actions, metrics=metrics, stopper=stopper)


def _master_data(cfg: RepsysConfig, actions: PlexActions) -> bool:
    """The start-up check; False when it is fatal and failed."""
    mode = cfg.plex.master_data_check
    if mode == "off" or not cfg.machines:
        return True
    try:
        problems = workcenter_problems(actions, cfg.machines)
    except PlexError as exc:
        problems = [f"cannot list Plex workcenters: {exc}"]
    emit = log.error if mode == "fatal" else log.warning
    for problem in problems:
        emit("plex_master_data", problem=problem)
    if problems and mode == "fatal":
        print("repsys plex-sender: master data does not match Plex:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return False
    return True


def _run_sender(args: argparse.Namespace) -> int:
    cfg, registry = setup_process(args)
    metrics = PlexMetrics(registry)
    stopper = Stopper()
    sender = build_sender(cfg, metrics=metrics, stopper=stopper)
    follow = StatusFollowUp(status_config(cfg), sender.sessions, sender.actions, metrics=metrics)
    # Issue 17: notes and priority on filed tickets, from the delivery outbox.
    followups = FollowUpSender(
        cfg, sender.sessions, sender.actions, name=sender.name, metrics=metrics
    )
    if not _master_data(cfg, sender.actions):
        return EXIT_FAILURE
    if args.once:
        sent = sender.drain()
        while followups.run_once():
            pass
        checked = follow.run_once()
        sender.update_depth()
        print(f"processed {sent} outbox rows; checked the status of {checked} tickets")
        return EXIT_OK
    install_signal_handlers(stopper)
    healthy = {"ok": False, "why": "starting"}
    http = start_observability(
        cfg, registry, ready=lambda: (healthy["ok"], "" if healthy["ok"] else healthy["why"])
    )
    log.info("plex_sender_started", sender=sender.name, endpoint=cfg.plex.endpoint)
    backoff = Backoff(base_s=1.0, cap_s=30.0)
    next_status = 0.0
    try:
        while not stopper.stopped:
            try:
                n = sender.run_once()
                n += followups.run_once()
                if time.monotonic() >= next_status:
                    follow.run_once()
                    next_status = time.monotonic() + cfg.plex.status.interval_s
                sender.update_depth()
            except Exception as exc:
                # The database (or Redis) is away: keep the process, retry with backoff.
                healthy.update(ok=False, why=f"{type(exc).__name__}: {exc}")
                delay = backoff.next()
                log.error("plex_sender_loop_failed", error=str(exc), retry_in_s=round(delay, 1))
                stopper.wait(delay)
                continue
            healthy.update(ok=True, why="")
            backoff.reset()
            if n == 0:
                stopper.wait(cfg.plex.sender.poll_interval_s)
    finally:
        http.stop()
        log.info("plex_sender_stopped", sender=sender.name)
    return EXIT_OK


# --- repsys outbox ----------------------------------------------------------------------


def _sessions(args: argparse.Namespace) -> tuple[RepsysConfig, sessionmaker[Session]]:
    cfg = config_from_args(args)
    configure_logging(cfg.logging.format, "WARNING")
    return cfg, session_factory(make_engine(cfg.database))


def _fmt_row(t: Ticket) -> str:
    error = f"  [{t.last_error_reason}]" if t.last_error_reason and t.state == "dead" else ""
    return (
        f"{t.id:>6}  {t.state:<9} {t.external_ref:<24} {t.machine_id:<10} "
        f"{t.plex_number or '-':<12} {t.attempts:>3}  {t.title[:40]}{error}"
    )


def _outbox_list(args: argparse.Namespace) -> int:
    _, sessions = _sessions(args)
    with sessions() as session:
        stmt = select(Ticket).order_by(Ticket.id.desc()).limit(args.limit)
        if args.state:
            stmt = stmt.where(Ticket.state == args.state)
        rows = list(session.scalars(stmt))
    print(f"{'id':>6}  {'state':<9} {'external_ref':<24} {'machine':<10} {'plex':<12} try  title")
    for t in rows:
        print(_fmt_row(t))
    return EXIT_OK


def _outbox_show(args: argparse.Namespace) -> int:
    _, sessions = _sessions(args)
    with sessions() as session:
        ticket = outbox.find(session, args.ticket)
        if ticket is None:
            print(f"repsys outbox: no ticket {args.ticket!r}", file=sys.stderr)
            return EXIT_FAILURE
        events = list(
            session.scalars(
                select(TicketEvent)
                .where(TicketEvent.ticket_id == ticket.id)
                .order_by(TicketEvent.id)
            )
        )
        data = describe(ticket)
    print(json.dumps(data, indent=2, default=str))
    print("history:")
    for ev in events:
        print(f"  {ev.at:%Y-%m-%d %H:%M:%S}  {ev.event:<10} {ev.detail}")
    return EXIT_OK


def _outbox_change(args: argparse.Namespace) -> int:
    _, sessions = _sessions(args)
    who = args.who or getpass.getuser()
    status = EXIT_OK
    with sessions() as session:
        idents = list(args.tickets)
        if getattr(args, "all_dead", False):
            dead = session.scalars(select(Ticket.id).where(Ticket.state == "dead"))
            idents += [str(i) for i in dead]
        if not idents:
            print("repsys outbox: name tickets (id or external reference)", file=sys.stderr)
            return EXIT_CONFIG
        for ident in idents:
            ticket = outbox.find(session, ident)
            if ticket is None:
                print(f"repsys outbox: no ticket {ident!r}", file=sys.stderr)
                status = EXIT_FAILURE
                continue
            try:
                if args.action == "replay":
                    outbox.replay(session, ticket, who=who)
                else:
                    outbox.cancel(session, ticket, who=who)
            except outbox.OutboxError as exc:
                print(f"repsys outbox: {exc}", file=sys.stderr)
                status = EXIT_FAILURE
                continue
            session.commit()
            print(f"{args.action}: ticket {ticket.id} ({ticket.external_ref}) is {ticket.state}")
    return status


# --- repsys plex call / template / check-workcenters --------------------------------------


def _client(args: argparse.Namespace) -> tuple[RepsysConfig, PlexClient]:
    cfg = config_from_args(args)
    configure_logging(cfg.logging.format, "ERROR")
    return cfg, PlexClient(cfg.plex, metrics=PlexMetrics(new_registry()))


def _plex_call(args: argparse.Namespace) -> int:
    _, client = _client(args)
    params: dict[str, str] = {}
    for item in args.inputs:
        name, sep, value = item.partition("=")
        if not sep or not name.startswith("@"):
            print(f"repsys plex call: {item!r} is not @Name=value", file=sys.stderr)
            return EXIT_CONFIG
        params[name] = value
    try:
        result = client.execute_data_source(args.key, params, name=args.name)
    except PlexError as exc:
        print(f"repsys plex call: {exc} [{exc.reason}]", file=sys.stderr)
        return EXIT_FAILURE
    print(
        json.dumps(
            {
                "message": result.message,
                "instance_no": result.instance_no,
                "result_sets": result.result_sets,
                "outputs": result.output_parameters,
            },
            indent=2,
        )
    )
    return EXIT_OK


def _plex_template(args: argparse.Namespace) -> int:
    _, client = _client(args)
    try:
        names = client.request_template(args.key)
    except PlexError as exc:
        print(f"repsys plex template: {exc} [{exc.reason}]", file=sys.stderr)
        return EXIT_FAILURE
    for name in names:
        print(name)
    return EXIT_OK


def _plex_check(args: argparse.Namespace) -> int:
    cfg, client = _client(args)
    try:
        problems = workcenter_problems(PlexActions(client, cfg.plex.actions), cfg.machines)
    except PlexError as exc:
        print(f"repsys plex check-workcenters: {exc} [{exc.reason}]", file=sys.stderr)
        return EXIT_FAILURE
    for problem in problems:
        print(problem)
    if not problems:
        print(f"all {len(cfg.machines)} machines' workcenters exist in Plex")
    return EXIT_FAILURE if problems else EXIT_OK


__all__ = ["build_actions", "build_sender"]
