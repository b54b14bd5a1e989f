"""``repsys`` commands of the ``runner`` package.

* ``repsys runner [--burst]``: take requests off the queue and run their pipelines.
  ``--burst`` handles what is waiting (including requests of dead runners due for
  reclaim), prints a summary and exits: the one-shot mode of tests and operators.
* ``repsys scheduler [--fire NAME] [--list]``: enqueue requests from the schedules, one
  active instance; ``--fire NAME`` enqueues one schedule's request now and exits.
* ``repsys request KIND [--start P --end P] [--pcn N ...] [--shift S] [--param k=v]
  [--wait]``: make a request; ``--wait`` prints live progress until it ends.
* ``repsys queue [--cancel ID] [--show ID]``: the queue like a print queue.

Exit codes: 0 success, 1 failure (a request failed or was cancelled, a run failed), 2 bad
configuration, usage or request. The commands live in ``runner/commands.py``, imported
only when one of them runs.
"""

from __future__ import annotations

import argparse
import getpass
from collections.abc import Callable
from typing import Any

from core.cli import DemoProcess


def _lazy(name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from runner import commands  # noqa: PLC0415 - heavy imports only when used

        return int(commands.guard(getattr(commands, name))(args))

    return run


def add_commands(sub: Any) -> None:
    """Register ``runner``, ``scheduler``, ``request`` and ``queue``."""
    p = sub.add_parser("runner", help="run report pipelines from the queue")
    p.add_argument("--burst", action="store_true", help="handle what is waiting, then exit")
    p.add_argument("--consumer", help="name in the runners' group (default host-pid)")
    p.set_defaults(func=_lazy("runner"))

    p = sub.add_parser("scheduler", help="enqueue scheduled reports (one active instance)")
    p.add_argument("--fire", metavar="NAME", help="enqueue this schedule's request now, exit")
    p.add_argument("--list", action="store_true", help="print the schedules and next times")
    p.set_defaults(func=_lazy("scheduler"))

    p = sub.add_parser("request", help="request a report (tb, escalation, tool_check, ...)")
    p.add_argument("kind", help="report kind, e.g. tb")
    p.add_argument("--start", help="first period, e.g. 202401 (tb)")
    p.add_argument("--end", help="last period, e.g. 202412 (tb)")
    p.add_argument("--pcn", action="append", help="a PCN (repeat for several; tb)")
    p.add_argument("--shift", help="shift name (escalation)")
    p.add_argument("--param", action="append", metavar="NAME=VALUE", help="other parameters")
    p.add_argument("--requester", default=_whoami(), help="who asks (default: your login)")
    p.add_argument("--wait", action="store_true", help="print progress until it ends")
    p.add_argument("--timeout", type=float, default=3600.0, help="give up waiting after (s)")
    p.set_defaults(func=_lazy("request"))

    p = sub.add_parser("queue", help="the report queue like a print queue")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--cancel", metavar="ID", help="cancel a pending request")
    p.add_argument("--show", metavar="ID", help="a request with its runs and steps")
    p.add_argument("--requester", default=_whoami(), help="who cancels (default: your login)")
    p.set_defaults(func=_lazy("queue"))


def _whoami() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def demo_processes() -> list[DemoProcess]:
    """The runner and the scheduler."""
    return [
        DemoProcess(name="runner", argv=["runner"], order=60),
        DemoProcess(name="scheduler", argv=["scheduler"], order=61),
    ]
