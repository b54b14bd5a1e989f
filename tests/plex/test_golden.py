"""Answers shaped as real Plex answers (``golden/*.xml``), each read to what it holds.

Each golden file has the structure of a published capture (synthetic values): every field
of the result in a real capture's order, the four later fields nil, ``Value`` before
``Name``, empty values as ``<Value />``, indentation between elements. Its ``.json``
beside it says what RepSys must read. The answers of the operations the client calls
(``ExecuteDataSource``, ``GetDataSourceRequestTemplate``) go through the client over HTTP;
the other two Execute operations' answers through the reader itself.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import zeep.loader
import zeep.settings
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

import plex.errors
from plex.response import read_result
from plex.result import DataSourceResult
from sim.plex import soap
from tests.plex.conftest import Canned
from tests.plex.test_response import make_client

GOLDEN = Path(__file__).resolve().parent / "golden"
NS = "http://www.plexus-online.com/DataSource"
CASES = sorted(p.stem for p in GOLDEN.glob("*.json"))
SCHEMA = soap.load_schema()


def _parse_xml(body: bytes, transport: None, *, settings: Any) -> Any:
    loader: Any = zeep.loader  # annotated content: str, but bytes is what it parses
    return loader.parse_xml(body, transport, settings=settings)


def _case(stem: str) -> tuple[bytes, dict[str, Any]]:
    return (GOLDEN / f"{stem}.xml").read_bytes(), json.loads((GOLDEN / f"{stem}.json").read_text())


def _payload(body: bytes) -> etree._Element:
    """The element inside the SOAP Body."""
    root = etree.fromstring(body)
    (envelope_body,) = [child for child in root if etree.QName(child).localname == "Body"]
    return envelope_body[0]


def test_every_golden_answer_has_its_expectation() -> None:
    answers = {p.stem for p in GOLDEN.glob("*.xml")} - {"execute_data_source_request"}
    assert answers == set(CASES)
    assert {_case(c)[1]["operation"] for c in CASES} == {
        "ExecuteDataSource",
        "ExecuteDataSourcePost",
        "ExecuteDataSourceByDataSourceKey",
        "GetDataSourceRequestTemplate",
    }


@pytest.mark.parametrize("stem", CASES)
def test_golden_answer_fits_the_shipped_wsdl(stem: str) -> None:
    """The WSDL describes the real shape: each golden answer validates against its schema."""
    body, _ = _case(stem)
    payload = copy.deepcopy(_payload(body))
    assert SCHEMA.validate(etree.ElementTree(payload)), SCHEMA.error_log


@pytest.mark.parametrize("stem", CASES)
def test_golden_answer_reads_to_what_it_holds(canned: Canned, stem: str) -> None:
    body, expected = _case(stem)
    canned.body = body
    client = make_client(canned.url)
    operation = expected["operation"]
    if operation == "GetDataSourceRequestTemplate":
        assert client.request_template(expected["key"]) == expected["inputs"]
        return
    if operation == "ExecuteDataSource":
        if "error" in expected:
            with pytest.raises(plex.errors.PlexError) as caught:
                client.execute_data_source(expected["key"], {})
            exc = caught.value
            assert [type(exc).__name__, exc.reason, str(exc)] == expected["error"]
            return
        result = client.execute_data_source(expected["key"], {})
    else:  # the client does not call these operations: their answers read the same way
        doc = _parse_xml(body, None, settings=zeep.settings.Settings(strict=True))
        fields = read_result(doc, "1.1")
        assert fields is not None
        assert fields.unknown == ()
        result = client._finish(fields, expected["key"])
    assert result == DataSourceResult(
        data_source_key=expected["key"],
        data_source_name=expected["data_source_name"],
        result_sets=expected["result_sets"],
        output_parameters=expected["output_parameters"],
        instance_no=expected["instance_no"],
        message=expected["message"],
    )


_CONTAINERS = (
    "ExecuteDataSourceResult",
    "ResultSets",
    "ResultSet",
    "Rows",
    "Row",
    "Columns",
    "Column",
)
_NEW_NAMES = st.from_regex(r"\AX[A-Za-z0-9_]{0,12}\Z")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 10_000), st.integers(0, 20), _NEW_NAMES, st.booleans()),
        min_size=1,
        max_size=8,
    )
)
def test_elements_added_anywhere_change_nothing_read(
    inserts: list[tuple[int, int, str, bool]],
) -> None:
    """Any number of unknown elements, at any position in any part of a real answer (empty
    or with children of their own), leave every value RepSys reads as it was."""
    body, _ = _case("execute_data_source_9726")
    parse_settings = zeep.settings.Settings(strict=True)
    expected = read_result(_parse_xml(body, None, settings=parse_settings), "1.1")
    root = etree.fromstring(body)
    containers = [
        el
        for el in root.iter()
        if isinstance(el.tag, str) and etree.QName(el).localname in _CONTAINERS
    ]
    for which, position, name, nested in inserts:
        parent = containers[which % len(containers)]
        added = etree.Element(f"{{{NS}}}{name}")
        if nested:
            etree.SubElement(added, f"{{{NS}}}Value").text = "not a column"
        else:
            added.text = "1"
        parent.insert(position % (len(parent) + 1), added)
    doc = _parse_xml(etree.tostring(root), None, settings=parse_settings)
    fields = read_result(doc, "1.1")
    assert fields is not None and expected is not None
    assert replace(fields, unknown=()) == expected
    assert len(fields.unknown) >= 1
