"""Golden tests of streaming translation: recorded provider streams (tests/fixtures/streams/<wire>/<op>/)
through the gateway's stream chain for every endpoint that operation serves, fed in awkward byte-sized
pieces. The client's event sequence is snapshotted and every event checked against OpenAI's spec."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from gateway.http.sse import SSEParser
from gateway.proxy.endpoints import ENDPOINTS
from gateway.proxy.streaming import StreamFailed
from tests.support import FIXTURES, MINIMAL_REQUEST, SAME_ANSWERS
from tests.support.fakes.specs import validate
from tests.support.snapshot_grid import CFG, PIPELINE, WIRE_PROVIDER, candidate, responses_only

EVENT_SCHEMA = {"chat": ("openai", "CreateChatCompletionStreamResponse"), "completion": None,
                "responses": ("openai", "ResponseStreamEvent"), "messages": ("anthropic", "MessageStreamEvent"),
                "stream_generate": ("gemini", "GenerateContentResponse")}
OWN_END = ("responses", "messages", "stream_generate")   # streams their API's own events end, not [DONE]


class RecordedUpstream:
    """Plays a recorded stream back in pieces of `size` bytes (events split at any boundary)."""

    def __init__(self, data: bytes, size: int) -> None:
        self._data = data
        self._size = size
        self.closed = False

    async def chunks(self):
        for i in range(0, len(self._data), self._size):
            yield self._data[i:i + self._size]

    def close(self) -> None:
        self.closed = True


def _grid():
    for path in sorted((FIXTURES / "streams").glob("*/*/*.sse")):
        wire, recorded = path.parent.parent.name, path.parent.name
        provider = WIRE_PROVIDER[wire]
        for operation in (recorded, *SAME_ANSWERS.get((wire, recorded), ())):
            for endpoint in EVENT_SCHEMA:
                found = candidate(provider, endpoint)
                if endpoint == "chat" and operation == "responses":
                    found = responses_only(provider)
                if found and found[0] and found[0][1].operation == operation:
                    for usage in (True, False) if endpoint not in OWN_END else (False,):
                        yield pytest.param(provider, endpoint, path, found, usage,
                                           id=f"{wire}-{operation}-{path.stem}-on-{endpoint}{'-usage' if usage else ''}")


async def _run(provider: str, endpoint: str, path: Path, found, include_usage: bool, size: int) -> tuple[list, bool]:
    (prov, plan), decision = found
    request = dict(MINIMAL_REQUEST["generate" if endpoint == "stream_generate" else endpoint])
    if not ENDPOINTS[endpoint].model_in_path:
        request |= {"model": decision.model.name, "stream": True}
    if include_usage:
        request["stream_options"] = {"include_usage": True}
    variables = PIPELINE.variables(decision, "req_test") | {"created": 1777300000, "stream": True}
    op = CFG.wire_of(prov).operations[plan.operation]
    bodies, _ = PIPELINE.prepare(plan, op, request, orjson.dumps(request), variables)
    call = PIPELINE._stream_chain(provider, RecordedUpstream(path.read_bytes(), size), plan, op, bodies, variables, decision)
    out = b""
    failed = False
    try:
        async for data in call.frames():
            out += data
        out += call.end()
    except StreamFailed as exc:
        out += call.framer.error(str(exc))
        failed = True
    events = []
    for name, data in SSEParser().feed(out):
        events.append({"event": name, "data": data.decode() if data == b"[DONE]" else orjson.loads(data)}
                      if name else (data.decode() if data == b"[DONE]" else orjson.loads(data)))
    return events, failed


@pytest.mark.parametrize("provider, endpoint, path, found, include_usage", list(_grid()))
def test_stream_translation(provider: str, endpoint: str, path: Path, found, include_usage: bool, snapshot) -> None:
    events, failed = asyncio.run(_run(provider, endpoint, path, found, include_usage, size=7))
    assert events == snapshot
    same, _ = asyncio.run(_run(provider, endpoint, path, found, include_usage, size=100_000))
    assert same == events, "the output must not depend on how the bytes arrive"
    schema = EVENT_SCHEMA[endpoint]
    for e in events:
        payload = e["data"] if isinstance(e, dict) and "event" in e else e
        if payload == "[DONE]" or not schema or "error" in payload and "choices" not in payload:
            continue
        if payload.get("type") == "ping":  # (Anthropic's spec leaves its keep-alive event out)
            continue
        assert validate(*schema, payload) == [], payload
    if not failed and endpoint not in OWN_END:
        assert events[-1] == "[DONE]"
        assert any(isinstance(e, dict) and e.get("usage") for e in events) == include_usage

