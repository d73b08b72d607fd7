"""The SSE parser keeps every event's name whatever the byte boundaries (the Messages API names its events)."""

from __future__ import annotations

import pytest

from gateway.http.sse import SSEParser

STREAM = (b"event: message_start\ndata: {\"a\":1}\n\nevent: ping\ndata: {}\n\ndata: {\"plain\":true}\n\n"
          b"event: content_block_delta\ndata: {\"b\":2}\n\n")


@pytest.mark.parametrize("size", [1, 3, 7, 13, 1000])
def test_names_survive_any_split(size: int) -> None:
    parser = SSEParser()
    events = [e for i in range(0, len(STREAM), size) for e in parser.feed(STREAM[i:i + size])]
    assert events == [("message_start", b'{"a":1}'), ("ping", b"{}"), ("", b'{"plain":true}'),
                      ("content_block_delta", b'{"b":2}')]
