"""Warehouse tables of the reports (trial balance and others), owned by ``runner/``.

Loads into these tables are delete-then-insert scoped by PCN (and period) and fenced
(see :class:`core.db.schema.Fence`), so a rerun is idempotent and a stale runner cannot
write over a newer run.
"""

from __future__ import annotations

from core.db.schema import Base

__all__ = ["Base"]
