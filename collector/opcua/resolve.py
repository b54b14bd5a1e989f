"""Connecting to an OPC UA server and turning configured addresses into node ids.

Servers renumber their namespaces after a restart (Kepware after a project reload, any
server that registers namespaces in a different order), so nothing here trusts an index
across connections: on every connect the namespace array is read, aliases and ``nsu=``
node ids are resolved to the current indexes, and browse paths are translated to node ids
in one TranslateBrowsePathsToNodeIds call per batch.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from asyncua import ua
from asyncua.client.client import Client
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from asyncua.ua.object_ids import ObjectIds

from collector.errors import SourceUnavailableError
from core.config.collector import OpcuaNode, OpcuaSource
from core.logs import get_logger

log = get_logger(__name__)

_MODES = {
    "Sign": ua.MessageSecurityMode.Sign,
    "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt,
}
_BATCH = 500


async def connect(source: OpcuaSource) -> Client:
    """A connected client (security and user as configured). Raises SourceUnavailableError."""
    # asyncua probes the server every watchdog interval and gives the probe as long to
    # answer: at its 1 s default a busy server (thousands of items) looks dead.
    client = Client(source.endpoint, timeout=source.timeout_s, watchdog_intervall=source.timeout_s)
    if source.username:
        client.set_user(source.username)
        if source.password is not None:
            client.set_password(source.password.get_secret_value())
    try:
        sec = source.security
        if sec.policy == "Basic256Sha256":
            pinned = Path(sec.server_certificate)
            if sec.trust_on_first_use and not await asyncio.to_thread(pinned.exists):
                await _trust_on_first_use(source, pinned)
            await client.set_security(
                SecurityPolicyBasic256Sha256,
                certificate=sec.certificate,
                private_key=sec.private_key,
                # Always given: with None asyncua takes any certificate the server shows.
                server_certificate=str(pinned),
                mode=_MODES[sec.mode],
            )
        await client.connect(auto_reconnect=False)
    except Exception as exc:  # asyncua raises OSError, TimeoutError, UaError and more
        raise SourceUnavailableError(
            f"cannot connect to {source.endpoint}: {exc or type(exc).__name__}",
            reason="connect",
        ) from exc
    return client


def first_certificate(chain: bytes) -> bytes:
    """The first DER certificate of a chain (OPC UA sends the chain concatenated)."""
    if len(chain) < 2 or chain[0] != 0x30:  # a DER SEQUENCE
        raise ValueError("not a DER certificate")
    size = chain[1]
    if size < 0x80:
        return chain[: 2 + size]
    count = size & 0x7F
    if count == 0 or count > 4 or len(chain) < 2 + count:
        raise ValueError("not a DER certificate")
    length = int.from_bytes(chain[2 : 2 + count], "big")
    end = 2 + count + length
    if end > len(chain):
        raise ValueError("truncated DER certificate")
    return chain[:end]


def _keep(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)  # a crash leaves no half-written certificate to pin


async def _trust_on_first_use(source: OpcuaSource, pinned: Path) -> None:
    """Keep the certificate the server presents now in ``pinned``; later connects pin it."""
    sec = source.security
    probe = Client(source.endpoint, timeout=source.timeout_s)
    endpoints = await probe.connect_and_get_server_endpoints()
    endpoint = Client.find_endpoint(endpoints, _MODES[sec.mode], SecurityPolicyBasic256Sha256.URI)
    der = first_certificate(bytes(endpoint.ServerCertificate or b""))
    await asyncio.to_thread(_keep, pinned, der)
    log.warning(
        "opcua_server_certificate_trusted_on_first_use",
        source=source.name,
        endpoint=source.endpoint,
        file=str(pinned),
        sha256=hashlib.sha256(der).hexdigest(),
    )


@dataclass
class Resolved:
    """A configured node with its node id on this connection, and its attributes."""

    spec: OpcuaNode
    node_id: ua.NodeId
    attrs: dict[str, str] = field(default_factory=dict)


class Resolver:
    """Resolves one source's addresses against the server's current namespace array."""

    def __init__(self, source: OpcuaSource, namespaces: Sequence[str]) -> None:
        self.source = source
        self.index = {uri: i for i, uri in enumerate(namespaces)}

    def ns(self, alias_or_index: str) -> int:
        if alias_or_index.isdigit():
            return int(alias_or_index)
        uri = self.source.namespaces.get(alias_or_index, alias_or_index)
        if uri not in self.index:
            raise SourceUnavailableError(
                f"namespace {uri!r} is not on the server", reason="resolve"
            )
        return self.index[uri]

    def node_id(self, text: str) -> ua.NodeId:
        """``ns=2;s=X`` as is; ``nsu=URI;s=X`` with the URI's index on this server."""
        if text.startswith("nsu="):
            uri, _, rest = text[4:].partition(";")
            text = f"ns={self.ns(uri)};{rest}"
        return ua.NodeId.from_string(text)

    def relative_path(self, path: str) -> ua.RelativePath:
        elements = []
        for part in path.strip("/").split("/"):
            alias, sep, name = part.partition(":")
            if not sep:
                alias, name = "0", part
            el = ua.RelativePathElement()
            el.ReferenceTypeId = ua.NodeId(ua.Int32(ObjectIds.HierarchicalReferences))
            el.IsInverse = False  # type: ignore[assignment]  # asyncua types Boolean oddly
            el.IncludeSubtypes = True  # type: ignore[assignment]  # as above
            el.TargetName = ua.QualifiedName(name, self.ns(alias))
            elements.append(el)
        rp = ua.RelativePath()
        rp.Elements = elements
        return rp

    def is_node_id(self, text: str) -> bool:
        return text.startswith(("ns=", "nsu=", "i="))


async def resolve_addresses(
    client: Client, resolver: Resolver, addresses: Sequence[str]
) -> list[ua.NodeId | None]:
    """Node ids for node-id strings and browse paths; None where a path does not exist."""
    out: list[ua.NodeId | None] = [None] * len(addresses)
    paths: list[tuple[int, ua.RelativePath]] = []
    for i, text in enumerate(addresses):
        if resolver.is_node_id(text):
            out[i] = resolver.node_id(text)
        else:
            paths.append((i, resolver.relative_path(text)))
    objects = ua.NodeId(ua.Int32(ObjectIds.ObjectsFolder))
    for start in range(0, len(paths), _BATCH):
        chunk = paths[start : start + _BATCH]
        results = await client.translate_browsepaths(objects, [rp for _, rp in chunk])
        for (i, _), result in zip(chunk, results, strict=True):
            if result.StatusCode.is_good() and result.Targets:
                # TargetId is an ExpandedNodeId; a plain NodeId is what services take.
                target = result.Targets[0].TargetId
                out[i] = ua.NodeId(target.Identifier, target.NamespaceIndex, target.NodeIdType)
    return out


async def resolve_nodes(client: Client, source: OpcuaSource) -> list[Resolved]:
    """Every configured node on this connection, with its attributes read once.

    A node whose address does not exist on the server is logged and left out (one wrong
    tag must not silence a whole machine); an unknown namespace fails the connect.
    """
    resolver = Resolver(source, await client.get_namespace_array())
    addresses = [n.node_id or n.browse_path for n in source.nodes]
    ids = await resolve_addresses(client, resolver, addresses)
    resolved = []
    for spec, node_id in zip(source.nodes, ids, strict=True):
        if node_id is None:
            log.warning(
                "opcua_node_unresolved",
                source=source.name,
                machine=spec.machine,
                signal=spec.signal,
                address=spec.node_id or spec.browse_path,
            )
            continue
        resolved.append(Resolved(spec, node_id, dict(spec.attrs)))
    await _read_attrs(client, resolver, resolved)
    return resolved


async def _read_attrs(client: Client, resolver: Resolver, resolved: list[Resolved]) -> None:
    wanted = [(r, name, addr) for r in resolved for name, addr in r.spec.attr_nodes.items()]
    if not wanted:
        return
    ids = await resolve_addresses(client, resolver, [addr for _, _, addr in wanted])
    present = [(w, nid) for w, nid in zip(wanted, ids, strict=True) if nid is not None]
    values = await client.read_values([client.get_node(nid) for _, nid in present])
    for ((r, name, _), _), value in zip(present, values, strict=True):
        if value is not None:
            integral = isinstance(value, float) and value.is_integer()
            r.attrs[name] = str(int(value)) if integral else str(value)
