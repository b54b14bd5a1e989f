"""The ledger behind a real ODBC driver, in views named like Plex's ``accounting_v_*``.

Plex's ODBC source (Progress DataDirect OpenAccess, ``odbc.plex.com:19995``) is not
available outside Plex, so tests and the demo read the seeded ledger through another real
ODBC driver: unixODBC with Debian's SQLite ODBC driver (``libsqliteodbc``) over a SQLite
file written here. The runner opens it with pyodbc and a DSN-less connection string, the
way it opens Plex in production; only the connection string differs.

Views (columns as the runner reads them; ``plexus_customer_no`` is the PCN):

* ``accounting_v_Account_e``: plexus_customer_no, account_key, account_no, account_name,
  active, start_period
* ``accounting_v_Category_Type``: category_type, revenue_or_expense (1/0)
* ``accounting_v_Category_Account_e``: plexus_customer_no, account_no, category_no,
  category_name, category_type, sub_category_no, sub_category_name
* ``accounting_v_Period_e``: plexus_customer_no, period_key, period, fiscal_order,
  period_display, begin_date, end_date, period_status (1 closed, 0 open), update_date
* ``accounting_v_Balance_e``: plexus_customer_no, account_key, account_no, period,
  debit, credit, closed periods only (open periods are data source 4814's)

Amounts are served in the type :func:`build_database` is told (``amounts``), so the
tests see what a real driver might send: ``real`` (a ``REAL`` column: doubles),
``decimal`` (a ``DECIMAL(19,6)`` column: SQLite keeps the number, a double by its
numeric affinity, and its ODBC driver reports the column as a decimal and hands each
value over as text of up to 15 significant digits, as some drivers do) or ``text`` (fixed
six decimals, so trailing zeros). The ledger's sub-cent amounts go through unchanged in
all three, for amounts below about 10^9 (15 significant digits).
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from sim.accounting.chart import CATEGORY_TYPES
from sim.accounting.ledger import Ledger
from sim.accounting.money import money

#: How the balance view types its amounts (``repsys sim accounting build --amounts``).
AmountType = Literal["real", "decimal", "text"]
AMOUNT_TYPES: tuple[AmountType, ...] = ("real", "decimal", "text")
_COLUMN_TYPES = {"real": "REAL", "decimal": "DECIMAL(19,6)", "text": "TEXT"}

#: Debian's SQLite 3 ODBC driver (package libsqliteodbc).
#: The driver by the name Debian's libsqliteodbc registers in /etc/odbcinst.ini, so the
#: same string works on every architecture (the library path differs by multiarch triplet).
SQLITE_ODBC_DRIVER = "{SQLite3}"

_SCHEMA = """
CREATE TABLE account (
  pcn INTEGER NOT NULL, account_key INTEGER NOT NULL, account_no TEXT NOT NULL,
  account_name TEXT NOT NULL, active INTEGER NOT NULL, start_period INTEGER NOT NULL,
  PRIMARY KEY (pcn, account_no));
CREATE TABLE category_type (category_type TEXT PRIMARY KEY, revenue_or_expense INTEGER);
CREATE TABLE category_account (
  pcn INTEGER NOT NULL, account_no TEXT NOT NULL, category_no INTEGER, category_name TEXT,
  category_type TEXT, sub_category_no INTEGER, sub_category_name TEXT,
  PRIMARY KEY (pcn, account_no));
CREATE TABLE period (
  pcn INTEGER NOT NULL, period_key INTEGER NOT NULL, period INTEGER NOT NULL,
  fiscal_order INTEGER NOT NULL, period_display TEXT NOT NULL, begin_date TEXT NOT NULL,
  end_date TEXT NOT NULL, period_status INTEGER NOT NULL, update_date TEXT NOT NULL,
  PRIMARY KEY (pcn, period));
CREATE TABLE balance (
  pcn INTEGER NOT NULL, account_key INTEGER NOT NULL, account_no TEXT NOT NULL,
  period INTEGER NOT NULL, debit {amount} NOT NULL, credit {amount} NOT NULL,
  PRIMARY KEY (pcn, period, account_no));

CREATE VIEW accounting_v_Account_e AS
  SELECT pcn AS plexus_customer_no, account_key, account_no, account_name, active,
         start_period FROM account;
CREATE VIEW accounting_v_Category_Type AS
  SELECT category_type, revenue_or_expense FROM category_type;
CREATE VIEW accounting_v_Category_Account_e AS
  SELECT pcn AS plexus_customer_no, account_no, category_no, category_name, category_type,
         sub_category_no, sub_category_name FROM category_account;
CREATE VIEW accounting_v_Period_e AS
  SELECT pcn AS plexus_customer_no, period_key, period, fiscal_order, period_display,
         begin_date, end_date, period_status, update_date FROM period;
CREATE VIEW accounting_v_Balance_e AS
  SELECT b.pcn AS plexus_customer_no, b.account_key, b.account_no, b.period,
         b.debit, b.credit
  FROM balance b JOIN period p ON p.pcn = b.pcn AND p.period = b.period
  WHERE p.period_status = 1;
"""


def _amount(micros: int, amounts: AmountType) -> Any:
    if amounts == "real":
        return micros / 1_000_000  # the double nearest the decimal, as a REAL column holds it
    if amounts == "decimal":
        return money(micros)
    return f"{Decimal(micros).scaleb(-6):.6f}"


def build_database(ledger: Ledger, path: str | Path, *, amounts: AmountType = "real") -> Path:
    """Write ``ledger`` to a fresh SQLite file at ``path`` (replaced if it exists), its
    balances typed ``amounts``."""
    if amounts not in _COLUMN_TYPES:
        raise ValueError(f"amounts must be one of {', '.join(AMOUNT_TYPES)}, not {amounts!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    conn = sqlite3.connect(tmp)
    try:
        # Our own constant type names, not input.
        conn.executescript(_SCHEMA.replace("{amount}", _COLUMN_TYPES[amounts]))
        conn.executemany(
            "INSERT INTO category_type VALUES (?, ?)",
            [(k, int(v)) for k, v in CATEGORY_TYPES.items()],
        )
        conn.executemany(
            "INSERT INTO account VALUES (?, ?, ?, ?, ?, ?)",
            [
                (a.pcn, a.key, a.account_no, a.name, int(a.active), a.start_period)
                for a in ledger.accounts
            ],
        )
        conn.executemany(
            "INSERT INTO category_account VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    a.pcn,
                    a.account_no,
                    a.category_no,
                    a.category_name,
                    a.category_type,
                    a.sub_category_no,
                    a.sub_category_name,
                )
                for a in ledger.accounts
            ],
        )
        conn.executemany(
            "INSERT INTO period VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    p.pcn,
                    p.key,
                    p.period,
                    p.fiscal_order,
                    p.display,
                    p.begin.isoformat(),
                    p.end.isoformat(),
                    int(p.closed),
                    p.updated.isoformat(sep=" "),
                )
                for p in ledger.periods
            ],
        )
        keys = {(a.pcn, a.account_no): a.key for a in ledger.accounts}
        conn.executemany(
            "INSERT INTO balance VALUES (?, ?, ?, ?, ?, ?)",
            (
                (
                    pcn,
                    keys[(pcn, account_no)],
                    account_no,
                    period,
                    _amount(d, amounts),
                    _amount(c, amounts),
                )
                for (pcn, account_no, period), (d, c) in ledger.postings.items()
            ),
        )
        conn.commit()
    finally:
        conn.close()
    tmp.replace(path)
    return path


def connection_string(path: str | Path, *, timeout_ms: int = 100_000) -> str:
    """A DSN-less pyodbc connection string for the database at ``path``.

    ``Timeout`` is the driver's busy timeout: a reader waits this long for a writer's lock
    (tests hold one to keep a runner inside an ODBC read). ``StepAPI=1`` makes the driver
    hand out rows as SQLite steps through them, as a server streams a result (without it
    the driver reads the whole result first; it streams only statements without bound
    parameters either way).
    """
    return (
        f"Driver={SQLITE_ODBC_DRIVER};Database={Path(path).resolve()};Timeout={timeout_ms};"
        "StepAPI=1"
    )
