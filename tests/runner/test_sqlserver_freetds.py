"""SQL Server through a real ODBC driver: pyodbc, unixODBC and FreeTDS (Debian's tdsodbc).

No SQL Server runs here (decision 0430), so the peer is a TDS listener written in this
test: it reads what the driver sends, answers the PRELOGIN (encryption not supported),
reads the LOGIN7 and hangs up. That checks, with the real driver on the wire, that the
configured ``mssql+pyodbc`` URL and its secret password reach SQL Server's login as they
should (user, password, database, TDS 7.4), and that a refused login is an ordinary
``DBAPIError`` for the runner to classify. A query, a migration or a TB on SQL Server is
not run: that needs the server.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyodbc
import pytest
from pydantic import SecretStr, ValidationError
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from core.config.infra import DatabaseConfig
from core.db import make_engine

PRELOGIN, LOGIN7, REPLY = 0x12, 0x10, 0x04
TDS_74 = 0x74000004


@dataclass
class TdsPeer:
    """A TCP listener that speaks just enough TDS to receive a client's login."""

    sock: socket.socket
    packets: list[tuple[int, bytes]] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def serve_one(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(10)
            kind, body = _read_packet(conn)
            self.packets.append((kind, body))
            if kind != PRELOGIN:
                return
            conn.sendall(_prelogin_reply())
            self.packets.append(_read_packet(conn))
            # Hang up instead of answering the login: the driver reports a failure.


def _read_packet(conn: socket.socket) -> tuple[int, bytes]:
    head = _exactly(conn, 8)
    kind, _status, length = struct.unpack(">BBH", head[:4])
    return kind, _exactly(conn, length - 8)


def _exactly(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the client hung up")
        data += chunk
    return data


def _prelogin_reply() -> bytes:
    # Options: VERSION (6 bytes), ENCRYPTION (1 byte: 2 = not supported), terminator.
    options = 2 * 5 + 1
    body = bytes([0x00]) + struct.pack(">HH", options, 6)
    body += bytes([0x01]) + struct.pack(">HH", options + 6, 1) + b"\xff"
    body += bytes([16, 0, 0x07, 0xD0, 0, 0]) + b"\x02"
    return struct.pack(">BBHHBB", REPLY, 0x01, 8 + len(body), 0, 1, 0) + body


def _login_field(body: bytes, index: int) -> str:
    """The UCS-2 text of LOGIN7's ``index``-th offset/length pair (0 = host name)."""
    offset, chars = struct.unpack("<HH", body[36 + 4 * index : 40 + 4 * index])
    return body[offset : offset + 2 * chars].decode("utf-16-le")


def _password(body: bytes) -> str:
    offset, chars = struct.unpack("<HH", body[44:48])
    raw = body[offset : offset + 2 * chars]
    # LOGIN7 scrambles the password: each byte XOR 0xA5 with its nibbles swapped.
    plain = bytes((((b ^ 0xA5) << 4) & 0xF0) | ((b ^ 0xA5) >> 4) for b in raw)
    return plain.decode("utf-16-le")


@pytest.fixture
def tds_peer() -> Iterator[TdsPeer]:
    sock = socket.create_server(("127.0.0.1", 0))
    peer = TdsPeer(sock)
    thread = threading.Thread(target=peer.serve_one, daemon=True)
    thread.start()
    yield peer
    sock.close()
    thread.join(10)


def test_freetds_is_registered_with_unixodbc() -> None:
    assert "FreeTDS" in pyodbc.drivers(), "tdsodbc is missing: run tools/setup-system.sh"


def _login(peer: TdsPeer, url: str, password: str) -> bytes:
    """Connect through SQLAlchemy and FreeTDS; the LOGIN7 the peer received."""
    engine = make_engine(DatabaseConfig(url=url, password=SecretStr(password)))
    try:
        with pytest.raises(DBAPIError) as caught, engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    finally:
        engine.dispose()
    assert isinstance(caught.value.orig, pyodbc.Error)  # the driver's own error, wrapped
    assert [k for k, _ in peer.packets] == [PRELOGIN, LOGIN7]
    return peer.packets[1][1]


def _url(peer: TdsPeer) -> str:
    return (
        f"mssql+pyodbc://repsys@127.0.0.1:{peer.port}/plexdw"
        "?driver=FreeTDS&TDS_Version=7.4&LoginTimeout=5"
    )


def test_the_configured_url_reaches_sql_servers_login_through_freetds(tds_peer: TdsPeer) -> None:
    login = _login(tds_peer, _url(tds_peer), "Pl@nt;s3cret={x")  # ; needs the ODBC braces
    length, version = struct.unpack("<II", login[:8])
    assert length == len(login) and version == TDS_74
    assert _login_field(login, 1) == "repsys"
    assert _password(login) == "Pl@nt;s3cret={x"
    assert _login_field(login, 8) == "plexdw"


def test_freetds_sends_an_escaped_closing_brace_doubled(tds_peer: TdsPeer) -> None:
    """Why the configuration refuses a '}' with FreeTDS: SQLAlchemy writes the ODBC
    escape (``PWD={a}}b}``) and Debian's FreeTDS 1.3 passes it on as it is. When this
    fails, the driver undoes the escape and the refusal can go."""
    cfg = DatabaseConfig(url=_url(tds_peer))  # no password: the check does not apply
    url = make_url(cfg.url).set(password="a}b")
    engine = create_engine(url)
    try:
        with pytest.raises(DBAPIError), engine.connect():
            pass
    finally:
        engine.dispose()
    assert _password(tds_peer.packets[1][1]) == "a}}b"


def test_the_configuration_refuses_a_closing_brace_for_freetds() -> None:
    url = "mssql+pyodbc://repsys@sql:1433/plexdw?driver=FreeTDS"
    with pytest.raises(ValidationError, match="FreeTDS cannot pass a '}' in a password"):
        DatabaseConfig(url=url, password=SecretStr("a}b"))
    DatabaseConfig(url=url, password=SecretStr("a{b;c"))  # accepted
    DatabaseConfig(url=url.replace("FreeTDS", "ODBC+Driver+18+for+SQL+Server"),
                   password=SecretStr("a}b"))  # fmt: skip
