"""``repsys web``: serve the web app; ``repsys web user|token ...``: who may use it.

This module only registers the commands; they live in ``web/commands.py``, imported when
one of them runs, so other processes' ``repsys`` start does not load FastAPI and uvicorn.

* ``repsys web [--host H] [--port N]``: serve the app (``web.host:web.port``).
* ``repsys web check``: the one-shot mode; database and Redis answer, bootstrap users
  applied, exit 0 (1 when not ready).
* ``repsys web user add|passwd|enable|disable|list``: local accounts (password, or badge
  and PIN); secrets from ``--password-env``/``--pin-env``/``--password-stdin`` or a prompt.
* ``repsys web token add|revoke|list``: API tokens; ``add`` prints the token once.

Exit codes: 0 success, 1 not ready, 2 bad configuration, usage or input.
"""

from __future__ import annotations

import argparse
import os
import secrets
from collections.abc import Callable
from functools import cache
from typing import Any

from core.cli import DemoProcess

#: Environment variables the demo's bootstrap accounts read (see config/demo.yaml).
DEMO_PASSWORD_ENV = "REPSYS_DEMO_PASSWORD"  # noqa: S105 - a variable name, not a secret
DEMO_PIN_ENV = "REPSYS_DEMO_PIN"


def _lazy(name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from web import commands  # noqa: PLC0415 - FastAPI and uvicorn only when used

        return int(getattr(commands, name)(args))

    return run


def _secret_flags(p: argparse.ArgumentParser, *, pin: bool) -> None:
    p.add_argument("--password-env", metavar="NAME", help="read the password from $NAME")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    if pin:
        p.add_argument("--pin-env", metavar="NAME", help="read the badge PIN from $NAME")


def add_commands(sub: Any) -> None:
    """Register ``repsys web`` and its user and token actions."""
    web = sub.add_parser("web", help="serve the web app (forms, boards, reports, JSON API)")
    web.add_argument("--host", default=None, help="listen address (overrides web.host)")
    web.add_argument("--port", type=int, default=None, help="listen port (overrides web.port)")
    web.set_defaults(func=_lazy("serve"))
    actions = web.add_subparsers(dest="web_command", metavar="ACTION")

    p = actions.add_parser("check", help="check database and Redis, apply bootstrap users, exit")
    p.set_defaults(func=_lazy("check"))

    users = actions.add_parser("user", help="local accounts").add_subparsers(
        dest="user_command", metavar="ACTION", required=True
    )
    p = users.add_parser("add", help="add an account (password, or badge and PIN)")
    p.add_argument("username")
    p.add_argument("--roles", required=True, help="comma-separated: operator,supervisor,...")
    p.add_argument("--name", default="", help="display name")
    p.add_argument("--badge", default=None, help="badge number (then a PIN is needed)")
    _secret_flags(p, pin=True)
    p.set_defaults(func=_lazy("user_add"))
    p = users.add_parser("passwd", help="set a user's password")
    p.add_argument("username")
    _secret_flags(p, pin=False)
    p.set_defaults(func=_lazy("user_passwd"))
    for name, active in (("enable", True), ("disable", False)):
        p = users.add_parser(name, help=f"{name} an account")
        p.add_argument("username")
        p.set_defaults(func=_lazy("user_active"), active=active)
    users.add_parser("list", help="list accounts").set_defaults(func=_lazy("user_list"))

    tokens = actions.add_parser("token", help="API tokens").add_subparsers(
        dest="token_command", metavar="ACTION", required=True
    )
    p = tokens.add_parser("add", help="create a token and print it (once)")
    p.add_argument("name")
    p.add_argument("--roles", required=True, help="comma-separated roles of the token")
    p.set_defaults(func=_lazy("token_add"))
    p = tokens.add_parser("revoke", help="revoke a token")
    p.add_argument("name")
    p.set_defaults(func=_lazy("token_revoke"))
    tokens.add_parser("list", help="list tokens").set_defaults(func=_lazy("token_list"))


@cache
def demo_credentials() -> tuple[str, str]:
    """The demo accounts' password and PIN: from the environment, or fresh each demo."""
    password = os.environ.get(DEMO_PASSWORD_ENV) or secrets.token_urlsafe(12)
    pin = os.environ.get(DEMO_PIN_ENV) or f"{secrets.randbelow(10**6):06d}"
    return password, pin


def demo_banner_lines() -> list[str]:
    """What the demo prints so a person can log in (the demo's own throwaway secrets)."""
    password, pin = demo_credentials()
    return [
        f"  web logins   supervisor / controller / admin, password {password}",
        f"               operator badge 1001, PIN {pin}",
    ]


def demo_processes() -> list[DemoProcess]:
    """The web app, with the demo accounts' secrets in its environment."""
    password, pin = demo_credentials()
    return [
        DemoProcess(
            name="web",
            argv=["web"],
            order=80,
            env={DEMO_PASSWORD_ENV: password, DEMO_PIN_ENV: pin},
            banner=tuple(demo_banner_lines()),
        )
    ]
