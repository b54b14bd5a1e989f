"""Okuma datagrams -> signals, with the plant's mapping and the run accounting.

Sets 1-49 carry tool counters: each mapped block becomes one signal (``tool_life`` by
default) of its machine, subject the tool, attrs ``assembly``, ``set`` and ``block``;
blocks no counter maps are skipped (a macro often prints more variables than a plant
watches). Set 60 is a tool-assembly command of four blocks ``Cmd``, ``Pallet_No``,
``Tool_Var``, ``Tool_Counter``:

- ``50`` START_MACHINING: a ``machining_event`` with ``cmd`` 50; its time is the start
  of the next END of the same pallet and tool var.
- ``51`` END_MACHINING / ``52`` END_MACHINING_NO_TIMER: a ``machining_event`` (value =
  counter; attrs ``pallet``, ``tool``, ``counter``, ``increment``, ``cmd``, ``start``
  (51 only, when its START was seen), ``end``, ``running_total``,
  ``running_entire_time``, ``increment_by_check``, ``zero_detect``, ``workcenter``),
  the plants' ``InsAssemblyMachiningHistory``; before it, when the reading ended a run
  that was watched whole, a ``tool_change`` (value = the run quantity, attrs
  ``reason=counter_reset``, ``counter``, ``workcenter``), the plants'
  ``InsToolLifeHistoryV2`` (see :mod:`collector.udp.runs`).

A datagram carries no time: source and receive time are the receive time. The decoder
returns rows (:mod:`collector.rows`), the sink's hot-path form, with the attrs' JSON
written out directly (every value is ASCII digits, ``T<n>`` or a float's repr, so no
escaping is ever needed; configured texts are encoded once at start);
:func:`signals` turns rows back into :class:`Signal` objects for tests and one-shot
mode. The decoder keeps state (runs, pending starts) and is used from one thread.
Gaps the payload shows are counted by kind: ``end_without_start`` (a START lost, or sent
before the collector listened), ``start_without_end`` (an END lost), ``counter_skip``
(a counter that advanced by more than its increment: lost ENDs, or a counter jump).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from collector.errors import PayloadRejectedError
from collector.rows import Row, rows_fields, value_json
from collector.udp.frame import Datagram, parse
from collector.udp.runs import ToolRun
from core.config.collector_udp import UdpCounter, UdpSource, UdpWorkcenter
from core.model import Signal

START_MACHINING = 50
END_MACHINING = 51
END_MACHINING_NO_TIMER = 52
COMMAND_SET = 60

#: Called with a gap kind (see the module docstring).
GapCounter = Callable[[str], None]


def _no_gaps(kind: str) -> None:
    """Gaps are only counted when the caller asks."""


def _flag(value: bool) -> str:
    return "1" if value else "0"


def signals(rows: list[Row]) -> list[Signal]:
    """The signals the rows stand for (what the stream entries decode to)."""
    return [Signal.from_fields(f) for f in rows_fields(rows)]


def _num(v: int | float) -> str:
    """A number's JSON text (the block values are finite: the frame's grammar)."""
    return value_json(v) or "null"


class DatagramDecoder:
    """Decodes one source's datagrams into signals (see the module docstring)."""

    def __init__(self, source: UdpSource, gaps: GapCounter = _no_gaps) -> None:
        self.source = source
        self.gaps = gaps
        self.workcenters: dict[int, UdpWorkcenter] = {w.key: w for w in source.workcenters}
        #: (key, set) -> block -> (counter, the head of its attrs' JSON, encoded once).
        self.counters: dict[tuple[int, int], dict[int, tuple[UdpCounter, str]]] = {}
        for wc in source.workcenters:
            for c in wc.counters:
                attrs = {"set": str(c.set), "block": str(c.block)}
                if c.assembly:
                    attrs["assembly"] = c.assembly
                text = json.dumps(attrs, separators=(",", ":"))
                self.counters.setdefault((wc.key, c.set), {})[c.block] = (c, text)
        self.runs: dict[tuple[int, int], ToolRun] = {}
        #: (workcenter, pallet, tool var) -> time of its START_MACHINING.
        self.starts: dict[tuple[int, int, int], float] = {}
        #: Runs an END changed since the reader last took them (to save their state).
        self.touched: set[tuple[int, int]] = set()

    def run_fields(self) -> dict[str, str]:
        """The touched runs' state as hash fields ``run:<workcenter>:<tool var>``; clears."""
        out = {f"run:{wc}:{tv}": json.dumps(self.runs[(wc, tv)].state()) for wc, tv in self.touched}
        self.touched.clear()
        return out

    def restore(self, fields: dict[str, str]) -> int:
        """Take back saved runs (fields of :meth:`run_fields`); returns how many.

        A field that does not parse, or names a workcenter no longer configured, is skipped:
        its tool's next reading starts a run "first seen mid-way", as without a save.
        """
        n = 0
        for name, raw in fields.items():
            parts = name.split(":")
            if len(parts) != 3 or parts[0] != "run":
                continue
            try:
                key, tool_var, state = int(parts[1]), int(parts[2]), json.loads(raw)
            except ValueError:
                continue
            wc = self.workcenters.get(key)
            if wc is None or not isinstance(state, list):
                continue
            run = ToolRun.restored(wc.increments.get(tool_var, wc.increment), state)
            if run is not None:
                self.runs[(key, tool_var)] = run
                n += 1
        return n

    def decode(self, data: bytes, now: float) -> list[Row]:
        """Rows of one datagram; raises :class:`PayloadRejectedError` for bad ones."""
        dgram = parse(data, framing=self.source.framing, max_data_bytes=self.source.max_data_bytes)
        wc = self.workcenters.get(dgram.workcenter_key)
        if wc is None:
            raise PayloadRejectedError(
                f"unknown workcenter key {dgram.workcenter_key}", reason="unknown_workcenter"
            )
        if dgram.set_no == COMMAND_SET:
            return self._command(wc, dgram, now)
        blocks = self.counters.get((wc.key, dgram.set_no))
        if blocks is None:
            raise PayloadRejectedError(
                f"set {dgram.set_no} of workcenter key {wc.key} is not configured",
                reason="unknown_set",
            )
        out: list[Row] = []
        ts = repr(now)
        for index, value in enumerate(dgram.values, start=1):
            mapped = blocks.get(index)
            if mapped is None:
                continue
            c, attrs = mapped
            machine = c.machine or wc.machine
            out.append([machine, c.signal, _num(value), "good", ts, ts, c.tool, attrs])
        return out

    def _command(self, wc: UdpWorkcenter, dgram: Datagram, now: float) -> list[Row]:
        if len(dgram.values) != 4:
            raise PayloadRejectedError(
                f"set 60 has {len(dgram.values)} blocks, not 4 (Cmd, Pallet_No, Tool_Var, "
                "Tool_Counter)",
                reason="bad_length",
            )
        cmd, pallet, tool_var, counter = dgram.values
        for name, v in (("Cmd", cmd), ("Pallet_No", pallet), ("Tool_Var", tool_var)):
            if not isinstance(v, int) or v < 0:
                raise PayloadRejectedError(
                    f"{name} {v!r} is not a whole number", reason="not_numeric"
                )
        assert isinstance(cmd, int) and isinstance(pallet, int) and isinstance(tool_var, int)
        if cmd not in (START_MACHINING, END_MACHINING, END_MACHINING_NO_TIMER):
            raise PayloadRejectedError(f"unknown command {cmd}", reason="unknown_command")
        tool = f"T{tool_var}"
        increment = wc.increments.get(tool_var, wc.increment)
        ts = repr(now)
        x = _num(counter)
        head = f'{{"pallet":"{pallet}","tool":"{tool}","counter":"{counter}","cmd":"{cmd}"'
        key = (wc.key, pallet, tool_var)
        if cmd == START_MACHINING:
            if key in self.starts:
                self.gaps("start_without_end")
            self.starts[key] = now
            return [[wc.machine, "machining_event", x, "good", ts, ts, tool, head + "}"]]
        start = self.starts.pop(key, None)
        if start is None and cmd == END_MACHINING:
            self.gaps("end_without_start")
        run = self.runs.get((wc.key, tool_var))
        if run is None:
            run = self.runs[(wc.key, tool_var)] = ToolRun(increment)
        r = run.observe(counter)
        self.touched.add((wc.key, tool_var))
        if r.skipped:
            self.gaps("counter_skip")
        out: list[Row] = []
        if r.finished is not None and r.finished[1]:
            change = f'{{"reason":"counter_reset","counter":"{counter}","workcenter":"{wc.key}"}}'
            out.append(
                [wc.machine, "tool_change", _num(r.finished[0]), "good", ts, ts, tool, change]
            )
        attrs = (
            f'{head},"increment":"{increment}","end":"{ts}","running_total":"{r.running_total}",'
            f'"running_entire_time":"{_flag(r.running_entire_time)}",'
            f'"increment_by_check":"{_flag(r.increment_by_check)}",'
            f'"zero_detect":"{_flag(r.zero_detect)}","workcenter":"{wc.key}"'
        )
        if start is not None and cmd == END_MACHINING:
            attrs += f',"start":"{start!r}"'
        out.append([wc.machine, "machining_event", x, "good", ts, ts, tool, attrs + "}"])
        return out
