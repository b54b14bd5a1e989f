"""MTConnect response documents -> plain data: the probe's device model, streams, errors.

An agent answers ``/probe`` with ``MTConnectDevices`` (devices, components, data items),
``/current`` and ``/sample`` with ``MTConnectStreams`` (a header with the buffer's
``instanceId``, ``firstSequence``, ``lastSequence`` and ``nextSequence``, then one element
per observation, named after its type, with ``dataItemId``, ``sequence`` and
``timestamp``), and a request it cannot serve with ``MTConnectError`` (``OUT_OF_RANGE``
when ``from`` left the buffer). Namespaces change with every version of the standard
(``urn:mtconnect.org:MTConnectStreams:2.0``...), so elements are matched by local name.

Parsing is pure and refuses with :class:`PayloadRejectedError`: ``not_xml`` (with lxml's
entity expansion, DTDs and network access off: a response is data, never a program),
``not_mtconnect`` (another root), ``missing_field`` / ``bad_value`` (a header or an
observation without its sequence, a sequence that is not a number).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from lxml import etree

from collector.errors import PayloadRejectedError

#: Condition levels (the element names inside ``<Condition>``).
CONDITION_LEVELS = frozenset({"Normal", "Warning", "Fault", "Unavailable"})
#: The text of an observation whose data item has no value now.
UNAVAILABLE = "UNAVAILABLE"


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


@dataclass(frozen=True, slots=True)
class DataItem:
    """One ``<DataItem>`` of the probe, with the device it belongs to."""

    id: str
    device: str  # the device's name
    uuid: str  # the device's uuid
    category: str  # SAMPLE, EVENT or CONDITION
    type: str
    sub_type: str = ""
    name: str = ""


@dataclass(frozen=True, slots=True)
class Header:
    """What a streams document says of the agent's buffer."""

    instance_id: str
    first: int
    last: int
    next: int


class Observation(NamedTuple):
    """One observation of a streams document (a sample, an event or a condition).

    A named tuple: one is built per observation, and a frozen dataclass's ``__init__``
    cost a fifth of the parse.
    """

    item_id: str
    sequence: int
    timestamp: str
    tag: str  # the element's local name: PartCount, Fault, Normal...
    text: str
    condition: bool
    #: The element's attributes (conditions only: nativeCode, nativeSeverity, qualifier).
    attrs: dict[str, str]
    #: The element itself, for :attr:`raw` (written out only for a dead letter).
    element: Any = None

    @property
    def raw(self) -> bytes:
        """The observation's XML (what a dead letter carries)."""
        if self.element is None:
            return b""
        return bytes(etree.tostring(self.element, with_tail=False))


@dataclass(frozen=True, slots=True)
class Streams:
    header: Header
    observations: list[Observation]


def _local(tag: object) -> str:
    """An element's name without its namespace (``{urn:...}Samples`` -> ``Samples``)."""
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _root(data: bytes) -> etree._Element:
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise PayloadRejectedError(f"not XML: {exc}", reason="not_xml") from exc
    except ValueError as exc:  # lxml refuses some inputs (an encoding declaration in str)
        raise PayloadRejectedError(f"not XML: {exc}", reason="not_xml") from exc
    if root is None:
        raise PayloadRejectedError("not XML: empty document", reason="not_xml")
    return root


def _int(element: etree._Element, name: str, where: str) -> int:
    raw = element.get(name)
    if raw is None:
        raise PayloadRejectedError(f"{where} has no {name}", reason="missing_field")
    try:
        value = int(raw)
    except ValueError as exc:
        raise PayloadRejectedError(
            f"{where} {name} {raw[:40]!r} is not a number", reason="bad_value"
        ) from exc
    if value < 0:
        raise PayloadRejectedError(f"{where} {name} {value} is negative", reason="bad_value")
    return value


def _expect(root: etree._Element, name: str) -> None:
    got = _local(root.tag)
    if got == "MTConnectError":
        raise AgentError(_error_codes(root))
    if got != name:
        raise PayloadRejectedError(
            f"expected {name}, got {got[:60] or 'no element'}", reason="not_mtconnect"
        )


class AgentError(PayloadRejectedError):
    """The agent answered with an ``MTConnectError`` document (``codes`` say which)."""

    reason = "agent_error"

    def __init__(self, codes: list[str]) -> None:
        super().__init__(f"agent error {', '.join(codes) or 'without a code'}")
        self.codes = codes


def _error_codes(root: etree._Element) -> list[str]:
    return [
        e.get("errorCode", "")
        for e in root.iter()
        if _local(e.tag) in {"Error", "Errors"} and e.get("errorCode")
    ]


def parse_error(data: bytes) -> AgentError | None:
    """The agent error ``data`` holds, or None when it is no ``MTConnectError``."""
    try:
        root = _root(data)
    except PayloadRejectedError:
        return None
    return AgentError(_error_codes(root)) if _local(root.tag) == "MTConnectError" else None


def parse_probe(data: bytes) -> dict[str, DataItem]:
    """The probe's data items by id (raises :class:`PayloadRejectedError`)."""
    root = _root(data)
    _expect(root, "MTConnectDevices")
    items: dict[str, DataItem] = {}
    for device in root.iter():
        if _local(device.tag) not in {"Device", "Agent"}:
            continue
        name, uuid = device.get("name", ""), device.get("uuid", "")
        for e in device.iter():
            if _local(e.tag) != "DataItem" or not e.get("id"):
                continue
            item_id = e.get("id", "")
            items[item_id] = DataItem(
                id=item_id,
                device=name,
                uuid=uuid,
                category=e.get("category", ""),
                type=e.get("type", ""),
                sub_type=e.get("subType", ""),
                name=e.get("name", ""),
            )
    return items


def parse_streams(data: bytes) -> Streams:
    """A current or sample document (raises :class:`PayloadRejectedError`)."""
    root = _root(data)
    _expect(root, "MTConnectStreams")
    header = next((e for e in root if _local(e.tag) == "Header"), None)
    if header is None:
        raise PayloadRejectedError("MTConnectStreams has no Header", reason="missing_field")
    head = Header(
        instance_id=header.get("instanceId", ""),
        first=_int(header, "firstSequence", "Header"),
        last=_int(header, "lastSequence", "Header"),
        next=_int(header, "nextSequence", "Header"),
    )
    if not head.instance_id:
        raise PayloadRejectedError("Header has no instanceId", reason="missing_field")
    out: list[Observation] = []
    # Per observation only what every one needs: its attributes as a dict and its XML
    # for a dead letter cost more than the rest of the parse, and are taken when used.
    for container in root.iter("{*}Samples", "{*}Events", "{*}Condition"):
        kind = _local(container.tag)
        for e in container:
            tag = _local(e.tag)
            if not tag:  # comments, processing instructions
                continue
            item_id = e.get("dataItemId", "")
            if not item_id:
                raise PayloadRejectedError(f"{tag} has no dataItemId", reason="missing_field")
            condition = kind == "Condition"
            out.append(
                Observation(
                    item_id=item_id,
                    sequence=_int(e, "sequence", tag),
                    timestamp=e.get("timestamp", ""),
                    tag=tag,
                    text=(e.text or "").strip(),
                    condition=condition,
                    attrs={str(k): str(v) for k, v in e.attrib.items()} if condition else {},
                    element=e,
                )
            )
    out.sort(key=lambda o: o.sequence)
    return Streams(head, out)


def timestamp(text: str) -> float:
    """An observation's ISO 8601 UTC timestamp as Unix seconds (any fraction digits)."""
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:  # the standard's times are UTC, with or without the Z
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    except (ValueError, OverflowError) as exc:
        raise PayloadRejectedError(f"bad timestamp {text[:40]!r}", reason="bad_timestamp") from exc
