"""Stopper, graceful run loop and backoff."""

from __future__ import annotations

import asyncio
import random
import threading

import pytest

from core.lifecycle import Backoff, Stopper, backoff_delay, retry_forever, run_until_stopped


def test_backoff_grows_with_jitter_and_caps() -> None:
    b = Backoff(base_s=1.0, cap_s=8.0, rng=random.Random(7))
    delays = [b.next() for _ in range(6)]
    ceilings = [1, 2, 4, 8, 8, 8]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    b.reset()
    assert b.next() <= 1.0


def test_backoff_delay_function_matches() -> None:
    assert 15.0 <= backoff_delay(10, base_s=0.5, cap_s=30, rng=random.Random(1)) <= 30.0


def test_stopper_wakes_async_waiters_from_another_thread() -> None:
    stopper = Stopper()

    async def main() -> bool:
        threading.Timer(0.05, stopper.stop).start()
        return await stopper.wait_async(30)

    assert asyncio.run(main()) is True
    assert stopper.wait(0) is True


def test_wait_async_times_out_when_not_stopped() -> None:
    assert asyncio.run(Stopper().wait_async(0.01)) is False


def test_run_until_stopped_gives_tasks_their_grace() -> None:
    stopper = Stopper()
    finished: list[str] = []

    async def worker() -> None:
        while not stopper.stopped:
            await stopper.wait_async(1)
        finished.append("clean")

    async def main() -> None:
        asyncio.get_running_loop().call_later(0.05, stopper.stop)
        await run_until_stopped(stopper, [worker()], grace_s=5)

    asyncio.run(main())
    assert finished == ["clean"]


def test_run_until_stopped_propagates_a_crash() -> None:
    stopper = Stopper()

    async def crash() -> None:
        raise RuntimeError("boom")

    async def idle() -> None:
        await stopper.wait_async()

    with pytest.raises(RuntimeError, match="boom"):
        asyncio.run(run_until_stopped(stopper, [crash(), idle()], grace_s=1))
    assert stopper.stopped


def test_retry_forever_retries_until_success() -> None:
    stopper = Stopper()
    calls: list[int] = []
    errors: list[str] = []

    async def op() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("down")
        return "up"

    result = asyncio.run(
        retry_forever(
            op,
            stopper,
            backoff=Backoff(base_s=0.001, cap_s=0.002),
            on_error=lambda e, d: errors.append(str(e)),
        )
    )
    assert result == "up"
    assert errors == ["down", "down"]
