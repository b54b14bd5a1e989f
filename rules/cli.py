"""``repsys rules``: the worker, ``rules test`` (golden cases) and ``rules backtest``.

- ``repsys rules`` runs a worker until SIGTERM/SIGINT; ``--once`` takes every free
  partition, drains it, commits and exits (tests, operators).
- ``repsys rules test CASES_DIR`` runs golden cases (``input.jsonl`` → ``expected.jsonl``)
  and exits 1 when one differs.
- ``repsys rules backtest`` replays recorded signals (a JSON-lines file, the partition
  streams in Redis, or the signal history with ``--from``/``--to``, one process per
  partition) through the configured rules and prints what would have fired.

The commands live in ``rules/commands.py`` (numpy, SQLAlchemy), imported only when one
of them runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from core.cli import DemoProcess


def _lazy(name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from rules import commands  # noqa: PLC0415 - heavy imports only when used

        return int(getattr(commands, name)(args))

    return run


def _routes(args: argparse.Namespace) -> int:
    from rules.routing.command import routes  # noqa: PLC0415 - imported only when used

    return routes(args)


def add_commands(sub: Any) -> None:
    """Register ``repsys rules`` and its tools on the ``repsys`` parser."""
    p = sub.add_parser("rules", help="rules engine: signal streams -> episodes and tickets")
    p.add_argument("--once", action="store_true", help="drain free partitions, commit, exit")
    p.add_argument("--worker-id", default="", help="worker id (default: host-pid-random)")
    p.set_defaults(func=_lazy("_run"))
    rsub = p.add_subparsers(dest="rules_command", metavar="TOOL")

    t = rsub.add_parser("test", help="run golden cases (input.jsonl -> expected.jsonl)")
    t.add_argument("cases", metavar="CASES_DIR", help="a case folder or a folder of them")
    t.add_argument("-v", "--verbose", action="store_true", help="print actual episodes on failure")
    t.set_defaults(func=_lazy("_test"))

    b = rsub.add_parser("backtest", help="replay recorded signals through the configured rules")
    src = b.add_mutually_exclusive_group()
    src.add_argument("--file", help="JSON-lines signals (the golden input format)")
    src.add_argument(
        "--partition", type=int, action="append", help="stream partition (repeatable; default all)"
    )
    src.add_argument("--from", dest="date_from", help="first plant date of the signal history")
    b.add_argument("--to", dest="date_to", help="last plant date of the history (with --from)")
    b.add_argument("--machines", default="", help="history: only these machines (a,b,c)")
    b.add_argument("--processes", type=int, default=0, help="history: worker processes")
    b.add_argument("--start", default="-", help="first stream entry id (default: oldest)")
    b.add_argument("--end", default="+", help="last stream entry id (default: newest)")
    b.add_argument("--json", action="store_true", help="episodes as JSON lines")
    b.add_argument("--limit", type=int, default=50, help="episodes listed in the report")
    b.set_defaults(func=_lazy("_backtest"))

    r = rsub.add_parser(
        "relearn", help="learn cycle_time baselines of a machine again (a new setup or fixture)"
    )
    r.add_argument("machine", help="machine id")
    r.add_argument("--program", default="", help="only this program (default: every program)")
    r.set_defaults(func=_lazy("_relearn"))

    # Issue 17: routing of ticket events (notify.route), as amtool's "config routes".
    o = rsub.add_parser("routes", help="print the route tree, or the receivers of --test labels")
    o.add_argument("--test", nargs="+", metavar="LABEL=VALUE", help="labels of an event")
    o.add_argument("--cases", metavar="DIR", help="run routing golden cases")
    o.add_argument("-v", "--verbose", action="store_true", help="print the labels used")
    o.set_defaults(func=_routes)


def demo_processes() -> list[DemoProcess]:
    """The demo runs one rules worker."""
    return [DemoProcess(name="rules", argv=["rules"], order=40)]


__all__ = ["add_commands", "demo_processes"]
