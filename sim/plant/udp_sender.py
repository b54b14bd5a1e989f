"""The simulated plant's Okuma machines: M208 datagrams over UDP, as a serial device server sends.

For each ``machining_event`` of a machine listed in ``sim.plant.udp.machines`` the
sender sends what the Okuma macro prints for one tool of one cut: a set-60
START_MACHINING (``50``) and then an END_MACHINING (``51``) datagram, each
``DC2 "<workcenter key>,60" Cmd Pallet_No Tool_Var Tool_Counter % DC4`` with every
field right-aligned in 10 characters (the collector's ``collector/udp/frame.py`` reads
this). The workcenter key is the machine's ``workcenter_key``; the counter is the
model's tool counter, so the collector's run accounting sees the model's tool changes.
A datagram carries no time: both go out when the model reports the event.
"""

from __future__ import annotations

import socket
from collections import deque

from core.config.machines import Machine
from core.config.sim_plant import SimUdp
from core.model import Signal

START_MACHINING = 50
END_MACHINING = 51


def datagram(key: int, set_no: int, *blocks: int) -> bytes:
    """One framed datagram: DC2, ``"key,NN"`` and the blocks right-aligned in 10, ``%`` DC4."""
    body = f"{key},{set_no:02d}".rjust(10) + "".join(str(b).rjust(10) for b in blocks)
    return b"\x12" + body.encode("ascii") + b"%\x14"


class UdpSender:
    """Sends the listed machines' machining events as Okuma datagrams."""

    def __init__(self, cfg: SimUdp, machines: list[Machine]) -> None:
        self.cfg = cfg
        self.keys = {m.id: m.workcenter_key for m in machines if m.id in cfg.machines}
        self.sock: socket.socket | None = None
        self.sent = 0
        #: (Cmd, Pallet_No, Tool_Var, Tool_Counter) of the last datagrams sent (tests).
        self.datagrams_sent: deque[tuple[int, int, int, int]] = deque(maxlen=10_000)

    def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.cfg.host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)

    def stop(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def datagrams(self, signals: list[Signal]) -> list[tuple[tuple[int, int, int, int], bytes]]:
        """The datagrams of ``signals`` with their four fields (no I/O)."""
        out: list[tuple[tuple[int, int, int, int], bytes]] = []
        for sig in signals:
            key = self.keys.get(sig.machine)
            if key is None or sig.name != "machining_event" or not isinstance(sig.value, int):
                continue
            pallet = int(sig.attrs.get("pallet", "0"))
            tool_var = int(sig.subject.lstrip("T") or 0)
            for cmd in (START_MACHINING, END_MACHINING):
                fields = (cmd, pallet, tool_var, sig.value)
                out.append((fields, datagram(key, 60, *fields)))
        return out

    def publish(self, signals: list[Signal]) -> None:
        if self.sock is None:
            return
        for fields, data in self.datagrams(signals):
            try:
                self.sock.sendto(data, (self.cfg.host, self.cfg.port))
            except OSError:  # UDP: nobody listening is not the sender's error
                continue
            self.sent += 1
            self.datagrams_sent.append(fields)
