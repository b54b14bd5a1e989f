"""A small MTConnect Agent for tests: the Institute's device file and SHDR data over HTTP.

It does what an agent (cppagent) does on the wire and no more: reads a device file,
starts every data item UNAVAILABLE, numbers each observation an adapter line brings
(SHDR ``time|item|value|item|value``, conditions ``time|item|level|code|severity|
qualifier|text``) in a bounded ring buffer, and answers ``/probe``, ``/current`` and
``/sample?from=&count=`` with MTConnectDevices / MTConnectStreams documents, or
``MTConnectError`` ``OUT_OF_RANGE`` (HTTP 400) for a ``from`` outside the buffer.
``/sample?from=&interval=`` streams as cppagent does (``SessionImpl::beginStreaming`` and
``writeChunk``): HTTP/1.1 chunked, ``Content-Type: multipart/mixed;boundary=<uuid>``, each
part ``--<boundary>``, ``Content-type: text/xml``, ``Content-length: <n>``, a blank line,
the document and a line break; a part whenever there are newer observations (at most
every ``interval`` ms), an empty document after ``heartbeat`` ms without, and an
``MTConnectError`` part then the end of the stream when ``from`` left the buffer.
``restart()`` is an agent restart: a new ``instanceId`` and numbering from 1 again (open
streams end, as the restarted process's connections would).
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from lxml import etree

from tests.conftest import REPO

PEER = REPO / "tests" / "peers" / "mtconnect"
DEVICES = PEER / "Devices.xml"
SHDR = PEER / "okuma.shdr"
STREAMS_NS = "urn:mtconnect.org:MTConnectStreams:2.0"
ERROR_NS = "urn:mtconnect.org:MTConnectError:2.0"


@dataclass(frozen=True)
class Item:
    id: str
    name: str
    category: str
    type: str
    sub_type: str
    device: str
    uuid: str
    component: str
    component_id: str
    component_name: str


@dataclass(frozen=True)
class Obs:
    seq: int
    item: Item
    ts: str
    value: str  # the text; for a condition the level (NORMAL, FAULT...)
    code: str = ""
    severity: str = ""
    qualifier: str = ""
    text: str = ""


def pascal(kind: str) -> str:
    return "".join(w if w in {"PH", "AC", "DC"} else w.title() for w in kind.split("_"))


def load_items(path: Path = DEVICES) -> list[Item]:
    root = etree.parse(str(path)).getroot()
    out = []
    for device in root.iter("{*}Device"):
        for di in device.iter("{*}DataItem"):
            box = di.getparent()
            comp: Any = box.getparent() if box is not None else device  # inside <DataItems>
            out.append(
                Item(
                    id=di.get("id", ""),
                    name=di.get("name", ""),
                    category=di.get("category", ""),
                    type=di.get("type", ""),
                    sub_type=di.get("subType", ""),
                    device=device.get("name", ""),
                    uuid=device.get("uuid", ""),
                    component=etree.QName(comp).localname,
                    component_id=comp.get("id", ""),
                    component_name=comp.get("name", ""),
                )
            )
    return out


class Agent:
    """The agent (see the module docstring); serve() starts its HTTP server in a thread."""

    def __init__(
        self, buffer_size: int = 131_072, path: Path = DEVICES, *, streams: bool = True
    ) -> None:
        #: False: ``interval`` is ignored, every /sample is one document (an agent that
        #: does not stream).
        self.streams = streams
        self.items = load_items(path)
        self.by_key = {i.name: i for i in self.items if i.name} | {i.id: i for i in self.items}
        self.buffer_size = buffer_size
        #: Guards the buffer; notified on every feed (streams wait on it).
        self.lock = threading.Condition()
        self.closed = False
        #: Bodies served instead of the next /sample answers (bad documents for tests).
        self.poison: deque[bytes] = deque()
        self.devices_xml = etree.tostring(etree.parse(str(path)).getroot())
        self.requests: list[str] = []
        self.instance = 0
        self._start()
        self.server: ThreadingHTTPServer | None = None

    def _start(self) -> None:
        self.instance += int(time.time()) if self.instance == 0 else 1
        self.buffer: deque[Obs] = deque(maxlen=self.buffer_size)
        self.next = 1
        self.latest: dict[str, Obs] = {}
        stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        for item in self.items:  # an agent starts with every item UNAVAILABLE
            self._add(item, stamp, "UNAVAILABLE")

    def restart(self) -> None:
        with self.lock:
            self._start()
            self.lock.notify_all()

    # --- adapter side ---------------------------------------------------------------

    def _add(self, item: Item, ts: str, value: str, *cond: str) -> Obs:
        obs = Obs(self.next, item, ts, value, *cond)
        self.next += 1
        self.buffer.append(obs)
        self.latest[item.id] = obs
        return obs

    def feed(self, line: str) -> list[Obs]:
        """One SHDR line; returns the observations it added (unknown keys are skipped)."""
        ts, *rest = line.rstrip("\n").split("|")
        added = []
        with self.lock:
            i = 0
            while i < len(rest):
                item = self.by_key.get(rest[i])
                if item is not None and item.category == "CONDITION":
                    level, code, severity, qualifier, text = (rest[i + 1 : i + 6] + [""] * 5)[:5]
                    added.append(
                        self._add(item, ts, level.upper(), code, severity, qualifier, text)
                    )
                    i += 6
                    continue
                if item is not None and i + 1 < len(rest):
                    added.append(self._add(item, ts, rest[i + 1] or "UNAVAILABLE"))
                i += 2
            self.lock.notify_all()
        return added

    def observations(self) -> list[Obs]:
        with self.lock:
            return list(self.buffer)

    # --- documents ------------------------------------------------------------------

    def _header(self, parent: Any) -> None:
        first = self.buffer[0].seq if self.buffer else self.next
        etree.SubElement(
            parent,
            "Header",
            creationTime=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            sender="repsys-test-agent",
            instanceId=str(self.instance),
            version="2.0.0.0",
            bufferSize=str(self.buffer_size),
            firstSequence=str(first),
            lastSequence=str(self.next - 1),
            nextSequence=str(self.next),
        )

    def _streams(self, obs: list[Obs], next_seq: int | None = None) -> bytes:
        root = etree.Element("MTConnectStreams", nsmap={None: STREAMS_NS})  # type: ignore[dict-item]  # None: the default namespace
        self._header(root)
        if next_seq is not None:
            root[0].set("nextSequence", str(next_seq))
        streams = etree.SubElement(root, "Streams")
        devices: dict[str, Any] = {}
        comps: dict[tuple[str, str], Any] = {}
        containers: dict[tuple[str, str, str], Any] = {}
        for o in obs:
            it = o.item
            if it.device not in devices:
                devices[it.device] = etree.SubElement(
                    streams, "DeviceStream", name=it.device, uuid=it.uuid
                )
            ckey = (it.device, it.component_id)
            if ckey not in comps:
                comps[ckey] = etree.SubElement(
                    devices[it.device],
                    "ComponentStream",
                    component=it.component,
                    componentId=it.component_id,
                )
                if it.component_name:
                    comps[ckey].set("name", it.component_name)
            kind = {"SAMPLE": "Samples", "EVENT": "Events", "CONDITION": "Condition"}[it.category]
            box = containers.get((*ckey, kind))
            if box is None:
                box = containers[(*ckey, kind)] = etree.SubElement(comps[ckey], kind)
            attrs = {"dataItemId": it.id, "timestamp": o.ts, "sequence": str(o.seq)}
            if it.name:
                attrs["name"] = it.name
            if it.sub_type:
                attrs["subType"] = it.sub_type
            if it.category == "CONDITION":
                attrs["type"] = it.type
                for k, v in (
                    ("nativeCode", o.code),
                    ("nativeSeverity", o.severity),
                    ("qualifier", o.qualifier),
                ):
                    if v:
                        attrs[k] = v
                e = etree.SubElement(box, o.value.title(), attrib=attrs)
                e.text = o.text or None
            else:
                e = etree.SubElement(box, pascal(it.type), attrib=attrs)
                e.text = o.value
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8")

    def _error(self, code: str, text: str) -> bytes:
        root = etree.Element("MTConnectError", nsmap={None: ERROR_NS})  # type: ignore[dict-item]  # None: the default namespace
        self._header(root)
        errors = etree.SubElement(root, "Errors")
        etree.SubElement(errors, "Error", errorCode=code).text = text
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8")

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, bytes]:
        with self.lock:
            self.requests.append(path)
            if path == "/probe":
                head = etree.fromstring(self.devices_xml)
                for h in head.iter("{*}Header"):
                    h.set("instanceId", str(self.instance))
                    h.set("bufferSize", str(self.buffer_size))
                return 200, etree.tostring(head, xml_declaration=True, encoding="UTF-8")
            if path == "/current":
                return 200, self._streams(sorted(self.latest.values(), key=lambda o: o.seq))
            if path == "/sample":
                if self.poison:
                    return 200, self.poison.popleft()
                first = self.buffer[0].seq if self.buffer else self.next
                start = int(query.get("from", [str(first)])[0])
                count = int(query.get("count", ["100"])[0])
                if start < first or start > self.next:
                    return 400, self._error(
                        "OUT_OF_RANGE", f"'from' must be between {first} and {self.next}"
                    )
                got = [o for o in self.buffer if start <= o.seq < start + count]
                return 200, self._streams(got, got[-1].seq + 1 if got else self.next)
            return 404, self._error("INVALID_URI", f"{path} is not served")

    def stream(self, write: Callable[[bytes], None], query: dict[str, list[str]]) -> None:
        """``/sample?interval=``: parts written with ``write`` until the stream ends."""
        interval = int(query["interval"][0]) / 1000
        heartbeat = int(query.get("heartbeat", ["10000"])[0]) / 1000
        count = int(query.get("count", ["100"])[0])
        with self.lock:
            self.requests.append("/sample stream")
            instance = self.instance
            start = int(query.get("from", [str(self.next)])[0])
        boundary = str(uuid.uuid4())
        write(
            b"HTTP/1.1 200 OK\r\nServer: MTConnectAgent\r\nConnection: close\r\n"
            b"Content-Type: multipart/mixed;boundary=" + boundary.encode() + b"\r\n"
            b"Transfer-Encoding: chunked\r\nCache-Control: no-cache, no-store, max-age=0\r\n\r\n"
        )

        def part(body: bytes) -> None:
            data = (
                f"--{boundary}\r\nContent-type: text/xml\r\n"
                f"Content-length: {len(body)}\r\n\r\n".encode()
                + body
                + b"\r\n"
            )
            write(f"{len(data):x}\r\n".encode() + data + b"\r\n")  # one HTTP chunk

        last = time.monotonic()
        while True:
            with self.lock:
                if self.closed or self.instance != instance:
                    break
                first = self.buffer[0].seq if self.buffer else self.next
                body: bytes | None = None
                ended = False
                if self.poison:  # the stream ends after it: the reader drops it anyway
                    body, ended = self.poison.popleft(), True
                elif start < first or start > self.next:
                    body = self._error(
                        "OUT_OF_RANGE", f"'from' must be between {first} and {self.next}"
                    )
                    ended = True
                elif start < self.next:
                    got = list(itertools.islice(self.buffer, start - first, start - first + count))
                    body = self._streams(got, got[-1].seq + 1)
                    start = got[-1].seq + 1
                elif time.monotonic() - last >= heartbeat:
                    body = self._streams([], self.next)
                else:
                    self.lock.wait(min(heartbeat, max(interval, 0.01)))
                    continue
            part(body)
            last = time.monotonic()
            if ended:
                break
            time.sleep(interval)  # the agent's least time between parts
        write(b"0\r\n\r\n")

    # --- HTTP -----------------------------------------------------------------------

    def serve(self) -> str:
        agent = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # chunked streams; the rest has a Content-Length

            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = parse_qs(url.query)
                if url.path == "/sample" and "interval" in query and agent.streams:
                    self.close_connection = True
                    with contextlib.suppress(OSError):  # the client went away
                        agent.stream(self._write, query)
                    return
                status, body = agent.answer(url.path, query)
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _write(self, data: bytes) -> None:
                self.wfile.write(data)
                self.wfile.flush()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.lock.notify_all()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def shdr_lines() -> list[str]:
    return SHDR.read_text().splitlines()
