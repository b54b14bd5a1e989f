"""Publish a finished request's files to the object store, so any web replica serves them.

Why: the runner writes a report into its own working folder (``runner.output_dir``, a
scratch disk in a pod); the web process runs elsewhere. After the report step, every file
of the request's folder is uploaded (streamed) under ``<request id>/<file name>`` with a
``<request id>/manifest.json`` beside it (the metadata: kind, name, files, sizes,
SHA-256), and the request's ``result_path`` becomes the object key of the main file.

With the embedded default (``storage.type: local`` and no ``root``) the store *is* the
output folder: nothing is copied and ``result_path`` stays the file's path, as before.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from core.config import RepsysConfig
from core.logs import get_logger
from core.storage import StorageError, Store, open_store
from runner.errors import StepFailed

log = get_logger(__name__)
MANIFEST = "manifest.json"


def store_is_output_dir(cfg: RepsysConfig) -> bool:
    """True when the store is the runner's own output folder (the embedded default)."""
    storage = cfg.storage
    if storage.type != "local" or storage.prefix:
        return False
    root = Path(storage.root or cfg.runner.output_dir).resolve()
    return root == Path(cfg.runner.output_dir).resolve()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest(request_id: str, kind: str, name: str, folder: Path, main: Path) -> bytes:
    """The request's metadata object: what the web lists and checks before streaming."""
    files = [
        {"name": p.name, "size": p.stat().st_size, "sha256": _sha256(p)}
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != MANIFEST
    ]
    doc = {"v": 1, "request": request_id, "kind": kind, "name": name, "main": main.name}
    doc["files"] = files
    return json.dumps(doc, indent=1, sort_keys=True).encode()


def publish(
    cfg: RepsysConfig,
    *,
    request_id: str,
    kind: str,
    name: str,
    folder: Path,
    main: Path,
    store: Store | None = None,
) -> str:
    """Upload ``folder``'s files and manifest; return what ``result_path`` records.

    The files go first and the manifest last, so a manifest names only stored files. A
    re-run uploads again under the same keys (puts are atomic overwrites).
    """
    if store is None and store_is_output_dir(cfg):
        return str(main)
    try:
        target = store or open_store(cfg.storage, default_root=cfg.runner.output_dir)
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.name != MANIFEST:
                target.put_file(f"{request_id}/{path.name}", path)
        target.put_bytes(f"{request_id}/{MANIFEST}", manifest(request_id, kind, name, folder, main))
    except StorageError as exc:
        raise StepFailed(f"storing the report failed: {exc}", reason=exc.reason) from exc
    log.info("report_published", request=request_id, store=target.label, main=main.name)
    return f"{request_id}/{main.name}"
