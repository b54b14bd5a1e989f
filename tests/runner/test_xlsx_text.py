"""Report cells with text from Plex or the floor are text in the file, never formulas."""

from __future__ import annotations

from pathlib import Path

from openpyxl import Workbook, load_workbook

from runner.tb.report import TBLine, write_xlsx
from runner.xlsxtext import as_text

HOSTILE = ['=HYPERLINK("http://evil.example","x")', "=1+1", "=cmd|' /C calc'!A0"]


def test_a_tb_account_name_starting_with_equals_is_text(tmp_path: Path) -> None:
    lines = [
        TBLine(202401, "2024-01", "Asset", "Cash", "Bank", f"1000-{i}", name, 1234, -5)
        for i, name in enumerate(HOSTILE)
    ]
    path = tmp_path / "tb.xlsx"
    write_xlsx(path, {123681: lines})
    rows = list(load_workbook(path)["123681"].iter_rows(min_row=2))
    assert [(r[5].value, r[5].data_type) for r in rows] == [(n, "s") for n in HOSTILE]
    assert [r[6].value for r in rows] == [12.34] * 3  # amounts stay numbers


def test_as_text_leaves_numbers_and_empty_cells_alone(tmp_path: Path) -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["=2*3", 6, None, "plain"])
    as_text(sheet[1])
    path = tmp_path / "cells.xlsx"
    book.save(path)
    cells = next(load_workbook(path).active.iter_rows())
    assert [(c.value, c.data_type) for c in cells] == [
        ("=2*3", "s"),
        (6, "n"),
        (None, "n"),
        ("plain", "s"),
    ]
