"""SOAP on the simulator's side: read a request safely, check it against the WSDL, answer.

The simulated Plex is only useful if it is as strict as the real one, or stricter: every
request body is parsed without DTDs or entities and validated against the schema in the
very WSDL the client ships (plex/wsdl/DataSource.wsdl), and SOAPAction must name the
operation. Answers are built in the shape a real Plex sends (DOMAIN.md section 4): every
field of the result in a real capture's order, the four later ones nil, ``Value`` before
``Name``, empty values as ``<Value />``, an XML declaration, and, when asked, elements the
WSDL does not know, so the client's tolerance is tested on every path.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from lxml import etree

NS = "http://www.plexus-online.com/DataSource"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
XSD = "http://www.w3.org/2001/XMLSchema"
WSDL_PATH = Path(__file__).resolve().parents[2] / "plex" / "wsdl" / "DataSource.wsdl"
OPERATIONS = (
    "ExecuteDataSource",
    "ExecuteDataSourcePost",
    "ExecuteDataSourceByDataSourceKey",
    "GetDataSourceRequestTemplate",
)


#: Answers put Plex's namespace as the default one (lxml-stubs want str prefixes).
_DEFAULT_NS: Any = {None: NS}


class SoapRequestError(Exception):
    """The request is not one Plex would accept: answered with a ``Client`` SOAP fault."""


@dataclass
class SoapRequest:
    """A parsed, validated request."""

    version: str  # "1.1" or "1.2"
    operation: str
    data_source_key: int
    data_source_name: str = ""
    inputs: dict[str, str] = field(default_factory=dict)


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
    )


def load_schema(wsdl_path: Path = WSDL_PATH) -> etree.XMLSchema:
    """The XML Schema embedded in the WSDL's ``types``."""
    wsdl = etree.parse(str(wsdl_path), _parser())
    schema = wsdl.find(f".//{{{XSD}}}schema")
    assert schema is not None, "the WSDL has no schema"
    # A fresh root that declares the prefixes the schema's type="tns:..." values use:
    # a copied element keeps only the declarations its own names need.
    root = etree.Element(
        f"{{{XSD}}}schema", attrib=dict(schema.attrib), nsmap={"s": XSD, "tns": NS}
    )
    for child in schema:
        root.append(copy.deepcopy(child))
    return etree.XMLSchema(etree.ElementTree(root))


def wsdl_text(address: str, wsdl_path: Path = WSDL_PATH) -> bytes:
    """The shipped WSDL with its service address pointing at this simulator."""
    text = wsdl_path.read_text(encoding="utf-8")
    return text.replace("https://testapi.plexonline.com/DataSource/Service.asmx", address).encode()


def _child_text(parent: etree._Element, name: str) -> str:
    child = parent.find(f"{{{NS}}}{name}")
    return "" if child is None or child.text is None else child.text


def parse_request(
    body: bytes, schema: etree.XMLSchema, *, soap_action: str | None, content_type: str
) -> SoapRequest:
    """Parse and validate one SOAP request. Raises :class:`SoapRequestError`."""
    try:
        root = etree.fromstring(body, _parser())
    except etree.XMLSyntaxError as exc:
        raise SoapRequestError(f"request is not well-formed XML: {exc.msg}") from None
    docinfo: Any = root.getroottree().docinfo  # lxml-stubs lack DocInfo.doctype
    if docinfo.doctype:
        raise SoapRequestError("a DTD is not allowed in a request")
    if root.tag == f"{{{SOAP11}}}Envelope":
        version, env_ns = "1.1", SOAP11
    elif root.tag == f"{{{SOAP12}}}Envelope":
        version, env_ns = "1.2", SOAP12
    else:
        raise SoapRequestError(f"root element {root.tag} is not a SOAP envelope")
    soap_body = root.find(f"{{{env_ns}}}Body")
    if soap_body is None or len(soap_body) != 1:
        raise SoapRequestError("the SOAP Body must hold exactly one element")
    payload = soap_body[0]
    qname = etree.QName(payload)
    if qname.namespace != NS or qname.localname not in OPERATIONS:
        raise SoapRequestError(f"unknown operation {payload.tag}")
    operation = qname.localname
    action = f"{NS}/{operation}"
    if version == "1.1":
        if (soap_action or "").strip('"') != action:
            raise SoapRequestError(f"SOAPAction {soap_action!r} does not match {operation}")
    elif f'action="{action}"' not in content_type and soap_action not in (None, action):
        raise SoapRequestError(f"SOAP 1.2 action does not match {operation}")
    if not schema.validate(etree.ElementTree(copy.deepcopy(payload))):
        error = cast(Any, schema.error_log).last_error  # lxml-stubs lack last_error
        raise SoapRequestError(f"request does not match the WSDL: {error.message}")
    return _read_payload(version, operation, payload)


def _read_payload(version: str, operation: str, payload: etree._Element) -> SoapRequest:
    if operation == "ExecuteDataSource":
        request = payload.find(f"{{{NS}}}ExecuteDataSourceRequest")
        if request is None:
            raise SoapRequestError("ExecuteDataSourceRequest is missing")
        raw_key = _child_text(request, "DataSourceKey")
        inputs: dict[str, str] = {}
        for param in request.iterfind(f"{{{NS}}}InputParameters/{{{NS}}}InputParameter"):
            inputs[_child_text(param, "Name")] = _child_text(param, "Value")
        name = _child_text(request, "DataSourceName")
    else:
        raw_key = _child_text(payload, "dataSourceKey")
        name = ""
        inputs = {}
        if operation == "ExecuteDataSourcePost":
            delimiter = _child_text(payload, "delimeter") or ","
            names = _child_text(payload, "parameterNames")
            values = _child_text(payload, "parameterValues")
            if names:
                name_list = names.split(delimiter)
                value_list = values.split(delimiter)
                if len(name_list) != len(value_list):
                    raise SoapRequestError("parameterNames and parameterValues differ in count")
                inputs = dict(zip(name_list, value_list, strict=True))
    try:
        key = int(raw_key)
    except ValueError:
        raise SoapRequestError(f"DataSourceKey {raw_key!r} is not a number") from None
    return SoapRequest(version, operation, key, name, inputs)


XSI = "http://www.w3.org/2001/XMLSchema-instance"
_XSI_NIL = f"{{{XSI}}}nil"
#: The prefixes ASP.NET writes on a SOAP 1.1 and a SOAP 1.2 envelope.
_ENVELOPE_PREFIX = {"1.1": "soap", "1.2": "soap12"}
#: BaseResult's fields and the data source's, in the order of a real capture, up to the
#: result sets: Plex's four later fields come back nil (``<X xsi:nil="true" />``).
_NIL_FIELDS = (
    "QuarantinedForDevelopment",
    "LastPrimaryDeployment",
    "LastTestDeployment",
    "Version",
)


def _envelope(version: str) -> tuple[etree._Element, etree._Element]:
    """An envelope as ASP.NET writes it: ``xsi`` and ``xsd`` declared on the root."""
    env_ns = SOAP11 if version == "1.1" else SOAP12
    nsmap: Any = {_ENVELOPE_PREFIX[version]: env_ns, "xsi": XSI, "xsd": XSD}
    envelope = etree.Element(f"{{{env_ns}}}Envelope", nsmap=nsmap)
    body = etree.SubElement(envelope, f"{{{env_ns}}}Body")
    return envelope, body


def _el(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    """A child in Plex's namespace; an empty text is written ``<X />`` as .NET does."""
    child = etree.SubElement(parent, f"{{{NS}}}{name}")
    if text:
        child.text = text
    return child


def _nil(parent: etree._Element, name: str) -> None:
    etree.SubElement(parent, f"{{{NS}}}{name}").set(_XSI_NIL, "true")


def _serialize(envelope: etree._Element) -> bytes:
    return bytes(etree.tostring(envelope, xml_declaration=True, encoding="utf-8"))


def result_xml(
    version: str,
    operation: str,
    *,
    data_source_key: int,
    data_source_name: str,
    result_sets: list[list[dict[str, str]]],
    instance_no: str,
    error_no: int = 0,
    message: str = "Success",
    outputs: Mapping[str, str] | None = None,
    unknown_elements: bool = False,
) -> bytes:
    """An ``ExecuteDataSourceResult`` answer (``Error`` true when ``error_no`` is set).

    ``unknown_elements`` adds elements RepSys's WSDL does not have (a field of the result
    between known ones, one in every result set, one in every column), as a Plex that
    added fields would send: the client must read what it needs and skip the rest.
    """
    envelope, body = _envelope(version)
    response = etree.SubElement(body, f"{{{NS}}}{operation}Response", nsmap=_DEFAULT_NS)
    result = _el(response, f"{operation}Result")
    _el(result, "StatusNo", "0" if not error_no else "1")
    _el(result, "Error", "true" if error_no else "false")
    _el(result, "ErrorNo", str(error_no))
    _el(result, "Message", message)
    _el(result, "InstanceNo", instance_no)
    _el(result, "DataSourceKey", str(data_source_key))
    for name in _NIL_FIELDS:
        _nil(result, name)
    if unknown_elements:
        _el(result, "ApprovalRequired", "false")
    _el(result, "DataSourceName", data_source_name)
    sets = _el(result, "ResultSets")
    for rows in result_sets:
        result_set = _el(sets, "ResultSet")
        _el(result_set, "RowCount", str(len(rows)))
        if unknown_elements:
            _el(result_set, "ResultSetName", "Result")
        rows_el = _el(result_set, "Rows")
        for row in rows:
            columns = _el(_el(rows_el, "Row"), "Columns")
            for name, value in row.items():
                column = _el(columns, "Column")
                _el(column, "Value", value)
                _el(column, "Name", name)
                if unknown_elements:
                    _el(column, "DataType", "String")
    out = _el(result, "OutputParameters")
    for name, value in (outputs or {}).items():
        param = _el(out, "OutputParameter")
        _el(param, "Value", value)
        _el(param, "Name", name)
    return _serialize(envelope)


def template_xml(
    version: str,
    *,
    data_source_key: int,
    data_source_name: str,
    inputs: list[tuple[str, bool]],
    unknown_elements: bool = False,
) -> bytes:
    """A ``GetDataSourceRequestTemplate`` answer: the inputs, each with ``Required``."""
    envelope, body = _envelope(version)
    response = etree.SubElement(
        body, f"{{{NS}}}GetDataSourceRequestTemplateResponse", nsmap=_DEFAULT_NS
    )
    result = _el(response, "GetDataSourceRequestTemplateResult")
    _el(result, "DataSourceKey", str(data_source_key))
    params = _el(result, "InputParameters")
    for name, required in inputs:
        param = _el(params, "InputParameter")
        _el(param, "Value", "")
        _el(param, "Name", name)
        _el(param, "Required", "true" if required else "false")
        _el(param, "Output", "false")
        if unknown_elements:
            _el(param, "DataType", "String")
    if unknown_elements:
        _el(result, "ApprovalRequired", "false")
    _el(result, "DataSourceName", data_source_name)
    return _serialize(envelope)


def fault_xml(version: str, message: str, *, client: bool = True) -> bytes:
    """A SOAP fault, as ASP.NET sends for a request it cannot read."""
    envelope, body = _envelope(version)
    if version == "1.1":
        fault = etree.SubElement(body, f"{{{SOAP11}}}Fault")
        etree.SubElement(fault, "faultcode").text = "soap:Client" if client else "soap:Server"
        etree.SubElement(fault, "faultstring").text = message
    else:
        fault = etree.SubElement(body, f"{{{SOAP12}}}Fault")
        code = etree.SubElement(fault, f"{{{SOAP12}}}Code")
        etree.SubElement(code, f"{{{SOAP12}}}Value").text = (
            "soap12:Sender" if client else "soap12:Receiver"
        )
        reason = etree.SubElement(fault, f"{{{SOAP12}}}Reason")
        text = etree.SubElement(reason, f"{{{SOAP12}}}Text")
        text.text = message
        text.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
    return _serialize(envelope)


def content_type(version: str) -> str:
    return "text/xml; charset=utf-8" if version == "1.1" else "application/soap+xml; charset=utf-8"


#: The "XXE" fault's body: an external entity and a billion-laughs expansion in a DTD.
XXE_BODY = b"""<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE lolz [
  <!ENTITY xxe SYSTEM "file:///etc/passwd">
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>
<ExecuteDataSourceResponse xmlns="http://www.plexus-online.com/DataSource">
<ExecuteDataSourceResult><StatusNo>0</StatusNo><Error>false</Error><ErrorNo>0</ErrorNo>
<Message>&xxe;&lol3;</Message><InstanceNo>1</InstanceNo><DataSourceKey>1</DataSourceKey>
</ExecuteDataSourceResult></ExecuteDataSourceResponse></soap:Body></soap:Envelope>
"""
