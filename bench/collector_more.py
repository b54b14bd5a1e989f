"""Collector throughput of the UDP (Okuma) and Sparkplug B readers, beside raw baselines.

3. **UDP -> streams.** A sender process sends ``UDP_DATAGRAMS`` set-60 END datagrams
   (100 workcenters, 4 tools each, counters rising) at a fixed pace of ``UDP_RATE`` a
   second. Baselines, in the same run: a bare socket receive loop (``recvfrom`` and a
   count), and the same loop also parsing the frame (``collector.udp.frame.parse``).
   Ours: the collector's UDP reader (decoder, run accounting, sink, XADD into a private
   redis-server). Each side prints what it received of what was sent (UDP drops what a
   slow receiver cannot take) and its CPU time per datagram; the ratio held against the
   target is the receive capacity, baseline CPU per datagram / ours (both read one socket
   on one thread, so CPU per datagram is what bounds the rate), with redis-server's CPU
   shown apart (work the baselines do not have, on the other core).
4. **Sparkplug B -> streams, QoS 0.** As the MQTT part (``bench/collector.py``): a
   publisher process queues births and ``SP_MESSAGES`` DDATA messages of ten Double
   metrics by alias at a private mosquitto for the consumer's offline session; the
   consumer then drains the backlog. Baseline: bare paho with the protobuf decode
   (``Payload.FromString`` and each metric's value and name by alias). Ours: the
   collector's Sparkplug reader, its session made persistent for the benchmark only
   (it runs clean in production, see its README), until every signal is in the streams.
   Figure: signals/s and the ratio ours / baseline, median of ``ROUNDS`` rounds.

Run: ``REPSYS_BENCH_COLLECTOR=udp,sparkplug python -m bench.collector``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import redis
from paho.mqtt.enums import CallbackAPIVersion

from bench.collector import _Broker, _redis_cpu, _run_collector, replay_backlog
from collector.metrics import CollectorMetrics
from collector.service import Collector
from collector.sparkplug.proto import Payload
from collector.udp.decode import DatagramDecoder
from collector.udp.frame import parse
from collector.udp.reader import DRAIN_MAX, LINGER_S
from core import heap
from core.config import RepsysConfig, parse_config
from core.config.collector_udp import UdpSource
from core.lifecycle import Stopper
from core.metrics import new_registry
from repsys.servers import RedisServer, wait_until

UDP_DATAGRAMS = 40_000
UDP_RATE = 20_000
UDP_WORKCENTERS = 100
SP_MESSAGES = 10_000
SP_FIELDS = 10
ROUNDS = int(os.environ.get("REPSYS_BENCH_COLLECTOR_ROUNDS", "3"))
MACHINES = [f"m{i:03d}" for i in range(100)]


def _machines() -> list[dict[str, Any]]:
    return [
        {"id": m, "pcn": 1, "workcenter_key": i + 1, "workcenter_code": m}
        for i, m in enumerate(MACHINES)
    ]


# --- UDP --------------------------------------------------------------------------------


def _datagram(i: int) -> bytes:
    key = i % UDP_WORKCENTERS + 1
    tool = i // UDP_WORKCENTERS % 4 + 1
    counter = i // (UDP_WORKCENTERS * 4) + 1
    body = f"{key},60".rjust(10) + "".join(str(v).rjust(10) for v in (51, 1, tool, counter))
    return b"\x12" + body.encode() + b"%\x14"


def _send(port: int, n: int, rate: int) -> None:
    """Child process: send ``n`` datagrams at ``rate`` a second (in 1 ms slices)."""
    grams = [_datagram(i) for i in range(n)]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    start = time.perf_counter()
    per_ms = max(1, rate // 1000)
    for i in range(0, n, per_ms):
        for g in grams[i : i + per_ms]:
            sock.sendto(g, ("127.0.0.1", port))
        ahead = start + (i + per_ms) / rate - time.perf_counter()
        if ahead > 0:
            time.sleep(ahead)  # pacing the sender, not waiting for a condition
    sock.sendto(b"end", ("127.0.0.1", port))


def _sender(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.collector_more", "--send", str(port)],
    )


def _raw_udp(*, decode: bool, drain: bool = False) -> tuple[int, float]:
    """A bare receive loop (and the frame parse): datagrams received, CPU us each.

    ``drain``: the collector's way of waking (poll, take all the kernel holds, pause
    ``LINGER_S``) instead of one blocking receive per datagram.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4_194_304)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(60.0)  # the sender process starts (slowly on a loaded machine)
    sender = _sender(sock.getsockname()[1])
    got = 0
    cpu0 = 0.0
    first = sock.recv(512)  # the first datagram starts the clock
    cpu0 = time.process_time()
    if drain:
        sock.setblocking(False)
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
    else:
        sock.settimeout(3.0)  # the end mark is a datagram too, and may be dropped
    data = first
    ended = data == b"end"
    while not ended:
        if decode:
            parse(data)
        got += 1
        if not drain:
            try:
                data = sock.recv(512)
            except TimeoutError:
                break
            ended = data == b"end"
            continue
        if not poller.poll(3000):
            break
        grams: list[bytes] = []
        with contextlib.suppress(BlockingIOError):
            while len(grams) < DRAIN_MAX:
                grams.append(sock.recv(512))
        for data in grams[:-1]:
            if decode:
                parse(data)
            got += 1
        data = grams[-1]
        ended = data == b"end"
        time.sleep(LINGER_S)
    cpu = (time.process_time() - cpu0) / max(1, got) * 1e6
    sender.wait(30)
    sock.close()
    return got, cpu


def _udp_parts(redis_url: str) -> tuple[float, float]:
    """What ours is made of, CPU us per datagram: the decoder alone (frame, run
    accounting, rows), and the sink's floor: the same rows handed over as the reader
    does (20 datagrams a hand-off, paced at ``UDP_RATE``) and written by the sink."""
    cfg = _udp_config(redis_url)
    source = cfg.collector.sources[0]
    assert isinstance(source, UdpSource)
    decoder = DatagramDecoder(source)
    grams = [_datagram(i) for i in range(UDP_DATAGRAMS)]
    now = time.time()
    cpu0 = time.process_time()
    rows = [decoder.decode(g, now) for g in grams]
    decode_cpu = (time.process_time() - cpu0) / len(grams) * 1e6
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushall()
    collector = Collector(cfg, CollectorMetrics(new_registry()))
    sink = collector.sink.start()
    per = 20

    def paced(submit: bool) -> float:
        start = time.perf_counter()
        cpu0 = time.process_time()
        for i in range(0, len(rows), per):
            if submit:
                sink.submit_groups("udp", [(r[0][0], r) for r in rows[i : i + per]])
            ahead = start + (i + per) / UDP_RATE - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)  # pacing as the datagrams arrive, not waiting for a condition
        if submit:
            wait_until(
                lambda: sink.written_total >= len(rows),
                timeout=60,
                what="rows written",
                interval=0.01,
            )
        return (time.process_time() - cpu0) / len(rows) * 1e6

    # The pacing's own sleeps (a wake-up per 20 rows, as the reader's) are in the drain
    # loop's figure already: taken out of the sink's.
    pacing_cpu = paced(submit=False)
    sink_cpu = paced(submit=True) - pacing_cpu
    sink.stop()
    return decode_cpu, sink_cpu


def _udp_config(redis_url: str) -> RepsysConfig:
    return parse_config(
        {
            "machines": _machines(),
            "redis": {"url": redis_url},
            "logging": {"level": "WARNING"},
            "streams": {"partitions": 8},
            "collector": {
                "sources": [
                    {
                        "type": "udp",
                        "name": "okuma",
                        "host": "127.0.0.1",
                        "port": 0,
                        "workcenters": [
                            {"key": i + 1, "machine": m} for i, m in enumerate(MACHINES)
                        ],
                    }
                ]
            },
        },
        file="<bench>",
    )


def _ours_udp(redis_url: str) -> tuple[int, float, float]:
    """The collector's UDP reader: datagrams in the streams, CPU us each (ours, redis)."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushall()
    collector, stopper, thread = _run_collector(_udp_config(redis_url))
    reader: Any = collector.readers[0]
    reader.connected.wait(10)
    assert reader.address is not None
    ended = threading.Event()
    first: list[float] = []
    batch = reader._batch

    def timed(grams: list[tuple[bytes, Any]], into: Any = None) -> None:
        # Instrumentation only: the first wake-up's CPU time, and the sender's end mark.
        if not first:
            first.append(time.process_time())
        end = bool(grams) and grams[-1][0] == b"end"
        batch(grams[:-1] if end else grams, into)
        if end:
            ended.set()

    reader._batch = timed
    redis0 = _redis_cpu(client)
    sender = _sender(reader.address[1])
    sender.wait(60)
    ended.wait(3)  # the end mark is a datagram too, and may be dropped
    received = collector.metrics.received
    wait_until(
        lambda: collector.sink.written_total >= sum(received.counts.values()),
        timeout=60,
        what="the buffer written",
        interval=0.01,
    )
    got = int(collector.sink.written_total)
    cpu = (time.process_time() - first[0]) / max(1, got) * 1e6
    redis_cpu = (_redis_cpu(client) - redis0) / max(1, got) * 1e6
    stopper.stop()
    thread.join(20)
    return got, cpu, redis_cpu


def bench_udp(workdir: Path) -> None:
    redis_srv = RedisServer(workdir / "redis-udp")
    redis_srv.start()
    try:
        heap.settle()
        _raw_udp(decode=False)  # warm-up
        print(
            f"UDP (Okuma set 60) -> streams, {UDP_DATAGRAMS:,} datagrams sent at "
            f"{UDP_RATE:,}/s, {ROUNDS} rounds:",
            flush=True,
        )
        ratios = []
        for r in range(ROUNDS):
            bare, bare_cpu = _raw_udp(decode=False)
            drained, drained_cpu = _raw_udp(decode=False, drain=True)
            parsed, parsed_cpu = _raw_udp(decode=True)
            ours, ours_cpu, redis_cpu = _ours_udp(redis_srv.url)
            decode_cpu, sink_cpu = _udp_parts(redis_srv.url)
            ratios.append(bare_cpu / ours_cpu)
            print(
                f"  round {r + 1}: received of {UDP_DATAGRAMS:,}: collector {ours:,}, bare "
                f"socket loop {bare:,}, drain loop {drained:,}, loop + frame parse {parsed:,}; "
                f"CPU per datagram: collector {ours_cpu:.1f} us + redis-server {redis_cpu:.1f} "
                f"us, bare loop {bare_cpu:.1f} us, drain loop {drained_cpu:.1f} us, loop + parse "
                f"{parsed_cpu:.1f} us; of ours: decoder alone {decode_cpu:.1f} us, sink floor "
                f"(hand-off + writer) {sink_cpu:.1f} us; capacity ratio to the bare loop "
                f"{bare_cpu / ours_cpu:.2f}, to the drain loop {drained_cpu / ours_cpu:.2f}, to "
                f"loop + parse {parsed_cpu / ours_cpu:.2f}",
                flush=True,
            )
        print(
            f"  median capacity ratio to the bare loop {statistics.median(ratios):.2f} "
            "(target >= 0.70)",
            flush=True,
        )
    finally:
        redis_srv.stop()


# --- Sparkplug B ------------------------------------------------------------------------


def _sp_messages(n: int) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    nb = Payload(timestamp=int(time.time() * 1000), seq=0)
    nb.metrics.add(name="bdSeq", datatype=8, long_value=0)
    out.append(("spBv1.0/bench/NBIRTH/edge", nb.SerializeToString()))
    seq = 0
    for m in MACHINES:
        seq = (seq + 1) % 256
        db = Payload(timestamp=int(time.time() * 1000), seq=seq)
        for k in range(SP_FIELDS):
            db.metrics.add(name=f"f{k}", alias=k, datatype=10, double_value=0.0)
        out.append((f"spBv1.0/bench/DBIRTH/edge/{m}", db.SerializeToString()))
    for i in range(n):
        seq = (seq + 1) % 256
        dd = Payload(timestamp=int(time.time() * 1000), seq=seq)
        for k in range(SP_FIELDS):
            dd.metrics.add(alias=k, double_value=i + k * 0.5)
        out.append(
            (f"spBv1.0/bench/DDATA/edge/{MACHINES[i % len(MACHINES)]}", dd.SerializeToString())
        )
    return out


def _sp_publish(port: int, n: int) -> None:
    """Child process: publish births and ``n`` DDATA messages at QoS 0."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-sp-pub")
    client.connect("127.0.0.1", port)
    client.loop_start()
    info = None
    for topic, body in _sp_messages(n):
        info = client.publish(topic, body, qos=0)
    if info is not None:
        info.wait_for_publish(60)
    client.disconnect()
    client.loop_stop()


def _sp_preload(port: int) -> None:
    subprocess.run(
        [sys.executable, "-m", "bench.collector_more", "--sp-publish", str(port), str(SP_MESSAGES)],
        check=True,
        timeout=120,
    )


def _wipe_session(port: int, client_id: str) -> None:
    """Drop a persistent session and what it queued: each side's backlog is its own.

    Without it a side's session, kept from the round before, also queued the other
    side's backlog, and its next round began with that (a DDATA before any birth).
    """
    connected = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    client.on_connect = lambda *_: connected.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    connected.wait(10)
    client.disconnect()
    client.loop_stop()


def _raw_sparkplug(port: int) -> tuple[float, float]:
    """Bare paho + protobuf decode of the backlog: signals/s and CPU us per DDATA."""
    got = 0
    first = last = cpu0 = cpu1 = 0.0
    done = threading.Event()
    names: dict[int, str] = {}

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        nonlocal got, first, last, cpu0, cpu1
        p = Payload.FromString(msg.payload)
        if "/DBIRTH/" in msg.topic:
            for m in p.metrics:
                names[m.alias] = m.name
            return
        if "/DDATA/" not in msg.topic:
            return
        if not got:
            first, cpu0 = time.perf_counter(), time.process_time()
        got += len([(names[m.alias], m.double_value) for m in p.metrics])
        if got >= SP_MESSAGES * SP_FIELDS:
            last, cpu1 = time.perf_counter(), time.process_time()
            done.set()

    _wipe_session(port, "bench-sp-raw")
    replay_backlog(
        port,
        client_id="bench-sp-raw",
        topic="spBv1.0/bench/#",
        on_message=on_message,
        preload=lambda: _sp_preload(port),
        done=done,
        missing=lambda: f"raw paho received {got} of {SP_MESSAGES * SP_FIELDS} signals",
    )
    return (got - SP_FIELDS) / (last - first), (cpu1 - cpu0) / (SP_MESSAGES - 1) * 1e6


def _sp_config(redis_url: str, port: int) -> RepsysConfig:
    return parse_config(
        {
            "machines": _machines(),
            "redis": {"url": redis_url},
            "logging": {"level": "WARNING"},
            "streams": {"partitions": 8},
            "collector": {
                "sources": [
                    {
                        "type": "sparkplug",
                        "name": "bench",
                        "port": port,
                        "qos": 0,
                        "client_id": "bench-sp-collector",
                        "groups": ["bench"],
                        "unmapped": "snake",
                    }
                ]
            },
        },
        file="<bench>",
    )


def _persistent(reader: Any) -> None:
    """Benchmark only: a persistent session, so a backlog can be queued for it."""
    build = reader._build

    def persistent_build(client_id: str) -> mqtt.Client:
        client = build(client_id)
        client._clean_session = False
        return client

    reader._build = persistent_build


def _ours_sparkplug(
    redis_url: str, port: int
) -> tuple[float, float, float, tuple[float, float, float, float]]:
    """The collector: signals/s, CPU us per DDATA of this process and of redis-server,
    and per message by thread: paho's own work, our callback (decode and hand-off), the
    sink writer."""
    cfg = _sp_config(redis_url, port)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    _wipe_session(port, "bench-sp-collector")
    collector, stopper, thread = _start_persistent(cfg)  # the session and its subscription
    stopper.stop()
    thread.join(20)
    _sp_preload(port)
    client.flushall()
    redis0 = _redis_cpu(client)
    collector, stopper, thread = _start_persistent(cfg, timed=True)
    expected = SP_MESSAGES * SP_FIELDS + len(MACHINES) * SP_FIELDS  # births carry values
    reader: Any = collector.readers[0]
    wait_until(
        lambda: collector.sink.written_total >= expected,
        timeout=120,
        what="all signals",
        interval=0.01,
    )
    elapsed = time.perf_counter() - reader.first_ddata[0]
    cpu = (time.process_time() - reader.first_ddata[1]) / (SP_MESSAGES - 1) * 1e6
    redis_cpu = (_redis_cpu(client) - redis0) / (SP_MESSAGES - 1) * 1e6
    stopper.stop()
    thread.join(20)
    n = SP_MESSAGES + len(MACHINES) + 1  # the births too, from each thread's start
    own, callback, sink = (reader.spent[1] - reader.spent[0]), reader.spent[0], reader.spent[2]
    parts = (own / n * 1e6, callback / n * 1e6, sink / n * 1e6, reader.spent[3] / n * 1e6)
    return (SP_MESSAGES * SP_FIELDS - SP_FIELDS) / elapsed, cpu, redis_cpu, parts


def _start_persistent(cfg: RepsysConfig, *, timed: bool = False) -> Any:
    collector = Collector(cfg, CollectorMetrics(new_registry()))
    reader: Any = collector.readers[0]
    _persistent(reader)
    if timed:
        reader.first_ddata = []
        decode = reader.decoder.decode

        def timed_decode(topic: str, data: bytes, now: float) -> Any:
            if not reader.first_ddata and "/DDATA/" in topic:
                reader.first_ddata.extend((time.perf_counter(), time.process_time()))
            t0 = time.thread_time()
            try:
                return decode(topic, data, now)
            finally:
                reader.spent[3] += time.thread_time() - t0

        reader.decoder.decode = timed_decode
        # Where the CPU goes, by thread: paho's (its own work and our callback), the
        # sink writer's. Instrumentation only (a thread_time call pair per message).
        # on_message, paho thread, sink thread, decode
        reader.spent = spent = [0.0, 0.0, 0.0, 0.0]
        on_message = reader._on_message

        def timed_message(client: Any, userdata: Any, msg: Any) -> None:
            t0 = time.thread_time()
            on_message(client, userdata, msg)
            spent[1] = time.thread_time()
            spent[0] += spent[1] - t0

        reader._on_message = timed_message
        sink = collector.sink
        run = sink._run

        def timed_run() -> None:
            try:
                run()
            finally:
                spent[2] = time.thread_time()

        sink._run = timed_run  # type: ignore[method-assign]  # instrumentation only
    stopper = Stopper()
    thread = threading.Thread(
        target=lambda: asyncio.run(collector.run(stopper, grace_s=5)), daemon=True
    )
    thread.start()
    reader.connected.wait(10)
    return collector, stopper, thread


def bench_sparkplug(workdir: Path) -> None:
    redis_srv = RedisServer(workdir / "redis-sp")
    broker = _Broker(workdir / "mosquitto-sp")
    redis_srv.start()
    broker.start()
    try:
        heap.settle()
        _raw_sparkplug(broker.port)  # warm-up
        print(
            f"Sparkplug B -> streams, QoS 0, a backlog of {SP_MESSAGES:,} DDATA x "
            f"{SP_FIELDS} metrics by alias, {ROUNDS} rounds:",
            flush=True,
        )
        ratios = []
        for r in range(ROUNDS):
            base, base_cpu = _raw_sparkplug(broker.port)
            ours, ours_cpu, redis_cpu, (own, callback, sink, decoding) = _ours_sparkplug(
                redis_srv.url, broker.port
            )
            ratios.append(ours / base)
            print(
                f"  round {r + 1}: collector {ours:,.0f} signals/s; raw paho + protobuf decode "
                f"{base:,.0f} signals/s; ratio {ours / base:.2f}; CPU per message: collector "
                f"{ours_cpu:.1f} us + redis-server {redis_cpu:.1f} us, raw {base_cpu:.1f} us "
                f"(CPU ratio {base_cpu / ours_cpu:.2f}); of ours by thread: paho's own "
                f"{own:.1f} us, our callback {callback:.1f} us (of it the decoder "
                f"{decoding:.1f} us), sink writer {sink:.1f} us",
                flush=True,
            )
        print(f"  median ratio {statistics.median(ratios):.2f} (target >= 0.70)", flush=True)
    finally:
        broker.stop()
        redis_srv.stop()


if __name__ == "__main__":
    if sys.argv[1] == "--send":
        _send(int(sys.argv[2]), UDP_DATAGRAMS, UDP_RATE)
    elif sys.argv[1] == "--sp-publish":
        _sp_publish(int(sys.argv[2]), int(sys.argv[3]))
