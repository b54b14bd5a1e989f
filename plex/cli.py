"""``repsys`` commands of the ``plex`` package.

* ``repsys plex-sender [--once]``: the outbox sender and status follow-up. ``--once``
  sends every due row, runs one status sweep, prints a summary and exits.
* ``repsys outbox list | show | replay | cancel``: the outbox for operations staff.
* ``repsys plex call KEY [@Name=value ...] | template KEY | check-workcenters``: talk to
  the configured Plex by hand (how a plant finds and tries its data sources).

Exit codes: 0 success, 1 failure (Plex refused, a fatal master-data mismatch, an
operator request the row's state does not allow), 2 bad configuration or usage. The
commands live in ``plex/commands.py`` (zeep, SQLAlchemy), imported only when one of them
runs, so ``repsys --help`` and every other package's command start without them.
"""

from __future__ import annotations

import argparse
import os
import secrets
from collections.abc import Callable
from typing import Any

from core.cli import DemoProcess

#: The variable the demo's config reads for the simulator's and the sender's password.
DEMO_PASSWORD_ENV = "REPSYS_DEMO_PLEX_PASSWORD"  # noqa: S105 - a variable name, no secret


def _lazy(name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from plex import commands  # noqa: PLC0415 - heavy imports only when used

        return int(getattr(commands, name)(args))

    return run


class _IntermixedParser(argparse.ArgumentParser):
    """A sub-command parser that takes options anywhere on the line.

    ``repsys plex call 9726 --name Daily_Shift_Report_Get @Start_Date=…`` is how people
    type it; plain argparse stops filling ``inputs`` at the first option and then calls the
    rest unrecognized. The top-level parser has sub-commands, which
    ``parse_intermixed_args`` refuses, so the sub-command parser does the intermixing:
    argparse hands it the rest of the line through ``parse_known_args``.
    """

    _intermixing = False

    def parse_known_args(  # type: ignore[override]
        self, args: Any = None, namespace: Any = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self._intermixing:  # parse_known_intermixed_args calls back in, twice
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def add_commands(sub: Any) -> None:
    """Register this package's commands on the ``repsys`` parser."""
    p = sub.add_parser("plex-sender", help="send outbox tickets to Plex; follow their status")
    p.add_argument("--once", action="store_true", help="send every due row, then exit")
    p.set_defaults(func=_lazy("_run_sender"))

    ob = sub.add_parser("outbox", help="the Plex ticket outbox: list, show, replay, cancel")
    ob_sub = ob.add_subparsers(dest="outbox_command", metavar="ACTION", required=True)
    p = ob_sub.add_parser("list", help="latest tickets, newest first")
    p.add_argument(
        "--state",
        choices=["pending", "sending", "filed", "dead", "cancelled", "closed"],
        help="only this state",
    )
    p.add_argument("--limit", type=int, default=50, help="rows to show (default 50)")
    p.set_defaults(func=_lazy("_outbox_list"))
    p = ob_sub.add_parser("show", help="one ticket and its history")
    p.add_argument("ticket", help="id or external reference")
    p.set_defaults(func=_lazy("_outbox_show"))
    for action, help_text in (
        ("replay", "send dead tickets again (looked up in Plex first)"),
        ("cancel", "withdraw pending or dead tickets"),
    ):
        p = ob_sub.add_parser(action, help=help_text)
        p.add_argument("tickets", nargs="*", help="ids or external references")
        p.add_argument("--who", default=None, help="operator name for the history")
        if action == "replay":
            p.add_argument("--all-dead", action="store_true", help="every dead ticket")
        p.set_defaults(func=_lazy("_outbox_change"), action=action)

    px = sub.add_parser("plex", help="call the configured Plex by hand")
    px_sub = px.add_subparsers(
        dest="plex_command", metavar="ACTION", required=True, parser_class=_IntermixedParser
    )
    p = px_sub.add_parser("call", help="run a data source and print its result as JSON")
    p.add_argument("key", type=int, help="data source key")
    p.add_argument("inputs", nargs="*", help="@Name=value inputs")
    p.add_argument("--name", default=None, help="data source name to send along")
    p.set_defaults(func=_lazy("_plex_call"))
    p = px_sub.add_parser("template", help="the input names a data source takes")
    p.add_argument("key", type=int, help="data source key")
    p.set_defaults(func=_lazy("_plex_template"))
    p = px_sub.add_parser("check-workcenters", help="every machine's workcenter exists in Plex")
    p.set_defaults(func=_lazy("_plex_check"))


def demo_processes() -> list[DemoProcess]:
    """The sender, with the demo's simulator password from the environment."""
    password = os.environ.setdefault(DEMO_PASSWORD_ENV, secrets.token_urlsafe(18))
    return [
        DemoProcess(
            name="plex-sender", argv=["plex-sender"], order=40, env={DEMO_PASSWORD_ENV: password}
        )
    ]


__all__ = ["DEMO_PASSWORD_ENV", "add_commands", "demo_processes"]
