"""The simulated accounting data's one error: a question the ledger cannot answer."""

from __future__ import annotations


class LedgerError(ValueError):
    """A question the ledger cannot answer (a malformed period, a reversed range)."""
