"""What a reader is, what it writes to, and the registry of readers.

A *reader* turns one configured source (an OPC UA server, an MQTT broker) into signals.
Lifecycle: the supervisor (:mod:`collector.service`) builds one reader per source and
awaits :meth:`Reader.run`; ``run`` connects, reads until the stopper is set, and returns,
or raises when the source is lost (the supervisor counts it, waits with backoff and calls
``run`` again: readers never loop on reconnects themselves). ``read_once`` connects, reads
one round and returns the signals (``repsys collector once``).

Readers hand signals to a :class:`Sink`: :class:`collector.sink.StreamSink` in a running
collector, :class:`PrintSink` in one-shot mode.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Protocol, TextIO

from collector.rows import Row, rows_fields
from core.lifecycle import Stopper
from core.model import Signal

Ack = Callable[[], None]


class Sink(Protocol):
    """Where readers put signals and undecodable payloads. Safe from any thread."""

    def submit(self, reader: str, signals: Sequence[Signal], ack: Ack | None = None) -> None:
        """Queue signals; ``ack`` runs once they are durable."""

    def submit_rows(
        self, reader: str, machine: str, rows: list[Row], ack: Ack | None = None
    ) -> None:
        """Queue one machine's signals as rows (:mod:`collector.rows`); as ``submit``."""

    def submit_groups(
        self,
        reader: str,
        groups: list[tuple[str, list[Row]]],
        ack: Ack | None = None,
        *,
        keep_all: bool = True,
    ) -> None:
        """Queue several machines' rows ``(machine, rows)`` in order; ``ack`` after all."""

    def dead_letter(
        self,
        reader: str,
        *,
        source: str,
        reason: str,
        error: str,
        where: str,
        payload: bytes,
        ack: Ack | None = None,
    ) -> None:
        """Queue a payload that did not decode, with its reason."""


class Reader(Protocol):
    """One source's reader (see the module docstring for the lifecycle)."""

    kind: str  # registry key, config `type`, metric label: "opcua" or "mqtt"
    name: str  # the configured source name

    async def run(self, stopper: Stopper) -> None:
        """Connect and read until stopped; raise SourceUnavailableError when lost."""

    async def read_once(self, seconds: float) -> list[Signal]:
        """Connect, read one round (at most ``seconds``), disconnect."""

    def healthy(self) -> tuple[bool, str]:
        """``(False, why)`` when intake stalled although the source looks connected.

        Called by /healthz (any thread, every few seconds): a False restarts the process.
        """


def signal_json(signal: Signal) -> str:
    """One signal as a JSON line (what ``collector once`` prints)."""
    return json.dumps(
        {
            "machine": signal.machine,
            "name": signal.name,
            "value": signal.value,
            "quality": signal.quality.value,
            "source_ts": signal.source_ts,
            "receive_ts": signal.receive_ts,
            "subject": signal.subject,
            "attrs": signal.attrs,
        },
        sort_keys=False,
    )


class PrintSink:
    """A sink that prints JSON lines and acknowledges at once (one-shot mode)."""

    def __init__(self, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> None:
        self.out = out
        self.err = err

    def submit(self, reader: str, signals: Sequence[Signal], ack: Ack | None = None) -> None:
        for signal in signals:
            print(signal_json(signal), file=self.out)
        if ack is not None:
            ack()

    def submit_rows(
        self, reader: str, machine: str, rows: list[Row], ack: Ack | None = None
    ) -> None:
        self.submit(reader, [Signal.from_fields(f) for f in rows_fields(rows)], ack)

    def submit_groups(
        self,
        reader: str,
        groups: list[tuple[str, list[Row]]],
        ack: Ack | None = None,
        *,
        keep_all: bool = True,
    ) -> None:
        rows = [r for _machine, group in groups for r in group]
        self.submit(reader, [Signal.from_fields(f) for f in rows_fields(rows)], ack)

    def dead_letter(
        self,
        reader: str,
        *,
        source: str,
        reason: str,
        error: str,
        where: str,
        payload: bytes,
        ack: Ack | None = None,
    ) -> None:
        line = {"dead_letter": reason, "error": error, "reader": reader, "where": where}
        print(json.dumps(line), file=self.err)
        if ack is not None:
            ack()
