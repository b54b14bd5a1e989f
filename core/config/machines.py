"""The plant's machines: identity and Plex mapping, shared by every process.

How each machine's signals are read (OPC UA nodes, MQTT topics) is the collector's
section (``collector.sources``); here is only what every package needs to know about a
machine: its id, its Plex PCN and workcenter, where it stands.
"""

from __future__ import annotations

from pydantic import Field

from core.config.base import StrictModel

#: Machine ids appear in stream entries, keys and metric labels: keep them short and plain.
MACHINE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class Machine(StrictModel):
    """One CNC machine (or cell member) as Plex and the shop floor know it."""

    id: str = Field(pattern=MACHINE_ID_PATTERN, description="Stable id, e.g. cnc103.")
    name: str = Field(default="", description="Display name; defaults to the id.")
    pcn: int = Field(gt=0, description="Plex PCN (plant) the machine belongs to.")
    workcenter_key: int = Field(gt=0, description="Plex Workcenter_Key, e.g. 61324.")
    workcenter_code: str = Field(min_length=1, description="Plex Workcenter_Code, e.g. cnc103.")
    building: str = Field(default="", description="Building, for boards and grouping.")
    cell: str = Field(default="", description="Cell or line, for boards and the operator form.")

    @property
    def display_name(self) -> str:
        return self.name or self.id
