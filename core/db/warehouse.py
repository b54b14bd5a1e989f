"""Warehouse tables of the reports (trial balance and others), owned by ``runner/``.

Loads into these tables are delete-then-insert scoped by PCN (and period) and fenced
(see :class:`core.db.schema.Fence`), so a rerun is idempotent and a stale runner cannot
write over a newer run. Every row records the fencing number of the run that wrote it.

The trial balance tables follow the production pipeline (DOMAIN.md section 5), one table
per step that loads: year category types, accounts, periods (the previous load kept as
ordinal 0), the period ranges of the last run, closed-period balances from ODBC, open-period
activity from data source 4814, and the recreated account period balances the report
reads. Amounts copied from Plex are integer micros (``*_micros``, millionths of the
currency unit): exact on every database whatever decimals Plex sends, and what the
transform adds up. The trial balance's lines are integer cents (``*_cents``), rounded once
from the exact micros; their exact year-to-date micros are kept beside them as the anchor
of a later run.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from core.db.schema import Base, utcnow

__all__ = [
    "Base",
    "TBAccount",
    "TBAccountPeriodBalance",
    "TBAccountYearCategoryType",
    "TBBalance",
    "TBOpenActivity",
    "TBPeriod",
    "TBPeriodRange",
]

_CENTS = BigInteger
_MICROS = BigInteger


class TBAccountYearCategoryType(Base):
    """An account's category type in one fiscal year (step 1).

    The YTD rule needs to know, per year, whether an account was revenue/expense; a
    year's snapshot is kept once taken, and only this year and next are refreshed.
    """

    __tablename__ = "tb_account_year_category_type"

    pcn: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_no: Mapped[str] = mapped_column(String(32), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    category_type: Mapped[str] = mapped_column(String(16))
    revenue_or_expense: Mapped[bool] = mapped_column(Boolean)
    fence: Mapped[int] = mapped_column(BigInteger)


class TBAccount(Base):
    """The chart of accounts with categories (step 2)."""

    __tablename__ = "tb_accounts"

    pcn: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_no: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_key: Mapped[int] = mapped_column(Integer)
    account_name: Mapped[str] = mapped_column(String(128))
    active: Mapped[bool] = mapped_column(Boolean)
    category_type: Mapped[str] = mapped_column(String(16))
    revenue_or_expense: Mapped[bool] = mapped_column(Boolean, default=False)
    category_no: Mapped[int] = mapped_column(Integer)
    category_name: Mapped[str] = mapped_column(String(64))
    sub_category_no: Mapped[int] = mapped_column(Integer)
    sub_category_name: Mapped[str] = mapped_column(String(64))
    start_period: Mapped[int] = mapped_column(Integer, default=0)
    fence: Mapped[int] = mapped_column(BigInteger)


class TBPeriod(Base):
    """The fiscal calendar (step 3). ``ordinal`` 1 is this load, 0 the previous one."""

    __tablename__ = "tb_periods"

    pcn: Mapped[int] = mapped_column(Integer, primary_key=True)
    period: Mapped[int] = mapped_column(Integer, primary_key=True)
    ordinal: Mapped[int] = mapped_column(Integer, primary_key=True)
    period_key: Mapped[int] = mapped_column(Integer)
    fiscal_order: Mapped[int] = mapped_column(Integer)
    period_display: Mapped[str] = mapped_column(String(16))
    begin_date: Mapped[date]
    end_date: Mapped[date]
    closed: Mapped[bool] = mapped_column(Boolean)
    update_date: Mapped[str] = mapped_column(String(32), doc="Plex's update_date, as text.")
    fence: Mapped[int] = mapped_column(BigInteger)


class TBPeriodRange(Base):
    """The periods the last run of a PCN worked on (steps 4 and 5).

    ``start_period``..``end_period`` is what was asked for; ``calc_start`` is where the
    recalculation starts (moved back by step 5 when an earlier period changed or the
    anchor is missing); the closed and open windows split ``calc_start..end_period``.
    """

    __tablename__ = "tb_period_ranges"

    pcn: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64))
    start_period: Mapped[int] = mapped_column(Integer)
    end_period: Mapped[int] = mapped_column(Integer)
    calc_start: Mapped[int] = mapped_column(Integer)
    anchor_period: Mapped[int] = mapped_column(Integer, doc="0: before the first period.")
    start_closed: Mapped[int | None] = mapped_column(Integer, default=None)
    end_closed: Mapped[int | None] = mapped_column(Integer, default=None)
    start_open: Mapped[int | None] = mapped_column(Integer, default=None)
    end_open: Mapped[int | None] = mapped_column(Integer, default=None)
    fence: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class TBBalance(Base):
    """Closed-period debit and credit per account (step 6, ``accounting_v_Balance_e``)."""

    __tablename__ = "tb_balances"
    # A clustered table on SQLite: the rows live in the primary key's B-tree, with no
    # rowid table beside it, so a million-row load writes one tree instead of two (the
    # TB's largest insert, decision 0490; migration 0004). Other
    # databases ignore the option.
    __table_args__ = {"sqlite_with_rowid": False}

    pcn: Mapped[int] = mapped_column(Integer, primary_key=True)
    period: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_no: Mapped[str] = mapped_column(String(32), primary_key=True)
    debit_micros: Mapped[int] = mapped_column(_MICROS)
    credit_micros: Mapped[int] = mapped_column(_MICROS)
    fence: Mapped[int] = mapped_column(BigInteger)


class TBOpenActivity(Base):
    """Open-period activity per account (step 7, data source 4814, one period a call)."""

    __tablename__ = "tb_open_activity"

    pcn: Mapped[int] = mapped_column(Integer, primary_key=True)
    period: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_no: Mapped[str] = mapped_column(String(32), primary_key=True)
    beginning_micros: Mapped[int] = mapped_column(_MICROS)
    debit_micros: Mapped[int] = mapped_column(_MICROS)
    credit_micros: Mapped[int] = mapped_column(_MICROS)
    ending_micros: Mapped[int] = mapped_column(_MICROS)
    fence: Mapped[int] = mapped_column(BigInteger)


class TBAccountPeriodBalance(Base):
    """Period and year-to-date amounts per account and period (written by step 10,
    ``check_balanced``, once the whole run balances).

    The report's ``current_debit_credit`` and ``ytd_debit_credit`` are ``balance_cents``
    and ``ytd_balance_cents``: each line's exact debit minus credit rounded half up, so
    within half a cent of the ledger; ``*_debit_cents`` / ``*_credit_cents`` are the
    exact columns rounded alike (their difference may be a cent off the balance). A
    period whose rounded lines would not foot has one more row, account ``ROUNDING``
    (runner/README.md, "Money and rounding"). ``ytd_*_micros`` are the exact year-to-date
    amounts a later run starts from. A period's rows serve as the anchor of a later run
    only while they are closed and ``source_update`` still equals the period's update
    date in Plex (step 5 checks it).
    """

    __tablename__ = "tb_account_period_balance"

    pcn: Mapped[int] = mapped_column(Integer, primary_key=True)
    period: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_no: Mapped[str] = mapped_column(String(32), primary_key=True)
    period_display: Mapped[str] = mapped_column(String(16))
    debit_cents: Mapped[int] = mapped_column(_CENTS)
    credit_cents: Mapped[int] = mapped_column(_CENTS)
    balance_cents: Mapped[int] = mapped_column(_CENTS)
    ytd_debit_cents: Mapped[int] = mapped_column(_CENTS)
    ytd_credit_cents: Mapped[int] = mapped_column(_CENTS)
    ytd_balance_cents: Mapped[int] = mapped_column(_CENTS)
    ytd_debit_micros: Mapped[int] = mapped_column(_MICROS, server_default="0")
    ytd_credit_micros: Mapped[int] = mapped_column(_MICROS, server_default="0")
    closed: Mapped[bool] = mapped_column(Boolean, doc="False: from open-period activity.")
    source_update: Mapped[str] = mapped_column(
        String(32), default="", doc="The period's Plex update_date these amounts come from."
    )
    fence: Mapped[int] = mapped_column(BigInteger)
