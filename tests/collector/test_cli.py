"""``repsys collector`` and ``repsys sim plant`` commands, samples and READMEs."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import get_args

import pytest
import yaml

import collector.cli
import sim.plant.cli
from core.config import ConfigError, RepsysConfig, load_config
from core.config.sim_plant import FaultKindName
from sim.plant.scenario import FaultKind
from tests.collector.conftest import InThread, run_sim, sim_section
from tests.conftest import REPO

SAMPLES = sorted((REPO / "collector").glob("*/sample.yaml"))


def repsys(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "repsys", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
    )


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.parent.name)
def test_every_sample_loads_and_its_readme_shows_it(sample: Path) -> None:
    cfg = load_config(sample)
    assert cfg.collector.sources
    readme = (sample.parent / "README.md").read_text()
    assert sample.read_text() in readme


def test_sample_names_are_the_reader_names() -> None:
    assert [p.parent.name for p in SAMPLES] == ["mqtt", "mtconnect", "opcua", "sparkplug", "udp"]
    for sample in SAMPLES:
        types = {s.type for s in load_config(sample).collector.sources}
        assert types == {sample.parent.name}


def test_collector_once_reads_the_opcua_sample_from_the_sim_plant(
    make_config: Callable[..., RepsysConfig],
    opcua_port: int,
    mqtt_port: int,
    started: list[InThread],
    tmp_path: Path,
) -> None:
    cfg = make_config(sim=sim_section(opcua_port, mqtt_port, mqtt={"enabled": False}))
    started.append(run_sim(cfg)[1])
    data = yaml.safe_load((REPO / "collector/opcua/sample.yaml").read_text())
    for source in data["collector"]["sources"]:
        source["endpoint"] = source["endpoint"].replace("48400", str(opcua_port))
    data["machines"] = yaml.safe_load(yaml.safe_dump([m.model_dump() for m in cfg.machines]))
    path = tmp_path / "once.yaml"
    path.write_text(yaml.safe_dump(data))
    result = repsys("-c", str(path), "collector", "once", "--seconds", "20")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    got = {(x["machine"], x["name"]) for x in lines}
    assert {
        ("cnc101", "part_count"),
        ("cnc101", "run_state"),
        ("cnc103", "run_state"),
        ("cnc103", "tool_life"),
        ("cnc103", "spindle_load"),
    } <= got
    life = next(x for x in lines if x["machine"] == "cnc103" and x["name"] == "tool_life")
    assert life["subject"] == "T1" and life["attrs"]["limit"] == "798"
    assert set(lines[0]) == {
        "machine",
        "name",
        "value",
        "quality",
        "source_ts",
        "receive_ts",
        "subject",
        "attrs",
    }


def test_collector_once_prints_what_the_udp_sample_receives(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO / "collector/udp/sample.yaml").read_text())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data["collector"]["sources"][0].update(host="127.0.0.1", port=port)
    path = tmp_path / "once.yaml"
    path.write_text(yaml.safe_dump(data))
    proc = subprocess.Popen(
        [sys.executable, "-m", "repsys", "-c", str(path), "collector", "once", "--seconds", "4"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    # The listening window starts when the process has bound; until it ends, keep sending.
    body = b"      2,01" + b"        17" + b"         3"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
        while proc.poll() is None:
            out.sendto(b"\x12" + body + b"%\x14", ("127.0.0.1", port))
            out.sendto(b"\x12 bad%\x14", ("127.0.0.1", port))
            time.sleep(0.2)  # a sender's pace, not a wait for a condition
    stdout, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 0, stderr
    lines = [json.loads(line) for line in stdout.splitlines()]
    assert lines, stderr
    assert {(x["machine"], x["name"], x["subject"], x["value"]) for x in lines} == {
        ("cnc120", "tool_life", "T1", 17),
        ("cnc120", "tool_life", "T2", 3),
    }
    assert lines[0]["attrs"] == {"set": "1", "block": "1", "assembly": "Rough mill"}
    letters = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert letters and {x["dead_letter"] for x in letters} == {"bad_header"}


def test_collector_once_fails_with_1_naming_the_source_that_is_down(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO / "collector/opcua/sample.yaml").read_text())
    data["collector"]["sources"] = data["collector"]["sources"][:1]
    data["collector"]["sources"][0]["endpoint"] = "opc.tcp://127.0.0.1:1/nothing"
    path = tmp_path / "down.yaml"
    path.write_text(yaml.safe_dump(data))
    result = repsys("-c", str(path), "collector", "once", "--seconds", "5")
    assert result.returncode == 1
    assert result.stderr.startswith(
        "repsys collector once: kepware: cannot connect to opc.tcp://127.0.0.1:1/nothing"
    )
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("collector_section", "message"),
    [
        (
            {
                "sources": [
                    {
                        "type": "mqtt",
                        "name": "b",
                        "topics": [
                            {"pattern": "x/{machine}"},
                            {"pattern": "y", "machine": "cnc999"},
                        ],
                    }
                ]
            },
            "collector.sources[0].topics[1].machine: unknown machine 'cnc999': not in machines",
        ),
        (
            {
                "sources": [
                    {
                        "type": "opcua",
                        "name": "k",
                        "endpoint": "opc.tcp://h:1",
                        "nodes": [
                            {
                                "machine": "cnc103",
                                "signal": "part_count",
                                "browse_path": "mt:Machines/mt:cnc103",
                            }
                        ],
                    }
                ]
            },
            "collector.sources[0]: nodes[0]: namespace alias 'mt' is not in namespaces",
        ),
        (
            {
                "sources": [
                    {
                        "type": "opcua",
                        "name": "k",
                        "endpoint": "opc.tcp://h:1",
                        "nodes": [
                            {"machine": "cnc103", "signal": "Part Count", "node_id": "ns=2;s=x"}
                        ],
                    }
                ]
            },
            "collector.sources[0].nodes[0].signal: String should match pattern"
            " '^[a-z][a-z0-9_]{0,63}$'",
        ),
        (
            {
                "sources": [
                    {
                        "type": "opcua",
                        "name": "k",
                        "endpoint": "opc.tcp://h:1",
                        "nodes": [{"machine": "cnc103", "signal": "x"}],
                    }
                ]
            },
            "collector.sources[0].nodes[0]: give exactly one of node_id and browse_path",
        ),
        (
            {
                "sources": [
                    {
                        "type": "opcua",
                        "name": "k",
                        "endpoint": "opc.tcp://h:1",
                        "security": {"policy": "Basic256Sha256", "mode": "Sign"},
                    }
                ]
            },
            "collector.sources[0].security: Basic256Sha256 needs certificate and private_key",
        ),
        (
            {
                "sources": [
                    {
                        "type": "opcua",
                        "name": "k",
                        "endpoint": "opc.tcp://h:1",
                        "security": {
                            "policy": "Basic256Sha256",
                            "mode": "Sign",
                            "certificate": "c.der",
                            "private_key": "k.pem",
                        },
                    }
                ]
            },
            "collector.sources[0].security: Basic256Sha256 needs server_certificate (the "
            "server's certificate, pinned; with trust_on_first_use: true, the file to keep "
            "the first one seen in)",
        ),
        (
            {"sources": [{"type": "modbus", "name": "k"}]},
            "collector.sources[0].type: must be one of opcua, mqtt, udp, sparkplug, mtconnect",
        ),
        (
            {"sources": [{"type": "udp", "name": "k"}]},
            "collector.sources[0].workcenters: required key is missing",
        ),
        (
            {
                "sources": [
                    {
                        "type": "udp",
                        "name": "k",
                        "workcenters": [
                            {"key": 2, "machine": "cnc103"},
                            {"key": 2, "machine": "cnc103"},
                        ],
                    }
                ]
            },
            "collector.sources[0].workcenters: workcenter key 2 appears twice",
        ),
        (
            {
                "sources": [
                    {
                        "type": "udp",
                        "name": "k",
                        "workcenters": [
                            {
                                "key": 2,
                                "machine": "cnc103",
                                "counters": [{"set": 60, "block": 1, "tool": "T1"}],
                            }
                        ],
                    }
                ]
            },
            "collector.sources[0].workcenters[0].counters[0].set: Input should be less than "
            "or equal to 49",
        ),
        (
            {
                "sources": [
                    {"type": "udp", "name": "k", "workcenters": [{"key": 2, "machine": "x"}]}
                ]
            },
            "collector.sources[0].workcenters[0].machine: unknown machine 'x': not in machines",
        ),
        (
            {"sources": [{"type": "mqtt", "name": "b", "topics": [{"pattern": "a/#/b"}]}]},
            "collector.sources[0].topics[0].pattern: # may only be the last level",
        ),
        (
            {
                "sources": [
                    {"type": "mqtt", "name": "b", "topics": [{"pattern": "a"}]},
                    {"type": "mqtt", "name": "b", "topics": [{"pattern": "b"}]},
                ]
            },
            "collector.sources: source name 'b' appears twice",
        ),
        (
            {"sink": {"buffer_max": 10}},
            "collector.sink.buffer_max: Input should be greater than or equal to 100",
        ),
    ],
)
def test_bad_collector_config_names_the_key_path(
    tmp_path: Path, collector_section: dict[str, object], message: str
) -> None:
    path = _bad_config(tmp_path, collector_section)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}: {message}"


def test_collector_with_bad_config_exits_2(tmp_path: Path) -> None:
    path = _bad_config(tmp_path, {"sources": [{"type": "modbus", "name": "k"}]})
    result = repsys("-c", str(path), "collector", "once")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"repsys: {path}: collector.sources[0].type: must be one of opcua, mqtt, udp, "
        "sparkplug, mtconnect"
    )


def _bad_config(tmp_path: Path, collector_section: dict[str, object]) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "machines": [
                    {"id": "cnc103", "pcn": 1, "workcenter_key": 1, "workcenter_code": "c"}
                ],
                "collector": collector_section,
            }
        )
    )
    return path


def test_sim_plant_print_is_deterministic_json_lines() -> None:
    first = repsys("-c", "config/example.yaml", "sim", "plant", "--print", "120")
    second = repsys("-c", "config/example.yaml", "sim", "plant", "--print", "120")
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    lines = [json.loads(line) for line in first.stdout.splitlines()]
    assert {x["machine"] for x in lines} == {"cnc103", "cnc362", "cnc120"}
    assert any(x["name"] == "machining_event" for x in lines)


def test_sim_plant_bad_scenario_file_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("faults:\n  - {at: 1, kind: counter_jump, machine: cnc103}\n")
    result = repsys(
        "-c", "config/example.yaml", "sim", "plant", "--scenario", str(path), "--print", "1"
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"repsys: {path}: faults[0].tool: required for counter_jump"


def test_config_fault_kinds_are_the_model_fault_kinds() -> None:
    assert set(get_args(FaultKindName)) == {k.value for k in FaultKind}


def test_demo_runs_the_plant_before_the_collector() -> None:
    [plant] = sim.plant.cli.demo_processes()
    [coll] = collector.cli.demo_processes()
    assert (plant.argv, coll.argv) == (["sim", "plant"], ["collector"])
    assert plant.order < coll.order
