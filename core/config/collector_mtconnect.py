"""Configuration of a ``type: mtconnect`` source (an MTConnect Agent's HTTP interface).

Kept in its own module so that the ``collector:`` section model only names it; the
reader is ``collector/mtconnect/``. Which agent device is which machine and which data
item is which signal is plant configuration: an item is picked by its ``id`` or by its
``type`` (and ``sub_type``), the way the standard names them in the agent's probe.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Literal

from pydantic import Field, field_validator, model_validator

from core.config.base import StrictModel

#: Signal names (as core.config.collector.SIGNAL_PATTERN; repeated to avoid a cycle).
_SIGNAL = r"^[a-z][a-z0-9_]{0,63}$"
#: MTConnect type names: PART_COUNT, TOOL_NUMBER, x:VENDOR_TYPE.
_TYPE = r"^([A-Za-z0-9_]+:)?[A-Z][A-Z0-9_]{0,63}$"

Loc = tuple[str | int, ...]


class MtconnectDevice(StrictModel):
    """One device of the agent (``<Device name=... uuid=...>``) that is one machine."""

    device: str = Field(min_length=1, description="The device's name or uuid in the probe.")
    machine: str = Field(description="Machine id from machines:.")


class MtconnectItem(StrictModel):
    """Data items mapped onto one signal: by ``id``, or every item of a ``type``."""

    id: str = Field(default="", description="dataItemId in the probe (exactly one item).")
    type: str = Field(default="", description="Data item type: PART_COUNT, EXECUTION, LOAD.")
    sub_type: str = Field(default="", description="With type: only this subType (ACTUAL).")
    name: str = Field(default="", description="With type: only items of this name.")
    signal: str = Field(pattern=_SIGNAL, description="Signal name.")
    subject: str = Field(default="", max_length=64, description="Subject: a tool, a spindle.")
    value: Literal["auto", "number", "int", "text"] = Field(
        default="auto",
        description="auto: SAMPLE items as numbers, EVENT items as text; number/int/text: "
        "convert, a value that does not is dead-lettered (bad_value).",
    )
    map: dict[str, str] = Field(
        default_factory=dict, description="Text -> canonical text, e.g. {ACTIVE: executing}."
    )

    @field_validator("type", "sub_type")
    @classmethod
    def _type_form(cls, value: str) -> str:
        if value and not re.fullmatch(_TYPE, value):
            raise ValueError("must be an MTConnect type name such as PART_COUNT")
        return value

    @model_validator(mode="after")
    def _one_selector(self) -> MtconnectItem:
        if bool(self.id) == bool(self.type):
            raise ValueError("give exactly one of id and type")
        if self.id and (self.sub_type or self.name):
            raise ValueError("sub_type and name narrow a type, not an id")
        return self


class MtconnectSource(StrictModel):
    """An MTConnect Agent (cppagent or a builder's own) read over HTTP: probe, current, sample."""

    type: Literal["mtconnect"]
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Source name (logs).")
    url: str = Field(description="The agent's base URL: http://10.1.2.3:5000.")
    poll_interval_s: float = Field(
        default=1.0, gt=0, le=60, description="Wait between samples when the agent had nothing new."
    )
    count: int = Field(
        default=1000, ge=1, le=100_000, description="Observations asked per /sample request."
    )
    stream: bool = Field(
        default=True,
        description="Read /sample as the agent's multipart stream (interval_ms); an agent "
        "that answers with one document is polled instead. false: always poll.",
    )
    interval_ms: int = Field(
        default=500, ge=0, le=60_000, description="Streaming: the agent's least time between parts."
    )
    heartbeat_ms: int = Field(
        default=10_000,
        ge=100,
        le=600_000,
        description="Streaming: the agent sends an empty part after this long without data; "
        "a stream silent for heartbeat_ms + timeout_s is dropped and asked again.",
    )
    timeout_s: float = Field(default=10.0, gt=0, description="HTTP connect and read timeout.")
    max_document_bytes: int = Field(
        default=16_777_216, ge=65_536, description="Larger responses are refused (too_large)."
    )
    devices: list[MtconnectDevice] = Field(min_length=1)
    items: list[MtconnectItem] = Field(default_factory=list)
    conditions: bool = Field(
        default=True,
        description="Every CONDITION item of a mapped device becomes an alarm signal "
        "(value the nativeCode, else the item's type; attrs active, level, text).",
    )
    alarm_signal: str = Field(default="alarm", pattern=_SIGNAL)

    @field_validator("url")
    @classmethod
    def _url_form(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
            raise ValueError("must be an http:// or https:// URL without query")
        return value.rstrip("/")

    @field_validator("devices")
    @classmethod
    def _devices_unique(cls, value: list[MtconnectDevice]) -> list[MtconnectDevice]:
        names = [d.device for d in value]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"device {name} appears twice")
        return value

    def machine_refs(self) -> Iterator[tuple[Loc, str]]:
        """Every machine id this source names, with its key path inside the source."""
        for i, device in enumerate(self.devices):
            yield ("devices", i, "machine"), device.machine
