"""Configuration section ``collector:`` (owned by ``collector/``).

A collector reads *sources* (OPC UA servers, MQTT brokers) and maps what they carry onto
the configured machines' canonical signals: adding a machine is configuration, never
code. Machines are named by id only; identity (PCN, workcenter) lives in the top-level
``machines:`` list and :meth:`CollectorConfig.machine_refs` lets the root model reject an
id that is not there, pointing at the exact key.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, PlainValidator, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from core.config.base import OptionalSecret, StrictModel, type_tag
from core.config.collector_mtconnect import MtconnectSource
from core.config.collector_sparkplug import SparkplugSource
from core.config.collector_udp import UdpSource

#: Canonical or plant signal names: snake_case, short (they become stream fields).
SIGNAL_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
_NODE_ID = re.compile(r"^(ns=\d+|nsu=[^;]+);[sigb]=.+$|^i=\d+$")
_PATH_PART = re.compile(r"^(?:([A-Za-z0-9_]+):)?(.+)$")

Loc = tuple[str | int, ...]


def unknown_machine_error(loc: Loc, machine_id: str) -> ValidationError:
    """The error the root model raises for a machine id missing from ``machines:``."""
    err = PydanticCustomError(
        "unknown_machine",
        "unknown machine {machine}: not in machines",
        {"machine": repr(machine_id)},
    )
    return ValidationError.from_exception_data(
        "RepsysConfig", [InitErrorDetails(type=err, loc=loc, input=machine_id)]
    )


class ValueMap(StrictModel):
    """How a raw value becomes the signal's value: type, scale, offset, enum texts."""

    type: Literal["auto", "float", "int", "str", "bool"] = Field(
        default="auto", description="Convert the raw value to this type (auto keeps it)."
    )
    scale: float = Field(default=1.0, description="Numbers are multiplied by this...")
    offset: float = Field(default=0.0, description="...then this is added.")
    unit: str = Field(default="", description="Unit after scaling, for documentation.")
    map: dict[str, str] = Field(
        default_factory=dict,
        description="Raw value (as text) -> canonical text, e.g. {'1': executing}.",
    )


class OpcuaNode(ValueMap):
    """One OPC UA variable mapped onto one signal of one machine."""

    machine: str = Field(description="Machine id from machines:.")
    signal: str = Field(pattern=SIGNAL_PATTERN, description="Canonical signal name.")
    subject: str = Field(default="", description="What the signal is about: tool T1, pallet 2.")
    node_id: str = Field(
        default="",
        description="ns=2;s=cnc103.cnc103.PartCounter, or nsu=<namespace URI>;s=... .",
    )
    browse_path: str = Field(
        default="",
        description="From the Objects folder: alias:Name/alias:Name (aliases in namespaces).",
    )
    attr_nodes: dict[str, str] = Field(
        default_factory=dict,
        description="Attribute -> node id or browse path, read on every (re)connect.",
    )
    attrs: dict[str, str] = Field(default_factory=dict, description="Fixed attributes.")

    @field_validator("node_id")
    @classmethod
    def _node_id_form(cls, value: str) -> str:
        if value and not _NODE_ID.match(value):
            raise ValueError("must look like ns=2;s=Name, nsu=URI;s=Name or i=85")
        return value

    @model_validator(mode="after")
    def _one_address(self) -> OpcuaNode:
        if bool(self.node_id) == bool(self.browse_path):
            raise ValueError("give exactly one of node_id and browse_path")
        return self


class OpcuaEvents(StrictModel):
    """Events (alarms, messages) of one emitter node mapped onto one machine's signal."""

    machine: str = Field(description="Machine id from machines:.")
    signal: str = Field(default="alarm", pattern=SIGNAL_PATTERN)
    emitter: str = Field(
        default="i=2253", description="Node id or browse path of the emitter (Server)."
    )
    code_field: str = Field(
        default="",
        description="Event property with the alarm code (the value), alias:Name; "
        "empty: the value is the event's message text.",
    )
    conditions: bool = Field(
        default=False,
        description="Alarms & Conditions: subscribe to AlarmConditionType events with "
        "their state (active, acked, confirmed, severity) and call ConditionRefresh after "
        "every (re)connect, so alarms already active are reported (collector/opcua/"
        "conditions.py).",
    )


class OpcuaSecurity(StrictModel):
    """Message security: None, or Basic256Sha256 with Sign / SignAndEncrypt."""

    policy: Literal["None", "Basic256Sha256"] = "None"
    mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    certificate: str = Field(default="", description="Client certificate file (DER or PEM).")
    private_key: str = Field(default="", description="Client private key file (PEM).")
    server_certificate: str = Field(
        default="",
        description="The server's certificate file (DER or PEM), pinned: a server with "
        "another certificate is refused. With trust_on_first_use, where the certificate "
        "seen on the first connect is kept.",
    )
    trust_on_first_use: bool = Field(
        default=False,
        description="When server_certificate does not exist yet, trust the certificate the "
        "server presents on the first connect and pin it from then on.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> OpcuaSecurity:
        if (self.policy == "None") != (self.mode == "None"):
            raise ValueError("policy and mode must both be None or both set")
        if self.policy != "None" and not (self.certificate and self.private_key):
            raise ValueError("Basic256Sha256 needs certificate and private_key")
        if self.policy != "None" and not self.server_certificate:
            # Without it asyncua takes whatever certificate the endpoint presents, so anyone
            # who can answer on the address could read the plant's signals.
            raise ValueError(
                "Basic256Sha256 needs server_certificate (the server's certificate, pinned; "
                "with trust_on_first_use: true, the file to keep the first one seen in)"
            )
        return self


class OpcuaSource(StrictModel):
    """An OPC UA server (Kepware, a machine's own server, an OPC 40501 machine)."""

    type: Literal["opcua"]
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Source name (logs).")
    endpoint: str = Field(pattern=r"^opc\.tcp://", description="opc.tcp://host:port/path")
    namespaces: dict[str, str] = Field(
        default_factory=dict,
        description="Alias -> namespace URI, used by browse paths; resolved on every connect.",
    )
    username: str = Field(default="", description="User name; empty for anonymous.")
    password: OptionalSecret = Field(default=None, description="{env: NAME} or {file: PATH}.")
    security: OpcuaSecurity = OpcuaSecurity()
    mode: Literal["subscribe", "poll"] = Field(
        default="subscribe", description="subscribe (data changes) or poll (read in rounds)."
    )
    publishing_interval_ms: int = Field(default=1000, ge=10)
    sampling_interval_ms: int = Field(default=1000, ge=0)
    queue_size: int = Field(default=1, ge=1, le=1000)
    poll_interval_s: float = Field(default=1.0, gt=0, description="Poll mode: read every.")
    watchdog_factor: float = Field(
        default=5.0,
        ge=0,
        description="No notification for this many publishing (or sampling) intervals: "
        "resubscribe; still none after as long again: reconnect. 0 turns it off.",
    )

    @field_validator("watchdog_factor")
    @classmethod
    def _watchdog_off_or_sane(cls, value: float) -> float:
        if 0 < value < 2:
            raise ValueError("must be 0 (off) or at least 2")
        return value

    heartbeat_s: float = Field(
        default=15.0,
        ge=0,
        description="Subscribe mode: while the subscription delivers data, each machine of "
        "the source gets a `source_alive` signal this often (OPC UA reports changes only: "
        "a stopped machine's unchanged values would read as no data). 0 turns it off.",
    )
    timeout_s: float = Field(default=5.0, gt=0, description="Request timeout.")
    nodes: list[OpcuaNode] = Field(default_factory=list)
    events: list[OpcuaEvents] = Field(default_factory=list)

    def machine_refs(self) -> Iterator[tuple[Loc, str]]:
        """Every machine id this source names, with its key path inside the source."""
        for j, node in enumerate(self.nodes):
            yield ("nodes", j, "machine"), node.machine
        for j, ev in enumerate(self.events):
            yield ("events", j, "machine"), ev.machine

    @model_validator(mode="after")
    def _aliases_known(self) -> OpcuaSource:
        for i, node in enumerate(self.nodes):
            for path in [node.browse_path, *node.attr_nodes.values()]:
                if path and not _NODE_ID.match(path):
                    for part in path.split("/"):
                        m = _PATH_PART.match(part)
                        alias = m.group(1) if m else None
                        if alias and not alias.isdigit() and alias not in self.namespaces:
                            raise ValueError(
                                f"nodes[{i}]: namespace alias {alias!r} is not in namespaces"
                            )
        return self


class MqttTls(StrictModel):
    """TLS towards the broker."""

    ca_file: str = Field(default="", description="CA bundle; empty: the system's.")
    cert_file: str = Field(default="", description="Client certificate (mutual TLS).")
    key_file: str = Field(default="", description="Client key (mutual TLS).")
    insecure: bool = Field(default=False, description="Skip host name checks (tests only).")


class MqttField(ValueMap):
    """One value of a message mapped onto a signal."""

    path: str = Field(
        default="", description="Dotted JSON path (a.b.0.c); empty: the whole payload."
    )
    signal: str = Field(
        default="{signal}", description="Signal name, or {signal} from the topic pattern."
    )
    subject: str = Field(default="", description="Template, e.g. T{Tool_Var}.")
    attrs: dict[str, str] = Field(
        default_factory=dict, description="Attribute -> template, e.g. {pallet: '{Pallet_No}'}."
    )
    optional: bool = Field(default=False, description="A missing path is skipped, not an error.")

    @field_validator("signal")
    @classmethod
    def _fixed_name_valid(cls, value: str) -> str:
        if "{" not in value and not re.match(SIGNAL_PATTERN, value):
            raise ValueError(f"must match {SIGNAL_PATTERN!r} or be a template like {{signal}}")
        return value


class MqttTopic(StrictModel):
    """A topic pattern and how its messages become signals."""

    pattern: str = Field(
        min_length=1,
        description="Topic with {machine}, {signal}, {workcenter} or {any} levels, "
        "+ and a final #.",
    )
    format: Literal["json", "value"] = Field(
        default="json", description="json: an object; value: a plain number or text."
    )
    machine: str = Field(default="", description="Fixed machine id when the topic has none.")
    machine_field: str = Field(
        default="",
        description="JSON path naming the machine: its id, Workcenter_Code or Workcenter_Key.",
    )
    timestamp_field: str = Field(default="", description="JSON path of the source time.")
    timestamp_format: Literal["local", "iso", "epoch_s", "epoch_ms"] = Field(
        default="local",
        description="local: 'YYYY-MM-DD HH:MM:SS' in plant.timezone (TransDate).",
    )
    fields: list[MqttField] = Field(
        default_factory=lambda: [MqttField()],
        description="Values to take; default: the whole payload as {signal}.",
    )

    @field_validator("pattern")
    @classmethod
    def _pattern_form(cls, value: str) -> str:
        levels = value.split("/")
        for i, level in enumerate(levels):
            if level == "#" and i != len(levels) - 1:
                raise ValueError("# may only be the last level")
            if ("{" in level or "+" in level or "#" in level) and not (
                re.fullmatch(r"\{[A-Za-z_][A-Za-z0-9_]*\}", level) or level in ("+", "#")
            ):
                raise ValueError(f"level {level!r}: a variable must fill a whole level")
        return value


class MqttSource(StrictModel):
    """An MQTT broker and the topics to read from it."""

    type: Literal["mqtt"]
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    protocol: Literal["3.1.1", "5"] = "5"
    client_id: str = Field(
        default="", description="Persistent session id; empty: repsys-<collector>-<source>."
    )
    username: str = ""
    password: OptionalSecret = None
    tls: MqttTls | None = None
    qos: Literal[0, 1, 2] = Field(default=1, description="Subscription QoS.")
    keepalive_s: int = Field(default=30, ge=5)
    session_expiry_s: int = Field(
        default=86400, ge=0, description="MQTT 5: how long the broker keeps our session."
    )
    max_inflight: int = Field(
        default=1000, ge=1, description="Unacknowledged messages the broker may send."
    )
    max_payload_bytes: int = Field(
        default=262_144, ge=1024, description="Larger payloads are dead-lettered (too_large)."
    )
    topics: list[MqttTopic] = Field(min_length=1)

    def machine_refs(self) -> Iterator[tuple[Loc, str]]:
        """Every machine id this source names, with its key path inside the source."""
        for j, topic in enumerate(self.topics):
            if topic.machine:
                yield ("topics", j, "machine"), topic.machine


#: Every source model, written once. A model declares its ``type: Literal[...]`` (the
#: config ``type``, the reader's registry key and metric label) and ``machine_refs``.
AnySource = OpcuaSource | MqttSource | UdpSource | SparkplugSource | MtconnectSource
#: Source models by their ``type``.
SOURCE_TYPES: dict[str, type[AnySource]] = {type_tag(m): m for m in get_args(AnySource)}


def _pick_source(value: Any) -> AnySource:
    # Dispatch on `type` by hand rather than with a pydantic discriminator: a
    # discriminated union puts the tag into error locations (sources[0].mqtt.port), and
    # operators should read the key path they wrote (sources[0].port).
    if isinstance(value, AnySource):
        return value
    kind = value.get("type") if isinstance(value, dict) else None
    model = SOURCE_TYPES.get(kind) if isinstance(kind, str) else None
    if model is None:
        err = PydanticCustomError(
            "source_type", "must be one of {types}", {"types": ", ".join(SOURCE_TYPES)}
        )
        raise ValidationError.from_exception_data(
            "Source", [InitErrorDetails(type=err, loc=("type",), input=kind)]
        )
    return model.model_validate(value)


#: A source, by its ``type``.
Source = Annotated[AnySource, PlainValidator(_pick_source)]


class SinkConfig(StrictModel):
    """Writing signals into the partitioned streams."""

    batch_size: int = Field(default=1000, ge=1, description="Entries per pipelined XADD batch.")
    linger_ms: float = Field(
        default=5.0, ge=0, le=1000, description="Wait up to this long for a batch to fill."
    )
    buffer_max: int = Field(
        default=200_000, ge=100, description="Signals held while Redis is away; then dropped."
    )
    retry_max_s: float = Field(default=5.0, gt=0, description="Cap of the Redis retry backoff.")
    trim_interval_s: float = Field(default=10.0, gt=0, description="How often to trim.")
    retention_s: float = Field(
        default=3600.0,
        ge=0,
        description="Entries the rules group acknowledged are kept this long (unless the "
        "stream is over streams.max_len).",
    )
    wait_replicas: int = Field(
        default=0,
        ge=0,
        le=16,
        description="Replicas that must confirm each batch (Redis WAIT) before the broker "
        "is acked; set to the number of replicas in Sentinel mode. 0: no WAIT.",
    )
    wait_timeout_ms: int = Field(
        default=1000,
        ge=1,
        le=60_000,
        description="How long WAIT waits for the replicas; a batch not confirmed in time "
        "stays buffered and is written again (in order) after the retry backoff.",
    )
    dead_letter_max_len: int = Field(default=10_000, ge=100)
    dead_letter_payload_bytes: int = Field(
        default=4096, ge=64, description="Raw payload kept in a dead letter, truncated."
    )


class CollectorConfig(StrictModel):
    """Settings of the ``collector`` package. Every key has a default and a description."""

    name: str = Field(
        default="collector",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Configuration name: heartbeat keys (with host:pid), source leases, "
        "MQTT client ids.",
    )
    sources: list[Source] = Field(
        default_factory=list, description="OPC UA, MQTT, UDP, Sparkplug and MTConnect sources."
    )
    sink: SinkConfig = SinkConfig()
    heartbeat_interval_s: float = Field(default=5.0, gt=0)
    reconnect_max_s: float = Field(default=10.0, gt=0, description="Cap of reconnect backoff.")
    source_lease_ttl_s: float = Field(
        default=15.0,
        ge=1,
        description="Each source is read by one collector process at a time, under a lease "
        "renewed every third of this; a replica takes a dead one's sources after it.",
    )

    @field_validator("sources")
    @classmethod
    def _names_unique(cls, sources: list[AnySource]) -> list[AnySource]:
        names = [s.name for s in sources]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"source name {name!r} appears twice")
        return sources

    def machine_refs(self) -> Iterator[tuple[Loc, str]]:
        """Every machine id this section names, with its key path."""
        for i, src in enumerate(self.sources):
            base: Loc = ("collector", "sources", i)
            for loc, machine_id in src.machine_refs():
                yield (*base, *loc), machine_id
