"""How a worker starts a burst of requests: a few per loop turn while it has CPU to spare, so replies that
are due are served between starts; everything at once when it is saturated."""

from __future__ import annotations

import asyncio
import time

import pytest
import uvloop

from gateway.pacing import PER_TURN, WINDOW, pacer_for


def burst(loop_factory, n: int, busy_first: float = 0.0) -> list[str]:
    """`n` requests arrive in one loop turn; each one's start asks for a reply that is ready one turn
    later (what a Redis or upstream answer is). Returns the order in which starts and replies ran."""
    log: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        pacer = pacer_for(loop)
        if busy_first:
            end = time.thread_time() + busy_first
            while time.thread_time() < end:  # a saturated worker: its loop thread never rests
                pass
        done = loop.create_future()

        def begin(i: int) -> None:
            log.append(f"start {i}")

            def reply() -> None:
                log.append(f"reply {i}")
                if sum(e.startswith("reply") for e in log) == n:
                    done.set_result(None)

            loop.call_soon(reply)

        for i in range(n):
            pacer.start(lambda i=i: begin(i))
        await asyncio.wait_for(done, 5)

    runner = asyncio.Runner(loop_factory=loop_factory)
    try:
        runner.run(main())
    finally:
        runner.close()
    return log


@pytest.mark.parametrize("loop_factory", [uvloop.new_event_loop, asyncio.new_event_loop], ids=["uvloop", "asyncio"])
def test_a_burst_is_started_a_few_per_turn_with_replies_served_between(loop_factory) -> None:
    log = burst(loop_factory, 20)
    assert sorted(log) == sorted([f"start {i}" for i in range(20)] + [f"reply {i}" for i in range(20)])
    assert [e for e in log if e.startswith("start")] == [f"start {i}" for i in range(20)]  # in arrival order
    # the first request's reply runs long before the last request starts: it did not wait for the burst
    assert log.index("reply 0") < log.index(f"start {2 * PER_TURN + 1}")


def test_a_saturated_worker_starts_the_whole_burst_at_once() -> None:
    log = burst(uvloop.new_event_loop, 20, busy_first=WINDOW * 2)
    assert log[:20] == [f"start {i}" for i in range(20)]
    assert sorted(log[20:]) == sorted(f"reply {i}" for i in range(20))
