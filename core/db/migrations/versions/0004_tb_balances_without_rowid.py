"""tb_balances WITHOUT ROWID on SQLite

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 21:10:00

On SQLite the closed-period balances become a ``WITHOUT ROWID`` table: its rows are
stored in the primary key's B-tree instead of a rowid table plus a separate index of the
key, so the TB's million-row load writes one tree instead of two (decision 0490). SQLite
cannot alter that property, so the table is rebuilt (Alembic batch mode: create the new
table, copy the rows, drop the old, rename), with every row and column as before. Other
databases have no rowid table to drop (PostgreSQL, MySQL's InnoDB and SQL Server already
cluster or heap as they do): the migration does nothing there.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLE = "tb_balances"


def _rebuild(*, with_rowid: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table(
        _TABLE, recreate="always", table_kwargs={"sqlite_with_rowid": with_rowid}
    ):
        pass  # recreate="always": the copy is the change


def upgrade() -> None:
    _rebuild(with_rowid=False)


def downgrade() -> None:
    _rebuild(with_rowid=True)
