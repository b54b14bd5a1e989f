"""The SQL database: the system of record (schema, engine, migrations)."""

from core.db import warehouse as _warehouse  # registers the warehouse tables on Base
from core.db.engine import current_revision, database_url, make_engine, session_factory, upgrade
from core.db.schema import Base

__all__ = [
    "Base",
    "current_revision",
    "database_url",
    "make_engine",
    "session_factory",
    "upgrade",
]
del _warehouse
