"""``repsys sim accounting build PATH``: the seeded ledger as an ODBC-readable database.

The demo runs it once before the runner starts, and points ``runner.tb.odbc`` at the file
(the printed connection string). Also runnable as ``python -m sim.accounting build PATH``.
"""

from __future__ import annotations

import argparse
from typing import Any

from core.cli import EXIT_OK, DemoProcess


def _build(args: argparse.Namespace) -> int:
    from sim.accounting.ledger import Ledger  # noqa: PLC0415 - loaded only when the command runs
    from sim.accounting.odbc import build_database, connection_string  # noqa: PLC0415 - loaded only when the command runs

    ledger = Ledger.seeded(
        args.seed, fiscal_start_month=args.fiscal_start_month, sub_cent=args.sub_cent
    )
    path = build_database(ledger, args.path, amounts=args.amounts)
    print(connection_string(path))
    return EXIT_OK


def add_parser(sub: Any) -> None:
    """Register ``accounting build`` on a sub-parser set (``repsys sim`` or ``-m``)."""
    accounting = sub.add_parser("accounting", help="the simulated Plex accounting data")
    acc_sub = accounting.add_subparsers(dest="accounting_command", metavar="ACTION", required=True)
    p = acc_sub.add_parser("build", help="write the seeded ledger to a SQLite file read over ODBC")
    p.add_argument("path", help="the SQLite file to (re)create")
    p.add_argument("--seed", type=int, default=1, help="ledger seed (default 1)")
    p.add_argument(
        "--fiscal-start-month",
        type=int,
        default=1,
        choices=range(1, 13),
        metavar="M",
        help="first month of the fiscal year (default 1, calendar years)",
    )
    p.add_argument(
        "--amounts",
        choices=("real", "decimal", "text"),
        default="real",
        help="how the ODBC balance view types amounts (default real: doubles)",
    )
    p.add_argument(
        "--sub-cent",
        action="store_true",
        help="entries with five decimals, as Plex keeps them (default whole cents)",
    )
    p.set_defaults(func=_build)


def add_commands(sim_sub: Any) -> None:
    """Register ``repsys sim accounting ...`` on the ``sim`` sub-parser set."""
    add_parser(sim_sub)


def demo_processes() -> list[DemoProcess]:
    """The seeded ledger the demo's runner reads over ODBC (config/demo.yaml points here)."""
    return [
        DemoProcess(
            name="accounting-db",
            argv=["sim", "accounting", "build", "@WORKDIR@/accounting.db"],
            order=5,
            http=False,
            oneshot=True,
        )
    ]
