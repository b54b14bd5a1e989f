"""OPC UA Alarms & Conditions against node-opcua: an alarm active before RepSys connects."""

from __future__ import annotations

import contextlib
import queue
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from asyncua import ua
from asyncua.server.server import Server
from asyncua.ua.object_ids import ObjectIds

from core.config import RepsysConfig
from core.metrics import sample
from repsys.servers import free_port, port_open, wait_until
from tests.collector.conftest import InThread, run_collector, stream_signals
from tests.conftest import REPO

PEER = REPO / "tests" / "peers" / "opcua"
NODE = shutil.which("node")


class AlarmServer:
    """``tests/peers/opcua/alarms.js`` (node-opcua) in a child process."""

    def __init__(self, port: int) -> None:
        assert NODE is not None
        self.port = port
        self.proc = subprocess.Popen(
            [NODE, "alarms.js", str(port)],
            cwd=PEER,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def expect(self, wanted: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while wanted not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"server never said {wanted!r}; it said {self.seen[-20:]}")
            with contextlib.suppress(queue.Empty):
                self.seen.append(self.lines.get(timeout=left))

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        self.expect(f"done {command}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


class Proxy:
    """A TCP relay whose connections the test can cut (a network drop, not a restart)."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := a.recv(65536):
                b.sendall(data)
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.listener.close()
        self.cut()


@pytest.fixture
def alarm_server() -> Iterator[AlarmServer]:
    if NODE is None or not (PEER / "node_modules" / "node-opcua").is_dir():
        pytest.fail("node-opcua is not installed: run make setup")
    server = AlarmServer(free_port())
    yield server
    server.stop()


def _alarms(client: redis.Redis) -> list[Any]:
    return [s for _, _, s in stream_signals(client, 4) if s.name == "alarm"]


def test_an_alarm_active_before_connect_is_reported_after_connect_reconnect_and_clear(
    make_config: Callable[..., RepsysConfig],
    redis_client: redis.Redis,
    started: list[InThread],
    alarm_server: AlarmServer,
) -> None:
    port = alarm_server.port
    alarm_server.expect("ready")
    alarm_server.send("activate")  # before RepSys connects: no event will tell it
    proxy = Proxy(port)
    try:
        cfg = make_config(
            collector={
                "reconnect_max_s": 1,
                "sources": [
                    {
                        "type": "opcua",
                        "name": "alarms",
                        "endpoint": f"opc.tcp://127.0.0.1:{proxy.port}/repsys/alarms",
                        "publishing_interval_ms": 100,
                        "watchdog_factor": 0,
                        "events": [{"machine": "cnc101", "emitter": "i=2253", "conditions": True}],
                    }
                ],
            }
        )
        _, registry, coll = run_collector(cfg)
        started.append(coll)
        wait_until(lambda: len(_alarms(redis_client)) >= 1, timeout=30, what="the standing alarm")
        first = _alarms(redis_client)[0]
        assert first.machine == "cnc101" and first.value == "Overheat"
        assert first.attrs["active"] == "true" and first.attrs["severity"] == "800"
        # node-opcua names a source by its browse name with the namespace: "1:cnc101".
        assert first.attrs["source"].endswith("cnc101") and first.attrs["retain"] == "true"
        assert first.attrs["condition"] and first.attrs["text"] == "Spindle overheat"

        proxy.cut()  # the session is lost; the supervisor reconnects through the proxy
        wait_until(lambda: len(_alarms(redis_client)) >= 2, timeout=30, what="after reconnect")
        again = _alarms(redis_client)[1]
        assert again.attrs["active"] == "true" and again.value == "Overheat"
        labels = {"reader": "opcua", "source": "alarms", "reason": "session"}
        lost = sum(
            sample(registry, "repsys_collector_reconnects_total", {**labels, "reason": r}) or 0
            for r in ("session", "connect", "error", "watchdog")
        )
        assert lost >= 1

        alarm_server.send("deactivate")
        wait_until(
            lambda: _alarms(redis_client)[-1].attrs["active"] == "false",
            timeout=30,
            what="the clearing",
        )
        cleared = _alarms(redis_client)[-1]
        assert (
            cleared.value == "Overheat" and cleared.attrs["condition"] == first.attrs["condition"]
        )
        assert cleared.attrs["text"] == "Spindle temperature normal"
    finally:
        proxy.close()


# --- the same against an asyncua server ---------------------------------------------------


async def _asyncua_alarm_server(port: int, commands: queue.Queue[str], stopper: Any) -> None:
    """An asyncua server whose Overheat condition of cnc101 goes active and clears.

    asyncua's server answers ConditionRefresh with BadNothingToDo and, in our tries, sent
    no retained condition on it: the standing-alarm case is node-opcua's test above.
    Here the transitions happen while the collector is connected.
    """
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/asyncua/alarms")
    idx = await server.register_namespace("urn:repsys:test:alarms")
    machine = await server.nodes.objects.add_object(idx, "cnc101")
    condition = await machine.add_object(idx, "Overheat")
    # Emitted by the Server object (asyncua sends an event to the items on its emitting
    # node only), about the machine.
    gen = await server.get_event_generator(ObjectIds.AlarmConditionType)
    ev = gen.event
    ev.SourceNode = machine.nodeid
    ev.NodeId = condition.nodeid
    ev.ConditionName = "Overheat"
    ev.SourceName = "cnc101"
    ev.Severity = 700
    await server.start()

    async def state(active: bool, text: str) -> None:
        setattr(ev, "ActiveState/Id", active)  # asyncua names nested fields by browse path
        ev.Retain = active
        ev.Message = ua.LocalizedText(text)
        await gen.trigger()

    try:
        while not stopper.stopped:
            try:
                cmd = commands.get_nowait()
            except queue.Empty:
                await stopper.wait_async(0.05)
                continue
            if cmd == "activate":
                await state(True, "Spindle overheat")
            elif cmd == "deactivate":
                await state(False, "Spindle temperature normal")
    finally:
        await server.stop()


def test_conditions_from_an_asyncua_server(
    make_config: Callable[..., RepsysConfig],
    redis_client: redis.Redis,
    started: list[InThread],
) -> None:
    port = free_port()
    commands: queue.Queue[str] = queue.Queue()
    srv = InThread(lambda stopper: _asyncua_alarm_server(port, commands, stopper)).start()
    started.append(srv)
    wait_until(lambda: port_open(port), timeout=30, what="asyncua server")
    cfg = make_config(
        collector={
            "sources": [
                {
                    "type": "opcua",
                    "name": "alarms",
                    "endpoint": f"opc.tcp://127.0.0.1:{port}/asyncua/alarms",
                    "publishing_interval_ms": 100,
                    "watchdog_factor": 0,
                    "events": [{"machine": "cnc101", "emitter": "i=2253", "conditions": True}],
                }
            ],
        }
    )
    _, registry, coll = run_collector(cfg)
    started.append(coll)
    wait_until(
        lambda: (
            sample(
                registry,
                "repsys_collector_source_connected",
                {"reader": "opcua", "source": "alarms"},
            )
            == 1
        ),
        timeout=30,
        what="connected",
    )

    # "connected" is set just before the event item is created: an activation in between
    # would be missed (asyncua's server cannot refresh it), so the server repeats it.
    def alarmed() -> bool:
        if _alarms(redis_client):
            return True
        commands.put("activate")
        return False

    wait_until(alarmed, timeout=30, what="the alarm", interval=0.5)
    first = _alarms(redis_client)[0]
    assert (first.value, first.attrs["active"], first.attrs["severity"]) == (
        "Overheat",
        "true",
        "700",
    )
    assert first.attrs["text"] == "Spindle overheat" and first.attrs["source"] == "cnc101"
    commands.put("deactivate")
    wait_until(
        lambda: _alarms(redis_client)[-1].attrs["active"] == "false", timeout=30, what="clearing"
    )
    assert _alarms(redis_client)[-1].attrs["condition"] == first.attrs["condition"]
