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

from core.config import RepsysConfig
from core.metrics import sample
from repsys.servers import free_port, wait_until
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
