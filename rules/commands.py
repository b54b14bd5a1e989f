"""The ``rules`` commands (worker, golden cases, backtest), imported only when one runs.

What each command does and its exit codes: ``rules/cli.py``, which registers them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

from core import keys
from core.cli import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_OK,
    config_from_args,
    die_config,
    setup_process,
    start_observability,
)
from core.db import make_engine, session_factory
from core.errors import ConfigError
from core.lifecycle import Stopper, install_signal_handlers, run_until_stopped
from core.model import DecodeError, Signal
from core.redis import connect_sync
from rules.backtest import backtest_report, replay_partitions, stream_items
from rules.engine import Program
from rules.errors import CaseError
from rules.metrics import RulesMetrics
from rules.replay import case_dirs, read_items, replay, run_case
from rules.worker import RulesWorker


def _program(args: argparse.Namespace) -> Program:
    cfg = config_from_args(args)
    try:
        return Program(cfg, file=args.config)
    except ConfigError as err:
        die_config(err)


def _run(args: argparse.Namespace) -> int:
    cfg, registry = setup_process(args)
    try:
        program = Program(cfg, file=args.config)
    except ConfigError as err:
        die_config(err)
    metrics = RulesMetrics(registry)
    redis = connect_sync(cfg.redis)
    sessions = session_factory(make_engine(cfg.database))
    worker = RulesWorker(
        cfg, redis, sessions, metrics, program=program, worker_id=args.worker_id or None
    )
    if args.once:
        stats = worker.once()
        print(
            f"rules: {stats.entries} entries, {stats.dead_letters} dead-lettered, "
            f"{stats.episodes} episodes, {stats.tickets} tickets, {stats.replays} replays"
        )
        return EXIT_OK

    def ready() -> tuple[bool, str]:
        return worker.ready, "" if worker.ready else "no lease round completed yet"

    server = start_observability(cfg, registry, ready)
    stopper = Stopper()

    async def main() -> None:
        install_signal_handlers(stopper, asyncio.get_running_loop())
        await run_until_stopped(stopper, [asyncio.to_thread(worker.run, stopper)])

    try:
        asyncio.run(main())
    finally:
        server.stop()
    return EXIT_OK


def _test(args: argparse.Namespace) -> int:
    root = Path(args.cases)
    cases = case_dirs(root)
    if not cases:
        print(f"repsys: {root}: no case folders (with input.jsonl) found", file=sys.stderr)
        return EXIT_CONFIG
    failed = 0
    for case in cases:
        try:
            result = run_case(case)
        except (ConfigError, CaseError) as err:
            print(f"repsys: {err}", file=sys.stderr)
            return EXIT_CONFIG
        if result.ok:
            print(f"PASS {result.name} ({len(result.actual)} episodes)")
            continue
        failed += 1
        print(f"FAIL {result.name}")
        for problem in result.problems:
            print(f"  {problem}")
        if args.verbose:
            for row in result.actual:
                print("  actual: " + json.dumps({k: v for k, v in row.items() if k != "evidence"}))
    print(f"{len(cases) - failed} passed, {failed} failed")
    return EXIT_FAILURE if failed else EXIT_OK


def _backtest_history(args: argparse.Namespace) -> int:
    """``--from``/``--to``: the signal history, one process per partition."""
    program = _program(args)
    try:
        start, end = date.fromisoformat(args.date_from), date.fromisoformat(args.date_to or "")
    except ValueError as exc:
        print(f"repsys: --from/--to: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    machines = tuple(m for m in args.machines.split(",") if m)
    # The composition root (repsys/cli.py) supplies the source: rules imports no reader.
    source = args.history_source(program.cfg, start, end, machines)
    processes = args.processes or program.cfg.history.backtest_processes
    result = replay_partitions(program.cfg, source, file=args.config, processes=processes)
    if args.json:
        for row in result.ledger.rows():
            print(json.dumps(row, default=str))
    else:
        print(backtest_report(result, limit=args.limit))
        print(f"\n{result.signals} signals replayed, {result.bad} entries did not decode")
    return EXIT_OK


def _backtest(args: argparse.Namespace) -> int:
    if args.date_from:
        return _backtest_history(args)
    program = _program(args)
    bad = 0

    def from_stream() -> Any:
        nonlocal bad
        redis = connect_sync(program.cfg.redis)
        parts = args.partition or list(range(program.cfg.streams.partitions))
        for item in stream_items(redis, parts, args.start, args.end):
            if isinstance(item, DecodeError):
                bad += 1
                continue
            yield item

    items: Any = read_items(Path(args.file)) if args.file else from_stream()
    try:
        result = replay(program, items)
    except CaseError as err:
        print(f"repsys: {err}", file=sys.stderr)
        return EXIT_CONFIG
    if args.json:
        for row in result.ledger.rows():
            print(json.dumps(row, default=str))
    else:
        print(backtest_report(result, limit=args.limit))
        print(f"\n{result.engine.signals} signals replayed, {bad} entries did not decode")
    return EXIT_OK


def _relearn(args: argparse.Namespace) -> int:
    """Ask the rules to learn a machine's cycle baselines again, in stream order.

    A ``baseline_reset`` signal (subject: the program, empty for all) goes into the
    machine's partition stream like any signal, so the worker applies it exactly between the
    cycles before and after it, and a replay of the stream does the same.
    """
    cfg = config_from_args(args)
    if args.machine not in {m.id for m in cfg.machines}:
        print(f"repsys: {args.machine!r} is not a configured machine", file=sys.stderr)
        return EXIT_CONFIG
    now = time.time()
    sig = Signal(args.machine, "baseline_reset", args.program, source_ts=now, receive_ts=now,
                 subject=args.program)  # fmt: skip
    redis = connect_sync(cfg.redis)
    stream = keys.signal_stream(keys.partition_of(args.machine, cfg.streams.partitions))
    entry = redis.xadd(stream, sig.to_fields())
    what = f"program {args.program}" if args.program else "every program"
    print(f"rules: baselines of {args.machine} ({what}) will be learned again (entry {entry!s})")
    return EXIT_OK
