"""The simulated plant's chart of accounts, and the entries a machining plant posts.

Two PCNs share this chart (:meth:`sim.accounting.ledger.Ledger.seeded`); the categories
are Plex's (``accounting_v_Category_Type``): revenue and expense accounts have their
year-to-date reset at the first fiscal period, balance-sheet accounts keep accumulating.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Category types as Plex names them, and whether each is revenue/expense (its YTD
#: resets at the first fiscal period) or balance sheet (its YTD keeps accumulating).
CATEGORY_TYPES: dict[str, bool] = {
    "Asset": False,
    "Liability": False,
    "Equity": False,
    "Revenue": True,
    "Expense": True,
}


@dataclass(frozen=True)
class Account:
    """An account of one PCN's chart of accounts, with its category."""

    pcn: int
    account_no: str
    name: str
    category_type: str
    category_no: int
    category_name: str
    sub_category_no: int
    sub_category_name: str
    key: int
    start_period: int = 0  # first period the account exists (0: always)
    active: bool = True

    @property
    def revenue_or_expense(self) -> bool:
        return CATEGORY_TYPES[self.category_type]


RETAINED_EARNINGS = "39000-000-0000"

#: (account_no, name, category type, category no, category name, sub no, sub name)
CHART: list[tuple[str, str, str, int, str, int, str]] = [
    ("10000-000-0000", "Cash - Operating", "Asset", 1000, "Current Assets", 1010, "Cash"),
    (
        "10220-000-00000",
        "Accounts Receivable",
        "Asset",
        1000,
        "Current Assets",
        1020,
        "Receivables",
    ),
    (
        "12000-000-0000",
        "Inventory - Raw Material",
        "Asset",
        1000,
        "Current Assets",
        1030,
        "Inventory",
    ),
    ("15000-000-0000", "Machinery and Equipment", "Asset", 1500, "Fixed Assets", 1510, "Equipment"),
    (
        "15900-000-0000",
        "Accumulated Depreciation",
        "Asset",
        1500,
        "Fixed Assets",
        1590,
        "Depreciation",
    ),
    (
        "20100-000-0000",
        "Accounts Payable",
        "Liability",
        2000,
        "Current Liabilities",
        2010,
        "Payables",
    ),
    ("21000-000-0000", "Accrued Wages", "Liability", 2000, "Current Liabilities", 2020, "Accruals"),
    ("25000-000-0000", "Long-term Debt", "Liability", 2500, "Long-term Liabilities", 2510, "Notes"),
    ("30000-000-0000", "Common Stock", "Equity", 3000, "Equity", 3010, "Capital"),
    ("39000-000-0000", "Retained Earnings", "Equity", 3000, "Equity", 3090, "Retained Earnings"),
    ("40000-000-0000", "Sales - Knuckles", "Revenue", 4000, "Sales", 4010, "Product Sales"),
    ("40100-000-0000", "Sales - Brackets", "Revenue", 4000, "Sales", 4010, "Product Sales"),
    ("49000-000-0000", "Scrap Sales", "Revenue", 4900, "Other Income", 4910, "Scrap"),
    ("50000-000-0000", "Material", "Expense", 5000, "Cost of Sales", 5010, "Material"),
    ("51000-000-0000", "Direct Labor", "Expense", 5000, "Cost of Sales", 5020, "Labor"),
    ("52000-000-0000", "Tooling", "Expense", 5000, "Cost of Sales", 5030, "Tooling"),
    ("52500-000-0000", "Tooling - Inserts", "Expense", 5000, "Cost of Sales", 5030, "Tooling"),
    ("53000-000-0000", "Maintenance", "Expense", 5000, "Cost of Sales", 5040, "Maintenance"),
    ("60000-000-0000", "Salaries", "Expense", 6000, "Operating Expense", 6010, "Payroll"),
    ("61000-000-0000", "Utilities", "Expense", 6000, "Operating Expense", 6020, "Facilities"),
    (
        "62000-000-0000",
        "Depreciation Expense",
        "Expense",
        6000,
        "Operating Expense",
        6030,
        "Depreciation",
    ),
    ("69000-000-0000", "Interest Expense", "Expense", 6900, "Other Expense", 6910, "Interest"),
]

#: Typical entries of a machining plant: (debit account, credit account).
FLOWS: list[tuple[str, str]] = [
    ("10220-000-00000", "40000-000-0000"),
    ("10220-000-00000", "40100-000-0000"),
    ("10000-000-0000", "10220-000-00000"),
    ("12000-000-0000", "20100-000-0000"),
    ("50000-000-0000", "12000-000-0000"),
    ("20100-000-0000", "10000-000-0000"),
    ("51000-000-0000", "21000-000-0000"),
    ("60000-000-0000", "21000-000-0000"),
    ("21000-000-0000", "10000-000-0000"),
    ("52000-000-0000", "20100-000-0000"),
    ("52500-000-0000", "20100-000-0000"),
    ("53000-000-0000", "20100-000-0000"),
    ("61000-000-0000", "20100-000-0000"),
    ("62000-000-0000", "15900-000-0000"),
    ("69000-000-0000", "10000-000-0000"),
    ("10000-000-0000", "49000-000-0000"),
    ("15000-000-0000", "25000-000-0000"),
    ("10000-000-0000", "30000-000-0000"),
]
