"""One OPC UA source's intake: data values become rows, batched to the sink by machine.

Status codes become qualities (:func:`quality_of`); the server's source timestamp is
kept (server timestamp, then receive time, when the server sends none). A value that
will not convert is dead-lettered with its node id (:meth:`Intake.reject`), and the
intake goes on: nothing a server sends may end it. The intake also keeps what the
watchdog reads (:attr:`Intake.last_data`).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from asyncua import ua
from asyncua.ua.status_codes import StatusCodes

from collector.convert import convert
from collector.errors import PayloadRejectedError, rejection
from collector.metrics import CollectorMetrics
from collector.opcua.resolve import Resolved
from collector.reader import Sink
from collector.rows import Row, signal_row
from core.config.base import type_tag
from core.config.collector import OpcuaSource
from core.model import Quality, Signal

#: The registry key, config ``type`` and metric label: the source model's ``type``.
KIND = type_tag(OpcuaSource)
GOOD = Quality.GOOD
#: The heartbeat's signal name (``collector.opcua.subscribe``).
HEARTBEAT_SIGNAL = "source_alive"

_NO_DATA = {
    StatusCodes.BadNoData,
    StatusCodes.BadWaitingForInitialData,
    StatusCodes.BadNoCommunication,
    StatusCodes.BadNotConnected,
    StatusCodes.BadOutOfService,
    StatusCodes.BadServerNotConnected,
}


def quality_of(status: ua.StatusCode | None) -> Quality:
    """OPC UA status → quality: severity bits, with "no data" codes of their own."""
    if status is None:
        return Quality.GOOD
    code = status.value
    if code in _NO_DATA:
        return Quality.NO_DATA
    severity = code >> 30
    if severity == 0:
        return Quality.GOOD
    if severity == 1:
        return Quality.UNCERTAIN
    return Quality.BAD


def seconds(value: datetime | None) -> float | None:
    """An OPC UA timestamp as epoch seconds (``None`` when the server sent none)."""
    return value.timestamp() if value is not None else None


#: A configured node, whether its value can be taken as it is, its attributes' JSON.
Known = tuple[Resolved, bool, str]


def known(r: Resolved) -> Known:
    """What decides a node's rows, worked out once per node and subscription."""
    spec = r.spec
    plain = (
        not spec.map and spec.type in ("auto", "float") and spec.scale == 1.0 and spec.offset == 0.0
    )
    attrs = r.attrs and Signal(spec.machine, spec.signal, None, attrs=r.attrs).to_fields()["a"]
    return r, plain, attrs or ""


def raw_repr(value: Any) -> bytes:
    """A dead letter's payload: the raw value as text, whatever it is."""
    try:
        raw = value.Value.Value if isinstance(value, ua.DataValue) and value.Value else value
        return repr(raw).encode("utf-8", errors="replace")
    except Exception as exc:  # a repr that raises: say so instead
        return f"<{type(value).__name__}: repr failed: {exc}>".encode()


class Intake:
    """Rows of one source on their way to the sink, and the dead letters of the rest."""

    def __init__(self, name: str, sink: Sink, metrics: CollectorMetrics) -> None:
        self.name = name
        self.sink = sink
        self.metrics = metrics
        self.pending: list[Row] = []
        #: When a data notification last arrived (monotonic): the watchdog's clock.
        self.last_data = time.monotonic()
        self.notifications = 0

    def signal(self, r: Resolved, dv: ua.DataValue, receive_ts: float) -> Signal | None:
        """The signal of one data value (``None``, dead-lettered, when it will not convert)."""
        quality = quality_of(dv.StatusCode)
        raw = dv.Value.Value if dv.Value is not None else None
        try:
            value = convert(raw, r.spec) if quality is not Quality.NO_DATA else None
        except PayloadRejectedError as exc:
            self.reject(exc, r.node_id.to_string(), raw)
            return None
        source_ts = seconds(dv.SourceTimestamp) or seconds(dv.ServerTimestamp) or receive_ts
        return Signal(
            machine=r.spec.machine,
            name=r.spec.signal,
            value=value,
            quality=quality,
            source_ts=source_ts,
            receive_ts=receive_ts,
            subject=r.spec.subject,
            attrs=r.attrs,
        )

    def row(self, node: Known, dv: ua.DataValue, receive_ts: float) -> Row | None:
        """:meth:`signal` as a row (:mod:`collector.rows`), without a Signal when it can.

        A good finite float of a plain node (no map or scaling) is written as it is;
        anything else goes through :meth:`signal`. A property test holds the two equal.
        """
        r, plain, attrs = node
        raw = dv.Value.Value if dv.Value is not None else None
        if plain and type(raw) is float and raw - raw == 0.0 and quality_of(dv.StatusCode) is GOOD:
            source_ts = seconds(dv.SourceTimestamp) or seconds(dv.ServerTimestamp) or receive_ts
            spec = r.spec
            x = float.__repr__(raw)
            return [
                spec.machine,
                spec.signal,
                x,
                "good",
                repr(source_ts),
                repr(receive_ts),
                spec.subject,
                attrs,
            ]
        sig = self.signal(r, dv, receive_ts)
        return None if sig is None else signal_row(sig)

    def heartbeat(self, machines: list[str]) -> None:
        """A ``source_alive`` signal for each of ``machines`` (``collector.opcua.subscribe``)."""
        now = repr(time.time())
        self.pending.extend([m, HEARTBEAT_SIGNAL, "1", "good", now, now, "", ""] for m in machines)
        self.flush()

    def reject(self, exc: Exception, where: str, value: Any) -> None:
        """Dead-letter ``value``: its reason is ``exc``'s, or ``internal_error`` for a bug."""
        reason, error = rejection(exc)
        self.sink.dead_letter(
            KIND, source=self.name, reason=reason, error=error, where=where, payload=raw_repr(value)
        )

    def flush(self) -> None:
        """Hand the pending rows to the sink, one batch per machine in their order."""
        if self.pending:
            batch, self.pending = self.pending, []
            by_machine: dict[str, list[Row]] = {}  # each machine's rows in their order
            for row in batch:
                rows = by_machine.get(row[0])
                if rows is None:
                    by_machine[row[0]] = [row]
                else:
                    rows.append(row)
            for machine, rows in by_machine.items():
                self.sink.submit_rows(KIND, machine, rows)
