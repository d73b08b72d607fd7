"""A raw HTTP/1.1 test kit: an echo ASGI app with the behaviours the server-protocol tests need, the app
under uvicorn with the gateway's protocol in a thread, and a raw-socket response reader."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

from gateway.http.server_protocol import HttpProtocol
from tests.support.gateway_server import free_port

disconnects: list[str] = []
disconnected = threading.Event()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    path = scope["path"]
    if path == "/echo":  # the whole body back, with what the app saw of the request
        body = b""
        while True:
            m = await receive()
            body += m.get("body", b"")
            if not m.get("more_body"):
                break
        doc = {"method": scope["method"], "path": path, "query": scope["query_string"].decode(),
               "len": len(body), "body": body.decode("latin-1")[:100],
               "headers": {k.decode(): v.decode() for k, v in scope["headers"]}}
        await json_answer(send, 200, doc)
    elif path == "/stream":  # no Content-Length: chunked framing, pieces sent with pauses between them
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for i in range(5):
            await send({"type": "http.response.body", "body": f"piece {i}\n".encode(), "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b""})
    elif path == "/big":
        size = int(scope["query_string"].decode() or "0")
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(size).encode())]})
        chunk = b"x" * 65536
        sent = 0
        while sent < size:
            part = chunk[: min(65536, size - sent)]
            sent += len(part)
            await send({"type": "http.response.body", "body": part, "more_body": sent < size})
    elif path == "/wait-disconnect":
        await receive()  # the (empty) body
        m = await receive()
        disconnects.append(m["type"])
        disconnected.set()
    elif path == "/crash":
        raise ValueError("boom")
    elif path == "/early":  # answers without reading the body
        await json_answer(send, 413, {"error": "too big"})
    elif path == "/bad-header":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-evil", b"a\r\nset-cookie: x=1")]})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/slow-head":  # head first, body later: the head must reach the client on its own
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
        await asyncio.sleep(0.3)
        await send({"type": "http.response.body", "body": b"done"})
    else:
        await json_answer(send, 200, {"path": path})


async def json_answer(send: Any, status: int, doc: dict[str, Any]) -> None:
    body = json.dumps(doc).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


@contextlib.contextmanager
def serving(asgi: Any, **options: Any) -> Iterator[tuple[str, int]]:
    """`asgi` under uvicorn with our protocol, in a thread with its own event loop, until the block ends."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(asgi, host="127.0.0.1", port=port, http=HttpProtocol, loop="asyncio",
                                           lifespan="on", log_level="critical", **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.01)
    try:
        yield ("127.0.0.1", port)
    finally:
        server.should_exit = True
        thread.join(10)
    assert not thread.is_alive(), "server did not stop"


def connect(base: tuple[str, int]) -> socket.socket:
    s = socket.create_connection(base, timeout=5)
    return s


def read_response(sock: socket.socket, buf: bytearray) -> tuple[int, dict[str, str], bytes]:
    """One response off the socket (Content-Length, chunked or close-delimited); leftovers stay in buf."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed before a full head")
        buf += data
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    buf[:] = rest
    if status == 100:
        return status, headers, b""
    if "content-length" in headers:
        n = int(headers["content-length"])
        while len(buf) < n:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("closed mid-body")
            buf += data
        body = bytes(buf[:n])
        del buf[:n]
        return status, headers, body
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            while b"\r\n" not in buf:
                buf += sock.recv(65536)
            size_line, _, _ = bytes(buf).partition(b"\r\n")
            size = int(size_line, 16)
            need = len(size_line) + 2 + size + 2
            while len(buf) < need:
                buf += sock.recv(65536)
            body += bytes(buf[len(size_line) + 2: len(size_line) + 2 + size])
            del buf[:need]
            if size == 0:
                return status, headers, body
    body = bytes(buf)
    while data := sock.recv(65536):
        body += data
    buf.clear()
    return status, headers, body


def closed_by_server(sock: socket.socket, timeout: float = 3.0) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
