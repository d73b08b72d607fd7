"""Raw ASGI primitives for the hot endpoints: read a bounded body, send a JSON answer.

The /v1 API is served without a framework: on the hot path FastAPI's request/response objects,
dependency injection and pydantic cost more CPU than the whole rest of the gateway (issue 6).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from gateway.errors import BadRequest, ErrorShape, GatewayError, PayloadTooLarge, render_error

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

JSON = b"application/json"


_ID_PREFIX = os.urandom(6).hex()   # per process; ids stay unique across workers and hosts
_id_counter = itertools.count(1)


def new_request_id() -> str:
    """req_ + 24 hex digits: a random per-process prefix and a counter (no syscall per request)."""
    return f"req_{_ID_PREFIX}{next(_id_counter):012x}"


def header(scope: Scope, name: bytes) -> bytes | None:
    for k, v in scope["headers"]:
        if k == name:
            return v
    return None


def declared_length(scope: Scope, limit: int, what: str) -> int:
    """The body's Content-Length (-1 when it has none); 400 when it is not a number, 413 over `limit` bytes
    (refused before a byte of it is read)."""
    declared = header(scope, b"content-length")
    if declared is None:
        return -1
    try:
        length = int(declared)
    except ValueError:
        raise BadRequest("invalid Content-Length header") from None
    if length > limit:
        raise PayloadTooLarge(f"{what} exceeds the {limit} byte limit")
    return length


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes | bytearray:
    """The whole request body, refusing (413) anything over `limit` bytes before reading it all. A body that
    comes in one piece (the hot path) is returned as it came; one in pieces is gathered into one buffer —
    of its declared length when it has one, so no second copy is made to join it."""
    length = declared_length(scope, limit, "request body")
    buf: bytearray | None = None
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        if buf is None and not more:
            if len(chunk) > limit:
                raise PayloadTooLarge(f"request body exceeds the {limit} byte limit")
            return chunk
        if buf is None:
            buf = bytearray(length) if length >= 0 else bytearray()
        end = size + len(chunk)
        if end > limit:
            raise PayloadTooLarge(f"request body exceeds the {limit} byte limit")
        if length >= 0:  # the HTTP parser holds the client to its Content-Length
            buf[size:end] = chunk
        else:
            buf += chunk
        size = end
        if not more:
            return buf


class ClientGone(Exception):
    """The client disconnected before we answered."""


async def send_bytes(send: Send, status: int, body: bytes, request_id: str,
                     extra: Iterable[tuple[bytes, bytes]] = (), content_type: bytes = JSON) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
               (b"x-request-id", request_id.encode())]
    headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


JOIN_PARTS_MAX = 256 * 1024


async def send_parts(send: Send, status: int, parts: tuple[bytes | memoryview, ...], request_id: str,
                     extra: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """A JSON answer made of pieces (an upstream body and what the gateway adds). Up to JOIN_PARTS_MAX bytes the
    pieces are joined: one socket write costs more than copying a small answer; a larger one goes out piece by
    piece, not copied."""
    length = sum(map(len, parts))
    if length <= JOIN_PARTS_MAX:
        whole = parts[0] if len(parts) == 1 and isinstance(parts[0], bytes) else b"".join(parts)
        await send_bytes(send, status, whole, request_id, extra)
        return
    headers = [(b"content-type", JSON), (b"content-length", str(length).encode()),
               (b"x-request-id", request_id.encode())]
    headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    last = len(parts) - 1
    for i, part in enumerate(parts):
        await send({"type": "http.response.body", "body": part, "more_body": i < last})


async def send_error(send: Send, err: GatewayError, request_id: str, shape: ErrorShape | None = None) -> None:
    """`shape`: the inbound API's own error body (an endpoint that speaks another API than the seed's)."""
    extra = [(k.lower().encode(), v.encode()) for k, v in err.headers.items()]
    await send_bytes(send, err.status, render_error(err, shape, request_id), request_id, extra)
