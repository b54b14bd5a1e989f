"""Poison values for the chaos soak: malformed payloads on every input, while chaos runs.

The chaos plant (``repsys/chaos_plant.py``) sends one every :data:`EVERY_S` seconds, the
kinds in turn: on MQTT a JSON counter whose machine field is ``1e400`` (the message that
once stopped all MQTT intake, issue 14), a counter of the wrong type, a counter of
``1e400``, bytes that are not text, a machining event whose counter is a list, a plain
value of ``1e1NNNNN``; on UDP a datagram without its framing bytes, one whose block is not
a number, one from a workcenter key nobody configured, one over the length limit; on OPC
UA a string written into the Double-typed poison node the collector reads as a float.

Each poison carries a **marker** (``P00007Z``, or the digits of a number where only a
number fits) that its dead letter's payload keeps, and the **reason** the collector's
decoder gives it (``tests/test_soak_chaos.py`` puts every kind through the real decoders,
so the table below cannot drift from them). The harness then finds each poison in the
dead-letter stream by its marker, with its reason; a poison the collector never received
(UDP or OPC UA while it was down) is counted apart, as those paths lose what comes while
no collector listens.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

#: Seconds between two poisons (every kind comes two or three times in the CI size).
EVERY_S = 6.0
#: The first poison this long after the plant started (the last one 20 s before its end).
FIRST_S = 8.0
#: The OPC UA poison node's tag, under the first OPC UA machine's Kepware device.
OPCUA_TAG = "Poison"
#: The signal the poison node is configured as (``type: float``): any value it holds
#: is a string, so it never becomes a signal.
OPCUA_SIGNAL = "feed_override"
#: A workcenter key no source configures.
UNKNOWN_KEY = 99_999

#: kind -> (path, expected dead-letter reason).
KINDS: dict[str, tuple[str, str]] = {
    "mqtt_machine_1e400": ("mqtt", "not_finite"),
    "mqtt_wrong_type": ("mqtt", "bad_value"),
    "mqtt_value_1e400": ("mqtt", "not_finite"),
    "mqtt_garbage_bytes": ("mqtt", "not_json"),
    "mqtt_list_counter": ("mqtt", "bad_value"),
    "mqtt_plain_1e400": ("mqtt", "not_finite"),
    "udp_unframed": ("udp", "bad_framing"),
    "udp_not_numeric": ("udp", "not_numeric"),
    "udp_unknown_key": ("udp", "unknown_workcenter"),
    "udp_too_long": ("udp", "too_long"),
    "opcua_wrong_type": ("opcua", "bad_value"),
}


@dataclass(frozen=True, slots=True)
class Poison:
    """One malformed payload: where it goes, what finds it again, why it must be refused."""

    n: int
    kind: str
    path: str  # mqtt, udp or opcua
    reason: str  # the dead-letter reason the decoder gives it
    marker: str  # kept in the dead letter's payload
    payload: bytes  # the MQTT payload, the datagram, or the OPC UA string's UTF-8
    topic: str = ""  # MQTT only
    at: float = 0.0  # when it was sent (wall clock)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["payload"] = self.payload.decode("utf-8", errors="replace")
        return out


def _framed(body: str) -> bytes:
    return b"\x12" + body.encode("ascii") + b"%\x14"


def make(  # noqa: PLR0911 - one branch per kind, each short
    n: int, kind: str, machine: tuple[str, str, int], udp_key: int
) -> Poison:
    """The ``n``-th poison, of ``kind``, naming ``machine`` (MQTT) or ``udp_key`` (UDP).

    ``machine`` is its id, ``workcenter_code`` (what ``focas/+`` messages name) and
    ``workcenter_key`` (the tool tracker's); ``udp_key`` the UDP machine's key.
    """
    machine_id, workcenter, key = machine
    path, reason = KINDS[kind]
    marker = f"P{n:05d}Z"
    day = "2026-12-07 06:00:00"

    def poison(payload: bytes, topic: str = "", mark: str = marker) -> Poison:
        return Poison(n, kind, path, reason, mark, payload, topic)

    def focas(body: dict[str, Any], raw: str = "") -> bytes:
        text = raw or json.dumps(body)
        return text.encode()

    if kind == "mqtt_machine_1e400":
        raw = (f'{{"WorkCenter":1e400,"TransDate":"{day}",'
               f'"Cycle_Counter_Shift_SL":1,"Poison":"{marker}"}}')  # fmt: skip
        return poison(focas({}, raw), f"focas/{machine_id}")
    if kind == "mqtt_wrong_type":
        counter: dict[str, Any] = {"WorkCenter": workcenter, "TransDate": day,
                                   "Cycle_Counter_Shift_SL": "twelve",
                                   "Poison": marker}  # fmt: skip
        return poison(focas(counter), f"focas/{machine_id}")
    if kind == "mqtt_value_1e400":
        raw = (f'{{"WorkCenter":"{workcenter}","TransDate":"{day}",'
               f'"Cycle_Counter_Shift_SL":1e400,"Poison":"{marker}"}}')  # fmt: skip
        return poison(focas({}, raw), f"focas/{machine_id}")
    if kind == "mqtt_garbage_bytes":
        return poison(b"\xff\xfe\x00" + marker.encode() + b"\x80\x81", f"focas/{machine_id}")
    if kind == "mqtt_list_counter":
        event: dict[str, Any] = {"Workcenter_Key": key, "Pallet_No": 1, "Tool_Var": 1,
                                 "Current_Value": [1, 2], "Start_Time": day, "End_Time": day,
                                 "Poison": marker}  # fmt: skip
        return poison(focas(event), "InsAssemblyMachiningHistory")
    if kind == "mqtt_plain_1e400":
        mark = f"1e1{n:05d}"  # a number is all a plain value holds: its digits mark it
        return poison(mark.encode(), f"plant/123681/{machine_id}/spindle_load", mark)
    if kind == "udp_unframed":
        return poison(f"{udp_key},60 {marker}".encode())
    if kind == "udp_not_numeric":
        blocks = "".join(b.rjust(10) for b in ("51", "1", marker, "5"))
        return poison(_framed(f"{udp_key},60".rjust(10) + blocks))
    if kind == "udp_unknown_key":
        mark = f"{700_000 + n}"
        blocks = "".join(b.rjust(10) for b in ("51", "1", "1", mark))
        return poison(_framed(f"{UNKNOWN_KEY},60".rjust(10) + blocks), mark=mark)
    if kind == "udp_too_long":
        return poison(_framed(f"{udp_key},60".rjust(10) + marker.rjust(10) * 20))
    if kind == "opcua_wrong_type":
        return poison(marker.encode())
    raise ValueError(kind)


def plan(seconds: float, paths: set[str]) -> list[tuple[float, str]]:
    """``(seconds after the plant started, kind)`` of every poison of a run: kinds in turn.

    Only kinds whose path the run has (a run without a UDP machine sends no datagram).
    """
    kinds = [k for k, (path, _) in KINDS.items() if path in paths]
    out: list[tuple[float, str]] = []
    at = FIRST_S
    while kinds and at <= seconds - 20.0:
        out.append((at, kinds[len(out) % len(kinds)]))
        at += EVERY_S
    return out


def found(poison: dict[str, Any], letters: list[dict[str, str]]) -> list[dict[str, str]]:
    """The dead letters of ``poison`` (a :meth:`Poison.to_json`): its reader and marker."""
    return [
        d
        for d in letters
        if d.get("reader") == poison["path"] and poison["marker"] in d.get("payload", "")
    ]
