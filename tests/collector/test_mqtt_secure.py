"""MQTT over TLS with a user name and password, against a real mosquitto that demands both.

The broker has a TLS listener only (a certificate signed by a CA made for the test) and
``allow_anonymous false`` with a ``mosquitto_passwd`` file. The collector reaches it with
the CA file and a password given as ``{env: NAME}``, as a plant's config would. A wrong
password is refused by the broker: the collector logs ``mqtt_connect_refused`` with the
broker's reason, reports the source as not connected, and writes nothing.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import redis
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from paho.mqtt.enums import CallbackAPIVersion

from core.config import RepsysConfig
from core.metrics import sample
from repsys.servers import MosquittoServer, wait_until
from tests.collector.conftest import InThread, run_collector, stream_signals
from tests.collector.test_mqtt import mqtt_source

Factory = Callable[..., RepsysConfig]

USER = "collector"
PASSWORD = "s3cret-for-tests"
TOPICS = [
    {"pattern": "json/{machine}", "fields": [{"path": "count", "signal": "part_count"}]},
]


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    issuer_name, signer = issuer if issuer else (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
    else:
        san = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
        builder = builder.add_extension(x509.SubjectAlternativeName(san), False)
    return builder.sign(signer, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


class SecureBroker(MosquittoServer):
    """mosquitto with a TLS listener only, and a password file instead of anonymous."""

    def _argv(self) -> list[str]:
        argv = super()._argv()
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _cert("RepSys test CA", ca_key, None)
        server_key = ec.generate_private_key(ec.SECP256R1())
        _write(self.workdir / "ca", ca, ca_key)
        server = _cert("localhost", server_key, ("RepSys test CA", ca_key))
        _write(self.workdir / "server", server, server_key)
        passwd = self.workdir / "passwd"
        passwd.touch(mode=0o600)
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), USER, PASSWORD], check=True)
        conf = self.workdir / "mosquitto.conf"
        text = conf.read_text().replace("allow_anonymous true", "allow_anonymous false")
        conf.write_text(
            text
            + f"cafile {self.workdir / 'ca.crt'}\n"
            + f"certfile {self.workdir / 'server.crt'}\n"
            + f"keyfile {self.workdir / 'server.key'}\n"
            + f"password_file {passwd}\n"
        )
        return argv

    @property
    def ca_file(self) -> str:
        return str(self.workdir / "ca.crt")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[SecureBroker]:
    server = SecureBroker(tmp_path / "mosquitto")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _publish(broker: SecureBroker, topic: str, payload: bytes) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    client.username_pw_set(USER, PASSWORD)
    client.tls_set(ca_certs=broker.ca_file, cert_reqs=ssl.CERT_REQUIRED)
    connected = threading.Event()
    client.on_connect = lambda *_: connected.set()
    client.connect("127.0.0.1", broker.port, 30)
    client.loop_start()
    try:
        assert connected.wait(10), "test publisher could not connect over TLS"
        client.publish(topic, payload, qos=1).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def _source(broker: SecureBroker, password_env: str) -> dict[str, Any]:
    return mqtt_source(
        broker.port,
        TOPICS,
        username=USER,
        password={"env": password_env},
        tls={"ca_file": broker.ca_file},
    )


def _connected(registry: Any) -> float | None:
    return sample(
        registry, "repsys_collector_source_connected", {"reader": "mqtt", "source": "broker"}
    )


def test_tls_with_user_and_password_delivers_signals(
    make_config: Factory,
    broker: SecureBroker,
    redis_client: redis.Redis,
    started: list[InThread],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REPSYS_TEST_MQTT_PASSWORD", PASSWORD)
    cfg = make_config(collector={"sources": [_source(broker, "REPSYS_TEST_MQTT_PASSWORD")]})
    _, registry, coll = run_collector(cfg)
    started.append(coll)
    wait_until(lambda: _connected(registry) == 1, timeout=15, what="TLS session subscribed")
    _publish(broker, "json/cnc101", b'{"count": 41}')

    def counts() -> list[Any]:
        return [s.value for _, _, s in stream_signals(redis_client, 4) if s.machine == "cnc101"]

    wait_until(lambda: counts() == [41], timeout=15, what="the TLS message in the stream")


def test_wrong_password_is_refused_and_reported(
    make_config: Factory,
    broker: SecureBroker,
    started: list[InThread],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REPSYS_TEST_MQTT_PASSWORD", "not-the-password")
    cfg = make_config(collector={"sources": [_source(broker, "REPSYS_TEST_MQTT_PASSWORD")]})
    with structlog.testing.capture_logs() as logs:
        _, registry, coll = run_collector(cfg)
        started.append(coll)

        def refused() -> list[MutableMapping[str, Any]]:
            return [e for e in list(logs) if e["event"] == "mqtt_connect_refused"]

        wait_until(lambda: len(refused()) >= 2, timeout=20, what="two refused connects")
    # The broker's own reason reaches the log, and paho kept retrying (two refusals).
    assert refused()[0]["source"] == "broker"
    assert "authorized" in refused()[0]["reason"].lower()
    assert _connected(registry) in (None, 0)
