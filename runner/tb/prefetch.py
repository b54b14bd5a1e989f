"""Reading ahead of a load: a source's batches produced on a helper thread.

Step 6 reads about a million closed-period balances over ODBC and loads them into the
warehouse. Done one after the other, the step takes the read's time plus the load's;
the ODBC driver and the database driver both spend most of their time in C with the GIL
released, so the read of the next batches can run while the current one is inserted.
:func:`prefetched` does that with a bounded queue (at most ``depth`` batches in memory),
hands the producer's exception to the consumer, and stops the producer when the consumer
gives up (a failed insert, a lost lease), joining it before the source is closed: an
ODBC connection must not be closed under a thread that is still using it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

#: How often a producer blocked on a full queue looks whether the consumer gave up.
_POLL_S = 0.1


@dataclass(frozen=True)
class _Failed:
    error: BaseException


class _Done:
    pass


_DONE = _Done()


@dataclass
class _Producer(Generic[T]):
    source: Iterator[T]
    out: queue.Queue[T | _Failed | _Done]
    stop: threading.Event

    def run(self) -> None:
        try:
            for item in self.source:
                if not self._put(item):
                    return
            self._put(_DONE)
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put(_Failed(exc))
        finally:
            # A generator left suspended (the consumer gave up) closes its cursor here,
            # on the thread that used it, not whenever it is collected.
            close = getattr(self.source, "close", None)
            if close is not None:
                close()

    def _put(self, item: T | _Failed | _Done) -> bool:
        while not self.stop.is_set():
            try:
                self.out.put(item, timeout=_POLL_S)
            except queue.Full:
                continue
            return True
        return False


@contextmanager
def prefetched(source: Iterator[T], *, depth: int = 4) -> Iterator[Iterator[T]]:
    """Iterate ``source`` on a helper thread, up to ``depth`` items ahead of the caller.

    The caller iterates what this yields; an exception of ``source`` is raised there.
    On leaving the block (normally or not) the helper is stopped and joined.
    """
    out: queue.Queue[T | _Failed | _Done] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    producer = _Producer(source, out, stop)
    thread = threading.Thread(target=producer.run, name="tb-prefetch", daemon=True)
    thread.start()

    def consume() -> Iterator[T]:
        while True:
            item = out.get()
            if isinstance(item, _Done):
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item

    try:
        yield consume()
    finally:
        stop.set()
        thread.join()
