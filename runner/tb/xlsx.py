"""The trial balance's ``.xlsx``, written as SpreadsheetML text straight into the zip.

A TB has tens of thousands of lines (10,044 on the benchmark's 5,022 accounts) and eight
cells a line. openpyxl, even in write-only mode, builds a cell object, resolves its style
and writes an lxml element per cell: about 1.0 s of CPU for 80,000 cells, a sixth of the
whole pipeline (docs/decisions/0450-tb-within-1-5x.md). This writer formats each row as
one string: about a tenth of that, for the same workbook as openpyxl's reader sees it
(values, types, number formats, the header's font, fill and borders, frozen header row,
column widths; ``tests/runner/test_tb_xlsx.py`` compares the two cell by cell).

What it writes is deliberately small and fixed: one worksheet per sheet name, text as
inline strings (``t="inlineStr"``, so a text starting with ``=`` is never a formula,
``runner/xlsxtext.py``), amounts as numbers with one number format, a styled header row.
Characters XML 1.0 cannot carry (control characters other than tab, newline and carriage
return; U+FFFE, U+FFFF) are dropped from text, where openpyxl refused the whole report.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

#: The amounts' number format (thousands, two decimals, negatives in parentheses).
AMOUNT_FORMAT = "#,##0.00;(#,##0.00)"

#: What XML 1.0 cannot carry: control characters (not tab, newline, carriage return) and
#: the two non-characters U+FFFE, U+FFFF.
_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")

_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" '
    'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/styles.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
    "{sheets}"
    "</Types>"
)
_SHEET_TYPE = (
    '<Override PartName="/xl/worksheets/sheet{n}.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
)
_ROOT_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" '
    'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
    'Target="xl/workbook.xml"/>'
    "</Relationships>"
)
_WORKBOOK = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
    'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
    "<sheets>{sheets}</sheets></workbook>"
)
_WORKBOOK_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    "{sheets}"
    '<Relationship Id="rIdStyles" '
    'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles" '
    'Target="styles.xml"/>'
    "</Relationships>"
)
_SHEET_REL = (
    '<Relationship Id="rId{n}" '
    'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" '
    'Target="worksheets/sheet{n}.xml"/>'
)
#: Style 0: default; 1: the header (bold, solid yellow, thin box); 2: an amount.
#: Fills 0 and 1 are the two Excel reserves (none, gray125).
_STYLES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
    '<numFmts count="1"><numFmt numFmtId="164" formatCode={fmt}/></numFmts>'
    '<fonts count="2"><font><sz val="11"/><name val="Calibri"/></font>'
    '<font><b/><sz val="11"/><name val="Calibri"/></font></fonts>'
    '<fills count="3"><fill><patternFill patternType="none"/></fill>'
    '<fill><patternFill patternType="gray125"/></fill>'
    '<fill><patternFill patternType="solid"><fgColor rgb="00FFFF00"/>'
    '<bgColor rgb="00FFFF00"/></patternFill></fill></fills>'
    '<borders count="2"><border><left/><right/><top/><bottom/><diagonal/></border>'
    '<border><left style="thin"/><right style="thin"/><top style="thin"/>'
    '<bottom style="thin"/><diagonal/></border></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/>'
    "</cellStyleXfs>"
    '<cellXfs count="3"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    '<xf numFmtId="0" fontId="1" fillId="2" borderId="1" xfId="0" applyFont="1" '
    'applyFill="1" applyBorder="1"/>'
    '<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    "</cellXfs>"
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
    "</styleSheet>"
)
_SHEET_HEAD = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
    '<sheetViews><sheetView workbookViewId="0">'
    '<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>'
    '<selection pane="bottomLeft" activeCell="A2" sqref="A2"/>'
    "</sheetView></sheetViews>"
    "<cols>{cols}</cols><sheetData>"
)
_SHEET_TAIL = "</sheetData></worksheet>"
_HEADER, _AMOUNT = 1, 2
_CR = {"\r": "&#13;"}


def _text(value: str) -> str:
    # Inline text keeps leading and trailing blanks only when told to.
    space = ' xml:space="preserve"' if value != value.strip() else ""
    # A carriage return is a reference: a parser turns a literal one into a newline.
    return f"<t{space}>{escape(_ILLEGAL.sub('', value), _CR)}</t>"


def _letter(index: int) -> str:
    """1 -> A, 27 -> AA."""
    letters = ""
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def cents_text(cents: int) -> str:
    """An amount in cents as the exact decimal text of a cell value (``-1234.05``)."""
    whole, part = divmod(abs(cents), 100)
    return f"{'-' if cents < 0 else ''}{whole}.{part:02d}"


def _sheet_rows(
    header: Sequence[str], rows: Iterable[tuple[Sequence[str], Sequence[int]]]
) -> Iterable[str]:
    """The ``<row>`` elements: the styled header, then each row's texts then amounts."""
    refs = [_letter(i + 1) for i in range(len(header))]
    yield (
        '<row r="1">'
        + "".join(
            f'<c r="{ref}1" s="{_HEADER}" t="inlineStr"><is>{_text(name)}</is></c>'
            for ref, name in zip(refs, header, strict=True)
        )
        + "</row>"
    )
    for number, (texts, amounts) in enumerate(rows, start=2):
        cells = [
            f'<c r="{ref}{number}" t="inlineStr"><is>{_text(value)}</is></c>'
            for ref, value in zip(refs, texts, strict=False)
            if value
        ]
        cells.extend(
            f'<c r="{ref}{number}" s="{_AMOUNT}"><v>{cents_text(value)}</v></c>'
            for ref, value in zip(refs[len(texts) :], amounts, strict=True)
        )
        yield f'<row r="{number}">{"".join(cells)}</row>'


def write_workbook(
    path: Path,
    header: Sequence[str],
    widths: Sequence[float],
    sheets: dict[str, Iterable[tuple[Sequence[str], Sequence[int]]]],
) -> None:
    """Write ``sheets`` (name -> rows of (texts, amounts in cents)) to ``path``.

    Every row has the header's columns: its texts first, then its amounts; an empty text
    leaves its cell empty, as openpyxl did.
    """
    cols = "".join(
        f'<col min="{i}" max="{i}" width="{w}" customWidth="1"/>'
        for i, w in enumerate(widths, start=1)
    )
    names = list(sheets)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        archive.writestr(
            "[Content_Types].xml",
            _CONTENT_TYPES.format(
                sheets="".join(_SHEET_TYPE.format(n=n) for n in range(1, len(names) + 1))
            ),
        )
        archive.writestr("_rels/.rels", _ROOT_RELS)
        archive.writestr(
            "xl/workbook.xml",
            _WORKBOOK.format(
                sheets="".join(
                    f'<sheet name={quoteattr(name)} sheetId="{n}" r:id="rId{n}"/>'
                    for n, name in enumerate(names, start=1)
                )
            ),
        )
        archive.writestr(
            "xl/_rels/workbook.xml.rels",
            _WORKBOOK_RELS.format(
                sheets="".join(_SHEET_REL.format(n=n) for n in range(1, len(names) + 1))
            ),
        )
        archive.writestr("xl/styles.xml", _STYLES.format(fmt=quoteattr(AMOUNT_FORMAT)))
        for n, name in enumerate(names, start=1):
            with archive.open(f"xl/worksheets/sheet{n}.xml", "w") as out:
                out.write(_SHEET_HEAD.format(cols=cols).encode())
                # Rows go out in chunks: one string per row, one write per thousand.
                chunk: list[str] = []
                for row in _sheet_rows(header, sheets[name]):
                    chunk.append(row)
                    if len(chunk) >= 1000:
                        out.write("".join(chunk).encode())
                        chunk = []
                out.write(("".join(chunk) + _SHEET_TAIL).encode())


__all__ = ["AMOUNT_FORMAT", "cents_text", "write_workbook"]
