"""Regenerate the schema migration from the models in core/db (``make migration``).

Until the first release, the schema is one initial revision, regenerated whenever a model
changes, so that parallel work on several tables does not tangle revision chains. After
the first release, run with ``--new "message"`` to add a revision on top instead.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine

from core.db.engine import MIGRATIONS, alembic_config, upgrade

INITIAL = "0001"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--new", metavar="MESSAGE", help="add a revision on top of head")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite:///{Path(tmp) / 'schema.db'}")
        cfg = alembic_config(engine)
        if args.new:
            upgrade(engine)
            command.revision(cfg, message=args.new, autogenerate=True)
        else:
            for old in (MIGRATIONS / "versions").glob(f"{INITIAL}_*.py"):
                old.unlink()
            command.revision(cfg, message="initial schema", autogenerate=True, rev_id=INITIAL)
        engine.dispose()


if __name__ == "__main__":
    main()
