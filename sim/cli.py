"""``repsys sim``: the simulated plant and the simulated Plex."""

from __future__ import annotations

from typing import Any

from core.cli import DemoProcess
from sim.accounting import cli as accounting_cli
from sim.mailbox import cli as mailbox_cli
from sim.plant import cli as plant_cli
from sim.plex import cli as plex_cli


def add_commands(sub: Any) -> None:
    """Register ``repsys sim plant``, ``repsys sim plex`` and ``repsys sim accounting``."""
    sim = sub.add_parser("sim", help="simulators: a plant and Plex, for the demo and tests")
    sim_sub = sim.add_subparsers(dest="sim_command", metavar="SIMULATOR", required=True)
    plant_cli.add_commands(sim_sub)
    plex_cli.add_commands(sim_sub)
    accounting_cli.add_commands(sim_sub)
    mailbox_cli.add_commands(sim_sub)


def demo_processes() -> list[DemoProcess]:
    return [
        *accounting_cli.demo_processes(),
        *plant_cli.demo_processes(),
        *plex_cli.demo_processes(),
        *mailbox_cli.demo_processes(),
    ]
