"""Supervision of the worker's background tasks (workers/supervision.py): restarted with backoff
after a failure, not restarted once stopped."""

from __future__ import annotations

import asyncio

from workers.supervision import Backoff, supervise


def test_backoff_grows_to_its_maximum_and_starts_over_after_a_reset() -> None:
    backoff = Backoff(initial=1.0, maximum=8.0, factor=2.0, jitter=0.0)
    assert [backoff.next_delay() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    backoff.reset()
    assert backoff.next_delay() == 1.0
    jittered = Backoff(initial=1.0, jitter=0.2)
    assert all(0.8 <= jittered.next_delay() / d <= 1.2 for d in (1.0, 2.0, 4.0))


async def test_a_failing_task_is_restarted_until_it_runs() -> None:
    stop = asyncio.Event()
    runs: list[int] = []

    async def flaky() -> None:
        runs.append(len(runs))
        if len(runs) < 4:
            raise ConnectionError("Redis went away")
        stop.set()  # the fourth run works, and the worker stops

    backoff = Backoff(initial=0.01, maximum=0.02, jitter=0.0)
    await asyncio.wait_for(supervise("flaky", flaky, stop=stop, backoff=backoff), 5)
    assert runs == [0, 1, 2, 3]
    assert backoff.failures == 3


async def test_a_task_that_returns_is_restarted_only_when_asked() -> None:
    stop = asyncio.Event()
    runs = 0

    async def ends() -> None:
        nonlocal runs
        runs += 1
        if runs == 3:
            stop.set()

    await asyncio.wait_for(supervise("job", ends, stop=stop, backoff=Backoff(initial=0.01)), 5)
    assert runs == 1  # returned: done
    listener = supervise("listener", ends, stop=stop, backoff=Backoff(initial=0.01), restart_on_return=True)
    await asyncio.wait_for(listener, 5)
    assert runs == 3  # returned (a closed connection): started again until stopped


async def test_a_stop_during_the_backoff_ends_the_supervision_at_once() -> None:
    stop = asyncio.Event()

    async def broken() -> None:
        asyncio.get_running_loop().call_soon(stop.set)
        raise OSError("connection refused")

    # A 60 s backoff, cut short by the stop.
    await asyncio.wait_for(supervise("broken", broken, stop=stop, backoff=Backoff(initial=60.0)), 5)
