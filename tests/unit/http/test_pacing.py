"""How a worker starts a burst of requests: a few per loop turn while it keeps up, so replies that are
due are served between starts; everything at once when its loop thread wants a whole core."""

from __future__ import annotations

import asyncio
import time

import pytest
import uvloop

from gateway.http.pacing import PER_TURN, WINDOW, pacer_for


async def burst_order(loop: asyncio.AbstractEventLoop, pacer, n: int) -> list[str]:
    """`n` requests arrive in one loop turn; each one's start asks for a reply that is ready one turn
    later (what a Redis or upstream answer is). The order in which starts and replies ran."""
    log: list[str] = []
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
    return log


def burst(loop_factory, n: int) -> list[str]:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        return await burst_order(loop, pacer_for(loop), n)

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main())


@pytest.mark.parametrize("loop_factory", [uvloop.new_event_loop, asyncio.new_event_loop], ids=["uvloop", "asyncio"])
def test_a_burst_is_started_a_few_per_turn_with_replies_served_between(loop_factory) -> None:
    log = burst(loop_factory, 20)
    assert sorted(log) == sorted([f"start {i}" for i in range(20)] + [f"reply {i}" for i in range(20)])
    assert [e for e in log if e.startswith("start")] == [f"start {i}" for i in range(20)]  # in arrival order
    # the first request's reply runs long before the last request starts: it did not wait for the burst
    assert log.index("reply 0") < log.index(f"start {2 * PER_TURN + 1}")


def test_a_worker_that_cannot_keep_up_starts_everything_at_once_and_paces_again_when_it_can() -> None:
    """A loop thread that demanded a whole core over the last WINDOW starts a burst at once; once it has
    rested for a WINDOW it paces again."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        pacer = pacer_for(loop)
        end = time.thread_time() + 2 * WINDOW
        while time.thread_time() < end:  # a saturated worker: its loop thread never rests
            pass
        log = await burst_order(loop, pacer, 20)
        assert log[:20] == [f"start {i}" for i in range(20)]

        await asyncio.sleep(2 * WINDOW)
        assert (await burst_order(loop, pacer, 20)).index("reply 0") < 2 * PER_TURN + 2, "paced again"

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
