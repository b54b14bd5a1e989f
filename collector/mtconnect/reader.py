"""The MTConnect reader: an HTTP client of an MTConnect Agent (probe, current, sample).

An agent keeps a ring buffer of observations numbered by ``sequence``, and a new
``instanceId`` whenever it restarts (its numbering starts again). The reader:

1. ``/probe``: the device model, against which the mapping is resolved
   (:mod:`collector.mtconnect.decode`);
2. ``/current`` when it has no place in this agent's buffer yet: the latest value of
   every item, then ``nextSequence``;
3. ``/sample?from=<next>&count=<count>&interval=<ms>``: the agent's multipart stream,
   a document whenever it has newer observations, in order (``stream: true``, the
   default); an agent that answers with one document instead is polled: the same
   request without ``interval`` again and again, waiting ``poll_interval_s`` when the
   agent had nothing newer (and ``stream: false`` always polls).

Its place (instance and next sequence) is saved in Redis once the signals before it
are in the streams (:mod:`collector.state`, from the sink's ack), so after a restart it
resumes where it stopped and nothing still in the agent's buffer is lost or written
twice (a kill between the stream write and the save repeats that one document). When
the place is gone it re-reads ``/current`` and counts why: a new ``instanceId`` is an
agent restart (``agent_restart``); ``from`` older than ``firstSequence`` (the agent's
``OUT_OF_RANGE``, or a header that says so) is an overrun whose size is counted in
``repsys_collector_mtconnect_gaps_total``.

A document that is not MTConnect XML is dead-lettered whole and the round ends with
:class:`SourceUnavailableError` (``bad_response``): the supervisor backs off and the next
round asks again from the same place. An observation that cannot become a signal is
dead-lettered alone with its reason; the rest of its document goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from typing import Any

import httpx

from collector.errors import PayloadRejectedError, SourceUnavailableError
from collector.metrics import CollectorMetrics
from collector.mtconnect.decode import Mapping
from collector.mtconnect.document import (
    AgentError,
    Streams,
    parse_error,
    parse_probe,
    parse_streams,
)
from collector.mtconnect.multipart import PartReader, boundary_of
from collector.reader import Sink
from collector.rows import Row
from collector.state import SourceState
from core.config import RepsysConfig
from core.config.collector_mtconnect import MtconnectSource
from core.lifecycle import Stopper
from core.logs import get_logger
from core.model import Signal
from core.redis import connect_sync

log = get_logger(__name__)

KIND = "mtconnect"


class _ResyncError(Exception):  # control flow inside the reader, never raised out
    """The reader's place in the agent's buffer is gone: re-read /current."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


async def _or_stop(work: Coroutine[Any, Any, bool], stopper: Stopper) -> bool:
    """``work``'s result, or True once the stopper is set first (``work`` cancelled).

    A sample stream may stay silent up to its heartbeat: a stop must not wait for it.
    """
    task = asyncio.ensure_future(work)
    stop = asyncio.ensure_future(stopper.wait_async())
    try:
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # the reader itself cancelled: take the stream down with it
        task.cancel()
        raise
    finally:
        stop.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return True


class MtconnectReader:
    """Reads one MTConnect Agent (see the module docstring)."""

    kind = KIND

    @classmethod
    def from_config(
        cls, source: MtconnectSource, cfg: RepsysConfig, sink: Sink, metrics: CollectorMetrics
    ) -> MtconnectReader:
        """The reader of ``source`` as ``collector.service`` builds it."""
        state = SourceState(connect_sync(cfg.redis), cfg.collector.name, source.name)
        return cls(source, sink, metrics, state=state)

    def __init__(
        self,
        source: MtconnectSource,
        sink: Sink,
        metrics: CollectorMetrics,
        *,
        state: SourceState | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.source = source
        self.name = source.name
        self.sink = sink
        self.metrics = metrics
        self.state = state
        self.transport = transport
        self.mapping: Mapping | None = None
        #: The reader's place: (instanceId, next sequence), in memory and saved.
        self.instance: str | None = None
        self.next: int | None = None

    # --- HTTP ------------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.source.url, timeout=self.source.timeout_s, transport=self.transport
        )

    async def _get(self, http: httpx.AsyncClient, path: str, **params: int) -> bytes:
        """One request's body; an MTConnectError body raises :class:`AgentError`."""
        limit = self.source.max_document_bytes
        try:
            async with http.stream("GET", path, params=params) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > limit:
                        self._bad(path, bytes(body[:4096]), "too_large", f"over {limit} bytes")
                        raise SourceUnavailableError(
                            f"mtconnect {path}: response over {limit} bytes", reason="bad_response"
                        )
                status = response.status_code
        except httpx.HTTPError as exc:
            raise SourceUnavailableError(
                f"mtconnect {self.source.url}{path}: {type(exc).__name__}: {exc}", reason="connect"
            ) from exc
        if status != httpx.codes.OK:
            error = parse_error(bytes(body))
            if error is not None:
                raise error
            raise SourceUnavailableError(f"mtconnect {path}: HTTP {status}", reason="http_status")
        return bytes(body)

    def _bad(self, where: str, body: bytes, reason: str, error: str) -> None:
        self.sink.dead_letter(
            KIND, source=self.name, reason=reason, error=error, where=where, payload=body
        )

    async def _document(self, http: httpx.AsyncClient, path: str, **params: int) -> Streams:
        body = await self._get(http, path, **params)
        try:
            return parse_streams(body)
        except AgentError:
            raise
        except PayloadRejectedError as exc:
            self._bad(path, body, exc.reason, str(exc))
            raise SourceUnavailableError(f"mtconnect {path}: {exc}", reason="bad_response") from exc

    async def _probe(self, http: httpx.AsyncClient) -> Mapping:
        body = await self._get(http, "/probe")
        try:
            model = parse_probe(body)
        except PayloadRejectedError as exc:
            self._bad("/probe", body, exc.reason, str(exc))
            raise SourceUnavailableError(f"mtconnect /probe: {exc}", reason="bad_response") from exc
        mapping = Mapping(self.source, model)
        if mapping.missing:
            log.warning("mtconnect_mapping_missing", source=self.name, missing=mapping.missing)
        log.info(
            "mtconnect_probed", source=self.name, items=len(model), mapped=len(mapping.targets)
        )
        return mapping

    # --- documents -> sink -----------------------------------------------------------

    def _deliver(self, mapping: Mapping, doc: Streams, where: str) -> None:
        """Hand a document's signals to the sink; its place is saved once they are written."""
        now = time.time()
        self.metrics.last_message.seen(KIND, self.name, now)
        rows, rejected = mapping.rows(doc.observations, now)
        for r in rejected:
            self._bad(f"{where} {r.where}", r.payload, r.reason, r.error)
        # Consecutive rows of one machine as one group (a device is one machine).
        groups: list[tuple[str, list[Row]]] = []
        for row in rows:
            if groups and groups[-1][0] == row[0]:
                groups[-1][1].append(row)
            else:
                groups.append((row[0], [row]))
        place = {"instance": doc.header.instance_id, "next": str(doc.header.next)}
        self.instance, self.next = doc.header.instance_id, doc.header.next
        state = self.state

        def ack() -> None:
            if state is not None:
                state.save(place)

        self.sink.submit_groups(KIND, groups, ack)

    async def _current(self, http: httpx.AsyncClient, mapping: Mapping) -> None:
        doc = await self._document(http, "/current")
        self.metrics.mtconnect_events.labels(self.name, "resync").inc()
        log.info(
            "mtconnect_current",
            source=self.name,
            next=doc.header.next,
            instance=doc.header.instance_id,
        )
        self._deliver(mapping, doc, "/current")

    @staticmethod
    def _agent_error(exc: AgentError) -> Exception:
        """What an MTConnectError answer to /sample means for the reader."""
        if "OUT_OF_RANGE" in exc.codes:
            return _ResyncError("out_of_range")
        return SourceUnavailableError(f"mtconnect /sample: {exc}", reason="agent_error")

    def _accept(self, mapping: Mapping, doc: Streams, start: int) -> None:
        """Deliver a /sample document asked from ``start``, unless the place is gone."""
        head = doc.header
        if head.instance_id != self.instance:
            raise _ResyncError("agent_restart")
        if start < head.first:
            raise _ResyncError("out_of_range")
        self._deliver(mapping, doc, "/sample")

    async def _sample(self, http: httpx.AsyncClient, mapping: Mapping) -> bool:
        """One /sample round from the reader's place; True when the agent has more."""
        assert self.next is not None
        start = self.next
        try:
            doc = await self._document(
                http, "/sample", **{"from": start, "count": self.source.count}
            )
        except AgentError as exc:
            raise self._agent_error(exc) from exc
        self._accept(mapping, doc, start)
        return doc.header.next <= doc.header.last

    def _part(self, mapping: Mapping, body: bytes) -> None:
        """One part of the sample stream: a document from the reader's place."""
        assert self.next is not None
        start = self.next
        try:
            doc = parse_streams(body)
        except AgentError as exc:  # the agent ends a stream with its error (OUT_OF_RANGE)
            raise self._agent_error(exc) from exc
        except PayloadRejectedError as exc:
            self._bad("/sample", body, exc.reason, str(exc))
            raise SourceUnavailableError(
                f"mtconnect /sample stream: {exc}", reason="bad_response"
            ) from exc
        self._accept(mapping, doc, start)

    async def _stream(self, http: httpx.AsyncClient, mapping: Mapping) -> bool:
        """Read the agent's sample stream from the reader's place until the agent ends it.

        ``/sample?from=<next>&count=&interval=&heartbeat=``: the agent answers with a
        multipart response (:mod:`collector.mtconnect.multipart`) and writes a part
        whenever it has new observations (at most every ``interval_ms``), an empty one
        every ``heartbeat_ms`` otherwise; each part is delivered as a polled document
        would be, and moves the reader's place. Returns True when the stream ended (ask
        again from the place), False when the agent answered with one document instead:
        it does not stream, and the caller polls from then on.
        """
        assert self.next is not None
        src = self.source
        params = {
            "from": self.next,
            "count": src.count,
            "interval": src.interval_ms,
            "heartbeat": src.heartbeat_ms,
        }
        # A silent stream (no heartbeat for this long) is a dead connection.
        timeout = httpx.Timeout(src.timeout_s, read=src.heartbeat_ms / 1000 + src.timeout_s)
        try:
            async with http.stream("GET", "/sample", params=params, timeout=timeout) as response:
                if response.status_code != httpx.codes.OK:
                    body = await response.aread()
                    error = parse_error(body[: src.max_document_bytes])
                    if error is not None:
                        raise self._agent_error(error)
                    raise SourceUnavailableError(
                        f"mtconnect /sample: HTTP {response.status_code}", reason="http_status"
                    )
                boundary = boundary_of(response.headers.get("content-type", ""))
                if boundary is None:  # one document: this agent does not stream
                    log.info("mtconnect_stream_unsupported", source=self.name)
                    return False
                parts = PartReader(boundary, src.max_document_bytes)
                async for chunk in response.aiter_bytes():
                    try:
                        bodies = parts.feed(chunk)
                    except PayloadRejectedError as exc:
                        self._bad("/sample", chunk[:4096], exc.reason, str(exc))
                        raise SourceUnavailableError(
                            f"mtconnect /sample stream: {exc}", reason="bad_response"
                        ) from exc
                    for body in bodies:
                        self._part(mapping, body)
        except httpx.HTTPError as exc:
            raise SourceUnavailableError(
                f"mtconnect {src.url}/sample stream: {type(exc).__name__}: {exc}", reason="connect"
            ) from exc
        return True

    async def _resync(self, http: httpx.AsyncClient, mapping: Mapping, kind: str) -> Mapping:
        """Re-read /current after the reader's place was lost, and count why."""
        old_instance, lost_from = self.instance, self.next
        if kind == "agent_restart":
            mapping = await self._probe(http)  # a restarted agent may have a new model
        doc = await self._document(http, "/current")
        restarted = doc.header.instance_id != old_instance
        if restarted and kind != "agent_restart":
            mapping = await self._probe(http)
        if restarted:
            self.metrics.mtconnect_events.labels(self.name, "agent_restart").inc()
            log.warning(
                "mtconnect_agent_restarted", source=self.name, instance=doc.header.instance_id
            )
        else:
            # The same agent dropped what lay between our place and its first sequence
            # before we read it (a reader stopped longer than the buffer lasts).
            lost = max(0, doc.header.first - (lost_from or doc.header.first))
            self.metrics.mtconnect_events.labels(self.name, "overrun").inc()
            self.metrics.mtconnect_gaps.labels(self.name).inc(lost)
            log.warning(
                "mtconnect_overrun", source=self.name, lost=lost, resumed_at=doc.header.next
            )
        self.metrics.mtconnect_events.labels(self.name, "resync").inc()
        self._deliver(mapping, doc, "/current")
        return mapping

    def _load(self) -> None:
        """Take the saved place, on every start: another replica may have read meanwhile.

        Redis unreadable or nothing saved: the place in memory (if any) stands.
        """
        if self.state is None:
            return
        saved = self.state.load() or {}
        if saved.get("instance") and saved.get("next", "").isdigit():
            self.instance, self.next = saved["instance"], int(saved["next"])

    async def run(self, stopper: Stopper) -> None:
        """Probe, find the reader's place, and sample until the stopper is set."""
        await asyncio.to_thread(self._load)
        async with self._client() as http:
            mapping = await self._probe(http)
            self.metrics.connected.labels(KIND, self.name).set(1)
            try:
                if self.next is None:
                    await self._current(http, mapping)
                else:
                    self.metrics.mtconnect_events.labels(self.name, "resumed").inc()
                    log.info("mtconnect_resumed", source=self.name, next=self.next)
                streaming = self.source.stream
                while not stopper.stopped:
                    try:
                        if streaming:
                            streaming = await _or_stop(self._stream(http, mapping), stopper)
                            continue
                        more = await self._sample(http, mapping)
                    except _ResyncError as resync:
                        mapping = await self._resync(http, mapping, resync.kind)
                        continue
                    if not more:
                        await stopper.wait_async(self.source.poll_interval_s)
            finally:
                self.metrics.connected.labels(KIND, self.name).set(0)

    async def read_once(self, seconds: float) -> list[Signal]:
        """Probe and read ``/current`` once: every mapped item's latest value."""
        got: list[Signal] = []
        async with self._client() as http:
            mapping = await self._probe(http)
            doc = await self._document(http, "/current")
        signals, rejected = mapping.decode(doc.observations, time.time())
        for r in rejected:
            self._bad(f"/current {r.where}", r.payload, r.reason, r.error)
        got.extend(signals)
        return got

    def healthy(self) -> tuple[bool, str]:
        """Always healthy: a lost agent ends ``run`` and the supervisor reconnects."""
        return True, ""
