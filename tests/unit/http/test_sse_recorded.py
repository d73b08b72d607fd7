"""The SSE parser against recorded provider streams cut at every read size a network may give."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from gateway.http.sse import SSEParser
from tests.support import FIXTURES

STREAMS = sorted((FIXTURES / "streams").glob("*/*/*.sse"))


def events(data: bytes, size: int) -> list[tuple[str, bytes]]:
    parser = SSEParser()
    out: list[tuple[str, bytes]] = []
    for i in range(0, len(data), size):
        out += [(name, bytes(d)) for name, d in parser.feed(data[i:i + size])]
    return out + [(name, bytes(d)) for name, d in parser.close()]


@pytest.mark.parametrize("path", STREAMS, ids=lambda p: f"{p.parent.parent.name}-{p.parent.name}-{p.stem}")
def test_every_read_size_gives_the_same_events(path: Path) -> None:
    """A read holding whole named events and the start of the next one corrupted that next event (its start
    was glued in front of the named events) — every Anthropic stream on a real network."""
    data = path.read_bytes()
    whole = events(data, len(data))
    assert whole and all(d == b"[DONE]" or orjson.loads(d) is not None for _, d in whole)
    for size in (1, 7, 64, 100, 512, 4096):
        assert events(data, size) == whole, size
