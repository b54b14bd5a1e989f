"""The ``repsys`` command: every process and tool behind one entry point.

``repsys <process>`` runs a long-running process; tools (``check-config``, ``db``,
``outbox``, ``request``, ``queue``) do one thing and exit. Exit status 2 means bad
configuration or usage, with the file, key path and reason on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

import collector.cli
import history.cli
import notify.cli
import plex.cli
import rules.cli
import runner.cli
import sim.cli
import web.cli
from core.cli import EXIT_CONFIG, EXIT_OK, CommandModule, config_from_args
from core.config import dump_config, load_config
from core.errors import ConfigError
from repsys import __version__, dbcli, demo, soak, wiring

#: Package command modules, in the order their commands appear in ``--help``.
COMMAND_MODULES: tuple[CommandModule, ...] = (
    collector.cli,
    rules.cli,
    plex.cli,
    runner.cli,
    web.cli,
    history.cli,
    sim.cli,
    notify.cli,
)

DEFAULT_CONFIG = os.environ.get("REPSYS_CONFIG", "config/example.yaml")


def _check_config(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.file)
    except ConfigError as err:
        print(f"repsys: {err}", file=sys.stderr)
        return EXIT_CONFIG
    sys.stdout.write(dump_config(cfg))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="repsys", description="CNC monitoring and ticketing for plants that run Plex."
    )
    parser.add_argument("--version", action="version", version=f"repsys {__version__}")
    parser.add_argument(
        "-c",
        "--config",
        default=DEFAULT_CONFIG,
        help="YAML configuration file (default: $REPSYS_CONFIG or config/example.yaml)",
    )
    parser.add_argument(
        "--http-port",
        type=int,
        default=None,
        help="port of /metrics, /healthz, /readyz (overrides http.port; 0 = any free port)",
    )
    # Readers a package takes without importing their package (repsys/wiring.py).
    parser.set_defaults(
        history_source=wiring.history_source,
        history_archive=wiring.history_archive,
        tool_life_history=wiring.tool_life_history,
        history_series=wiring.history_series,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("check-config", help="validate a config file and print it normalized")
    p.add_argument("file", help="the YAML file to check")
    p.set_defaults(func=_check_config)

    dbcli.add_commands(sub)
    for module in COMMAND_MODULES:
        module.add_commands(sub)
    demo.add_commands(sub, COMMAND_MODULES)
    soak.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Any = args.func
    try:
        return int(func(args) or 0)
    except ConfigError as err:
        print(f"repsys: {err}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


__all__ = ["build_parser", "config_from_args", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
