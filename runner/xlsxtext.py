"""Text in report cells stays text.

openpyxl stores any string that starts with ``=`` as a formula. Report cells hold text
from machine payloads, Plex and operators (a ticket title, an account name): written as
is, ``=HYPERLINK(...)`` or ``=cmd|...`` would run as a formula when the file is opened.
Every string cell is therefore marked as a string, whatever it starts with.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def as_text(cells: Iterable[Any]) -> None:
    """Mark every string-valued cell of ``cells`` as a string, never a formula."""
    for cell in cells:
        if isinstance(cell.value, str):
            cell.data_type = "s"
