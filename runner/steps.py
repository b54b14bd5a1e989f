"""The step contract: what a pipeline step is, what it gets, and the external-command step.

A step is a registered Python object (``runner/registry.py``) or an external program
configured under ``runner.commands`` (the design's "ETL scripts"). Both satisfy
:class:`Step`, and the pipeline treats them alike.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, cast, runtime_checkable

from sqlalchemy.orm import Session, sessionmaker

from core.config import RepsysConfig
from core.config.runner import INHERITED_ENV, CommandConfig
from core.db.schema import ReportRequestRow, ReportRun, utcnow
from core.logs import get_logger
from runner import history
from runner.errors import CommandFailed, LeaseLost
from runner.fence import fenced
from runner.publish import publish

if TYPE_CHECKING:
    from core.redis import RedisCommands
    from core.sources import SignalArchive
    from runner.notify import Mailer, TeamsWebhook

log = get_logger(__name__)


@dataclass(frozen=True)
class StepResult:
    """What a step reports: rows written (or read), and a short text for the history."""

    rows: int | None = None
    output: str | None = None


class LeaseCheck(Protocol):
    """The run's lease, as a step sees it."""

    def check(self) -> None:
        """Raise :class:`~runner.errors.LeaseLost` when the mutex lease is gone."""


class Step(Protocol):
    """One step of a report pipeline.

    Lifecycle: built once per runner process (from the registry or a command); ``run`` is
    called once per pipeline run, on the runner's thread, with that run's context. A step
    returns a :class:`StepResult` or raises:

    * :class:`~runner.errors.StepFailed` (or any unexpected exception, which is a bug):
      the request fails, naming the step and the error; later steps do not run.
    * :class:`~runner.errors.LeaseLost` / :class:`~runner.errors.FenceRejected`: another
      run has taken over; this run stops and writes nothing more.

    A step must be idempotent, because a crash makes it run again for the same request:
    loads are delete-then-insert by scope inside :meth:`StepContext.fenced`.

    A step that mostly waits on a source may also be :class:`Prefetching`.
    """

    name: str

    def run(self, ctx: StepContext) -> StepResult:
        """Do the step's work for ``ctx.request``."""


@runtime_checkable
class Prefetching(Step, Protocol):
    """A step that can start reading before its turn.

    Lifecycle: the runner calls ``prefetch(ctx)`` as the step before this one starts, so
    this step can begin *reading* its inputs (from Plex, never writing) while that one
    runs; it registers how to stop in ``ctx.closers`` and leaves what it started in a
    :class:`Handoff` for its own ``run``. A failed prefetch is logged and changes nothing:
    the step reads what it lacks when it runs.
    """

    def prefetch(self, ctx: StepContext) -> None:
        """Start reading this step's inputs for ``ctx.request`` (reads only)."""


T = TypeVar("T")


class Handoff(Generic[T]):
    """A typed place where a step leaves data for a later step of the same run.

    The module that owns the data defines one ``Handoff`` (a name and a factory of its
    value, usually a dataclass); steps reach the run's value with
    :meth:`StepContext.handoff`. The value lives as long as the run's context, in this
    process only: a step must work without it (a resumed run starts with a fresh one).
    """

    __slots__ = ("factory", "name")

    def __init__(self, name: str, factory: Callable[[], T]) -> None:
        self.name = name
        self.factory = factory

    def __repr__(self) -> str:
        return f"Handoff({self.name!r})"


@dataclass
class Services:
    """What every step may reach outside the database, injected so tests can pass their own.

    ``mailer`` and ``teams`` are ``None`` when not configured; ``redis`` is the runner's
    client (``None`` in tests that need none); ``clock`` is the time of "now". A source
    only some steps read (the trial balance's ODBC and Plex) is given to those steps'
    constructors instead (``runner/registry.py``).
    """

    mailer: Mailer | None = None
    teams: TeamsWebhook | None = None
    redis: RedisCommands | None = None
    clock: Callable[[], datetime] = utcnow
    #: The signal history, where a report's window is older than the capped streams.
    archive: SignalArchive | None = None


@dataclass
class StepContext:
    """Everything a step needs for one run of one request."""

    request: ReportRequestRow
    run: ReportRun
    cfg: RepsysConfig
    sessions: sessionmaker[Session]
    services: Services
    lease: LeaseCheck
    #: The run's hand-offs between steps, by :class:`Handoff` (see :meth:`handoff`).
    handoffs: dict[Handoff[Any], Any] = field(default_factory=dict)
    #: Called when the run ends, however it ends (a prefetch's stop).
    closers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return self.request.kind

    def handoff(self, slot: Handoff[T]) -> T:
        """This run's value of ``slot``, made by its factory on first use."""
        if slot in self.handoffs:
            return cast("T", self.handoffs[slot])
        value = self.handoffs[slot] = slot.factory()
        return value

    def close(self) -> None:
        """Run the closers (each once; one failing does not keep the others from running)."""
        while self.closers:
            closer = self.closers.pop()
            try:
                closer()
            except Exception:  # a closer's bug must not hide the run's outcome
                log.exception("report_closer_failed")

    @property
    def fence(self) -> int:
        return self.run.fence

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.request.params or {})

    def fenced(self) -> AbstractContextManager[Session]:
        """A transaction for a load: fails with FenceRejected if a newer run wrote."""
        return fenced(self.sessions, self.kind, self.fence)

    def output_dir(self) -> Path:
        """The request's folder under ``runner.output_dir`` (created)."""
        path = Path(self.cfg.runner.output_dir) / self.request.id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def set_result(self, path: Path) -> None:
        """Publish the request's files to the object store (``runner.publish``) and record
        the report file the requester downloads. Call it after every file is written."""
        stored = publish(
            self.cfg,
            request_id=self.request.id,
            kind=self.kind,
            name=self.request.name,
            folder=path.parent,
            main=path,
        )
        history.set_result_path(self.sessions, self.run, stored)
        self.request.result_path = stored


def command_env(
    ctx: StepContext, extra: dict[str, str], inherit: Sequence[str] = INHERITED_ENV
) -> dict[str, str]:
    """The environment of an external step: the named part of ours, the command's own, and
    the request's. Never all of ours: it holds the runner's credentials."""
    env = {name: os.environ[name] for name in inherit if name in os.environ}
    env.update(extra)
    env.update(
        REPSYS_REQUEST_ID=ctx.request.id,
        REPSYS_KIND=ctx.kind,
        REPSYS_FENCE=str(ctx.fence),
        REPSYS_RUN_ID=str(ctx.run.id),
        REPSYS_PARAMS=json.dumps(ctx.params, sort_keys=True),
        REPSYS_OUTPUT_DIR=str(ctx.output_dir()),
    )
    for name, value in ctx.params.items():
        text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
        env[f"REPSYS_PARAM_{name.upper()}"] = text
    return env


def _rows_from(output: str) -> int | None:
    # A command may report its row count on a line "REPSYS_ROWS=<n>".
    for line in reversed(output.splitlines()):
        if line.startswith("REPSYS_ROWS="):
            value = line.partition("=")[2].strip()
            return int(value) if value.isdigit() else None
    return None


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


class CommandStep:
    """An external program as a step: argv, environment, timeout, captured output.

    The program runs in a process group of its own; when the timeout passes or the
    run's lease is lost, the whole group is killed.
    """

    #: How often the step looks at the clock and the lease while the program runs.
    poll_s = 0.25

    def __init__(self, name: str, cfg: CommandConfig) -> None:
        self.name = name
        self.cfg = cfg

    def run(self, ctx: StepContext) -> StepResult:
        proc = subprocess.Popen(
            self.cfg.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=command_env(ctx, self.cfg.env, self.cfg.inherit_env),
            cwd=self.cfg.cwd,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.cfg.timeout_s
        while True:
            try:
                output, _ = proc.communicate(timeout=self.poll_s)
                break
            except subprocess.TimeoutExpired:
                pass
            try:
                ctx.lease.check()
            except LeaseLost:
                _kill_group(proc)
                proc.communicate()
                raise
            if time.monotonic() >= deadline:
                _kill_group(proc)
                tail = (proc.communicate()[0] or "")[-1000:]
                raise CommandFailed(
                    f"command {self.name!r} timed out after {self.cfg.timeout_s:g} s: {tail}"
                )
        output = output or ""
        if proc.returncode != 0:
            raise CommandFailed(
                f"command {self.name!r} exited with status {proc.returncode}: {output[-1000:]}"
            )
        return StepResult(rows=_rows_from(output), output=output[-4000:])
