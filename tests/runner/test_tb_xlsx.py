"""The TB workbook written as text reads back as the openpyxl-written one did, cell by cell."""

from __future__ import annotations

import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook, load_workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Border, Font, PatternFill, Side

from runner.tb.report import _WIDTHS, COLUMNS, TBLine, write_xlsx
from runner.tb.xlsx import cents_text

_THIN = Side(style="thin")


def reference_xlsx(path: Path, sheets: dict[int, list[TBLine]]) -> None:
    """The report's workbook as openpyxl wrote it before (write-only, a cell object each)."""
    workbook = Workbook(write_only=True)
    for pcn, lines in sheets.items():
        sheet = workbook.create_sheet(title=str(pcn))
        for column, width in zip("ABCDEFGH", _WIDTHS, strict=True):
            sheet.column_dimensions[column].width = width
        sheet.freeze_panes = "A2"
        header = []
        for name in COLUMNS:
            cell = WriteOnlyCell(sheet, value=name)
            cell.font = Font(bold=True)
            cell.fill = PatternFill(fill_type="solid", start_color="FFFF00", end_color="FFFF00")
            cell.border = Border(left=_THIN, right=_THIN, top=_THIN, bottom=_THIN)
            header.append(cell)
        sheet.append(header)
        for line in lines:
            values = line.values()
            texts = [WriteOnlyCell(sheet, value=value) for value in values[:6]]
            for cell in texts:
                cell.data_type = "s"
            amounts = []
            for amount in values[6:]:
                cell = WriteOnlyCell(sheet, value=float(amount))
                cell.number_format = "#,##0.00;(#,##0.00)"
                amounts.append(cell)
            sheet.append([*texts, *amounts])
    workbook.save(path)


def _read(path: Path) -> dict[str, Any]:
    book = load_workbook(path)
    out: dict[str, Any] = {}
    for sheet in book.worksheets:
        cells = [
            (
                c.coordinate,
                c.value,
                c.data_type,
                c.number_format,
                bool(c.font.b),
                c.fill.fill_type,
                c.fill.start_color.rgb if c.fill.fill_type else None,
                c.border.top.style,
                c.border.left.style,
            )
            for row in sheet.iter_rows()
            for c in row
            if c.value is not None
        ]
        widths = {k: d.width for k, d in sheet.column_dimensions.items() if k in "ABCDEFGH"}
        out[sheet.title] = (sheet.freeze_panes, widths, cells)
    return out


# Text a Plex chart may hold: formulas, markup, blanks, any script (what XML can carry:
# the reference writer refuses the rest, which test_control_characters... covers).
_texts = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Cn"))
    | st.sampled_from("=<>&\"' \t\r\n"),
    max_size=12,
)
_lines = st.lists(
    st.builds(
        TBLine,
        st.integers(200001, 209913),
        _texts,
        _texts,
        _texts,
        _texts,
        _texts,
        _texts,
        st.integers(-(10**13), 10**13),
        st.integers(-(10**13), 10**13),
    ),
    max_size=30,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sheets=st.dictionaries(st.integers(1, 999_999), _lines, min_size=1, max_size=3))
def test_the_text_writer_reads_back_as_the_openpyxl_writer(
    sheets: dict[int, list[TBLine]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        mine, reference = Path(tmp) / "mine.xlsx", Path(tmp) / "reference.xlsx"
        write_xlsx(mine, sheets)
        reference_xlsx(reference, sheets)
        assert _read(mine) == _read(reference)


@given(st.integers(-(10**15), 10**15))
def test_cents_text_is_the_exact_decimal(cents: int) -> None:
    assert Decimal(cents_text(cents)) == Decimal(cents).scaleb(-2)


def test_control_characters_are_dropped_not_fatal(tmp_path: Path) -> None:
    line = TBLine(202401, "2024-01", "Asset", "Cash", "Bank", "1000", "Ca\x0bsh\x00\ufffe", 1, 2)
    write_xlsx(tmp_path / "tb.xlsx", {123681: [line]})
    rows = list(load_workbook(tmp_path / "tb.xlsx")["123681"].iter_rows(min_row=2))
    assert rows[0][5].value == "Cash"
