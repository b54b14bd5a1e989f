"""What every package's command-line module shares: config loading and process set-up.

Each package has a ``<package>/cli.py`` with ``add_commands(subparsers)``, registering
its commands on the ``repsys`` parser, and ``demo_processes()``, the processes it adds to
``repsys demo``. ``repsys/cli.py`` wires them together.

Exit codes: 0 success, 1 failure at run time, 2 bad configuration or usage.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

from prometheus_client import CollectorRegistry

from core.config import RepsysConfig, load_config
from core.errors import ConfigError
from core.logs import configure_logging
from core.metrics import new_registry
from core.observability import ObservabilityServer

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2


@dataclass(frozen=True)
class DemoProcess:
    """A process ``repsys demo`` starts: ``repsys <argv...>`` with the demo's config.

    ``order`` sorts start-up (simulators first); ``http`` says whether it serves the
    observability endpoint (the demo then hands it a port of its own); ``banner`` lines
    are printed by the demo once everything runs (where to log in, for example). A
    ``oneshot`` entry is a set-up command the demo runs to completion before it starts the
    long-running processes (building a simulated database, for example). ``@WORKDIR@`` in
    ``argv`` becomes the demo's folder.
    """

    name: str
    argv: list[str]
    order: int = 50
    http: bool = True
    env: dict[str, str] = field(default_factory=dict)
    banner: tuple[str, ...] = ()
    oneshot: bool = False


class CommandModule(Protocol):
    """A package's ``cli`` module as ``repsys/cli.py`` sees it."""

    def add_commands(self, sub: Any) -> None:
        """Add this package's sub-commands to the ``repsys`` sub-parser set."""

    def demo_processes(self) -> list[DemoProcess]:
        """The processes this package contributes to ``repsys demo``."""


def die_config(err: ConfigError) -> NoReturn:
    print(f"repsys: {err}", file=sys.stderr)
    raise SystemExit(EXIT_CONFIG)


def config_from_args(args: argparse.Namespace) -> RepsysConfig:
    """Load ``--config``; a bad file prints ``FILE: key.path: reason`` and exits 2."""
    try:
        cfg = load_config(args.config)
    except ConfigError as err:
        die_config(err)
    if getattr(args, "http_port", None) is not None:
        cfg = cfg.model_copy(update={"http": cfg.http.model_copy(update={"port": args.http_port})})
    return cfg


def setup_process(args: argparse.Namespace) -> tuple[RepsysConfig, CollectorRegistry]:
    """Config, logging and a fresh metrics registry for a long-running process."""
    cfg = config_from_args(args)
    configure_logging(cfg.logging.format, cfg.logging.level)
    return cfg, new_registry()


def start_observability(
    cfg: RepsysConfig, registry: CollectorRegistry, ready: Any = None, healthy: Any = None
) -> ObservabilityServer:
    """Serve /metrics, /healthz, /readyz on the configured (or --http-port) address."""
    return ObservabilityServer(
        registry, host=cfg.http.host, port=cfg.http.port, ready=ready, healthy=healthy
    ).start()
