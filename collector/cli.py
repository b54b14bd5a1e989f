"""``repsys collector``: run the collector, or read one round and print it.

``repsys collector`` reads every configured source into the signal streams until SIGTERM
or Ctrl-C (serving /metrics, /healthz, /readyz). ``repsys collector once`` connects to
each source, reads one round (OPC UA: every node once; MQTT: a listening window of
``--seconds``), prints the signals as JSON lines on stdout and exits: 0 when every source
answered, 1 when one failed (its error on stderr), 2 on bad configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from core.cli import (
    EXIT_FAILURE,
    EXIT_OK,
    DemoProcess,
    config_from_args,
    setup_process,
    start_observability,
)
from core.lifecycle import Stopper, install_signal_handlers
from core.logs import configure_logging
from core.metrics import new_registry


def _run(args: argparse.Namespace) -> int:
    # asyncua and paho load only when a collector runs, not for every ``repsys`` command.
    from collector.metrics import CollectorMetrics  # noqa: PLC0415 - see above
    from collector.service import Collector  # noqa: PLC0415 - see above

    cfg, registry = setup_process(args)
    collector = Collector(cfg, CollectorMetrics(registry))
    server = start_observability(cfg, registry, ready=collector.ready, healthy=collector.healthy)
    stopper = Stopper()

    async def main() -> None:
        install_signal_handlers(stopper, asyncio.get_running_loop())
        await collector.run(stopper)

    try:
        asyncio.run(main())
    finally:
        server.stop()
    return EXIT_OK


def _once(args: argparse.Namespace) -> int:
    from collector.metrics import CollectorMetrics  # noqa: PLC0415 - see _run
    from collector.reader import PrintSink  # noqa: PLC0415 - see _run
    from collector.service import build_readers  # noqa: PLC0415 - see _run

    cfg = config_from_args(args)
    configure_logging(cfg.logging.format, "WARNING")
    sink = PrintSink()
    readers = build_readers(cfg, sink, CollectorMetrics(new_registry()))

    async def main() -> int:
        status = EXIT_OK
        for reader in readers:
            try:
                signals = await reader.read_once(args.seconds)
            except Exception as exc:  # report every failing source, then fail
                print(f"repsys collector once: {reader.name}: {exc}", file=sys.stderr)
                status = EXIT_FAILURE
                continue
            sink.submit(reader.kind, signals)
        return status

    return asyncio.run(main())


def add_commands(sub: Any) -> None:
    """Register ``repsys collector [run|once]``."""
    p = sub.add_parser("collector", help="read OPC UA and MQTT sources into the signal streams")
    p.add_argument(
        "mode",
        nargs="?",
        choices=["run", "once"],
        default="run",
        help="run (default): until stopped; once: read one round, print JSON lines, exit",
    )
    p.add_argument(
        "--seconds",
        type=float,
        default=3.0,
        help="once: time allowed per source (MQTT listens this long)",
    )
    p.set_defaults(func=lambda args: _once(args) if args.mode == "once" else _run(args))


def demo_processes() -> list[DemoProcess]:
    """The demo runs one collector, after the simulated plant."""
    return [DemoProcess(name="collector", argv=["collector"], order=20)]
