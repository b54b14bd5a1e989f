"""Configuration of a ``type: sparkplug`` source (Sparkplug B edge nodes on an MQTT broker).

Kept in its own module so that the ``collector:`` section model only names it; the
reader is ``collector/sparkplug/``. Which edge node or device is which machine, and which
metric is which signal, is plant configuration.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Literal

from pydantic import Field, field_validator

from core.config.base import OptionalSecret, StrictModel

_SIGNAL = r"^[a-z][a-z0-9_]{0,63}$"
_ID = re.compile(r"^[^/+#]{1,128}$")

Loc = tuple[str | int, ...]


class SparkplugMetric(StrictModel):
    """One Sparkplug metric name mapped onto a signal."""

    name: str = Field(min_length=1, description="Metric name as born, e.g. Spindle/Load.")
    signal: str = Field(pattern=_SIGNAL, description="Signal name.")
    subject: str = Field(default="", max_length=64, description="Subject (tool T1, ...).")


class SparkplugNode(StrictModel):
    """An edge node, or one device of it, that is one machine."""

    group: str = Field(min_length=1, description="Sparkplug group id.")
    edge_node: str = Field(min_length=1, description="Edge node id.")
    device: str = Field(default="", description="Device id; empty: the node's own metrics.")
    machine: str = Field(description="Machine id from machines:.")

    @field_validator("group", "edge_node", "device")
    @classmethod
    def _no_wildcards(cls, value: str) -> str:
        if value and not _ID.match(value):
            raise ValueError("must not contain /, + or #")
        return value


class SparkplugSource(StrictModel):
    """An MQTT broker carrying Sparkplug B (spBv1.0) edge nodes."""

    type: Literal["sparkplug"]
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Source name (logs).")
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    client_id: str = Field(default="", description="Client id; empty: repsys-<collector>-<source>.")
    username: str = ""
    password: OptionalSecret = None
    keepalive_s: int = Field(default=30, ge=5)
    qos: Literal[0, 1] = Field(
        default=1, description="Subscription QoS (edge nodes publish DATA at 0 or 1)."
    )
    groups: list[str] = Field(
        default_factory=lambda: ["+"], description="Group ids to subscribe to (+: all)."
    )
    host_id: str = Field(
        default="",
        description="Primary host id: publish spBv1.0/STATE/<host_id> online (retained, "
        "with an offline will), so edge nodes that wait for their primary host send. "
        "Empty: no STATE.",
    )
    rebirth_min_interval_s: float = Field(
        default=5.0, ge=0, description="At most one Rebirth request per edge node this often."
    )
    nodes: list[SparkplugNode] = Field(
        default_factory=list,
        description="Edge nodes and devices -> machines; a node or device not listed is "
        "the machine of the same id, if there is one.",
    )
    metrics: list[SparkplugMetric] = Field(
        default_factory=list, description="Metric names -> signals."
    )
    unmapped: Literal["skip", "snake"] = Field(
        default="skip",
        description="Metrics not in `metrics`: skip, or snake (the name in snake_case: "
        "Spindle/Load -> spindle_load).",
    )

    @field_validator("groups")
    @classmethod
    def _groups_form(cls, value: list[str]) -> list[str]:
        for g in value:
            if g != "+" and not _ID.match(g):
                raise ValueError(f"group {g!r}: + or an id without /, + or #")
        return value

    def machine_refs(self) -> Iterator[tuple[Loc, str]]:
        """Every machine id this source names, with its key path inside the source."""
        for i, node in enumerate(self.nodes):
            yield ("nodes", i, "machine"), node.machine
