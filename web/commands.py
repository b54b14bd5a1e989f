"""What ``repsys web ...`` runs: serving the app, the one-shot check, users and tokens.

Imported only when a ``web`` command runs (``web/cli.py`` registers them lazily), so
``repsys`` starts without loading FastAPI and uvicorn for every other process.

``repsys web`` serves the app with uvicorn on ``web.host:web.port`` and /metrics /healthz
/readyz on ``http.port`` too, like every process. SIGTERM or Ctrl-C stops it gracefully:
open live streams end, requests in flight finish (up to 5 s). ``repsys web check`` is the
one-shot mode: build the app, check the database and Redis, apply the bootstrap users,
exit 0 when ready.

Secrets are never command-line arguments (they would show in ``ps`` and shell history):
``--password-env NAME`` / ``--pin-env NAME`` read an environment variable,
``--password-stdin`` reads a line from standard input, otherwise a terminal prompts.
"""

from __future__ import annotations

import argparse
import getpass
import os
import signal
import sys
from typing import Any

import uvicorn
from sqlalchemy import select

from core.cli import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_OK,
    config_from_args,
    setup_process,
    start_observability,
)
from core.config import RepsysConfig
from core.db import make_engine, session_factory
from core.db.schema import ApiToken, User
from core.lifecycle import Stopper
from core.logs import get_logger
from core.redis import connect_sync
from web import accounts
from web.app import check_ready, create_app
from web.errors import FormError

log = get_logger(__name__)


class _Server(uvicorn.Server):
    """uvicorn's server that also sets our stopper, so live streams end on SIGTERM."""

    def __init__(self, config: uvicorn.Config, stopper: Stopper) -> None:
        super().__init__(config)
        self.stopper = stopper

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.stopper.stop()
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        # A stop asked for before uvicorn took the signals over still stops it.
        return await super().on_tick(counter) or self.stopper.stopped


def uvicorn_config(app: Any, host: str, port: int) -> uvicorn.Config:
    """How the app is served, in production and in tests alike."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        # The app decides itself whom to believe (web.trusted_proxy): uvicorn must not
        # rewrite the client address from X-Forwarded-For.
        proxy_headers=False,
        server_header=False,
        access_log=False,
        log_config=None,
        lifespan="off",
        timeout_graceful_shutdown=5,
    )


def _bootstrap(cfg: RepsysConfig, engine: Any) -> list[str]:
    try:
        with session_factory(engine).begin() as session:
            return accounts.bootstrap(session, cfg.web.bootstrap_users)
    except FormError as exc:
        print(f"repsys: web.bootstrap_users: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from exc


def serve(args: argparse.Namespace) -> int:
    cfg, registry = setup_process(args)
    host = args.host or cfg.web.host
    port = cfg.web.port if args.port is None else args.port
    stopper = Stopper()
    # uvicorn handles SIGTERM/SIGINT itself once it runs (graceful shutdown, see _Server)
    # and then re-raises the signal to the handler it found: make that one a quiet stop,
    # so a requested stop exits 0, also when it comes before uvicorn started.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _signum, _frame: stopper.stop())
    services: list[Any] = []

    def ready() -> tuple[bool, str]:
        return check_ready(services[0]) if services else (False, "starting")

    # Liveness answers from the first second; readiness once the app is built.
    obs = start_observability(cfg, registry, ready=ready)
    engine = make_engine(cfg.database)
    redis = connect_sync(cfg.redis)
    try:
        names = _bootstrap(cfg, engine)
        if names:
            log.info("bootstrap_users_applied", users=names)
        # The signal history's report, from the composition root (web imports no reader).
        make_tool_life = getattr(args, "tool_life_history", None)
        make_series = getattr(args, "history_series", None)
        app = create_app(
            cfg,
            engine=engine,
            redis=redis,
            registry=registry,
            stopper=stopper,
            tool_life=make_tool_life(cfg) if make_tool_life is not None else None,
            history_series=make_series(cfg) if make_series is not None else None,
        )
        services.append(app.state.services)
        log.info("web_starting", url=f"http://{host}:{port}{cfg.web.root_path}/")
        if not stopper.stopped:
            _Server(uvicorn_config(app, host, port), stopper).run()
        log.info("web_stopped")
    finally:
        obs.stop()
        redis.close()
        engine.dispose()
    return EXIT_OK


def check(args: argparse.Namespace) -> int:
    cfg, _ = setup_process(args)
    engine = make_engine(cfg.database)
    redis = connect_sync(cfg.redis)
    try:
        app = create_app(cfg, engine=engine, redis=redis)
        ready, why = check_ready(app.state.services)
        if not ready:
            print(f"web: not ready: {why}", file=sys.stderr)
            return EXIT_FAILURE
        names = _bootstrap(cfg, engine)
        print(
            f"web: ready (database and redis answer; bootstrap users: {', '.join(names) or 'none'})"
        )
        return EXIT_OK
    finally:
        redis.close()
        engine.dispose()


def _secret(args: argparse.Namespace, kind: str, *, wanted: bool) -> str | None:
    env_name = getattr(args, f"{kind}_env", None)
    if env_name:
        if env_name not in os.environ:
            raise FormError({kind: f"environment variable {env_name} is not set"})
        return os.environ[env_name]
    if kind == "password" and getattr(args, "password_stdin", False):
        return sys.stdin.readline().rstrip("\r\n")
    if wanted and sys.stdin.isatty():
        return getpass.getpass(f"{kind.upper() if kind == 'pin' else kind.capitalize()}: ")
    return None


def _with_session(args: argparse.Namespace, action: Any) -> int:
    cfg = config_from_args(args)
    engine = make_engine(cfg.database)
    try:
        with session_factory(engine).begin() as session:
            action(session)
    except FormError as exc:
        for field, message in exc.errors.items():
            print(f"repsys web: {field}: {message}", file=sys.stderr)
        return EXIT_CONFIG
    finally:
        engine.dispose()
    return EXIT_OK


def user_add(args: argparse.Namespace) -> int:
    def action(session: Any) -> None:
        password = _secret(args, "password", wanted=args.badge is None)
        pin = _secret(args, "pin", wanted=args.badge is not None)
        accounts.add_user(
            session,
            username=args.username,
            roles=args.roles.split(","),
            password=password,
            badge=args.badge,
            pin=pin,
            display_name=args.name,
        )
        print(f"user {args.username} added")

    return _with_session(args, action)


def user_passwd(args: argparse.Namespace) -> int:
    def action(session: Any) -> None:
        password = _secret(args, "password", wanted=True)
        if password is None:
            raise FormError({"password": "give it with --password-env or --password-stdin"})
        accounts.set_password(session, args.username, password)
        print(f"password of {args.username} changed")

    return _with_session(args, action)


def user_active(args: argparse.Namespace) -> int:
    def action(session: Any) -> None:
        accounts.set_active(session, args.username, args.active)
        print(f"user {args.username} {'enabled' if args.active else 'disabled'}")

    return _with_session(args, action)


def user_list(args: argparse.Namespace) -> int:
    def action(session: Any) -> None:
        for user in session.scalars(select(User).order_by(User.username)):
            state = "active" if user.active else "disabled"
            print(f"{user.username}\t{user.roles}\t{user.badge or '-'}\t{state}")

    return _with_session(args, action)


def token_add(args: argparse.Namespace) -> int:
    def action(session: Any) -> None:
        _, token = accounts.add_token(
            session, name=args.name, roles=args.roles.split(","), created_by=getpass.getuser()
        )
        # The only time the token is shown: it is stored as a digest.
        print(token)

    return _with_session(args, action)


def token_revoke(args: argparse.Namespace) -> int:
    def action(session: Any) -> None:
        if not accounts.revoke_token(session, args.name):
            raise FormError({"name": f"no live token {args.name}"})
        print(f"token {args.name} revoked")

    return _with_session(args, action)


def token_list(args: argparse.Namespace) -> int:
    def action(session: Any) -> None:
        for row in session.scalars(select(ApiToken).order_by(ApiToken.name)):
            state = "revoked" if row.revoked_at else "live"
            print(f"{row.name}\t{row.roles}\t{state}")

    return _with_session(args, action)
