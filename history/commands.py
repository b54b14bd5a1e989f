"""The ``repsys history`` commands (imported only when one runs)."""

from __future__ import annotations

import argparse
import sys
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from core.cli import EXIT_CONFIG, EXIT_OK, config_from_args, setup_process, start_observability
from core.lifecycle import Stopper, install_signal_handlers
from core.logs import get_logger
from core.metrics import new_registry
from core.redis import connect_sync
from core.storage import open_store
from history.errors import ConsumerTaken
from history.lease import ConsumerLease
from history.metrics import HistoryMetrics
from history.read import query
from history.toollife import HEADER, tool_runs, write_xlsx
from history.writer import HistoryWriter, prune

log = get_logger(__name__)


#: Exit code of a writer refused (or displaced) because its consumer name is held.
EXIT_CONSUMER_TAKEN = 3


def _run(args: argparse.Namespace) -> int:
    cfg, registry = setup_process(args)
    store = open_store(cfg.storage, default_root=cfg.runner.output_dir)
    redis = connect_sync(cfg.redis)
    writer = HistoryWriter(cfg, redis, store, HistoryMetrics(registry))
    lease = ConsumerLease(redis, cfg.history.consumer, ttl_s=cfg.history.lease_ttl_s)
    stopper = Stopper()
    install_signal_handlers(stopper)
    try:
        lease.acquire(wait_s=cfg.history.lease_wait_s, stopper=stopper)
    except ConsumerTaken as exc:
        log.error("history_consumer_taken", consumer=cfg.history.consumer, error=str(exc))
        print(f"repsys: {exc}", file=sys.stderr)
        return EXIT_CONSUMER_TAKEN
    try:
        if args.burst:
            rows = writer.drain()
            print(f"history: {rows} signals stored")
            return EXIT_OK
        server = start_observability(cfg, registry)
        log.info("history_started", partitions=len(writer.partitions), store=store.label)
        try:
            kept = writer.run(stopper, keep=lease.keep)
        finally:
            server.stop()
        if not kept:
            print(f"repsys: history consumer {cfg.history.consumer!r} taken over", file=sys.stderr)
            return EXIT_CONSUMER_TAKEN
        return EXIT_OK
    finally:
        lease.release()


def _prune(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    store = open_store(cfg.storage, default_root=cfg.runner.output_dir)
    today = datetime.now(ZoneInfo(cfg.plant.timezone)).date()
    removed = prune(cfg, store, HistoryMetrics(new_registry()), today=today)
    print(f"history: {removed} files deleted")
    return EXIT_OK


def _query(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    try:
        start, end = date.fromisoformat(args.date_from), date.fromisoformat(args.date_to)
    except ValueError as exc:
        print(f"repsys: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    names, result = query(cfg, args.sql, start, end)
    print("\t".join(names))
    for row in result:
        print("\t".join("" if v is None else str(v) for v in row))
    return EXIT_OK


def _tool_life(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    try:
        start, end = date.fromisoformat(args.date_from), date.fromisoformat(args.date_to)
    except ValueError as exc:
        print(f"repsys: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    runs = tool_runs(cfg, start, end)
    print("\t".join(HEADER))
    for r in runs:
        life = "" if r.life is None else str(r.life)
        share = "" if r.of_life is None else f"{r.of_life:.3f}"
        print(f"{r.machine}\t{r.tool}\t{r.job}\t{r.changed_at.isoformat()}\t{r.quantity}"
              f"\t{life}\t{share}")  # fmt: skip
    if args.xlsx:
        write_xlsx(Path(args.xlsx), runs, cfg.plant.timezone)
    return EXIT_OK
