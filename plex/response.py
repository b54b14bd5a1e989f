"""Plex's answers read by element name with lxml: what RepSys needs, whatever else is there.

Why it exists: Plex has added fields to its results over the years (a real
``ExecuteDataSourceResult`` carries ``QuarantinedForDevelopment``, ``LastPrimaryDeployment``,
``LastTestDeployment`` and ``Version`` between ``DataSourceKey`` and ``DataSourceName``), and
a reader of one fixed shape refuses every real answer the day Plex adds another. zeep is
such a reader when strict, and a lenient zeep loses the elements after an unknown one and
parses broken XML in recovery mode. It is also slow: it builds an xsd object per element,
seconds of CPU for 4814's thousands of rows.

So results are read by name: each known element gives its value wherever it stands, an
unknown element is skipped (and named in :attr:`ResultFields.unknown`, which the client logs
once), and a missing optional element reads as empty. What this module does not read is
what is not a result at all (a SOAP Fault, another body): :func:`read_result` returns
``None`` and the client hands the response to zeep, so faults keep their classes and
reasons. The parser's hardening (no DTDs, entities, external references or huge trees) is
the caller's and applies before anything here runs.

Values are read as zeep reads them: text as sent (``None`` for an empty or nil element;
the client turns it into ``""``), ints with :func:`int` (``None`` when empty, nil or not a
number), booleans true only for ``true`` or ``1``. A nil or empty row is a row with no
columns; an empty column is no column; a column without a name or value has ``""`` for it.
Refused, as :class:`MalformedResultError`, is only what cannot be read without guessing: a
known element twice where one is allowed, or a value that holds elements instead of text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NAMESPACE = "http://www.plexus-online.com/DataSource"
SOAP_ENVELOPE = {
    "1.1": "http://schemas.xmlsoap.org/soap/envelope/",
    "1.2": "http://www.w3.org/2003/05/soap-envelope",
}

#: The operations whose answer is an ``ExecuteDataSourceResult`` (``<Op>Response/<Op>Result``).
EXECUTE_OPERATIONS = (
    "ExecuteDataSource",
    "ExecuteDataSourcePost",
    "ExecuteDataSourceByDataSourceKey",
)


def _q(name: str) -> str:
    return f"{{{NAMESPACE}}}{name}"


def _local(tag: Any) -> str:
    """An element's name without Plex's namespace (others keep theirs, for the log)."""
    text = str(tag)
    return text[len(NAMESPACE) + 2 :] if text.startswith(f"{{{NAMESPACE}}}") else text


_RESULTS = {_q(f"{op}Response"): _q(f"{op}Result") for op in EXECUTE_OPERATIONS}
_TEMPLATE_RESPONSE = _q("GetDataSourceRequestTemplateResponse")
_TEMPLATE_RESULT = _q("GetDataSourceRequestTemplateResult")
#: The result's fields this reader knows: what RepSys uses, and what it knowingly skips.
_RESULT_TEXT = {_q(n): n for n in ("StatusNo", "Error", "ErrorNo", "Message", "InstanceNo")}
_RESULT_TEXT.update({_q(n): n for n in ("DataSourceKey", "DataSourceName")})
_RESULT_SKIPPED = frozenset(
    _q(n)
    for n in ("QuarantinedForDevelopment", "LastPrimaryDeployment", "LastTestDeployment", "Version")
)
_RESULT_SETS = _q("ResultSets")
_OUTPUT_PARAMETERS = _q("OutputParameters")
_RESULT_SET = _q("ResultSet")
_ROW_COUNT = _q("RowCount")
_ROWS = _q("Rows")
_ROW = _q("Row")
_COLUMNS = _q("Columns")
_COLUMN = _q("Column")
_OUTPUT_PARAMETER = _q("OutputParameter")
_INPUT_PARAMETERS = _q("InputParameters")
_INPUT_PARAMETER = _q("InputParameter")
_VALUE = _q("Value")
_NAME = _q("Name")
#: The template's fields besides its inputs, and an input's besides Value and Name.
_TEMPLATE_KNOWN = frozenset(_q(n) for n in ("DataSourceKey", "DataSourceName", "DataBase"))
_INPUT_KNOWN = frozenset(_q(n) for n in ("Required", "Output", "DefaultValue", "Message"))


class MalformedResultError(Exception):
    """A result that cannot be read without guessing; the message says where."""


@dataclass(frozen=True)
class ResultFields:
    """ExecuteDataSourceResult as values (``None`` where the element is absent or empty).

    Attributes:
        unknown: the elements this reader skipped, as ``parent/child`` local names, sorted.
    """

    status_no: int | None
    error: bool
    error_no: int | None
    message: str | None
    instance_no: str | None
    data_source_key: int | None
    data_source_name: str | None
    result_sets: list[list[dict[str, str]]] = field(default_factory=list)
    output_parameters: dict[str, str] = field(default_factory=dict)
    unknown: tuple[str, ...] = ()


def _text(el: Any) -> str | None:
    """A text element's text: ``None`` when empty (as a nil one is); elements inside refused."""
    if len(el):
        raise MalformedResultError(f"{_local(el.tag)} holds elements, not text")
    text: str | None = el.text
    return text


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:  # zeep logs and reads None: so does this reader
        return None


class _Reader:
    """One answer's walk; collects the names of the elements it skipped."""

    def __init__(self) -> None:
        self.unknown: set[str] = set()

    def skip(self, parent: Any, child: Any) -> None:
        self.unknown.add(f"{_local(parent.tag)}/{_local(child.tag)}")

    def value_name(self, el: Any, known: frozenset[str] = frozenset()) -> tuple[str, str]:
        """A Column, OutputParameter or InputParameter: (Name, Value), ``""`` for none."""
        value: str | None = None
        name: str | None = None
        for child in el:
            tag = child.tag
            if tag == _VALUE:
                value = _text(child)
            elif tag == _NAME:
                name = _text(child)
            elif tag not in known:
                self.skip(el, child)
        return name or "", value or ""

    def items(self, el: Any, item: str) -> list[Any]:
        """The ``item`` children of an ArrayOf* element; anything else is skipped."""
        found: list[Any] = []
        for child in el:
            if child.tag == item:
                found.append(child)
            else:
                self.skip(el, child)
        return found

    def row(self, el: Any) -> dict[str, str]:
        row: dict[str, str] = {}
        for child in el:
            if child.tag != _COLUMNS:
                self.skip(el, child)
                continue
            for column in child:
                if column.tag != _COLUMN:
                    self.skip(child, column)
                elif len(column):  # an empty (or nil) column carries nothing
                    name, value = self.value_name(column)
                    row[name] = value
        return row

    def result_set(self, el: Any) -> list[dict[str, str]]:
        rows: list[dict[str, str]] = []
        for child in el:
            tag = child.tag
            if tag == _ROWS:
                rows.extend(self.row(row) for row in self.items(child, _ROW))
            elif tag != _ROW_COUNT:  # RowCount: the rows are counted, not trusted
                self.skip(el, child)
        return rows

    def result(self, el: Any) -> ResultFields:
        text: dict[str, str | None] = {}
        sets: list[list[dict[str, str]]] = []
        outputs: dict[str, str] = {}
        seen: set[str] = set()
        for child in el:
            tag = child.tag
            if tag in seen:
                raise MalformedResultError(f"{_local(tag)} appears twice in the result")
            name = _RESULT_TEXT.get(tag)
            if name is not None:
                text[name] = _text(child)
            elif tag == _RESULT_SETS:
                sets = [self.result_set(s) for s in self.items(child, _RESULT_SET)]
            elif tag == _OUTPUT_PARAMETERS:
                for param in self.items(child, _OUTPUT_PARAMETER):
                    key, value = self.value_name(param)
                    outputs[key] = value
            elif tag not in _RESULT_SKIPPED:
                self.skip(el, child)
                continue
            seen.add(tag)
        return ResultFields(
            status_no=_int(text.get("StatusNo")),
            error=text.get("Error") in ("true", "1"),
            error_no=_int(text.get("ErrorNo")),
            message=text.get("Message"),
            instance_no=text.get("InstanceNo"),
            data_source_key=_int(text.get("DataSourceKey")),
            data_source_name=text.get("DataSourceName"),
            result_sets=sets,
            output_parameters=outputs,
            unknown=tuple(sorted(self.unknown)),
        )


def _body_payload(doc: Any, soap_version: str) -> Any | None:
    """The one element inside the SOAP Body, or ``None`` for anything else."""
    envelope = SOAP_ENVELOPE[soap_version]
    if doc.tag != f"{{{envelope}}}Envelope":
        return None
    bodies = [child for child in doc if child.tag == f"{{{envelope}}}Body"]
    if len(bodies) != 1 or len(bodies[0]) != 1:
        return None
    return bodies[0][0]


def read_result(doc: Any, soap_version: str) -> ResultFields | None:
    """The ExecuteDataSourceResult in a parsed SOAP envelope, or ``None`` to let zeep read it.

    ``doc`` is the root element as ``zeep.loader.parse_xml`` returns it (comments removed).
    ``None`` means the body is not a result (a Fault, no result, another element).

    Raises:
        MalformedResultError: a result that cannot be read without guessing.
    """
    payload = _body_payload(doc, soap_version)
    if payload is None:
        return None
    result_tag = _RESULTS.get(payload.tag)
    if result_tag is None:
        return None
    results = [child for child in payload if child.tag == result_tag]
    if len(results) != 1:
        return None
    return _Reader().result(results[0])


def read_template(doc: Any, soap_version: str) -> tuple[list[str], tuple[str, ...]] | None:
    """GetDataSourceRequestTemplate's input names and the elements skipped, or ``None``.

    Raises:
        MalformedResultError: a template that cannot be read without guessing.
    """
    payload = _body_payload(doc, soap_version)
    if payload is None or payload.tag != _TEMPLATE_RESPONSE:
        return None
    results = [child for child in payload if child.tag == _TEMPLATE_RESULT]
    if len(results) != 1:
        return None
    reader = _Reader()
    names: list[str] = []
    for child in results[0]:
        if child.tag == _INPUT_PARAMETERS:
            for param in reader.items(child, _INPUT_PARAMETER):
                names.append(reader.value_name(param, _INPUT_KNOWN)[0])
        elif child.tag not in _TEMPLATE_KNOWN:
            reader.skip(results[0], child)
    return names, tuple(sorted(reader.unknown))


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def fields_from_zeep(result: Any) -> ResultFields:
    """zeep's ExecuteDataSourceResult object as :class:`ResultFields`.

    Only for an answer zeep read because the client could not hand it to
    :func:`read_result` (an answer outside the SOAP media types, or a zeep plugin set up).
    """
    result_sets: list[list[dict[str, str]]] = []
    sets = result.ResultSets.ResultSet if result.ResultSets is not None else []
    for result_set in sets or []:
        rows: list[dict[str, str]] = []
        for row in (result_set.Rows.Row if result_set.Rows is not None else None) or []:
            columns = row.Columns.Column if row is not None and row.Columns is not None else None
            rows.append({_str(c.Name): _str(c.Value) for c in columns or [] if c is not None})
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
