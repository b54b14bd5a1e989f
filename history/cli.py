"""``repsys history``: the signal history writer and its tools.

- ``repsys history`` reads the signal streams in its own consumer group and writes
  Parquet files to the object store until SIGTERM; ``--burst`` stores what is waiting
  and exits (tests, operators).
- ``repsys history prune`` deletes files older than ``history.retention_days``.
- ``repsys history query SQL --from DATE --to DATE`` runs DuckDB SQL over the view
  ``signals`` and prints tab-separated rows.
- ``repsys history tool-life --from DATE --to DATE [--xlsx FILE]``: the tool-life history
  (run quantity per tool change, per machine, tool and job, the standard life beside it).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from core.cli import DemoProcess


def _lazy(name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from history import commands  # noqa: PLC0415 - pyarrow and DuckDB only when used

        return int(getattr(commands, name)(args))

    return run


def add_commands(sub: Any) -> None:
    """Register ``repsys history`` and its tools on the ``repsys`` parser."""
    p = sub.add_parser("history", help="signal history: streams -> Parquet in the object store")
    p.add_argument("--burst", action="store_true", help="store what is waiting, then exit")
    p.set_defaults(func=_lazy("_run"))
    hsub = p.add_subparsers(dest="history_command", metavar="TOOL")
    pr = hsub.add_parser("prune", help="delete files older than history.retention_days")
    pr.set_defaults(func=_lazy("_prune"))
    q = hsub.add_parser("query", help="DuckDB SQL over the view `signals`")
    q.add_argument("sql", help='e.g. "SELECT machine, count(*) FROM signals GROUP BY 1"')
    q.add_argument("--from", dest="date_from", required=True, help="first plant date")
    q.add_argument("--to", dest="date_to", required=True, help="last plant date (included)")
    q.set_defaults(func=_lazy("_query"))
    t = hsub.add_parser("tool-life", help="run quantity per tool change (InsToolLifeHistory)")
    t.add_argument("--from", dest="date_from", required=True, help="first plant date")
    t.add_argument("--to", dest="date_to", required=True, help="last plant date (included)")
    t.add_argument("--xlsx", default="", help="also write the report to this .xlsx file")
    t.set_defaults(func=_lazy("_tool_life"))


def demo_processes() -> list[DemoProcess]:
    """The demo keeps a history of its simulated plant in its local store."""
    return [DemoProcess(name="history", argv=["history"], order=45)]


__all__ = ["add_commands", "demo_processes"]
