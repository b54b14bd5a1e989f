"""The Okuma UDP reader: golden datagrams, run accounting, fuzzing, a real socket to Redis."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.errors import PayloadRejectedError, SourceUnavailableError
from collector.metrics import CollectorMetrics
from collector.reader import PrintSink
from collector.rows import Row, rows_fields
from collector.udp.decode import DatagramDecoder, signals
from collector.udp.frame import command_fast, parse
from collector.udp.reader import DRAIN_MAX, UdpReader
from collector.udp.runs import ToolRun
from core import keys
from core.config import RepsysConfig
from core.config.collector_udp import UdpSource
from core.metrics import new_registry, sample
from core.model import Signal
from repsys.servers import wait_until
from tests.collector.conftest import InThread, run_collector, stream_signals

CASES = sorted((Path(__file__).parent / "udp_cases").glob("*.yaml"))

WORKCENTERS: list[dict[str, Any]] = [
    {
        "key": 2,
        "machine": "cnc101",
        "increment": 1,
        "increments": {6: 2},
        "counters": [
            {"set": 1, "block": 1, "tool": "T1", "assembly": "Rough mill"},
            {"set": 1, "block": 2, "tool": "T2", "machine": "cnc103"},
        ],
    },
    {"key": 3, "machine": "cnc102"},
]


def udp_source(port: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "type": "udp",
        "name": "okuma",
        "host": "127.0.0.1",
        "port": port,
        "workcenters": WORKCENTERS,
        **extra,
    }


def frame(key: int, set_no: int, *blocks: int | float | str) -> bytes:
    """A datagram as M208 sends it: DC2, "key,NN" right-aligned in 10, 10-byte blocks, % DC4."""
    body = f"{key},{set_no:02d}".rjust(10) + "".join(str(b).rjust(10) for b in blocks)
    return b"\x12" + body.encode() + b"%\x14"


def case_datagrams(case: dict[str, Any]) -> list[tuple[float, bytes]]:
    out = []
    for d in case["datagrams"]:
        data = d["raw"].encode("latin-1") if "raw" in d else frame(*d["frame"])
        out.append((float(d["t"]), data))
    return out


def expected_item(case: dict[str, Any], item: dict[str, Any], data: bytes) -> dict[str, Any]:
    """The case's expectation, completed with the attrs every END carries (unless exact)."""
    if "dead_letter" in item:
        return {"dead_letter": item["dead_letter"], "error": item["error"]}
    attrs = dict(item["a"])
    if not case.get("exact") and item["n"] == "machining_event":
        blocks = [int(data[11 + i * 10 : 21 + i * 10]) for i in range(4)]
        cmd, pallet, tool_var, counter = blocks
        key = int(data[1:11].split(b",")[0])
        generic = {
            "pallet": str(pallet),
            "tool": f"T{tool_var}",
            "counter": str(counter),
            "cmd": str(cmd),
        }
        if cmd != 50:
            generic.update(
                increment="2" if tool_var == 6 and key == 2 else "1",
                end=repr(float(item["t"])),
                workcenter=str(key),
            )
        attrs = {**generic, **attrs}
    return {
        "m": item.get("m", "cnc101"),
        "n": item["n"],
        "s": item["s"],
        "x": item["x"],
        "t": float(item["t"]),
        "a": attrs,
    }


def got_item(sig: Signal) -> dict[str, Any]:
    assert sig.source_ts == sig.receive_ts  # a datagram carries no time of its own
    return {
        "m": sig.machine,
        "n": str(sig.name),
        "s": sig.subject,
        "x": sig.value,
        "t": sig.source_ts,
        "a": sig.attrs,
    }


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_golden_datagrams(path: Path) -> None:
    case = yaml.safe_load(path.read_text())
    gaps: Counter[str] = Counter()
    decoder = DatagramDecoder(
        UdpSource.model_validate(udp_source()), lambda kind: gaps.update([kind])
    )
    got: list[dict[str, Any]] = []
    datagrams = case_datagrams(case)
    for t, data in datagrams:
        try:
            got.extend(got_item(s) for s in signals(decoder.decode(data, t)))
        except PayloadRejectedError as exc:
            got.append({"dead_letter": exc.reason, "error": str(exc)})
    by_t = {t: data for t, data in datagrams}
    want = [expected_item(case, i, by_t[float(i["t"])]) for i in case["expected"]]
    assert got == want
    assert dict(gaps) == case["gaps"]


def test_every_decision_of_the_run_accounting_has_a_golden_case() -> None:
    names = {p.stem for p in CASES}
    assert {
        "change_at_zero",
        "change_at_increment",
        "change_at_twice_increment",
        "run_not_watched",
        "rollback_mid_run",
        "raised_tool_life_and_repeats",
        "dead_letters",
    } <= names


# --- the run accounting against a plain reading of DOMAIN.md ------------------------------


def reference_runs(counters: list[int], inc: int) -> tuple[list[int], list[int]]:
    """Running totals per reading and the recorded run quantities, written from the text.

    Split the readings into runs (a new run at the first reading, and at every reading of
    0 / inc / 2*inc below the one before); a run is watched when its first reading is one
    of those; within a run, a rise adds the rise, a fall adds one increment, a repeat
    nothing; a run is recorded when it ends (another run follows) and was watched.
    """
    resets = (0, inc, 2 * inc)
    runs: list[list[int]] = []
    for i, c in enumerate(counters):
        if i == 0 or (c in resets and c < counters[i - 1]):
            runs.append([c])
        else:
            runs[-1].append(c)
    totals: list[int] = []
    records: list[int] = []
    for k, run in enumerate(runs):
        total = run[0]
        totals.append(total)
        for prev, cur in itertools.pairwise(run):
            if cur > prev:
                total += cur - prev
            elif cur < prev:
                total += inc
            totals.append(total)
        if k + 1 < len(runs) and run[0] in resets:
            records.append(total)
    return totals, records


@settings(max_examples=400, deadline=None)
@given(
    inc=st.integers(1, 4),
    steps=st.lists(
        st.one_of(
            st.sampled_from(["inc", "inc", "inc", "same", "zero", "one", "two"]),
            st.integers(-6, 12),
        ),
        min_size=1,
        max_size=60,
    ),
    start=st.integers(0, 30),
)
def test_run_accounting_matches_the_plain_reference(
    inc: int, steps: list[str | int], start: int
) -> None:
    counters = [start]
    for step in steps:
        last = counters[-1]
        named = {"inc": last + inc, "same": last, "zero": 0, "one": inc, "two": 2 * inc}
        nxt = last + step if isinstance(step, int) else named[step]
        counters.append(max(0, nxt))
    run = ToolRun(inc)
    totals, records = [], []
    for c in counters:
        r = run.observe(c)
        totals.append(r.running_total)
        if r.finished is not None and r.finished[1]:
            records.append(r.finished[0])
    assert (totals, records) == reference_runs(counters, inc)


# --- nothing a datagram holds escapes the decoder ----------------------------------------

_near = st.builds(
    lambda key, set_no, blocks, framed: (
        (b"\x12" if framed else b"")
        + f"{key},{set_no}".rjust(10).encode("latin-1")
        + b"".join(b.rjust(10)[:10] for b in blocks)
        + (b"%\x14" if framed else b"")
    ),
    st.integers(0, 10**10),
    st.sampled_from(["01", "02", "60", "6", "99", "1x"]),
    st.lists(
        st.one_of(
            st.sampled_from([b"50", b"51", b"52", b"1", b"6", b"0", b"-1", b"1.5", b"1e9", b"."]),
            st.binary(max_size=10),
            st.from_regex(rb"\A[ +\-0-9.]{0,10}\Z"),
        ),
        max_size=16,
    ),
    st.booleans(),
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datagrams=st.lists(st.one_of(st.binary(max_size=200), _near), max_size=20))
def test_the_decoder_raises_nothing_but_rejections(datagrams: list[bytes]) -> None:
    for framing in ("required", "optional"):
        decoder = DatagramDecoder(UdpSource.model_validate(udp_source(framing=framing)))
        for i, data in enumerate(datagrams):
            try:
                rows = decoder.decode(data, float(i))
            except PayloadRejectedError as exc:
                assert exc.reason in {
                    "bad_framing",
                    "too_long",
                    "bad_header",
                    "bad_length",
                    "not_numeric",
                    "unknown_workcenter",
                    "unknown_set",
                    "unknown_command",
                }
                continue
            for fields in rows_fields(rows):
                # The hand-written entry is exactly what the codec writes for its signal.
                assert Signal.from_fields(fields).to_fields() == fields


@settings(max_examples=1500, deadline=None)
@given(
    data=st.one_of(
        _near,
        st.builds(
            lambda key, blocks: frame(key, 60, *blocks),
            st.integers(0, 10**9 - 1),
            st.lists(st.integers(0, 10**10 - 1), min_size=4, max_size=4),
        ),
    ),
    max_data_bytes=st.sampled_from([160, 52, 50, 40]),
)
def test_the_fast_command_parse_is_the_general_parse(data: bytes, max_data_bytes: int) -> None:
    # The fast path answers exactly the framed set-60 datagrams of four whole numbers the
    # general parse accepts, with the same numbers; everything else is left to it.
    fast = command_fast(data, max_data_bytes)
    try:
        general = parse(data, max_data_bytes=max_data_bytes)
    except PayloadRejectedError:
        assert fast is None
        return
    plain = (
        general.set_no == 60
        and len(general.values) == 4
        and data[-2:] == b"%\x14"
        and b"." not in data
        and b"+" not in data
        and b"-" not in data
    )
    if fast is None:
        assert not plain
        return
    assert (general.workcenter_key, general.set_no, *general.values) == (fast[0], 60, *fast[1:])


_json_number = st.one_of(
    st.integers(-(10**12), 10**12), st.floats(allow_nan=True, allow_infinity=True)
)


@given(current=st.one_of(st.none(), _json_number), total=_json_number, entire=st.booleans())
def test_a_runs_state_text_is_what_json_writes(
    current: int | float | None, total: int | float, entire: bool
) -> None:
    run = ToolRun(1)
    run.current, run.total, run.entire = current, total, entire
    assert run.state_json() == json.dumps(run.state())


# --- a real socket into Redis -------------------------------------------------------------


def udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_datagrams_land_in_the_streams_and_bad_ones_in_dead_letters(
    make_config: Callable[..., RepsysConfig],
    redis_client: redis.Redis,
    started: list[InThread],
) -> None:
    port = udp_port()
    cfg = make_config(collector={"sources": [udp_source(port)]})
    _, registry, coll = run_collector(cfg)
    started.append(coll)
    labels = {"reader": "udp", "source": "okuma"}
    wait_until(
        lambda: sample(registry, "repsys_collector_source_connected", labels) == 1,
        timeout=10,
        what="bound",
    )
    sent = [
        frame(2, 60, 50, 1, 1, 0),
        frame(2, 60, 51, 1, 1, 1),
        b"\x12      2,60        51%\x14",  # too few blocks
        frame(9, 60, 51, 1, 1, 1),  # unknown workcenter
        frame(2, 1, 10, 20),
        frame(2, 60, 51, 1, 1, 5),  # a counter skip
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
        out.bind(("127.0.0.1", 0))
        for data in sent:
            out.sendto(data, ("127.0.0.1", port))
        sender = f"127.0.0.1:{out.getsockname()[1]}"
    wait_until(lambda: len(stream_signals(redis_client, 4)) == 5, timeout=10, what="five signals")
    wait_until(
        lambda: redis_client.xlen(keys.COLLECTOR_DEAD_LETTERS) == 2, timeout=10, what="letters"
    )
    signals = [s for _, _, s in stream_signals(redis_client, 4)]
    by_machine = {m: [s for s in signals if s.machine == m] for m in ("cnc101", "cnc103")}
    assert [(s.name, s.subject, s.value) for s in by_machine["cnc101"]] == [
        ("machining_event", "T1", 0),
        ("machining_event", "T1", 1),
        ("tool_life", "T1", 10),
        ("machining_event", "T1", 5),
    ]
    assert by_machine["cnc101"][1].attrs["start"] == repr(by_machine["cnc101"][0].source_ts)
    assert [(s.name, s.subject, s.value) for s in by_machine["cnc103"]] == [("tool_life", "T2", 20)]
    entries: Any = redis_client.xrange(keys.COLLECTOR_DEAD_LETTERS)
    letters = [f for _, f in entries]
    assert [(f["reason"], f["reader"], f["source"], f["where"]) for f in letters] == [
        ("bad_length", "udp", "okuma", sender),
        ("unknown_workcenter", "udp", "okuma", sender),
    ]
    assert letters[1]["payload"] == frame(9, 60, 51, 1, 1, 1).decode()
    assert (
        sample(
            registry, "repsys_collector_udp_gaps_total", {"source": "okuma", "kind": "counter_skip"}
        )
        == 1
    )
    assert (
        sample(
            registry,
            "repsys_collector_dead_letters_total",
            {"reader": "udp", "reason": "bad_length"},
        )
        == 1
    )


def test_a_burst_drained_in_batches_lands_whole_and_in_order(
    make_config: Callable[..., RepsysConfig],
    redis_client: redis.Redis,
    started: list[InThread],
) -> None:
    # More datagrams than one wake-up takes (DRAIN_MAX), sent at once, bad ones among
    # them: the streams hold what decoding them one by one gives, in order, and every
    # bad one is a dead letter (the drain loop's batches lose and reorder nothing).
    port = udp_port()
    cfg = make_config(collector={"sources": [udp_source(port)]})
    _, registry, coll = run_collector(cfg)
    started.append(coll)
    labels = {"reader": "udp", "source": "okuma"}
    wait_until(
        lambda: sample(registry, "repsys_collector_source_connected", labels) == 1,
        timeout=10,
        what="bound",
    )
    sent: list[bytes] = []
    for i in range(3 * DRAIN_MAX):
        if i % 97 == 50:
            sent.append(frame(9, 60, 51, 1, 1, i))  # unknown workcenter
        elif i % 2:
            sent.append(frame(2 + i // 2 % 2, 60, 51, 1, i % 5 + 1, i // 10 + 1))
        else:
            sent.append(frame(2, 1, i, i + 1))
    reference = DatagramDecoder(UdpSource.model_validate(udp_source(port)))
    want: list[tuple[str, str, str, Any, dict[str, str]]] = []
    bad = 0
    for data in sent:
        try:
            rows = reference.decode(data, 0.0)
        except PayloadRejectedError:
            bad += 1
            continue
        for sig in signals(rows):
            attrs = {k: v for k, v in sig.attrs.items() if k not in ("end", "start")}
            want.append((sig.machine, sig.name, sig.subject, sig.value, attrs))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
        for data in sent:
            out.sendto(data, ("127.0.0.1", port))
    wait_until(
        lambda: len(stream_signals(redis_client, 4)) == len(want), timeout=20, what="all signals"
    )
    wait_until(
        lambda: redis_client.xlen(keys.COLLECTOR_DEAD_LETTERS) == bad, timeout=10, what="letters"
    )
    got = [
        (s.machine, s.name, s.subject, s.value, {k: v for k, v in s.attrs.items() if k != "end"})
        for _, _, s in stream_signals(redis_client, 4)
    ]
    for machine in ("cnc101", "cnc102", "cnc103"):
        assert [g for g in got if g[0] == machine] == [w for w in want if w[0] == machine]


def test_a_port_in_use_is_a_source_unavailable_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        source = UdpSource.model_validate(udp_source(port))
        reader = UdpReader(source, PrintSink(), CollectorMetrics(new_registry()))
        with pytest.raises(SourceUnavailableError) as err:
            asyncio.run(reader.read_once(0.1))
    assert err.value.reason == "bind"


def test_the_running_totals_survive_a_collector_restart(
    make_config: Callable[..., RepsysConfig],
    redis_client: redis.Redis,
    started: list[InThread],
) -> None:
    """A run watched from its tool change, the collector restarted in the middle of it:
    the tool change after the restart is recorded with the whole run's quantity."""
    port = udp_port()
    cfg = make_config(collector={"sources": [udp_source(port)]})
    labels = {"reader": "udp", "source": "okuma"}
    state_key = keys.collector_source_state("collector", "okuma")

    def collector() -> tuple[Any, InThread]:
        _, registry, coll = run_collector(cfg)
        started.append(coll)
        wait_until(
            lambda: sample(registry, "repsys_collector_source_connected", labels) == 1,
            timeout=10,
            what="bound",
        )
        return registry, coll

    def ends() -> list[Signal]:
        return [
            s
            for _, _, s in stream_signals(redis_client, 4)
            if s.name == "machining_event" and s.attrs.get("cmd") == "51"
        ]

    def send(*counters: int) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
            for c in counters:
                out.sendto(frame(2, 60, 50, 1, 1, c), ("127.0.0.1", port))
                out.sendto(frame(2, 60, 51, 1, 1, c), ("127.0.0.1", port))

    _, first = collector()
    send(0, 1, 2, 3)  # a fresh tool (0): a run watched from its start
    wait_until(lambda: len(ends()) == 4, timeout=10, what="four ENDs")
    first.stop()
    assert json.loads(redis_client.hget(state_key, "run:2:1") or "null") == [3, 3, True]

    collector()
    send(4, 5, 0)  # the run goes on after the restart, then the tool is changed
    wait_until(lambda: len(ends()) == 7, timeout=10, what="seven ENDs")
    after = ends()[4:]
    assert [s.attrs["running_total"] for s in after] == ["4", "5", "0"]
    assert [s.attrs["running_entire_time"] for s in after] == ["1", "1", "1"]
    changes = [
        (s.subject, s.value)
        for _, _, s in stream_signals(redis_client, 4)
        if s.name == "tool_change"
    ]
    assert changes == [("T1", 5)]  # the whole run, counted across the restart


@settings(max_examples=200, deadline=None)
@given(
    counters=st.lists(st.integers(min_value=0, max_value=60), min_size=1, max_size=30),
    cut=st.integers(min_value=0, max_value=30),
    junk=st.dictionaries(st.text(max_size=12), st.text(max_size=12), max_size=4),
)
def test_saved_runs_go_on_as_if_never_stopped(
    counters: list[int], cut: int, junk: dict[str, str]
) -> None:
    """Save after ``cut`` readings, restore into a new decoder (with junk fields beside):
    the readings after it give the same rows as one decoder that never stopped."""
    source = UdpSource.model_validate(udp_source())
    datagrams = [frame(2, 60, 51, 1, 6, c) for c in counters]
    whole = DatagramDecoder(source)
    want = [whole.decode(d, float(i)) for i, d in enumerate(datagrams)]
    before = DatagramDecoder(source)
    for i, d in enumerate(datagrams[:cut]):
        before.decode(d, float(i))
    saved = before.run_fields()
    after = DatagramDecoder(source)
    junk.pop("run:2:6", None)  # the one field that is this tool's run
    after.restore({**junk, **saved})
    got = [after.decode(d, float(i)) for i, d in enumerate(datagrams) if i >= cut]
    # The first END after the restart says events before it may be lost (``resync``);
    # apart from that, END rows carry no start here (no START sent), so rows compare whole.
    events = [row for rows in got for row in rows if row[1] == "machining_event"]
    if events:
        assert events[0][7].endswith(',"resync":"1"}')
        assert not any('"resync"' in row[7] for row in events[1:])
    assert _unmarked(got) == _unmarked(want[cut:])


def _unmarked(batches: list[list[Row]]) -> list[list[Row]]:
    return [[[*row[:7], row[7].replace(',"resync":"1"', "")] for row in rows] for rows in batches]
