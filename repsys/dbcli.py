"""``repsys db``: migrate the database and sync machines from configuration."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from core.cli import EXIT_OK, config_from_args

if TYPE_CHECKING:
    from core.config import RepsysConfig


def sync_machines(cfg: RepsysConfig) -> int:
    """Upsert configured machines into ``machines``; mark the others inactive."""
    # SQLAlchemy loads only for ``repsys db``, not for every ``repsys`` command.
    from sqlalchemy import select  # noqa: PLC0415 - loaded only when the command runs

    from core.db import make_engine, session_factory  # noqa: PLC0415 - loaded only when the command runs
    from core.db.schema import MachineRow  # noqa: PLC0415 - loaded only when the command runs

    engine = make_engine(cfg.database)
    try:
        with session_factory(engine).begin() as session:
            existing = {m.id: m for m in session.scalars(select(MachineRow))}
            for m in cfg.machines:
                row = existing.pop(m.id, None) or MachineRow(id=m.id)
                row.name = m.display_name
                row.pcn = m.pcn
                row.workcenter_key = m.workcenter_key
                row.workcenter_code = m.workcenter_code
                row.building = m.building
                row.cell = m.cell
                row.active = True
                session.add(row)
            for row in existing.values():
                row.active = False
        return len(cfg.machines)
    finally:
        engine.dispose()


def _upgrade(args: argparse.Namespace) -> int:
    from core.db import current_revision, make_engine, upgrade  # noqa: PLC0415 - loaded only when the command runs

    cfg = config_from_args(args)
    engine = make_engine(cfg.database)
    try:
        upgrade(engine, args.revision)
        print(f"database at revision {current_revision(engine)}")
    finally:
        engine.dispose()
    n = sync_machines(cfg)
    print(f"{n} machines synced from configuration")
    return EXIT_OK


def _current(args: argparse.Namespace) -> int:
    from core.db import current_revision, make_engine  # noqa: PLC0415 - loaded only when the command runs

    cfg = config_from_args(args)
    engine = make_engine(cfg.database)
    try:
        print(current_revision(engine) or "(empty database)")
    finally:
        engine.dispose()
    return EXIT_OK


def add_commands(sub: Any) -> None:
    db = sub.add_parser("db", help="database migrations").add_subparsers(
        dest="db_command", metavar="ACTION", required=True
    )
    p = db.add_parser("upgrade", help="migrate the schema to the newest revision, sync machines")
    p.add_argument("revision", nargs="?", default="head")
    p.set_defaults(func=_upgrade)
    p = db.add_parser("current", help="print the database's schema revision")
    p.set_defaults(func=_current)
