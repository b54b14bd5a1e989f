"""Errors of the report runner, classified where they happen.

Tree::

    RunnerError                      root of everything the runner raises on purpose
    ├── BadRequest (rejected)        a request refused when it is made; str() is the form's
    │                                message ("start period 202405 is after end period 202401")
    ├── QueueUnavailable (transient) Redis refused the request; nothing was queued
    ├── LeaseLost (transient)        the mutex lease expired or was taken while a run held it;
    │                                the run stops and leaves its request to be reclaimed
    ├── FenceRejected (transient)    a load found a newer fencing number in the database: a
    │                                newer run owns the data; same handling as LeaseLost
    ├── StepFailed (rejected)        a step failed; the request is Failed naming the step
    │   ├── CommandFailed            an external step exited non-zero or timed out
    │   ├── Unbalanced               a trial balance whose debits and credits differ
    │   └── SourceError              ODBC or data source 4814 failed (reason odbc / plex)
    └── NotifyError                  SMTP or Teams refused a message (transient or rejected)

Only :class:`StepFailed` fails a request. :class:`LeaseLost` and :class:`FenceRejected`
mean another runner has taken over; the stale runner writes nothing more.
"""

from __future__ import annotations

from core.errors import RejectedError, RepsysError, TransientError


class RunnerError(RepsysError):
    """Root of the runner's errors."""

    reason = "runner"


class BadRequest(RunnerError, RejectedError):  # noqa: N818 - the name the web app imports
    """A report request that cannot be queued. ``str()`` is shown to the requester as is."""

    reason = "bad_request"


class QueueUnavailable(RunnerError, TransientError):  # noqa: N818 - reads as a state
    """The queue (Redis) could not take the request; the caller may retry."""

    reason = "queue_unavailable"


class LeaseLost(RunnerError, TransientError):  # noqa: N818 - reads as an event
    """The mutex lease is no longer ours: stop before writing anything else."""

    reason = "lease_lost"


class FenceRejected(RunnerError, TransientError):  # noqa: N818 - reads as an event
    """A load was refused because a newer run has written (fencing number too old)."""

    reason = "fence_rejected"

    def __init__(self, kind: str, mine: int, current: int) -> None:
        super().__init__(
            f"fence {mine} of kind {kind!r} is older than the database's {current}: "
            "a newer run owns the data; nothing was written"
        )
        self.kind = kind
        self.mine = mine
        self.current = current


class StepFailed(RunnerError, RejectedError):  # noqa: N818 - reads as an event
    """A step could not do its work; the request fails with this message."""

    reason = "step_failed"


class CommandFailed(StepFailed):
    """An external step exited with a non-zero status or ran past its timeout."""

    reason = "command_failed"


class Unbalanced(StepFailed):
    """Debits and credits of a trial balance differ."""

    reason = "unbalanced"


class SourceError(StepFailed):
    """Reading Plex failed: ``reason`` is ``odbc`` or ``plex``."""

    reason = "source"


class NotifyError(RunnerError):
    """A notification could not be delivered. ``transient`` says whether to retry."""

    reason = "notify"

    def __init__(self, message: str, *, reason: str = "notify", transient: bool = True) -> None:
        super().__init__(message, reason=reason)
        self.transient = transient
