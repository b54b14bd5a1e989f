"""Errors of the rules engine, classified where they happen.

Tree::

    RulesError (core.errors.RepsysError)
    ├── RulesTransientError (core.errors.TransientError)   retry: Redis or the database away
    │   ├── LeaseLostError            a partition's lease moved to another worker: drop its state
    │   └── RedisRegressedError       Redis lost writes (a failover): start over from checkpoints
    └── RulesRejectedError (core.errors.RejectedError)     do not retry
        └── CaseError            a golden case folder or backtest input that cannot be read

A stream entry that does not decode is not an exception of this package: it is a
``core.model.DecodeError``, dead-lettered with its reason. Bad configuration raises
``core.errors.ConfigError`` (exit 2).
"""

from __future__ import annotations

from core.errors import RejectedError, RepsysError, TransientError


class RulesError(RepsysError):
    """Root of every error the rules package raises on purpose."""

    reason = "rules"


class RulesTransientError(RulesError, TransientError):
    """Redis or the database failed in a way that may go away: retry with backoff."""

    reason = "transient"


class LeaseLostError(RulesTransientError):
    """Another worker holds the partition now; its state here is stale and dropped."""

    reason = "lease_lost"


class RedisRegressedError(RulesTransientError):
    """Redis delivered an entry again that it had delivered before: it lost writes (a
    failover before they reached the replica), so the state held here may be ahead of
    the checkpoint there. Handled like a lost connection."""

    reason = "redis_regressed"


class RulesRejectedError(RulesError, RejectedError):
    """Input that retrying will not fix."""

    reason = "rejected"


class CaseError(RulesRejectedError):
    """A golden case or backtest input that cannot be read; the message names the line."""

    reason = "bad_case"
