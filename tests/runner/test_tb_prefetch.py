"""Step 7's 4814 calls are made on a thread while step 6 runs (runner/tb/prefetch.py).

Through the data source seam: which thread made each call, that no period is asked twice
when the prefetch has its answer, that a failed prefetch leaves step 7 to ask itself,
and that a stopped prefetch releases whoever waits and makes no further call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from core.config import RepsysConfig
from plex.errors import PlexDataSourceError
from runner.tb.prefetch import Prefetch
from tests.runner.conftest import Accounting, Harness
from tests.runner.test_tb_units import FakeDataSource, FakeResult

PCN = 123681
OPEN = ["202405", "202406"]  # the seeded ledger's open periods of this request


class ThreadedFake(FakeDataSource):
    """The seam's fake, noting the thread of each call."""

    def __init__(self, answer: Callable[[Mapping[str, str]], list[dict[str, str]]]) -> None:
        super().__init__(answer)
        self.threads: list[str] = []

    def execute_data_source(self, key: int, params: Mapping[str, str]) -> FakeResult:
        self.threads.append(threading.current_thread().name)
        return super().execute_data_source(key, params)


def _ledger_answer(seeded: Accounting) -> Callable[[Mapping[str, str]], list[dict[str, str]]]:
    def answer(p: Mapping[str, str]) -> list[dict[str, str]]:
        return seeded.ledger.account_activity_summary(
            [int(p["@PCNs"])], int(p["@Period_Start"]), int(p["@Period_End"])
        )

    return answer


def test_step_7_takes_the_answers_the_prefetch_asked_for_while_step_6_ran(
    seeded: Accounting,
    runner_config: Callable[..., RepsysConfig],
    make_runner: Callable[..., Harness],
) -> None:
    fake = ThreadedFake(_ledger_answer(seeded))
    done = make_runner(runner_config(seeded), data_source=lambda: fake).run_tb(202404, 202406)
    assert done.state == "completed", done.error
    assert [c["@Period_Start"] for c in fake.calls] == OPEN  # each period once
    assert fake.threads == ["repsys-tb-prefetch"] * len(OPEN)


def test_a_failed_prefetch_leaves_step_7_to_ask_plex_itself(
    seeded: Accounting,
    runner_config: Callable[..., RepsysConfig],
    make_runner: Callable[..., Harness],
) -> None:
    ledger = _ledger_answer(seeded)

    def answer(p: Mapping[str, str]) -> list[dict[str, str]]:
        if threading.current_thread().name == "repsys-tb-prefetch":
            raise PlexDataSourceError("data source 4814 failed: ErrorNo 5")
        return ledger(p)

    fake = ThreadedFake(answer)
    done = make_runner(runner_config(seeded), data_source=lambda: fake).run_tb(202404, 202406)
    assert done.state == "completed", done.error
    # The prefetch stopped at its first failure; step 7 asked for every period itself.
    assert [c["@Period_Start"] for c in fake.calls] == [OPEN[0], *OPEN]
    assert fake.threads[0] == "repsys-tb-prefetch"
    assert set(fake.threads[1:]) == {threading.current_thread().name}


def test_a_stopped_prefetch_releases_the_waiting_and_calls_no_more() -> None:
    called, release = threading.Event(), threading.Event()

    def answer(p: Mapping[str, str]) -> list[dict[str, str]]:
        called.set()
        release.wait(30)
        return [{"period": p["@Period_Start"]}]

    fake = FakeDataSource(answer)
    prefetch = Prefetch(lambda: fake, 4814, [(PCN, 202405), (PCN, 202406), (PCN, 202407)])
    prefetch.start()
    assert called.wait(10)
    took: list[object] = []
    taker = threading.Thread(target=lambda: took.append(prefetch.take((PCN, 202405))))
    taker.start()
    prefetch.stop()  # the run ended while the first call was under way
    taker.join(10)
    assert took == [None]  # released, and told to ask Plex itself
    release.set()
    prefetch._thread.join(10)
    assert not prefetch._thread.is_alive()
    assert [c["@Period_Start"] for c in fake.calls] == ["202405"]  # no call after the stop
    assert prefetch.take((PCN, 202406)) is None
