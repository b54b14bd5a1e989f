"""``repsys notify``: escalation sweep, dispatcher and delivery sender in one process.

* ``repsys notify [--once] [--send-only]``: every ``notify.escalation.interval_s`` the
  sweep raises levels; each pass routes new ticket events into deliveries and sends due
  e-mail and Teams deliveries. ``--once`` does one pass of each and exits;
  ``--send-only`` runs the sender alone (more senders for a large outbox).
* ``repsys notify outbox list [--state S] | replay (ID ... | --dead)``: the delivery
  outbox for operations staff (dead letters with their reason, replayed).

Commands live in ``notify/commands.py``, imported only when one runs.
"""

from __future__ import annotations

import argparse
from typing import Any

from core.cli import DemoProcess


def _run(name: str) -> Any:
    def run(args: argparse.Namespace) -> int:
        from notify import commands  # noqa: PLC0415 - heavy imports only when used

        return int(getattr(commands, name)(args))

    return run


def add_commands(sub: Any) -> None:
    """Register ``repsys notify`` on the ``repsys`` parser."""
    p = sub.add_parser("notify", help="escalation, routing and deliveries of ticket events")
    p.add_argument("--once", action="store_true", help="one pass of each job, then exit")
    p.add_argument("--send-only", action="store_true", help="run only the delivery sender")
    p.add_argument("--name", default="", help="sender name (default: host-pid)")
    p.set_defaults(func=_run("run"))
    nsub = p.add_subparsers(dest="notify_command", metavar="TOOL")
    o = nsub.add_parser("outbox", help="list or replay deliveries")
    osub = o.add_subparsers(dest="outbox_command", metavar="ACTION", required=True)
    lst = osub.add_parser("list", help="deliveries, newest first")
    lst.add_argument("--state", choices=["pending", "sending", "sent", "dead"], default=None)
    lst.add_argument("--limit", type=int, default=50)
    lst.set_defaults(func=_run("outbox_list"))
    rep = osub.add_parser("replay", help="send dead deliveries again")
    rep.add_argument("ids", nargs="*", type=int, metavar="ID")
    rep.add_argument("--dead", action="store_true", help="every dead delivery")
    rep.set_defaults(func=_run("outbox_replay"))


def demo_processes() -> list[DemoProcess]:
    """The demo runs one notify process."""
    return [DemoProcess(name="notify", argv=["notify"], order=60)]


__all__ = ["add_commands", "demo_processes"]
