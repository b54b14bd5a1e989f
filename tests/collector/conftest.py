"""Helpers for collector tests: a simulated plant and a collector, each in a thread.

Both run their own asyncio loop in a background thread, as they would in their own
processes, so tests stay synchronous and poll Redis with deadlines.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from collector.metrics import CollectorMetrics
from collector.service import Collector
from core import keys
from core.config import RepsysConfig
from core.lifecycle import Stopper
from core.metrics import new_registry
from core.model import Signal
from repsys.servers import free_port, port_open, wait_until
from sim.plant.service import SimPlant

KEP = "urn:repsys:sim:kepware"
MT = "urn:repsys:sim:machines"


class InThread:
    """Runs ``factory(stopper)`` on an event loop of its own in a daemon thread."""

    def __init__(self, factory: Callable[[Stopper], Awaitable[None]]) -> None:
        self.stopper = Stopper()
        self.error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._factory = factory
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        async def body() -> None:
            self.loop = asyncio.get_running_loop()
            self._ready.set()
            await self._factory(self.stopper)

        try:
            asyncio.run(body())
        except BaseException as exc:
            self.error = exc
        finally:
            self._ready.set()

    def start(self) -> InThread:
        self.thread.start()
        self._ready.wait(10)
        return self

    def call(self, coro: Awaitable[Any], timeout: float = 20.0) -> Any:
        """Run a coroutine on this thread's loop and wait for its result."""
        assert self.loop is not None
        # run_coroutine_threadsafe wants a Coroutine; callers pass coroutines typed Awaitable.
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def stop(self, timeout: float = 20.0) -> None:
        self.stopper.stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "did not stop in time"
        if self.error is not None:
            raise self.error


def run_sim(cfg: RepsysConfig) -> tuple[SimPlant, InThread]:
    """Start the simulated plant; return once its OPC UA server listens."""
    sim = SimPlant(cfg)
    runner = InThread(sim.run).start()
    if cfg.sim.plant.opcua.enabled:
        wait_until(lambda: port_open(cfg.sim.plant.opcua.port), timeout=30, what="sim OPC UA")
    return sim, runner


def run_collector(cfg: RepsysConfig) -> tuple[Collector, CollectorRegistry, InThread]:
    registry = new_registry()
    collector = Collector(cfg, CollectorMetrics(registry))
    runner = InThread(lambda stopper: collector.run(stopper, grace_s=5)).start()
    return collector, registry, runner


def stream_signals(client: Any, partitions: int) -> list[tuple[int, str, Signal]]:
    """Every signal in every partition: (partition, entry id, signal)."""
    out = []
    for p in range(partitions):
        for entry_id, fields in client.xrange(keys.signal_stream(p)):
            out.append((p, entry_id, Signal.from_fields(fields)))
    return out


def kepware_node(machine: str, tag: str, signal: str, **extra: Any) -> dict[str, Any]:
    return {
        "machine": machine,
        "signal": signal,
        "node_id": f"nsu={KEP};s={machine}.{machine}.{tag}",
        **extra,
    }


def mt_node(machine: str, path: str, signal: str, **extra: Any) -> dict[str, Any]:
    steps = "/".join(f"mt:{p}" for p in path.split("/"))
    return {
        "machine": machine,
        "signal": signal,
        "browse_path": f"mt:Machines/mt:{machine}/{steps}",
        **extra,
    }


def opcua_source(port: int, nodes: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "type": "opcua",
        "name": extra.pop("name", "plant"),
        "endpoint": f"opc.tcp://127.0.0.1:{port}/repsys/sim",
        "namespaces": {"mt": MT, "kep": KEP},
        "publishing_interval_ms": 100,
        "sampling_interval_ms": 0,
        "nodes": nodes,
        **extra,
    }


def sim_section(opcua_port: int, mqtt_port: int, **extra: Any) -> dict[str, Any]:
    return {
        "plant": {
            "speed": 20,
            "tick_s": 0.05,
            "opcua": {"port": opcua_port},
            "mqtt": {"port": mqtt_port},
            **extra,
        }
    }


@pytest.fixture
def opcua_port() -> int:
    return free_port()


@pytest.fixture
def started() -> Iterator[list[InThread]]:
    """Threads a test started; stopped at the end even when the test fails."""
    threads: list[InThread] = []
    yield threads
    for t in reversed(threads):
        if t.thread.is_alive():
            t.stop()
