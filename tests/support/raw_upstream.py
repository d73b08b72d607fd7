"""A scripted upstream that speaks raw bytes on loopback, for framing tests of the upstream client.

    def script(req: RawRequest) -> list[bytes | float | Close]:
        return [b"HTTP/1.1 103 Early Hints\\r\\n\\r\\n", 0.1, answer(200, b"{}")]

    with RawUpstream(script) as up:      # up.base_url, up.requests, up.connections
        ...

Each accepted connection reads requests one after another (head + Content-Length body) and sends what
the script returns for each: bytes are sent as one write, a float pauses that many seconds (so the next
bytes arrive in a packet of their own), CLOSE closes the connection. Threads and blocking sockets, so
sync tests, async tests and a gateway under test in another thread can all use it.
"""

from __future__ import annotations

import gzip
import json
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self


class Close:
    """Close the connection here."""


CLOSE = Close()
Step = bytes | float | Close


@dataclass
class RawRequest:
    method: str
    target: str
    headers: dict[str, str]   # lower-case names
    body: bytes
    connection: int           # which accepted connection (1, 2, ...) it came on

    def json(self) -> Any:
        return json.loads(self.body)


def answer(status: int, body: bytes, headers: dict[str, str] | None = None, *, length: bool = True,
           version: str = "1.1") -> bytes:
    """One whole answer; `length=False` leaves the body delimited by the connection's close."""
    lines = [f"HTTP/{version} {status} X"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(pieces: list[bytes]) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces if p) + b"0\r\n\r\n"


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data)


def deflate_bytes(data: bytes) -> bytes:
    """`deflate` as RFC 9110 means it: zlib-wrapped."""
    return zlib.compress(data)


class GzipStream:
    """Compress a stream piece by piece (each piece flushed, so it can be decoded as it arrives)."""

    def __init__(self, wbits: int = 31) -> None:
        self._c = zlib.compressobj(wbits=wbits)

    def piece(self, data: bytes) -> bytes:
        return self._c.compress(data) + self._c.flush(zlib.Z_SYNC_FLUSH)

    def end(self) -> bytes:
        return self._c.flush()


# -- OpenAI-shaped answers that carry the request's own words, so answers can be told apart ---------------

USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


def chat_json(text: str) -> bytes:
    return json.dumps({"id": "chatcmpl-raw", "object": "chat.completion", "created": 1760000000,
                       "model": "gpt-4o-mini",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                    "finish_reason": "stop"}],
                       "usage": USAGE}).encode()


def chat_sse_events(text: str) -> list[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None, usage: Any = None) -> bytes:
        doc: dict[str, Any] = {"id": "chatcmpl-raw", "object": "chat.completion.chunk", "created": 1760000000,
                               "model": "gpt-4o-mini",
                               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if delta or finish
                               else []}
        if usage is not None:
            doc["usage"] = usage
        return b"data: " + json.dumps(doc).encode() + b"\n\n"

    words = text.split(" ")
    events = [chunk({"role": "assistant", "content": ""}, None)]
    events += [chunk({"content": (" " if i else "") + w}, None) for i, w in enumerate(words)]
    events += [chunk({}, "stop"), chunk({}, None, USAGE), b"data: [DONE]\n\n"]
    return events


def last_user_text(req: RawRequest) -> str:
    return str(req.json()["messages"][-1]["content"])


class RawUpstream:
    def __init__(self, script: Callable[[RawRequest], list[Step]], tls: ssl.SSLContext | None = None) -> None:
        """`tls`: serve https with this server context."""
        self.script = script
        self._tls = tls
        self.requests: list[RawRequest] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self.base_url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._open: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name=f"raw-upstream-{self.port}", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            with self._lock:
                self.connections += 1
                number = self.connections
                self._open.append(conn)
            threading.Thread(target=self._serve, args=(conn, number), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        conn.settimeout(30)
        buf = bytearray()  # grows in place: a 20 MiB body is not copied once per packet
        try:
            if self._tls is not None:
                conn = self._tls.wrap_socket(conn, server_side=True)
            while not self._stop.is_set():
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head_b, buf = buf.split(b"\r\n\r\n", 1)
                head = bytes(head_b)
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
                size = int(headers.get("content-length", "0"))
                while len(buf) < size:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                body, buf = bytes(buf[:size]), buf[size:]
                req = RawRequest(method, target, headers, body, number)
                with self._lock:
                    self.requests.append(req)
                for step in self.script(req):
                    if isinstance(step, Close):
                        return
                    if isinstance(step, float):
                        time.sleep(step)
                    else:
                        conn.sendall(step)
        except OSError:
            return
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        with self._lock:
            for conn in self._open:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
