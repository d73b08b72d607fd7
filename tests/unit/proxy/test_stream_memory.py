"""A long stream passes through in memory that does not grow with its length (issue 5)."""

from __future__ import annotations

import asyncio
import multiprocessing
import tracemalloc

import orjson

from gateway.proxy.endpoints import ENDPOINTS
from gateway.proxy.routing import Router
from tests.support.snapshot_grid import CFG, PIPELINE


class SyntheticUpstream:
    """An OpenAI-compatible stream of `n` content chunks, produced on the fly in 1 KiB reads."""

    def __init__(self, n: int) -> None:
        self.n = n

    async def chunks(self):
        chunk = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
                 "choices": [{"index": 0, "delta": {"content": "слово "}, "finish_reason": None}]}
        event = b"data: " + orjson.dumps(chunk) + b"\n\n"
        buf = b""
        for _ in range(self.n):
            buf += event
            if len(buf) >= 1024:
                yield buf
                buf = b""
        usage = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
                 "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": self.n, "total_tokens": self.n + 5}}
        yield buf + b"data: " + orjson.dumps(usage) + b"\n\ndata: [DONE]\n\n"

    def close(self) -> None:
        pass


def _peak_while_streaming(n: int, model: str = "gpt-4o-mini", endpoint: str = "chat") -> tuple[int, int]:
    decision = Router(CFG).resolve(model, ENDPOINTS[endpoint])
    provider, plan = decision.candidates[0]
    body = {"model": model, "stream": True}
    body |= {"prompt": "hi"} if endpoint == "completion" else {"messages": [{"role": "user", "content": "hi"}]}
    variables = PIPELINE.variables(decision, "req_mem")
    op = CFG.wire_of(provider).operations[plan.operation]
    bodies, _ = PIPELINE.prepare(plan, op, body, orjson.dumps(body), variables)
    call = PIPELINE._stream_chain(provider.name, SyntheticUpstream(n), plan, op, bodies, variables, decision)

    async def consume() -> int:
        sent = 0
        async for data in call.frames():  # what the ASGI relay does: send and let go
            sent += len(data)
        return sent

    tracemalloc.start()
    try:
        sent = asyncio.run(consume())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert call.source.usage is not None and call.source.usage.output_tokens == n
    return sent, peak


def _measured(n: int, model: str = "gpt-4o-mini", endpoint: str = "chat") -> tuple[int, int]:
    """_peak_while_streaming in a fresh process: tracemalloc counts every thread's allocations, and the
    session's in-process servers (sweepers, pools) allocate in theirs whenever they like."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(_peak_while_streaming, (n, model, endpoint))


def test_memory_does_not_grow_with_stream_length() -> None:
    sent_small, peak_small = _measured(1_000)
    sent_big, peak_big = _measured(20_000)
    assert sent_big > 15 * sent_small
    assert peak_big < peak_small * 1.5 + 64 * 1024, (peak_small, peak_big)


def test_memory_flat_through_a_stream_adapter() -> None:
    """/v1/text/generations on a chat model: parsed chunks converted one by one, none kept."""
    _, peak_small = _measured(1_000, "gpt-4o-mini", "completion")
    _, peak_big = _measured(20_000, "gpt-4o-mini", "completion")
    assert peak_big < peak_small * 1.5 + 64 * 1024, (peak_small, peak_big)
