"""``repsys sim plant``: the simulated plant for the demo, the tests and the benchmarks.

``repsys sim plant`` serves the plant (OPC UA server, MQTT publisher) until stopped,
with /metrics /healthz /readyz. ``--duration S`` stops after S simulated seconds (the
one-shot mode). ``--print S`` serves nothing: it prints S simulated seconds of the model's
signals as JSON lines and exits. ``--scenario FILE`` replaces the configured scenario
(format in sim/README.md). ``--ledger FILE`` writes the ground truth of every fault injected
(sim/plant/ledger.py) when the plant stops.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from core.cli import EXIT_CONFIG, EXIT_OK, DemoProcess, setup_process, start_observability
from core.lifecycle import Stopper, install_signal_handlers


def _run(args: argparse.Namespace) -> int:
    # asyncua and paho load only when the simulated plant runs.
    from sim.plant.ledger import write_ledger  # noqa: PLC0415 - loaded only when the command runs
    from sim.plant.model import Plant  # noqa: PLC0415 - loaded only when the command runs
    from sim.plant.scenario import ScenarioError, load_scenario  # noqa: PLC0415 - loaded only when the command runs
    from sim.plant.service import SimPlant, machine_specs, scenario_of  # noqa: PLC0415 - loaded only when the command runs

    cfg, registry = setup_process(args)
    try:
        scenario = load_scenario(args.scenario) if args.scenario else scenario_of(cfg)
    except ScenarioError as err:
        print(f"repsys: {err}", file=sys.stderr)
        return EXIT_CONFIG
    ledger = Path(args.ledger) if args.ledger else None
    if args.print is not None:
        plant = Plant(machine_specs(cfg), scenario, seed=cfg.sim.plant.seed)
        for sig in plant.advance(args.print):
            line = {
                "machine": sig.machine,
                "name": sig.name,
                "value": sig.value,
                "source_ts": sig.source_ts,
                "subject": sig.subject,
                "attrs": sig.attrs,
            }
            print(json.dumps(line))
        if ledger is not None:
            write_ledger(ledger, plant.ledger)
        return EXIT_OK
    sim = SimPlant(cfg, scenario, ledger=ledger)
    server = start_observability(cfg, registry)
    stopper = Stopper()

    async def main() -> None:
        install_signal_handlers(stopper, asyncio.get_running_loop())
        await sim.run(stopper, duration_s=args.duration)

    try:
        asyncio.run(main())
    finally:
        server.stop()
    return EXIT_OK


def add_commands(sim_sub: Any) -> None:
    """Register ``repsys sim plant`` on the ``sim`` sub-parser set."""
    p = sim_sub.add_parser("plant", help="a simulated plant: OPC UA server and MQTT publisher")
    p.add_argument("--scenario", help="scenario YAML file (replaces sim.plant.scenario)")
    p.add_argument(
        "--duration", type=float, default=None, help="stop after this many simulated seconds"
    )
    p.add_argument(
        "--print",
        type=float,
        default=None,
        metavar="SECONDS",
        help="print this many simulated seconds of signals as JSON lines; serve nothing",
    )
    p.add_argument(
        "--ledger",
        metavar="FILE",
        help="write the ground truth (every fault injected) as JSON lines to FILE at the end",
    )
    p.set_defaults(func=_run)


def demo_processes() -> list[DemoProcess]:
    """The demo's plant starts before the collector."""
    return [DemoProcess(name="sim-plant", argv=["sim", "plant"], order=10)]
