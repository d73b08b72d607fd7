"""Raw ASGI primitives for the hot endpoints: read a bounded body, send a JSON answer.

The /v1 API is served without a framework: on the hot path FastAPI's request/response objects,
dependency injection and pydantic cost more CPU than the whole rest of the gateway (issue 6).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from gateway.errors import BadRequest, GatewayError, PayloadTooLarge

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

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


PREALLOCATE_FROM = 64 * 1024   # a declared body this large is read into one buffer: no second copy to join


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes | bytearray:
    """The whole request body, refusing (413) anything over `limit` bytes before reading it all."""
    declared = header(scope, b"content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise BadRequest("invalid Content-Length header") from None
        if length > limit:
            raise PayloadTooLarge(f"request body exceeds the {limit} byte limit")
        if length >= PREALLOCATE_FROM:
            return await _read_into(receive, length)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body exceeds the {limit} byte limit")
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _read_into(receive: Receive, length: int) -> bytearray:
    """A body of a declared length (the HTTP parser holds the client to it) into one buffer."""
    buf = bytearray(length)
    view = memoryview(buf)
    pos = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        if chunk:
            end = pos + len(chunk)
            if end > length:
                raise BadRequest("request body longer than its Content-Length")
            view[pos:end] = chunk
            pos = end
        if not message.get("more_body", False):
            break
    view.release()
    if pos != length:
        raise BadRequest("request body shorter than its Content-Length")
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


async def send_error(send: Send, err: GatewayError, request_id: str) -> None:
    extra = [(k.lower().encode(), v.encode()) for k, v in err.headers.items()]
    await send_bytes(send, err.status, err.body(), request_id, extra)
