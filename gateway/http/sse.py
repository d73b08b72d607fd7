"""Server-sent events: an incremental parser for upstream streams and the framing of ours.

The engine owns SSE framing; wire mappings only ever see parsed events.
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson


class SSEParser:
    """Feed bytes as they arrive; get complete events (name, data) back. Handles \\n and \\r\\n line
    ends, multi-line data, comments and events split across any byte boundary."""

    __slots__ = ("_buf", "_data", "_event")

    def __init__(self) -> None:
        self._buf = b""
        self._event: str = ""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> Iterator[tuple[str, bytes]]:
        if not self._data and not self._event and b"\r" not in chunk and b"\r" not in self._buf:
            yield from self._feed_simple(chunk)
            return
        yield from self._feed_lines(chunk)

    def _feed_simple(self, chunk: bytes) -> Iterator[tuple[str, bytes]]:
        """The common framing (`data: {...}` events split by blank lines, \n line ends): split whole
        events at once; anything unusual in an event goes through the line parser."""
        blocks = (self._buf + chunk).split(b"\n\n")
        rest = blocks.pop()
        self._buf = b""  # (the line parser reads from the buffer: the incomplete rest goes back after)
        try:
            for block in blocks:
                if block.startswith(b"data: ") and b"\n" not in block:
                    yield "", block[6:]
                elif block:
                    yield from self._feed_lines(block + b"\n\n")
        finally:
            self._buf = rest

    def _feed_lines(self, chunk: bytes) -> Iterator[tuple[str, bytes]]:
        buf = self._buf + chunk
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            line = buf[start:nl]
            start = nl + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if self._data:
                    yield self._event, b"\n".join(self._data)
                self._event, self._data = "", []
                continue
            if line.startswith(b":"):
                continue
            field, _, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            if field == b"data":
                self._data.append(value)
            elif field == b"event":
                self._event = value.decode("utf-8", "replace")
        self._buf = buf[start:]

    def close(self) -> Iterator[tuple[str, bytes]]:
        """An upstream that ends without a blank line still delivers its last event."""
        if self._buf:
            yield from self.feed(b"\n")
        if self._data:
            yield self._event, b"\n".join(self._data)
            self._event, self._data = "", []


def frame(payload: object, event: str | None = None) -> bytes:
    """One SSE event carrying `payload` as JSON (`data: ...`, with `event: ...` when named)."""
    data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    if event:
        return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"
    return b"data: " + data + b"\n\n"


DONE = b"data: [DONE]\n\n"
