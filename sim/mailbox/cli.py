"""``repsys sim mailbox DIR``: a local SMTP server on ``notify.smtp``'s port, filing mails in DIR.

The demo runs it so that notification e-mail (the supervisors' escalations) can be read
without a mail server: the banner prints the folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from core.cli import EXIT_OK, DemoProcess, setup_process, start_observability
from core.lifecycle import Stopper, install_signal_handlers
from core.logs import get_logger

log = get_logger(__name__)


def _run(args: argparse.Namespace) -> int:
    from sim.mailbox.server import Mailbox  # noqa: PLC0415 - aiosmtpd only when it runs

    cfg, registry = setup_process(args)
    port = cfg.notify.smtp.port if args.port is None else args.port
    box = Mailbox(Path(args.dir), host=cfg.notify.smtp.host, port=port).start()
    http = start_observability(cfg, registry)
    stopper = Stopper()
    install_signal_handlers(stopper)
    print(f"mailbox on {cfg.notify.smtp.host}:{port}, mails in {args.dir}", flush=True)
    try:
        stopper.wait()
    finally:
        box.stop()
        http.stop()
        log.info("sim_mailbox_stopped")
    return EXIT_OK


def add_commands(sim_sub: Any) -> None:
    """Register ``repsys sim mailbox``."""
    p = sim_sub.add_parser("mailbox", help="a local SMTP server filing mails in a folder (demo)")
    p.add_argument("dir", help="folder of the .eml files")
    p.add_argument("--port", type=int, default=None, help="default: notify.smtp.port")
    p.set_defaults(func=_run)


def demo_processes() -> list[DemoProcess]:
    return [
        DemoProcess(
            name="sim-mailbox",
            argv=["sim", "mailbox", "@WORKDIR@/mailbox"],
            order=10,
            banner=("  mailbox      @WORKDIR@/mailbox/  (notification e-mail, .eml files)",),
        )
    ]
