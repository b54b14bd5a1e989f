"""One small object-store interface for report files and the signal history.

Why: the runner and the web run in different pods with different disks; a report written
by one must be served by the other. Both go through :class:`Store`, built from the
``storage:`` section: a local folder by default, S3-compatible storage (MinIO) or Azure
Blob in production. Under it is one library, ``obstore`` (Apache Arrow's Rust
``object_store``), chosen in ``docs/decisions/0340-object-storage-obstore.md``.

Everything is streamed: ``put_file`` uploads a file in parts (multipart above one part),
``open`` returns the object's size and an iterator of chunks, so neither side ever holds a
whole report in memory.

Errors (``StorageError`` derives from :class:`core.errors.RepsysError`)::

    StorageError               reason: not_found, denied, bad_key, unavailable
"""

from core.storage.store import Opened, StorageError, Store, Stored, open_store, safe_key

__all__ = ["Opened", "StorageError", "Store", "Stored", "open_store", "safe_key"]
