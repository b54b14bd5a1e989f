"""Step 7's calls of data source 4814, made on a thread while step 6 runs.

Step 6 (the closed balances over ODBC) keeps this process busy for seconds to minutes;
step 7 then waits on Plex for each open period's answer, which is time the runner only
waits. Both read Plex and nothing of step 6 goes into a 4814 call, so step 7's calls may
start when step 6 starts (``Step.prefetch``, called by the runner for the step after the
one it is about to run). Step 7 still runs in its turn and writes what it writes then;
from the prefetch it takes only *answers*:

- an answer for the PCN and period it asks about (the same parameters), waiting for it
  when the call is under way;
- a failure is never taken over: the thread stops at the first one and step 7 asks Plex
  itself from there on, so its error (or success) is its own and current;
- a period the prefetch did not ask about (the ranges changed in between) step 7 asks
  about itself.

The calls go through the same Plex client factory, rate limit included. The answers are
at most one step older than step 7's own would be; a trial balance's open periods are a
snapshot of a moving ledger either way. When the run ends for any reason, the thread is
told to stop (``StepContext.closers``) and makes no further call; it is a daemon.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from core.logs import get_logger
from runner.tb.source import DataSourceClient, ResultRows

log = get_logger(__name__)

Key = tuple[int, int]  # (pcn, period)


def params_of(pcn: int, period: int) -> dict[str, str]:
    """Data source 4814's inputs for one period of one PCN."""
    return {"@PCNs": str(pcn), "@Period_Start": str(period), "@Period_End": str(period)}


class Prefetch:
    """Answers of data source ``key`` for ``calls``, fetched in order on a thread."""

    def __init__(self, factory: Callable[[], DataSourceClient], key: int, calls: list[Key]) -> None:
        self._factory = factory
        self._key = key
        self._pending = list(calls)
        self._answers: dict[Key, ResultRows] = {}
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="repsys-tb-prefetch", daemon=True)

    def start(self) -> Prefetch:
        self._thread.start()
        return self

    def stop(self) -> None:
        """No call after the current one (the run ended); whoever waits is released."""
        with self._cond:
            self._stopped = True
            self._pending.clear()
            self._cond.notify_all()

    def take(self, key: Key) -> ResultRows | None:
        """The answer for ``key`` (waiting while its call is under way or ahead), once;
        ``None`` when the prefetch will not have it: ask Plex."""
        with self._cond:
            while key not in self._answers and key in self._pending:
                self._cond.wait()
            return self._answers.pop(key, None)

    def _run(self) -> None:
        try:
            client = self._factory()
        except Exception as exc:  # step 7 builds its own client and says what is wrong
            log.info("tb_prefetch_stopped", error=str(exc))
            self.stop()
            return
        try:
            while True:
                with self._cond:
                    if self._stopped or not self._pending:
                        return
                    pcn, period = self._pending[0]
                try:
                    answer = client.execute_data_source(self._key, params_of(pcn, period))
                except Exception as exc:  # step 7 asks again and fails (or not) itself
                    log.info("tb_prefetch_stopped", pcn=pcn, period=period, error=str(exc))
                    return
                with self._cond:
                    if (pcn, period) in self._pending:
                        self._pending.remove((pcn, period))
                        self._answers[(pcn, period)] = answer
                    self._cond.notify_all()
        finally:
            self.stop()
            client.close()
