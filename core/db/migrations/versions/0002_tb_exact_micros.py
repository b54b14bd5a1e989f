"""trial balance amounts as exact micros

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07 07:45:00

Plex's amounts are copied as integer micros (millionths) instead of cents rounded row by
row, and the recreated balances keep their exact year-to-date micros beside the rounded
cents (runner/README.md, "Money and rounding"). Stored cents convert exactly (x 10,000).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RENAMED = {
    "tb_balances": ("debit", "credit"),
    "tb_open_activity": ("beginning", "debit", "credit", "ending"),
}


def _convert(table: str, names: Sequence[str], old: str, new: str, expression: str) -> None:
    """Replace ``<name>_<old>`` columns by ``<name>_<new>`` = ``expression`` of the old
    (``{c}`` stands for the old column)."""
    with op.batch_alter_table(table, schema=None) as batch_op:
        for name in names:
            batch_op.add_column(sa.Column(f"{name}_{new}", sa.BigInteger(), nullable=True))
    sets = ", ".join(f"{n}_{new} = " + expression.format(c=f"{n}_{old}") for n in names)
    op.execute(f"UPDATE {table} SET {sets}")  # noqa: S608 - our own table and column names
    with op.batch_alter_table(table, schema=None) as batch_op:
        for name in names:
            batch_op.alter_column(f"{name}_{new}", existing_type=sa.BigInteger(), nullable=False)
            batch_op.drop_column(f"{name}_{old}")


def upgrade() -> None:
    for table, names in _RENAMED.items():
        _convert(table, names, "cents", "micros", "{c} * 10000")
    with op.batch_alter_table("tb_account_period_balance", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("ytd_debit_micros", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("ytd_credit_micros", sa.BigInteger(), nullable=False, server_default="0")
        )
    op.execute(
        "UPDATE tb_account_period_balance SET ytd_debit_micros = ytd_debit_cents * 10000, "
        "ytd_credit_micros = ytd_credit_cents * 10000"
    )


def downgrade() -> None:
    with op.batch_alter_table("tb_account_period_balance", schema=None) as batch_op:
        batch_op.drop_column("ytd_credit_micros")
        batch_op.drop_column("ytd_debit_micros")
    for table, names in _RENAMED.items():
        # Back to cents, rounded half up (away from zero) as the TB rounds; integer
        # division truncates on every supported database.
        _convert(
            table,
            names,
            "micros",
            "cents",
            "CASE WHEN {c} >= 0 THEN ({c} + 5000) / 10000 ELSE -((5000 - {c}) / 10000) END",
        )
