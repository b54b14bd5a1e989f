"""MTConnect: the Institute's Okuma device model and recorded SHDR, served by a test agent.

No MTConnect agent installs from a package registry here (decision 0440); the documents
are built by ``tests/collector/mtconnect_agent.py`` from the MTConnect Institute's own
device file and a real Okuma adapter's recording (``tests/peers/mtconnect/``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from collector.errors import PayloadRejectedError
from collector.metrics import CollectorMetrics
from collector.mtconnect.decode import Mapping
from collector.mtconnect.document import parse_probe, parse_streams
from collector.mtconnect.multipart import PartReader, boundary_of
from collector.mtconnect.reader import MtconnectReader
from collector.reader import PrintSink
from collector.rows import rows_fields
from core import keys
from core.config import RepsysConfig
from core.config.collector_mtconnect import MtconnectSource
from core.metrics import new_registry, sample
from core.model import Quality, Signal
from repsys.servers import free_port, wait_until
from tests.collector.conftest import InThread, run_collector, stream_signals
from tests.collector.mtconnect_agent import DEVICES, Agent, Obs, shdr_lines
from tests.conftest import REPO, TEST_MACHINES

#: What the plant maps (by type, by type + name, by id); conditions become alarms.
ITEMS: list[dict[str, Any]] = [
    {"type": "PART_COUNT", "signal": "part_count", "value": "int"},
    {
        "type": "EXECUTION",
        "signal": "run_state",
        "map": {"ACTIVE": "executing", "READY": "idle", "PROGRAM_COMPLETED": "idle"},
    },
    {"type": "CONTROLLER_MODE", "signal": "operation_mode"},
    {"id": "Lpprogram", "signal": "program"},
    {"type": "TOOL_NUMBER", "signal": "tool_number"},
    {"type": "LOAD", "name": "S1load", "signal": "spindle_load", "subject": "S1"},
]
EXEC_MAP = ITEMS[1]["map"]
#: dataItemId -> (signal, how the reference converts the text).
MAPPED: dict[str, tuple[str, Callable[[str], Any]]] = {
    "Lppartcount": ("part_count", int),
    "Lpexecution": ("run_state", lambda v: EXEC_MAP.get(v, v)),
    "Lpmode": ("operation_mode", str),
    "Lpprogram": ("program", str),
    "Lp1CurrentTool": ("tool_number", str),
    "LS1load": ("spindle_load", float),
}
LINES = shdr_lines()


def source(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "mtconnect",
        "name": "okuma",
        "url": url,
        "poll_interval_s": 0.05,
        "count": 200,
        "devices": [{"device": "OKUMA", "machine": "cnc101"}],
        "items": ITEMS,
        **extra,
    }


@pytest.fixture
def agent() -> Iterator[Agent]:
    a = Agent()
    a.serve()
    yield a
    a.close()


def url_of(agent: Agent) -> str:
    assert agent.server is not None
    return f"http://127.0.0.1:{agent.server.server_address[1]}"


def expected(obs: list[Obs]) -> list[tuple[int, str, Any]]:
    """The plain reference: (sequence, signal, value) of every mapped observation."""
    out: list[tuple[int, str, Any]] = []
    for o in obs:
        if o.item.category == "CONDITION" and o.item.device == "OKUMA":
            value = None if o.value == "UNAVAILABLE" else (o.code or o.item.type)
            out.append((o.seq, "alarm", value))
            continue
        if o.item.id not in MAPPED:
            continue
        signal, convert = MAPPED[o.item.id]
        out.append((o.seq, signal, None if o.value == "UNAVAILABLE" else convert(o.value)))
    return out


def landed(client: redis.Redis) -> list[tuple[int, str, Any]]:
    return [(int(s.attrs["seq"]), s.name, s.value) for s in signals_of(client)]


def signals_of(client: redis.Redis) -> list[Signal]:
    return sorted(
        (s for _, _, s in stream_signals(client, 4) if s.machine == "cnc101"),
        key=lambda s: int(s.attrs["seq"]),
    )


def events(registry: Any, kind: str) -> float:
    return sample(
        registry, "repsys_collector_mtconnect_events_total", {"source": "okuma", "kind": kind}
    )


# --- documents ----------------------------------------------------------------------


def test_the_institutes_probe_gives_the_okuma_device_model() -> None:
    model = parse_probe(DEVICES.read_bytes())
    assert model["Lppartcount"].type == "PART_COUNT"
    assert (model["LS1load"].device, model["LS1load"].name) == ("OKUMA", "S1load")
    assert model["Lsystem"].category == "CONDITION"
    src = MtconnectSource.model_validate(source("http://agent:5000"))
    mapping = Mapping(src, model)
    assert {i: t.signal for i, t in mapping.targets.items() if t.signal != "alarm"} == {
        i: s for i, (s, _) in MAPPED.items()
    }
    assert mapping.missing == []


def test_a_sample_document_decodes_to_the_reference_signals() -> None:
    agent = Agent()
    for line in LINES[:70]:
        agent.feed(line)
    agent.feed("2022-08-08T13:51:40.0Z|system|FAULT|1001|HIGH||Spindle overload")
    _, body = agent.answer("/sample", {"from": ["1"], "count": ["100000"]})
    doc = parse_streams(body)
    assert doc.header.next == agent.next
    assert [o.sequence for o in doc.observations] == [o.seq for o in agent.observations()]
    src = MtconnectSource.model_validate(source("http://agent:5000"))
    mapping = Mapping(src, parse_probe(DEVICES.read_bytes()))
    signals, bad = mapping.decode(doc.observations, 1.0)
    assert bad == []
    assert [(int(s.attrs["seq"]), s.name, s.value) for s in signals] == expected(
        agent.observations()
    )
    fault = signals[-1]
    assert (fault.name, fault.value, fault.quality) == ("alarm", "1001", Quality.GOOD)
    assert fault.attrs | {"seq": "-"} == {
        "item": "Lsystem",
        "seq": "-",
        "active": "true",
        "level": "fault",
        "text": "Spindle overload",
        "native_severity": "HIGH",
        "qualifier": "",
    }
    assert fault.source_ts == datetime(2022, 8, 8, 13, 51, 40, tzinfo=UTC).timestamp()
    assert signals[0].quality == Quality.NO_DATA  # the agent starts every item UNAVAILABLE


ALPHABET = st.sampled_from(["<", ">", "/", '"', "=", " ", "a", "Z", "1", "-", "&", ";", "x"])


XML_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cut=st.integers(min_value=0, max_value=4000),
    noise=st.text(ALPHABET, max_size=20),
    at=st.integers(min_value=0, max_value=4000),
    raw=st.binary(max_size=200),
    element=st.integers(min_value=0, max_value=500),
    attribute=st.integers(min_value=0, max_value=10),
    value=st.one_of(st.none(), XML_TEXT),
)
def test_the_decoder_raises_nothing_but_rejections(
    cut: int, noise: str, at: int, raw: bytes, element: int, attribute: int, value: str | None
) -> None:
    """Mangled agent documents, and any bytes, are refused with a reason or decode."""
    agent = Agent(buffer_size=400)
    for line in LINES[:5]:
        agent.feed(line)
    agent.feed("2022-08-08T13:51:40.0Z|system|FAULT|1001|HIGH||Spindle overload")
    first = str(agent.observations()[0].seq)
    status, body = agent.answer("/sample", {"from": [first], "count": ["400"]})
    assert status == 200
    text = body.decode()
    # One attribute of one element set to any text (or removed), one observation's text
    # replaced.
    tree = etree.fromstring(body)
    nodes = list(tree.iter())
    node = nodes[element % len(nodes)]
    names = list(node.attrib)
    if names:
        name = names[attribute % len(names)]
        if value is None:
            del node.attrib[name]
        else:
            node.set(name, value)
    mapped = [n for n in nodes if n.get("dataItemId") in MAPPED]
    if value is not None:
        mapped[(element * 7 + attribute) % len(mapped)].text = value
    edited = etree.tostring(tree)
    mangled = [raw, body[:cut], (text[:at] + noise + text[at:]).encode(), edited]
    src = MtconnectSource.model_validate(source("http://agent:5000"))
    mapping = Mapping(src, parse_probe(DEVICES.read_bytes()))
    for data in mangled:
        try:
            doc = parse_streams(data)
        except PayloadRejectedError as exc:
            assert exc.reason in {
                "not_xml",
                "not_mtconnect",
                "missing_field",
                "bad_value",
                "agent_error",
            }
            continue
        rows, bad = mapping.rows(doc.observations, 1.0)
        assert {r.reason for r in bad} <= {
            "unknown_item",
            "bad_value",
            "bad_timestamp",
            "not_finite",
        }
        for fields in rows_fields(rows):
            # The hand-written entry is exactly what the codec writes for its signal.
            assert Signal.from_fields(fields).to_fields() == fields


# --- a running collector against the agent ------------------------------------------


def start(
    make_config: Callable[..., RepsysConfig], agent: Agent, started: list[InThread], **extra: Any
) -> tuple[Any, InThread]:
    cfg = make_config(collector={"sources": [source(url_of(agent), **extra)]})
    _, registry, coll = run_collector(cfg)
    started.append(coll)
    return registry, coll


def sample_requests(agent: Agent) -> set[str]:
    """How the reader asked for samples: ``/sample stream`` and/or ``/sample`` (polls)."""
    return {r for r in agent.requests if r.startswith("/sample")}


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "poll"])
def test_the_recorded_run_lands_whole_and_in_order(
    make_config: Callable[..., RepsysConfig],
    redis_client: redis.Redis,
    agent: Agent,
    started: list[InThread],
    stream: bool,
) -> None:
    for line in LINES[:200]:
        agent.feed(line)
    registry, _ = start(make_config, agent, started, stream=stream)
    # /current first: each item's latest value, then every observation after it.
    state_key = keys.collector_source_state("collector", "okuma")
    wait_until(
        lambda: redis_client.hget(state_key, "next") is not None, timeout=20, what="current saved"
    )
    current_next = int(redis_client.hget(state_key, "next") or 0)
    for line in LINES[200:]:
        agent.feed(line)
    want = [e for e in expected(agent.observations()) if e[0] >= current_next]
    wait_until(
        lambda: [e for e in landed(redis_client) if e[0] >= current_next] == want,
        timeout=20,
        what="every observation after /current",
    )
    got = signals_of(redis_client)
    assert [s.value for s in got if s.name == "part_count"][-2:] == [0, 1]  # one part made
    assert "executing" in [s.value for s in got if s.name == "run_state"]
    assert events(registry, "resync") == 1
    state = redis_client.hgetall(keys.collector_source_state("collector", "okuma"))
    assert state == {"instance": str(agent.instance), "next": str(agent.next)}
    assert sample_requests(agent) == {"/sample stream" if stream else "/sample"}


def test_an_agent_that_does_not_stream_is_polled(
    make_config: Callable[..., RepsysConfig], redis_client: redis.Redis, started: list[InThread]
) -> None:
    # It answers the stream request with one document: the reader polls from then on.
    agent = Agent(streams=False)
    agent.serve()
    try:
        registry, _ = start(make_config, agent, started)
        state_key = keys.collector_source_state("collector", "okuma")
        wait_until(
            lambda: redis_client.hget(state_key, "next") is not None, timeout=20, what="current"
        )
        current_next = int(redis_client.hget(state_key, "next") or 0)
        for line in LINES[:300]:
            agent.feed(line)
        want = [e for e in expected(agent.observations()) if e[0] >= current_next]
        wait_until(
            lambda: [e for e in landed(redis_client) if e[0] >= current_next] == want,
            timeout=20,
            what="every observation after /current",
        )
        polls = [r for r in agent.requests if r == "/sample"]
        assert len(polls) > 2
        assert events(registry, "resync") == 1
    finally:
        agent.close()


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "poll"])
def test_a_restart_resumes_without_loss_or_duplicates(
    make_config: Callable[..., RepsysConfig],
    redis_client: redis.Redis,
    agent: Agent,
    started: list[InThread],
    stream: bool,
) -> None:
    registry, coll = start(make_config, agent, started, stream=stream)
    state_key = keys.collector_source_state("collector", "okuma")
    wait_until(
        lambda: redis_client.hget(state_key, "next") is not None, timeout=20, what="current saved"
    )
    first = min(e[0] for e in landed(redis_client))
    for line in LINES[:400]:
        agent.feed(line)
    wait_until(
        lambda: landed(redis_client)[-1][0] == expected(agent.observations())[-1][0],
        timeout=20,
        what="caught up",
    )
    coll.stop()
    # The collector is down while the machine goes on: the agent buffers it.
    for line in LINES[400:]:
        agent.feed(line)
    registry, _ = start(make_config, agent, started, stream=stream)
    want = [e for e in expected(agent.observations()) if e[0] >= first]
    wait_until(lambda: landed(redis_client) == want, timeout=20, what="every observation once")
    seqs = [e[0] for e in landed(redis_client)]
    assert len(seqs) == len(set(seqs))
    assert events(registry, "resumed") == 1
    assert events(registry, "resync") == 0


def test_an_overrun_buffer_is_counted_and_resynced(
    make_config: Callable[..., RepsysConfig],
    redis_client: redis.Redis,
    started: list[InThread],
) -> None:
    agent = Agent(buffer_size=300)
    agent.serve()
    try:
        _, coll = start(make_config, agent, started)
        wait_until(lambda: len(landed(redis_client)) > 0, timeout=20, what="current")
        coll.stop()
        saved = int(
            redis_client.hget(keys.collector_source_state("collector", "okuma"), "next") or 0
        )
        for line in LINES[:600]:
            agent.feed(line)
        registry, _ = start(make_config, agent, started)
        wait_until(lambda: events(registry, "overrun") == 1, timeout=20, what="overrun")
        first = agent.observations()[0].seq
        gaps = sample(registry, "repsys_collector_mtconnect_gaps_total", {"source": "okuma"})
        assert gaps == first - saved > 0
        assert events(registry, "agent_restart") == 0
        wait_until(
            lambda: (
                redis_client.hget(keys.collector_source_state("collector", "okuma"), "next")
                == str(agent.next)
            ),
            timeout=20,
            what="resynced",
        )
    finally:
        agent.close()


def test_an_agent_restart_is_seen_and_its_current_values_land(
    make_config: Callable[..., RepsysConfig],
    redis_client: redis.Redis,
    agent: Agent,
    started: list[InThread],
) -> None:
    for line in LINES[:100]:
        agent.feed(line)
    registry, coll = start(make_config, agent, started)
    wait_until(lambda: len(landed(redis_client)) > 0, timeout=20, what="current")
    state_key = keys.collector_source_state("collector", "okuma")
    # While the reader runs: its next sample is out of the new numbering's range.
    agent.restart()
    agent.feed("2022-08-08T14:00:00Z|ppartcount|7|pexecution|ACTIVE")
    wait_until(lambda: events(registry, "agent_restart") == 1, timeout=20, what="restart seen")
    wait_until(
        lambda: redis_client.hget(state_key, "instance") == str(agent.instance),
        timeout=20,
        what="new instance saved",
    )
    assert any(s.name == "part_count" and s.value == 7 for s in signals_of(redis_client))
    # While the reader is down, the agent restarts and numbers past the reader's place:
    # only the instanceId tells the reader that its place means nothing any more.
    coll.stop()
    saved = int(redis_client.hget(state_key, "next") or 0)
    agent.restart()
    while agent.next <= saved + 5:
        agent.feed("2022-08-08T14:01:00Z|ppartcount|8")
    agent.feed("2022-08-08T14:02:00Z|ppartcount|9")
    registry, _ = start(make_config, agent, started)
    wait_until(lambda: events(registry, "agent_restart") == 1, timeout=20, what="restart seen")
    assert events(registry, "overrun") == 0
    wait_until(
        lambda: any(s.name == "part_count" and s.value == 9 for s in signals_of(redis_client)),
        timeout=20,
        what="the new instance's current values",
    )


def test_bad_documents_and_unknown_items_are_dead_lettered(
    make_config: Callable[..., RepsysConfig],
    redis_client: redis.Redis,
    agent: Agent,
    started: list[InThread],
) -> None:
    registry, _ = start(make_config, agent, started)
    wait_until(lambda: len(landed(redis_client)) > 0, timeout=20, what="current")
    seq = agent.next
    unknown = (
        f'<MTConnectStreams xmlns="urn:mtconnect.org:MTConnectStreams:2.0">'
        f'<Header instanceId="{agent.instance}" firstSequence="1" lastSequence="{seq}" '
        f'nextSequence="{seq}"/><Streams><DeviceStream name="OKUMA" uuid="OKUMA.123456">'
        f'<ComponentStream component="Path" componentId="x"><Events>'
        f'<PartCount dataItemId="nosuch" sequence="{seq - 1}" timestamp="2022-08-08T14:00:00Z">3'
        f"</PartCount></Events></ComponentStream></DeviceStream></Streams></MTConnectStreams>"
    )
    agent.poison.extend([b"<MTConnectStreams><Header", unknown.encode()])
    agent.feed("2022-08-08T14:00:00Z|ppartcount|9")
    wait_until(
        lambda: any(s.name == "part_count" and s.value == 9 for s in signals_of(redis_client)),
        timeout=20,
        what="the reader went on",
    )
    entries: Any = redis_client.xrange(keys.COLLECTOR_DEAD_LETTERS)
    letters = [(f["reason"], f["reader"], f["where"]) for _, f in entries]
    assert letters == [
        ("not_xml", "mtconnect", "/sample"),
        ("unknown_item", "mtconnect", f"/sample nosuch@{seq - 1}"),
    ]
    assert (
        sample(
            registry,
            "repsys_collector_reconnects_total",
            {"reader": "mtconnect", "source": "okuma", "reason": "bad_response"},
        )
        == 1
    )


def test_once_prints_the_current_values(agent: Agent) -> None:
    for line in LINES[:100]:
        agent.feed(line)
    src = MtconnectSource.model_validate(source(url_of(agent)))
    reader = MtconnectReader(src, PrintSink(), CollectorMetrics(new_registry()))
    got = asyncio.run(reader.read_once(5))
    by_name = {s.name: s.value for s in got if s.name != "alarm"}
    assert by_name == {
        "program": "IMTS-2022-2-HOB.MIN",
        "part_count": 0,
        "run_state": "executing",
        "operation_mode": "AUTOMATIC",
        "tool_number": "8003",
        "spindle_load": 0.0,
    }


def test_a_killed_collector_misses_nothing_the_agent_still_holds(
    redis_url: str, redis_client: redis.Redis, agent: Agent, tmp_path: Path
) -> None:
    """``repsys collector`` killed (SIGKILL) while the machine goes on: after the restart
    every axis-load observation from the first one read is in the streams, counted."""
    items = [{"type": "LOAD", "signal": "axis_load", "value": "number"}]
    config = {
        "machines": TEST_MACHINES,
        "redis": {"url": redis_url},
        "logging": {"format": "json", "level": "INFO"},
        "streams": {"partitions": 4},
        "collector": {"sources": [source(url_of(agent), items=items, conditions=False)]},
    }
    path = tmp_path / "repsys.yaml"
    path.write_text(yaml.safe_dump(config))
    fed = [0]
    stop = threading.Event()

    def feeder() -> None:  # the machine: a line every 2 ms, whatever the collector does
        for line in LINES:
            if stop.wait(0.002):
                return
            agent.feed(line)
            fed[0] += 1

    def start() -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        argv = [sys.executable, "-m", "repsys", "-c", str(path), "--http-port", str(port)]
        proc = subprocess.Popen(
            [*argv, "collector"],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "log", "ab"),  # noqa: SIM115 - the child owns it
            start_new_session=True,
        )
        return proc, port

    def loads() -> list[int]:
        return [int(s.attrs["seq"]) for s in signals_of(redis_client) if s.name == "axis_load"]

    first, _ = start()
    thread = threading.Thread(target=feeder, daemon=True)
    try:
        wait_until(lambda: bool(loads()), timeout=30, what="the first collector's /current")
        thread.start()
        wait_until(lambda: fed[0] > len(LINES) // 4, timeout=30, what="a quarter fed")
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # a crash, not a clean stop
        first.wait(10)
    killed_at = fed[0]
    wait_until(lambda: fed[0] > len(LINES) * 3 // 4, timeout=30, what="fed while down")
    second, _ = start()
    try:
        thread.join(60)
        start_seq = min(loads())
        want = [
            o.seq
            for o in agent.observations()
            if o.item.type == "LOAD" and o.item.device == "OKUMA" and o.seq >= start_seq
        ]
        wait_until(lambda: set(loads()) >= set(want), timeout=30, what="every load observation")
        got = loads()
        missing = sorted(set(want) - set(got))
        duplicated = len(got) - len(set(got))
        assert missing == []
        # Only a kill between a document's stream write and its saved place repeats it.
        assert duplicated <= 200, duplicated
        assert killed_at < len(LINES) * 3 // 4 < fed[0]
        assert len(want) > 500
        print(f"loads {len(want)}, duplicated {duplicated}, killed at line {killed_at}")
    finally:
        stop.set()
        os.killpg(second.pid, signal.SIGTERM)
        assert second.wait(20) == 0


# --- the sample stream's framing ----------------------------------------------------


def _multipart(bodies: list[bytes], boundary: str, *, sized: list[bool]) -> bytes:
    """A stream as cppagent writes it (a part without Content-length when not sized)."""
    out = b""
    for body, has_length in zip(bodies, sized, strict=True):
        head = f"--{boundary}\r\nContent-type: text/xml\r\n"
        if has_length:
            head += f"Content-length: {len(body)}\r\n"
        out += head.encode() + b"\r\n" + body + b"\r\n"
    return out


@settings(max_examples=300, deadline=None)
@given(
    bodies=st.lists(st.binary(max_size=300), min_size=1, max_size=6),
    sized=st.data(),
    cuts=st.lists(st.integers(0, 3000), max_size=12),
)
def test_stream_parts_come_out_whole_however_the_bytes_are_cut(
    bodies: list[bytes], sized: Any, cuts: list[int]
) -> None:
    boundary = "2f1f2a5e-4b1c-4a49-9c1e-0d6c3b7f9a10"
    # A body may hold anything when its length is given; without, not the delimiter line.
    delimiter = f"\r\n--{boundary}".encode()
    has_length = [sized.draw(st.booleans()) or delimiter in b"\r\n" + b for b in bodies]
    data = _multipart(bodies, boundary, sized=has_length) + f"--{boundary}\r\n".encode()
    reader = PartReader(boundary, max_part_bytes=10_000)
    got: list[bytes] = []
    last = 0
    for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        got.extend(reader.feed(data[last:cut]))
        last = cut
    assert got == bodies


def test_the_boundary_of_a_content_type() -> None:
    assert boundary_of("multipart/mixed;boundary=abc-1") == "abc-1"
    assert boundary_of('multipart/x-mixed-replace; boundary="a b"') == "a b"
    assert boundary_of("text/xml") is None
