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

The first END of each tool var after the decoder starts carries ``resync: "1"``: the
datagrams sent while no collector listened are gone without a trace, so the rules
compare that reading with nothing (a roll-back "after" a reading the rules never had
would be a false ticket; decision 0470).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import NamedTuple

from collector.errors import PayloadRejectedError
from collector.rows import Row, rows_fields, value_json
from collector.udp.frame import command_fast, parse
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


#: The three flag attrs' text, by (running_entire_time, increment_by_check, zero_detect).
_FLAGS = {
    (a, b, c): f'"running_entire_time":"{int(a)}","increment_by_check":"{int(b)}",'
    f'"zero_detect":"{int(c)}"'
    for a in (False, True)
    for b in (False, True)
    for c in (False, True)
}


class _RunTexts(NamedTuple):
    """What a (workcenter, tool var)'s rows and saved state say that never changes."""

    tool: str
    increment: int
    #: The attrs between ``cmd``'s value and ``end``'s: ``","increment":"5","end":"``.
    increment_end: str
    #: The attrs' last member: ``,"workcenter":"61330"``.
    workcenter: str
    #: The run's state field (:meth:`DatagramDecoder.run_fields`).
    field: str


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
        self._framing = source.framing
        self._max_data_bytes = source.max_data_bytes
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
        #: (workcenter, tool var) -> its texts, made at its first command.
        self._texts: dict[tuple[int, int], _RunTexts] = {}
        #: (workcenter, tool var) whose first END since the start was marked ``resync``.
        self._resynced: set[tuple[int, int]] = set()

    def _run_texts(self, wc: UdpWorkcenter, tool_var: int) -> _RunTexts:
        increment = wc.increments.get(tool_var, wc.increment)
        texts = _RunTexts(
            tool=f"T{tool_var}",
            increment=increment,
            increment_end=f'","increment":"{increment}","end":"',
            workcenter=f',"workcenter":"{wc.key}"',
            field=f"run:{wc.key}:{tool_var}",
        )
        self._texts[(wc.key, tool_var)] = texts
        return texts

    def run_fields(self) -> dict[str, str]:
        """The touched runs' state as hash fields ``run:<workcenter>:<tool var>``; clears."""
        runs, texts = self.runs, self._texts
        out = {texts[k].field: runs[k].state_json() for k in self.touched}
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
        fast = command_fast(data, self._max_data_bytes)
        if fast is not None:  # the common datagram, a tool-assembly command
            wc = self.workcenters.get(fast[0])
            if wc is None:
                raise PayloadRejectedError(
                    f"unknown workcenter key {fast[0]}", reason="unknown_workcenter"
                )
            return self._command(wc, fast[1:], now)
        dgram = parse(data, framing=self._framing, max_data_bytes=self._max_data_bytes)
        wc = self.workcenters.get(dgram.workcenter_key)
        if wc is None:
            raise PayloadRejectedError(
                f"unknown workcenter key {dgram.workcenter_key}", reason="unknown_workcenter"
            )
        if dgram.set_no == COMMAND_SET:
            return self._command(wc, dgram.values, now)
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

    def _command(self, wc: UdpWorkcenter, values: tuple[int | float, ...], now: float) -> list[Row]:
        if len(values) != 4:
            raise PayloadRejectedError(
                f"set 60 has {len(values)} blocks, not 4 (Cmd, Pallet_No, Tool_Var, Tool_Counter)",
                reason="bad_length",
            )
        cmd, pallet, tool_var, counter = values
        # The frame's values are ints or floats: one test for the common case, the
        # named refusal only when it fails.
        if not (
            type(cmd) is int
            and type(pallet) is int
            and type(tool_var) is int
            and cmd >= 0
            and pallet >= 0
            and tool_var >= 0
        ):
            for name, v in (("Cmd", cmd), ("Pallet_No", pallet), ("Tool_Var", tool_var)):
                if not isinstance(v, int) or v < 0:
                    raise PayloadRejectedError(
                        f"{name} {v!r} is not a whole number", reason="not_numeric"
                    )
        assert isinstance(cmd, int) and isinstance(pallet, int) and isinstance(tool_var, int)
        if cmd not in (START_MACHINING, END_MACHINING, END_MACHINING_NO_TIMER):
            raise PayloadRejectedError(f"unknown command {cmd}", reason="unknown_command")
        rk = (wc.key, tool_var)
        texts = self._texts.get(rk) or self._run_texts(wc, tool_var)
        tool = texts.tool
        ts = repr(now)
        x = repr(counter)  # an int or a finite float (the frame's grammar): its JSON text
        head = f'{{"pallet":"{pallet}","tool":"{tool}","counter":"{counter}","cmd":"{cmd}'
        key = (wc.key, pallet, tool_var)
        if cmd == START_MACHINING:
            if key in self.starts:
                self.gaps("start_without_end")
            self.starts[key] = now
            return [[wc.machine, "machining_event", x, "good", ts, ts, tool, head + '"}']]
        start = self.starts.pop(key, None)
        if start is None and cmd == END_MACHINING:
            self.gaps("end_without_start")
        run = self.runs.get(rk)
        if run is None:
            run = self.runs[rk] = ToolRun(texts.increment)
        r = run.observe(counter)
        self.touched.add(rk)
        if r.skipped:
            self.gaps("counter_skip")
        out: list[Row] = []
        if r.finished is not None and r.finished[1]:
            change = f'{{"reason":"counter_reset","counter":"{counter}"{texts.workcenter}}}'
            out.append(
                [wc.machine, "tool_change", _num(r.finished[0]), "good", ts, ts, tool, change]
            )
        attrs = (
            f'{head}{texts.increment_end}{ts}","running_total":"{r.running_total}",'
            f"{_FLAGS[r[1:4]]}{texts.workcenter}"
        )
        if start is not None and cmd == END_MACHINING:
            attrs += f',"start":"{start!r}"'
        out.append(
            [wc.machine, "machining_event", x, "good", ts, ts, tool, attrs + self._resync(rk)]
        )
        return out

    def _resync(self, rk: tuple[int, int]) -> str:
        """The END's closing brace, after ``resync`` on a tool var's first (module docstring)."""
        if rk in self._resynced:
            return "}"
        self._resynced.add(rk)
        return ',"resync":"1"}'
