"""Process lifecycle: graceful stop on SIGTERM/SIGINT, and retry backoff.

A long-running process builds one :class:`Stopper`, hands it to its loops, and awaits
:func:`run_until_stopped`. The first SIGTERM or SIGINT asks every loop to finish its
current batch; after ``grace_s`` the process exits regardless, so Kubernetes and Ctrl-C
never wait on a stuck network call.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


class Stopper:
    """A stop flag usable from asyncio code and from threads."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._async_events: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self._lock = threading.Lock()

    @property
    def stopped(self) -> bool:
        return self._event.is_set()

    def stop(self) -> None:
        """Ask every loop watching this stopper to finish. Safe from any thread."""
        self._event.set()
        with self._lock:
            waiters = list(self._async_events)
        for loop, ev in waiters:
            with contextlib.suppress(RuntimeError):  # the loop may already be closed
                loop.call_soon_threadsafe(ev.set)

    def wait(self, timeout: float | None = None) -> bool:
        """Block a thread until stopped or ``timeout``; True when stopped."""
        return self._event.wait(timeout)

    async def wait_async(self, seconds: float | None = None) -> bool:
        """Sleep until stopped or ``seconds`` have passed; True when stopped."""
        if self.stopped:
            return True
        loop = asyncio.get_running_loop()
        ev = asyncio.Event()
        with self._lock:
            self._async_events.append((loop, ev))
        try:
            if self.stopped:
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ev.wait(), seconds)
            return self.stopped
        finally:
            with self._lock:
                self._async_events.remove((loop, ev))


def install_signal_handlers(
    stopper: Stopper, loop: asyncio.AbstractEventLoop | None = None
) -> None:
    """SIGTERM and SIGINT call ``stopper.stop()``; a second signal exits at once."""

    def handler(signum: int, _frame: Any = None) -> None:
        if stopper.stopped:
            raise SystemExit(128 + signum)
        stopper.stop()

    if loop is not None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, handler, sig)
    else:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, handler)


async def run_until_stopped(
    stopper: Stopper, tasks: list[Awaitable[Any]], *, grace_s: float = 10.0
) -> None:
    """Run ``tasks`` until one fails or the stopper is set; then give them ``grace_s``.

    A task that raises stops the others (the process then exits non-zero, and its
    supervisor, systemd or Kubernetes, restarts it).
    """
    running = [asyncio.ensure_future(t) for t in tasks]
    stop_task = asyncio.ensure_future(stopper.wait_async())
    try:
        done, _ = await asyncio.wait([*running, stop_task], return_when=asyncio.FIRST_COMPLETED)
        failed = [t for t in done if t is not stop_task and t.exception() is not None]
        stopper.stop()
        _, pending = await asyncio.wait(running, timeout=grace_s)
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1.0)
        if failed:
            raise failed[0].exception()  # type: ignore[misc]  # checked not None above
    finally:
        stop_task.cancel()


@dataclass
class Backoff:
    """Exponential backoff with full jitter (AWS architecture blog), capped.

    ``next()`` returns the delay before the next attempt and advances; ``reset()`` after a
    success. ``rng`` is injectable so tests get the same delays every run.
    """

    base_s: float = 0.5
    cap_s: float = 30.0
    factor: float = 2.0
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def peek_ceiling(self) -> float:
        return float(min(self.cap_s, self.base_s * (self.factor**self.attempt)))

    def next(self) -> float:
        ceiling = self.peek_ceiling()
        self.attempt += 1
        return self.rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


def backoff_delay(attempt: int, *, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Delay before retry number ``attempt`` (0-based): jittered, capped exponential."""
    ceiling = min(cap_s, base_s * (2.0**attempt))
    return rng.uniform(ceiling / 2, ceiling)


async def retry_forever(
    op: Callable[[], Awaitable[T]],
    stopper: Stopper,
    *,
    backoff: Backoff,
    on_error: Callable[[BaseException, float], None],
) -> T | None:
    """Call ``op`` until it succeeds or the stopper is set (then ``None``)."""
    while not stopper.stopped:
        try:
            result = await op()
        except Exception as exc:
            delay = backoff.next()
            on_error(exc, delay)
            await stopper.wait_async(delay)
            continue
        backoff.reset()
        return result
    return None
