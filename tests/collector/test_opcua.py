"""OPC UA → streams against the simulated plant's real asyncua server."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from asyncua import ua
from asyncua.ua.status_codes import StatusCodes
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from collector.opcua.intake import quality_of
from collector.opcua.resolve import first_certificate
from core import keys
from core.config import RepsysConfig
from core.metrics import sample
from core.model import Quality
from repsys.servers import wait_until
from tests.collector.conftest import (
    InThread,
    kepware_node,
    mt_node,
    opcua_source,
    run_collector,
    run_sim,
    sim_section,
    stream_signals,
)

Factory = Callable[..., RepsysConfig]
LIMIT_T1 = "mt:Machines/mt:cnc103/mt:Equipment/mt:Tools/mt:T1/mt:ToolLife/mt:LimitValue"


def _config(
    make_config: Factory, opcua_port: int, mqtt_port: int, source: dict[str, Any], **sim: Any
) -> RepsysConfig:
    return make_config(
        collector={"sources": [source]},
        sim=sim_section(opcua_port, mqtt_port, mqtt={"enabled": False}, **sim),
    )


def _names(client: redis.Redis) -> set[tuple[str, str]]:
    return {(s.machine, s.name) for _, _, s in stream_signals(client, 4)}


def test_signals_land_in_their_machine_partition_with_timestamps_and_quality(
    make_config: Factory,
    opcua_port: int,
    mqtt_port: int,
    redis_client: redis.Redis,
    started: list[InThread],
) -> None:
    source = opcua_source(
        opcua_port,
        [
            kepware_node("cnc101", "PartCounter", "part_count"),
            kepware_node("cnc102", "SpindleLoad", "spindle_load"),
            mt_node(
                "cnc103",
                "Monitoring/Channel1/ChannelState",
                "run_state",
                map={"0": "executing", "1": "interrupted", "2": "stopped"},
            ),
            mt_node(
                "cnc103",
                "Equipment/Tools/T1/ToolLife/Indication",
                "tool_life",
                subject="T1",
                attr_nodes={"limit": LIMIT_T1},
            ),
        ],
    )
    cfg = _config(make_config, opcua_port, mqtt_port, source)
    started.append(run_sim(cfg)[1])
    _, registry, coll = run_collector(cfg)
    started.append(coll)
    wanted = {
        ("cnc101", "part_count"),
        ("cnc102", "spindle_load"),
        ("cnc103", "run_state"),
        ("cnc103", "tool_life"),
    }
    wait_until(lambda: wanted <= _names(redis_client), timeout=20, what="every node's signal")
    signals = stream_signals(redis_client, 4)
    for partition, _, sig in signals:
        assert partition == keys.partition_of(sig.machine, 4)
        assert sig.quality is Quality.GOOD
        assert sig.source_ts > 0 and sig.receive_ts > 0
    run_state = next(s for _, _, s in signals if s.name == "run_state")
    assert run_state.value == "executing"
    life = next(s for _, _, s in signals if s.name == "tool_life")
    assert life.subject == "T1" and life.attrs == {"limit": "798"}  # cnc103 T1 (default)
    # The server's source timestamps are kept: simulated time runs 20 times faster than
    # the receive clock, so source times of successive loads spread much wider.
    loads = [s for _, _, s in signals if s.name == "spindle_load"]
    wait_until(lambda: len(_loads(redis_client)) >= 10, timeout=10, what="ten loads")
    loads = _loads(redis_client)
    source_span = loads[-1].source_ts - loads[0].source_ts
    receive_span = loads[-1].receive_ts - loads[0].receive_ts
    assert source_span > 5 * receive_span
    labels = {"reader": "opcua", "source": "plant"}
    assert sample(registry, "repsys_collector_source_connected", labels) == 1.0
    assert (
        sample(
            registry,
            "repsys_collector_signals_written_total",
            {"reader": "opcua", "machine": "cnc103"},
        )
        >= 2
    )
    assert redis_client.hget(keys.machine_last_seen(), "cnc101") is not None


def _loads(client: redis.Redis) -> list[Any]:
    return [s for _, _, s in stream_signals(client, 4) if s.name == "spindle_load"]


def test_server_restart_with_renumbered_namespaces_resumes_within_10_s(
    make_config: Factory,
    opcua_port: int,
    mqtt_port: int,
    redis_client: redis.Redis,
    started: list[InThread],
) -> None:
    source = opcua_source(
        opcua_port,
        [
            kepware_node("cnc101", "SpindleLoad", "spindle_load"),
            mt_node("cnc102", "Monitoring/Spindle/Load", "spindle_load"),
        ],
    )
    cfg = _config(make_config, opcua_port, mqtt_port, source)
    sim, sim_thread = run_sim(cfg)
    started.append(sim_thread)
    _, registry, coll = run_collector(cfg)
    started.append(coll)
    wait_until(
        lambda: {("cnc101", "spindle_load"), ("cnc102", "spindle_load")} <= _names(redis_client),
        timeout=20,
        what="data before the restart",
    )
    assert sim.opcua is not None
    sim_thread.call(sim.opcua.restart())
    restarted_at = time.time()
    assert sim.opcua.restarts == 1

    def resumed() -> bool:
        fresh = {
            s.machine
            for _, _, s in stream_signals(redis_client, 4)
            if s.receive_ts > restarted_at + 0.2
        }
        return fresh == {"cnc101", "cnc102"}

    wait_until(resumed, timeout=10, what="data after the restart")
    assert (
        sample(
            registry,
            "repsys_collector_reconnects_total",
            {"reader": "opcua", "source": "plant", "reason": "session"},
        )
        >= 1
    )


def test_silently_dead_subscription_is_resubscribed_by_the_watchdog(
    make_config: Factory,
    opcua_port: int,
    mqtt_port: int,
    redis_client: redis.Redis,
    started: list[InThread],
) -> None:
    source = opcua_source(
        opcua_port,
        [kepware_node("cnc101", "SpindleLoad", "spindle_load")],
        publishing_interval_ms=200,
        watchdog_factor=5,  # quiet for 1 s: resubscribe
    )
    cfg = _config(make_config, opcua_port, mqtt_port, source)
    sim, sim_thread = run_sim(cfg)
    started.append(sim_thread)
    _, registry, coll = run_collector(cfg)
    started.append(coll)
    wait_until(
        lambda: ("cnc101", "spindle_load") in _names(redis_client),
        timeout=20,
        what="data before the silence",
    )
    assert sim.opcua is not None
    assert sim_thread.call(sim.opcua.silence_subscriptions()) == 1
    silenced_at = time.time()

    def repaired() -> bool:
        return any(s.receive_ts > silenced_at + 1.0 for s in _loads(redis_client))

    wait_until(repaired, timeout=10, what="data after the watchdog")
    assert (
        sample(
            registry,
            "repsys_collector_watchdog_actions_total",
            {"source": "plant", "action": "resubscribe"},
        )
        >= 1
    )
    # The connection itself never dropped: no reconnect was needed.
    assert (
        sample(
            registry,
            "repsys_collector_reconnects_total",
            {"reader": "opcua", "source": "plant", "reason": "session"},
        )
        == 0
    )


def test_a_machine_whose_values_do_not_change_gets_a_heartbeat_while_data_flows(
    make_config: Factory,
    opcua_port: int,
    mqtt_port: int,
    redis_client: redis.Redis,
    started: list[InThread],
) -> None:
    # cnc101's spindle load changes every sample; cnc103's feed override never changes: a
    # subscription reports it once, and without a heartbeat never again (the chaos soak's
    # stopped OPC UA machines read as no data).
    source = opcua_source(
        opcua_port,
        [
            kepware_node("cnc101", "SpindleLoad", "spindle_load"),
            kepware_node("cnc103", "FeedOverride", "feed_override"),
        ],
        heartbeat_s=0.5,
    )
    cfg = _config(make_config, opcua_port, mqtt_port, source)
    _, sim_thread = run_sim(cfg)
    started.append(sim_thread)
    started.append(run_collector(cfg)[2])

    def beats(machine: str) -> list[float]:
        return [
            s.receive_ts
            for _, _, s in stream_signals(redis_client, 4)
            if s.machine == machine and s.name == "source_alive" and s.value == 1
        ]

    wait_until(lambda: len(beats("cnc103")) >= 3, timeout=20, what="cnc103's heartbeats")
    assert beats("cnc101")  # every machine of the source
    feed = [s for _, _, s in stream_signals(redis_client, 4) if s.name == "feed_override"]
    assert len(feed) == 1  # its value came once: the heartbeats say the link is alive
    gaps = [b - a for a, b in zip(beats("cnc103"), beats("cnc103")[1:], strict=False)]
    assert all(0.4 <= g <= 2.0 for g in gaps), gaps


def test_bad_status_code_gives_bad_quality(
    make_config: Factory,
    opcua_port: int,
    mqtt_port: int,
    redis_client: redis.Redis,
    started: list[InThread],
) -> None:
    source = opcua_source(
        opcua_port,
        [kepware_node("cnc103", "FeedOverride", "feed_override")],
        watchdog_factor=0,  # the override never changes: no resubscribing
    )
    cfg = _config(make_config, opcua_port, mqtt_port, source)
    sim, sim_thread = run_sim(cfg)
    started.append(sim_thread)
    started.append(run_collector(cfg)[2])

    def qualities() -> list[Quality]:
        return [
            s.quality for _, _, s in stream_signals(redis_client, 4) if s.name == "feed_override"
        ]

    wait_until(lambda: len(qualities()) == 1, timeout=20, what="the first value")
    assert sim.opcua is not None
    sim_thread.call(sim.opcua.write_status("cnc103", "feed_override", StatusCodes.BadSensorFailure))
    wait_until(lambda: len(qualities()) == 2, timeout=10, what="the bad sample")
    sim_thread.call(
        sim.opcua.write_status("cnc103", "feed_override", StatusCodes.BadNoCommunication)
    )
    wait_until(lambda: len(qualities()) == 3, timeout=10, what="the no-data sample")
    assert qualities() == [Quality.GOOD, Quality.BAD, Quality.NO_DATA]
    values = [s.value for _, _, s in stream_signals(redis_client, 4) if s.name == "feed_override"]
    assert values == [100.0, None, None]


@pytest.mark.parametrize(
    ("code", "quality"),
    [
        (StatusCodes.Good, Quality.GOOD),
        (StatusCodes.UncertainLastUsableValue, Quality.UNCERTAIN),
        (StatusCodes.BadSensorFailure, Quality.BAD),
        (StatusCodes.BadNoCommunication, Quality.NO_DATA),
        (StatusCodes.BadWaitingForInitialData, Quality.NO_DATA),
    ],
)
def test_status_codes_map_to_qualities(code: int, quality: Quality) -> None:
    assert quality_of(ua.StatusCode(ua.UInt32(code))) is quality


def test_poll_mode_and_alarm_events(
    make_config: Factory,
    opcua_port: int,
    mqtt_port: int,
    redis_client: redis.Redis,
    started: list[InThread],
) -> None:
    polled = opcua_source(
        opcua_port,
        [kepware_node("cnc101", "Program", "program")],
        name="polled",
        mode="poll",
        poll_interval_s=0.2,
    )
    events = opcua_source(
        opcua_port,
        [kepware_node("cnc102", "PalletId", "pallet_id")],
        name="events",
        events=[{"machine": "cnc102", "code_field": "mt:AlarmCode"}],
        watchdog_factor=0,
    )
    cfg = make_config(
        collector={"sources": [polled, events]},
        sim=sim_section(
            opcua_port,
            mqtt_port,
            mqtt={"enabled": False},
            scenario={"faults": [{"at": 60, "kind": "machine_down", "machine": "cnc102"}]},
        ),
    )
    started.append(run_sim(cfg)[1])
    started.append(run_collector(cfg)[2])

    def programs() -> list[Any]:
        return [s for _, _, s in stream_signals(redis_client, 4) if s.name == "program"]

    wait_until(lambda: len(programs()) >= 3, timeout=20, what="three polled rounds")
    assert {s.value for s in programs()} == {"O1000"}
    wait_until(
        lambda: ("cnc102", "alarm") in _names(redis_client), timeout=20, what="the alarm event"
    )
    alarm = next(s for _, _, s in stream_signals(redis_client, 4) if s.name == "alarm")
    assert alarm.value == 1001
    assert alarm.attrs == {"text": "Spindle drive fault", "severity": "900"}


def _self_signed(directory: Path, name: str, uri: str) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(uri), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=True,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.der", directory / f"{name}.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.mark.parametrize(("password", "works"), [("s3cret", True), ("wrong", False)])
def test_basic256sha256_sign_and_encrypt_with_username(
    make_config: Factory,
    opcua_port: int,
    mqtt_port: int,
    redis_client: redis.Redis,
    started: list[InThread],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    password: str,
    works: bool,
) -> None:
    server_cert, server_key = _self_signed(tmp_path, "server", "urn:freeopcua:python:server")
    client_cert, client_key = _self_signed(tmp_path, "client", "urn:freeopcua:client")
    monkeypatch.setenv("SIM_OPERATOR_PASSWORD", "s3cret")
    monkeypatch.setenv("COLLECTOR_OPCUA_PASSWORD", password)
    source = opcua_source(
        opcua_port,
        [kepware_node("cnc101", "SpindleLoad", "spindle_load")],
        username="operator",
        password={"env": "COLLECTOR_OPCUA_PASSWORD"},
        security={
            "policy": "Basic256Sha256",
            "mode": "SignAndEncrypt",
            "certificate": str(client_cert),
            "private_key": str(client_key),
            "server_certificate": str(server_cert),
        },
    )
    cfg = _config(
        make_config,
        opcua_port,
        mqtt_port,
        source,
        opcua={
            "port": opcua_port,
            "security": ["Basic256Sha256_SignAndEncrypt"],
            "certificate": str(server_cert),
            "private_key": str(server_key),
            "users": {"operator": {"env": "SIM_OPERATOR_PASSWORD"}},
        },
    )
    started.append(run_sim(cfg)[1])
    _, registry, coll = run_collector(cfg)
    started.append(coll)
    labels = {"reader": "opcua", "source": "plant", "reason": "connect"}
    if works:
        wait_until(
            lambda: ("cnc101", "spindle_load") in _names(redis_client),
            timeout=20,
            what="encrypted data",
        )
        assert sample(registry, "repsys_collector_reconnects_total", labels) == 0
    else:
        wait_until(
            lambda: sample(registry, "repsys_collector_reconnects_total", labels) >= 2,
            timeout=20,
            what="refused connects",
        )
        assert _names(redis_client) == set()


def _secured(
    make_config: Factory,
    opcua_port: int,
    mqtt_port: int,
    tmp_path: Path,
    *,
    server_certificate: Path,
    trust_on_first_use: bool = False,
) -> tuple[RepsysConfig, Path]:
    """A SignAndEncrypt source and a simulator serving ``server.der``; returns that file."""
    server_cert, server_key = _self_signed(tmp_path, "server", "urn:freeopcua:python:server")
    client_cert, client_key = _self_signed(tmp_path, "client", "urn:freeopcua:client")
    source = opcua_source(
        opcua_port,
        [kepware_node("cnc101", "SpindleLoad", "spindle_load")],
        security={
            "policy": "Basic256Sha256",
            "mode": "SignAndEncrypt",
            "certificate": str(client_cert),
            "private_key": str(client_key),
            "server_certificate": str(server_certificate),
            "trust_on_first_use": trust_on_first_use,
        },
    )
    cfg = _config(
        make_config,
        opcua_port,
        mqtt_port,
        source,
        opcua={
            "port": opcua_port,
            "security": ["Basic256Sha256_SignAndEncrypt"],
            "certificate": str(server_cert),
            "private_key": str(server_key),
        },
    )
    return cfg, server_cert


def test_a_server_with_another_certificate_than_the_pinned_one_is_refused(
    make_config: Factory,
    opcua_port: int,
    mqtt_port: int,
    redis_client: redis.Redis,
    started: list[InThread],
    tmp_path: Path,
) -> None:
    """Someone else answering on the address, with a certificate of their own."""
    other, _ = _self_signed(tmp_path, "other", "urn:freeopcua:python:server")
    cfg, _ = _secured(make_config, opcua_port, mqtt_port, tmp_path, server_certificate=other)
    started.append(run_sim(cfg)[1])
    _, registry, coll = run_collector(cfg)
    started.append(coll)
    labels = {"reader": "opcua", "source": "plant", "reason": "connect"}
    wait_until(
        lambda: sample(registry, "repsys_collector_reconnects_total", labels) >= 2,
        timeout=20,
        what="refused connects",
    )
    assert _names(redis_client) == set()


def test_trust_on_first_use_keeps_the_first_certificate_and_pins_it(
    make_config: Factory,
    opcua_port: int,
    mqtt_port: int,
    redis_client: redis.Redis,
    started: list[InThread],
    tmp_path: Path,
) -> None:
    kept = tmp_path / "trust" / "plant-server.der"
    cfg, server_cert = _secured(
        make_config,
        opcua_port,
        mqtt_port,
        tmp_path,
        server_certificate=kept,
        trust_on_first_use=True,
    )
    started.append(run_sim(cfg)[1])
    _, registry, coll = run_collector(cfg)
    started.append(coll)
    wait_until(
        lambda: ("cnc101", "spindle_load") in _names(redis_client),
        timeout=20,
        what="encrypted data after trusting on first use",
    )
    assert kept.read_bytes() == server_cert.read_bytes()
    labels = {"reader": "opcua", "source": "plant", "reason": "connect"}
    assert sample(registry, "repsys_collector_reconnects_total", labels) == 0


def test_first_certificate_of_a_chain() -> None:
    one = b"\x30\x03\x02\x01\x05"
    long_form = b"\x30\x81\x80" + bytes(128)
    assert first_certificate(one + long_form) == one
    assert first_certificate(long_form + one) == long_form
    for bad in (b"", b"\x31\x00", b"\x30\x85\x00\x00\x00\x00\x00", b"\x30\x81\x80\x00"):
        with pytest.raises(ValueError):
            first_certificate(bad)
