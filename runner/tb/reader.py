"""Step 6's ODBC read in a child process, so it overlaps the warehouse load on another core.

Reading a million closed-period balances through pyodbc and loading them into the
warehouse each take seconds of CPU in the drivers' C code. A helper *thread* was measured
slower than reading and loading in turn (both drivers release and retake the GIL per row,
so the two threads hand it back and forth); a child *process* has a GIL of its own.

The child is forked (nothing is pickled on the way in: it calls the step's own source
factory), reads the batches and writes each, pickled, to a pipe (at most :data:`PIPE_BYTES` in
flight: the child waits when the load is slower, so memory stays bounded). The parent
takes them one at a time. A failure in the child comes back as the parent's
:class:`~runner.errors.SourceError` with the child's message; a child that dies without a
word fails the read with its exit status. The child never outlives the read: it is a
daemon, terminated (then killed) when the parent stops reading for any reason, and it
is killed when the parent process dies (``PR_SET_PDEATHSIG`` on Linux; elsewhere its next
write fails on the pipe nobody reads).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import multiprocessing
import os
import pickle
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from typing import Any

from runner.errors import SourceError
from runner.tb.source import AccountingSource, BalanceBatch

#: Bytes the pipe from the child holds (Linux lets a process raise it to 1 MiB): about
#: two batches, so the child reads the next one while this process loads the last one.
PIPE_BYTES = 1 << 20
#: How long the parent waits on the pipe before it looks at whether the child lives.
POLL_S = 1.0
#: How long a terminated child gets before it is killed.
STOP_S = 5.0

_PR_SET_PDEATHSIG = 1
_F_SETPIPE_SZ = 1031


def _die_with_parent() -> None:
    # Linux only: the kernel sends SIGKILL to the child when the parent dies, even while
    # the child is blocked inside the ODBC driver.
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _widen(conn: Connection) -> None:
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(conn.fileno(), getattr(fcntl, "F_SETPIPE_SZ", _F_SETPIPE_SZ), PIPE_BYTES)


def _child(
    factory: Callable[[], AccountingSource],
    scope: tuple[int, int, int],
    pipe: tuple[Connection, Connection],
    parent: int,
) -> None:
    _die_with_parent()
    reader, out = pipe
    reader.close()  # only the parent reads: its death breaks the pipe
    if os.getppid() != parent:  # died before the death signal was armed
        os._exit(1)

    # Pickled here, on the reading thread, and written straight to the pipe: a
    # multiprocessing.Queue pickles on a feeder thread, which fought the ODBC driver for
    # the GIL (measured slower than no child at all).
    def send(message: tuple[Any, ...]) -> None:
        out.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))

    try:
        try:
            source = factory()
            try:
                for batch in source.balances(*scope):
                    send(("batch", tuple(batch)))
            finally:
                source.close()
        except Exception as exc:  # every failure goes back to the step, which fails with it
            reason = getattr(exc, "reason", "odbc")
            text = str(exc) if isinstance(exc, SourceError) else f"{type(exc).__name__}: {exc}"
            send(("error", text, reason))
        else:
            send(("done",))
    except (BrokenPipeError, ConnectionResetError):
        os._exit(1)  # the parent stopped reading: nobody wants the rest


def _receive(conn: Connection, proc: Any) -> Iterator[BalanceBatch]:
    while True:
        if not conn.poll(POLL_S):
            if proc.is_alive():
                continue
            if not conn.poll(0):  # what the child wrote before it ended is still read
                raise SourceError(
                    f"the ODBC reader process ended with status {proc.exitcode} "
                    "before the read was complete",
                    reason="odbc",
                )
        try:
            message = pickle.loads(conn.recv_bytes())  # noqa: S301 - our own child's batches
        except EOFError:
            proc.join(STOP_S)
            raise SourceError(
                f"the ODBC reader process ended with status {proc.exitcode} "
                "before the read was complete",
                reason="odbc",
            ) from None
        if message[0] == "done":
            return
        if message[0] == "error":
            raise SourceError(message[1], reason=message[2])
        yield BalanceBatch(*message[1])


@contextmanager
def balances_in_child(
    factory: Callable[[], AccountingSource], pcn: int, start: int, end: int
) -> Iterator[Iterator[BalanceBatch]]:
    """The closed-period balances of ``start..end`` as ``factory``'s source reads them,
    read in a child process; the child is gone when the ``with`` block ends."""
    mp = multiprocessing.get_context("fork")
    reader, writer = mp.Pipe(duplex=False)
    _widen(writer)
    proc = mp.Process(
        target=_child,
        args=(factory, (pcn, start, end), (reader, writer), os.getpid()),
        name=f"repsys-tb-odbc-{pcn}",
        daemon=True,
    )
    proc.start()
    writer.close()  # only the child writes: its end closes the pipe
    try:
        yield _receive(reader, proc)
    finally:
        reader.close()  # a child blocked on a full pipe gets a broken pipe
        if proc.is_alive():
            proc.join(POLL_S)
        if proc.is_alive():
            proc.terminate()
            proc.join(STOP_S)
        if proc.is_alive():
            proc.kill()
        proc.join()
        proc.close()
