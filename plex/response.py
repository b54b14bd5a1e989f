"""ExecuteDataSource's answer read straight from the XML with lxml, and zeep's answer alike.

Why it exists: zeep builds an xsd object per element of the answer, and a data source
like 4814 (5,022 rows of 7 columns) spent about two seconds of CPU there, more than the
rest of the trial balance's open-period step. The answer's shape is small and fixed (the
WSDL's ``ExecuteDataSourceResult``), so :func:`read_result` walks it with lxml instead.

It only reads what it is sure of: it returns ``None`` for anything else (another element,
elements out of the WSDL's order, a required element missing, a number that is not one, an
empty item zeep would read as None, an attribute but ``xsi:nil`` on an empty text element,
a child inside a text element) and the caller hands the response to zeep, so a Fault, an
odd answer or a broken one is raised and classified exactly as before.
:func:`fields_from_zeep` turns zeep's object into the same :class:`ResultFields`, so both
paths share one check (plex/client.py ``_finish``).

Values are what zeep gives: text as sent (``None`` for an empty or nil element, which the
client turns into ``""``), ints with :func:`int`, booleans true only for ``true``/``1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NAMESPACE = "http://www.plexus-online.com/DataSource"
SOAP_ENVELOPE = {
    "1.1": "http://schemas.xmlsoap.org/soap/envelope/",
    "1.2": "http://www.w3.org/2003/05/soap-envelope",
}
_XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"

#: ExecuteDataSourceResult's elements in the WSDL's order, and those with minOccurs 1.
_RESULT_ORDER = (
    "StatusNo",
    "Error",
    "ErrorNo",
    "Message",
    "InstanceNo",
    "DataSourceKey",
    "DataSourceName",
    "ResultSets",
    "OutputParameters",
)
_RESULT_REQUIRED = ("StatusNo", "Error", "ErrorNo", "DataSourceKey")


def _q(name: str) -> str:
    return f"{{{NAMESPACE}}}{name}"


_RESPONSE = _q("ExecuteDataSourceResponse")
_RESULT = _q("ExecuteDataSourceResult")
_RESULT_INDEX = {_q(name): i for i, name in enumerate(_RESULT_ORDER)}
_RESULT_SET = _q("ResultSet")
_ROW_COUNT = _q("RowCount")
_ROWS = _q("Rows")
_ROW = _q("Row")
_COLUMNS = _q("Columns")
_COLUMN = _q("Column")
_OUTPUT_PARAMETER = _q("OutputParameter")
_VALUE = _q("Value")
_NAME = _q("Name")


@dataclass(frozen=True)
class ResultFields:
    """ExecuteDataSourceResult as values (``None`` where the element is absent or empty)."""

    status_no: int | None
    error: bool
    error_no: int | None
    message: str | None
    instance_no: str | None
    data_source_key: int | None
    data_source_name: str | None
    result_sets: list[list[dict[str, str]]] = field(default_factory=list)
    output_parameters: dict[str, str] = field(default_factory=dict)


class _UnexpectedShapeError(Exception):
    """The answer is not the plain shape this reader knows: zeep reads it instead."""


def _plain(el: Any) -> None:
    """Refuse any attribute on an element with children (zeep reads a nil one as None)."""
    if el.attrib:
        raise _UnexpectedShapeError


def _text(el: Any) -> str | None:
    """A text element's text; ``xsi:nil`` allowed only on an empty one (None either way)."""
    attrib = el.attrib
    if attrib and (len(attrib) > 1 or attrib.get(_XSI_NIL) != "true" or el.text is not None):
        raise _UnexpectedShapeError
    if len(el):
        raise _UnexpectedShapeError
    text: str | None = el.text
    return text


def _int(el: Any) -> int | None:
    text = _text(el)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:  # zeep logs and reads None: let it
        raise _UnexpectedShapeError from None


def _value_name(el: Any) -> tuple[str, str]:
    """A Column or OutputParameter: (Name, Value) as text, ``""`` for none."""
    _plain(el)
    value: str | None = None
    name: str | None = None
    seen = 0
    if not len(el):  # zeep reads an empty item as None, and the client then fails
        raise _UnexpectedShapeError
    for child in el:
        tag = child.tag
        if tag == _VALUE and seen == 0:
            value = _text(child)
            seen = 1
        elif tag == _NAME and seen < 2:
            name = _text(child)
            seen = 2
        else:
            raise _UnexpectedShapeError
    return name or "", value or ""


def _array(el: Any, item: str) -> list[Any]:
    """The items of an ArrayOf* element, all named ``item``."""
    _plain(el)
    items = list(el)
    for child in items:
        if child.tag != item:
            raise _UnexpectedShapeError
    return items


def _rows(rows_el: Any) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for row_el in _array(rows_el, _ROW):
        _plain(row_el)
        row: dict[str, str] = {}
        children = list(row_el)
        if len(children) != 1 or children[0].tag != _COLUMNS:  # an empty Row is None to zeep
            raise _UnexpectedShapeError
        for columns_el in children:
            for column in _array(columns_el, _COLUMN):
                name, value = _value_name(column)
                row[name] = value
        rows.append(row)
    return rows


def _result_set(el: Any) -> list[dict[str, str]]:
    _plain(el)
    children = list(el)
    if not children or children[0].tag != _ROW_COUNT or len(children) > 2:
        raise _UnexpectedShapeError
    _text(children[0])  # RowCount: zeep reads it and the client ignores it
    if len(children) == 1:
        return []
    if children[1].tag != _ROWS:
        raise _UnexpectedShapeError
    return _rows(children[1])


def _result(el: Any) -> ResultFields:
    _plain(el)
    found: dict[str, Any] = {}
    last = -1
    for child in el:
        index = _RESULT_INDEX.get(child.tag, -1)
        if index <= last:  # unknown, repeated or out of the WSDL's order
            raise _UnexpectedShapeError
        last = index
        found[_RESULT_ORDER[index]] = child
    if any(name not in found for name in _RESULT_REQUIRED):
        raise _UnexpectedShapeError
    sets: list[list[dict[str, str]]] = []
    if "ResultSets" in found:
        sets = [_result_set(s) for s in _array(found["ResultSets"], _RESULT_SET)]
    outputs: dict[str, str] = {}
    if "OutputParameters" in found:
        for param in _array(found["OutputParameters"], _OUTPUT_PARAMETER):
            name, value = _value_name(param)
            outputs[name] = value
    text = {name: _text(found[name]) if name in found else None for name in _RESULT_ORDER[3:7]}
    return ResultFields(
        status_no=_int(found["StatusNo"]),
        error=_text(found["Error"]) in ("true", "1"),
        error_no=_int(found["ErrorNo"]),
        message=text["Message"],
        instance_no=text["InstanceNo"],
        data_source_key=_int(found["DataSourceKey"]),
        data_source_name=text["DataSourceName"],
        result_sets=sets,
        output_parameters=outputs,
    )


def read_result(doc: Any, soap_version: str) -> ResultFields | None:
    """The ExecuteDataSourceResult in a parsed SOAP envelope, or ``None`` to let zeep read it.

    ``doc`` is the root element as ``zeep.loader.parse_xml`` returns it (comments removed).
    """
    envelope = SOAP_ENVELOPE[soap_version]
    if doc.tag != f"{{{envelope}}}Envelope":
        return None
    body = [child for child in doc if child.tag == f"{{{envelope}}}Body"]
    others = [c for c in doc if c.tag not in (f"{{{envelope}}}Body", f"{{{envelope}}}Header")]
    if len(body) != 1 or others:
        return None
    try:
        (response,) = list(body[0])
        if response.tag != _RESPONSE:
            return None
        (result,) = list(response)
        if result.tag != _RESULT:
            return None
        return _result(result)
    except (_UnexpectedShapeError, ValueError):  # ValueError: not exactly one child to unpack
        return None


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def fields_from_zeep(result: Any) -> ResultFields:
    """zeep's ExecuteDataSourceResult object as :class:`ResultFields`."""
    result_sets: list[list[dict[str, str]]] = []
    sets = result.ResultSets.ResultSet if result.ResultSets is not None else []
    for result_set in sets or []:
        rows: list[dict[str, str]] = []
        for row in (result_set.Rows.Row if result_set.Rows is not None else None) or []:
            columns = (row.Columns.Column if row.Columns is not None else None) or []
            rows.append({_str(c.Name): _str(c.Value) for c in columns})
        result_sets.append(rows)
    outputs: dict[str, str] = {}
    if result.OutputParameters is not None:
        for param in result.OutputParameters.OutputParameter or []:
            outputs[_str(param.Name)] = _str(param.Value)
    return ResultFields(
        status_no=result.StatusNo,
        error=bool(result.Error),
        error_no=result.ErrorNo,
        message=result.Message,
        instance_no=result.InstanceNo,
        data_source_key=result.DataSourceKey,
        data_source_name=result.DataSourceName,
        result_sets=result_sets,
        output_parameters=outputs,
    )
