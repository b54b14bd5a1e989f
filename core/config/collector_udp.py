"""Configuration of a ``type: udp`` source (Okuma tool counters from a serial device server).

Kept in its own module so that the ``collector:`` section model only names it; the
reader is ``collector/udp/``. Every plant-specific value lives here: which approved
workcenter key is which machine, each tool variable's ``Increment_By``, and which 10-byte
block of which set is which tool's counter.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Literal

from pydantic import Field, field_validator, model_validator

from core.config.base import StrictModel

#: Signal names (as core.config.collector.SIGNAL_PATTERN; repeated to avoid a cycle).
_SIGNAL = r"^[a-z][a-z0-9_]{0,63}$"

Loc = tuple[str | int, ...]


class UdpCounter(StrictModel):
    """One 10-byte block of a tool-counter set (1-49): one Okuma common variable."""

    set: int = Field(ge=1, le=49, description="Set_No of the datagram (1-49).")
    block: int = Field(ge=1, le=15, description="Block within the set, from 1.")
    tool: str = Field(min_length=1, max_length=64, description="The tool it counts: T1.")
    assembly: str = Field(default="", max_length=64, description="Tool assembly, an attr.")
    signal: str = Field(default="tool_life", pattern=_SIGNAL, description="Signal name.")
    machine: str = Field(default="", description="Machine id; empty: the workcenter's.")


class UdpWorkcenter(StrictModel):
    """One ``CNC_Approved_Workcenter_Key`` (the number before the comma of a datagram)."""

    key: int = Field(ge=0, description="CNC_Approved_Workcenter_Key as the macro sends it.")
    machine: str = Field(description="Machine id from machines:.")
    increment: int = Field(
        default=1, ge=1, description="Increment_By of its tools (parts per machining event)."
    )
    increments: dict[int, int] = Field(
        default_factory=dict, description="Tool_Var -> Increment_By, where not `increment`."
    )
    counters: list[UdpCounter] = Field(
        default_factory=list, description="Blocks of sets 1-49 mapped onto tool counters."
    )

    @field_validator("increments")
    @classmethod
    def _positive(cls, value: dict[int, int]) -> dict[int, int]:
        for tool_var, inc in value.items():
            if inc < 1:
                raise ValueError(f"Tool_Var {tool_var}: the increment must be at least 1")
        return value

    @model_validator(mode="after")
    def _blocks_unique(self) -> UdpWorkcenter:
        seen: set[tuple[int, int]] = set()
        for c in self.counters:
            if (c.set, c.block) in seen:
                raise ValueError(f"set {c.set} block {c.block} is mapped twice")
            seen.add((c.set, c.block))
        return self


class UdpSource(StrictModel):
    """A UDP port receiving Okuma M208 datagrams from a serial device server (a Moxa)."""

    type: Literal["udp"]
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Source name (logs).")
    # A listener for the plant's device servers: binding every address is the point.
    host: str = Field(default="0.0.0.0", description="Address to bind (0.0.0.0: all).")  # noqa: S104
    port: int = Field(
        default=2222, ge=0, le=65535, description="UDP port to bind; 0: any free one."
    )
    framing: Literal["required", "optional"] = Field(
        default="required",
        description="required: DC2 ... % DC4 around every datagram; optional: also accept "
        "a bare body (the plants' own test senders send one).",
    )
    max_data_bytes: int = Field(
        default=160, ge=20, le=4096, description="Data between the framing bytes; more: too_long."
    )
    receive_buffer_bytes: int = Field(
        default=4_194_304,
        ge=65_536,
        description="SO_RCVBUF asked of the kernel (capped by net.core.rmem_max): what "
        "bursts can queue while the process is busy.",
    )
    workcenters: list[UdpWorkcenter] = Field(min_length=1)

    @field_validator("host")
    @classmethod
    def _host_form(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,253}", value):
            raise ValueError("must be a host name or an IP address")
        return value

    @field_validator("workcenters")
    @classmethod
    def _keys_unique(cls, value: list[UdpWorkcenter]) -> list[UdpWorkcenter]:
        keys = [w.key for w in value]
        for key in keys:
            if keys.count(key) > 1:
                raise ValueError(f"workcenter key {key} appears twice")
        return value

    def machine_refs(self) -> Iterator[tuple[Loc, str]]:
        """Every machine id this source names, with its key path inside the source."""
        for i, wc in enumerate(self.workcenters):
            yield ("workcenters", i, "machine"), wc.machine
            for j, counter in enumerate(wc.counters):
                if counter.machine:
                    yield ("workcenters", i, "counters", j, "machine"), counter.machine
