"""``repsys sim plex``: run the simulated Plex until SIGTERM/SIGINT.

The demo starts it first (order 10) on the fixed port of ``sim.plex.port``, which the
demo's ``plex.endpoint`` names. Its Basic-auth password and the sender's come from one
environment variable that the demo sets for both children (a fresh random value per demo),
so no password is written in any file.
"""

from __future__ import annotations

import argparse
import os
import secrets
from typing import TYPE_CHECKING, Any

from core.cli import (
    EXIT_OK,
    DemoProcess,
    config_from_args,
    setup_process,
    start_observability,
)
from core.config.sim_plex import SimWorkcenter
from core.lifecycle import Stopper, install_signal_handlers
from core.logs import get_logger

if TYPE_CHECKING:
    from sim.plex.server import PlexSimServer

log = get_logger(__name__)

#: The variable the demo's config reads for both the simulator's and the sender's password.
DEMO_PASSWORD_ENV = "REPSYS_DEMO_PLEX_PASSWORD"  # noqa: S105 - a variable name, not a password


def demo_password() -> str:
    """One random password per demo run, shared by every child through the environment."""
    return os.environ.setdefault(DEMO_PASSWORD_ENV, secrets.token_urlsafe(18))


def build_server(args: argparse.Namespace) -> PlexSimServer:
    # The simulator's HTTP and SOAP stack loads only when it runs.
    from sim.plex.server import PlexSimServer  # noqa: PLC0415 - loaded only when the command runs

    cfg = config_from_args(args)
    sim_cfg = cfg.sim.plex
    workcenters = sim_cfg.workcenters or [
        SimWorkcenter(key=m.workcenter_key, code=m.workcenter_code, pcn=m.pcn) for m in cfg.machines
    ]
    return PlexSimServer(
        sim_cfg,
        host=args.host or sim_cfg.host,
        port=sim_cfg.port if args.port is None else args.port,
        workcenters=workcenters or None,
    )


def _run(args: argparse.Namespace) -> int:
    cfg, registry = setup_process(args)
    server = build_server(args).start()
    http = start_observability(cfg, registry)
    stopper = Stopper()
    install_signal_handlers(stopper)
    print(f"simulated Plex at {server.url} (admin {server.admin_url})", flush=True)
    try:
        stopper.wait()
    finally:
        server.stop()
        http.stop()
        log.info("sim_plex_stopped")
    return EXIT_OK


def add_commands(sim_sub: Any) -> None:
    """Register ``repsys sim plex ...`` on the ``sim`` sub-parser set."""
    p = sim_sub.add_parser("plex", help="the simulated Plex SOAP server (demo and tests)")
    p.add_argument("--host", default=None, help="listen address (default: sim.plex.host)")
    p.add_argument(
        "--port", type=int, default=None, help="listen port (default: sim.plex.port; 0 = free)"
    )
    p.set_defaults(func=_run)


def demo_processes() -> list[DemoProcess]:
    return [
        DemoProcess(
            name="sim-plex",
            argv=["sim", "plex"],
            order=10,
            env={DEMO_PASSWORD_ENV: demo_password()},
        )
    ]
