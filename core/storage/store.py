"""The store: put, open (streamed), list and delete objects by key, over ``obstore``."""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import obstore
from obstore.exceptions import (
    BaseError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from obstore.store import AzureStore, LocalStore, S3Store

from core.errors import RepsysError
from core.logs import get_logger

if TYPE_CHECKING:
    from obstore.store import AzureConfig, ClientConfig, ObjectStore, S3Config

    from core.config.storage import StorageConfig

log = get_logger(__name__)


class StorageError(RepsysError):
    """An object-store operation failed; ``reason`` says how (see the package docstring)."""

    reason = "unavailable"


def safe_key(key: str) -> str:
    """``key`` if it is a plain relative object key, else :class:`StorageError` (bad_key).

    Keys come from database rows the web reads back; a key that climbs out (``..``), is
    absolute or is empty is refused before any store sees it.
    """
    norm = posixpath.normpath(key) if key else ""
    if not key or key.startswith("/") or norm != key or norm.startswith(".."):
        raise StorageError(f"not an object key: {key!r}", reason="bad_key")
    return key


@dataclass(frozen=True, slots=True)
class Stored:
    """An object's key, size and last change."""

    key: str
    size: int
    modified: datetime


@dataclass(frozen=True, slots=True)
class Opened:
    """An object opened for reading: its size and its bytes as an iterator of chunks."""

    key: str
    size: int
    chunks: Iterator[bytes]


#: What obstore raises: its own tree, and builtin OSError subclasses for some cases
#: (a missing object comes back as FileNotFoundError).
_FAILURES = (BaseError, OSError)


def _classified(exc: Exception, key: str) -> StorageError:
    if isinstance(exc, NotFoundError | FileNotFoundError):
        return StorageError(f"no object {key}", reason="not_found")
    if isinstance(exc, PermissionDeniedError | UnauthenticatedError | PermissionError):
        return StorageError(f"the store refused {key}: {exc}", reason="denied")
    return StorageError(f"the store failed on {key}: {exc}", reason="unavailable")


class Store:
    """An object store holding keys such as ``<request id>/TB-….xlsx``.

    Built once per process by :func:`open_store`; methods are blocking and thread-safe
    (obstore releases the GIL while it waits on the network).
    """

    def __init__(
        self,
        inner: ObjectStore,
        *,
        label: str,
        chunk_bytes: int = 1 << 20,
        local_root: Path | None = None,
    ) -> None:
        self.inner = inner
        #: ``local``, ``s3`` or ``azure``: for logs and the README's tables.
        self.label = label
        self.chunk_bytes = chunk_bytes
        #: The folder of a local store (readers such as DuckDB open its files in place).
        self.local_root = local_root

    def put_file(self, key: str, path: Path) -> None:
        """Upload ``path`` under ``key``, streamed (multipart for large files), atomically:
        a reader sees the old object or the whole new one, never a part."""
        try:
            obstore.put(self.inner, safe_key(key), path)
        except _FAILURES as exc:
            raise _classified(exc, key) from exc

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store a small object (a manifest) under ``key``, atomically."""
        try:
            obstore.put(self.inner, safe_key(key), data)
        except _FAILURES as exc:
            raise _classified(exc, key) from exc

    def open(self, key: str) -> Opened:
        """The object at ``key``: size known now, bytes streamed in ``chunk_bytes`` pieces.

        Raises StorageError(not_found) at once when there is no such object, so a web
        handler can answer 404 before it starts a response.
        """
        try:
            result = obstore.get(self.inner, safe_key(key))
        except _FAILURES as exc:
            raise _classified(exc, key) from exc
        size = int(result.meta["size"])
        return Opened(key, size, self._chunks(result, key))

    def _chunks(self, result: Any, key: str) -> Iterator[bytes]:
        try:
            for chunk in result.stream(min_chunk_size=self.chunk_bytes):
                yield bytes(chunk)
        except _FAILURES as exc:
            raise _classified(exc, key) from exc

    def download(self, key: str, path: Path) -> None:
        """Copy the object at ``key`` to the file ``path``, streamed chunk by chunk."""
        opened = self.open(key)
        with path.open("wb") as handle:
            for chunk in opened.chunks:
                handle.write(chunk)

    def read_bytes(self, key: str) -> bytes:
        """A small object whole (a manifest, a Parquet footer's file): never a report."""
        return b"".join(self.open(key).chunks)

    def list(self, prefix: str = "") -> Iterator[Stored]:
        """Every object under ``prefix`` (a folder-like key ending in ``/``, or "")."""
        try:
            for batch in obstore.list(self.inner, prefix or None):
                for meta in batch:
                    yield Stored(str(meta["path"]), int(meta["size"]), meta["last_modified"])
        except _FAILURES as exc:
            raise _classified(exc, prefix) from exc

    def delete(self, key: str) -> None:
        """Remove ``key``; a missing object is not an error (deleting is idempotent)."""
        try:
            obstore.delete(self.inner, safe_key(key))
        except (NotFoundError, FileNotFoundError):
            return
        except _FAILURES as exc:
            raise _classified(exc, key) from exc


def open_store(cfg: StorageConfig, *, default_root: str = "var/reports") -> Store:
    """The store ``cfg`` describes. Nothing is contacted yet: the first call does."""
    client: ClientConfig = {"allow_http": True} if cfg.allow_http else {}
    prefix = cfg.prefix.strip("/") or None
    inner: ObjectStore
    local_root = None
    if cfg.type == "local":
        root = Path(cfg.root or default_root).resolve()
        local_root = root / prefix if prefix else root
        local_root.mkdir(parents=True, exist_ok=True)
        inner = LocalStore(local_root, mkdir=True)
    elif cfg.type == "s3":
        s3: S3Config = {"region": cfg.region}
        if cfg.endpoint:
            # MinIO and other on-premises servers answer on paths, not virtual hosts.
            s3["endpoint"] = cfg.endpoint
            s3["virtual_hosted_style_request"] = False
        if cfg.access_key_id is not None and cfg.secret_access_key is not None:
            s3["access_key_id"] = cfg.access_key_id.get_secret_value()
            s3["secret_access_key"] = cfg.secret_access_key.get_secret_value()
        inner = S3Store(cfg.bucket, prefix=prefix, config=s3, client_options=client)
    else:
        az: AzureConfig = {"account_name": cfg.account_name}
        if cfg.endpoint:
            az["endpoint"] = cfg.endpoint
        if cfg.account_key is not None:
            az["account_key"] = cfg.account_key.get_secret_value()
        inner = AzureStore(cfg.bucket, prefix=prefix, config=az, client_options=client)
    return Store(inner, label=cfg.type, chunk_bytes=cfg.chunk_bytes, local_root=local_root)
