#!/usr/bin/env python3
"""Sequential streaming chat requests: time to first byte (TTFB) and chunks/s. Prints one JSON object.

    python3 bench/stream_client.py URL BODY_FILE [--key bt_...] [--requests 200] [--warmup 10]

A raw asyncio protocol client (one keep-alive connection), so that the timestamps are taken when bytes
arrive, not after an HTTP library has parsed a whole buffer of chunks:
TTFB = request written → first SSE event byte (`data:`) received; chunks = SSE `data:` events other than
`[DONE]`; chunks/s = all chunks / all streaming wall time (request written → last byte).
A response that is not `text/event-stream` is reported as {"streaming": false, ...} after one try.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from urllib.parse import urlsplit


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    return s[min(len(s) - 1, max(0, math.ceil(p / 100 * len(s)) - 1))]  # nearest rank


class Exchange(asyncio.Protocol):
    """One HTTP/1.1 connection; `request()` sends one request and waits for the whole response."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.t_first_event: float | None = None
        self.head: bytes | None = None
        self.body_start = 0
        self.length: int | None = None
        self.chunked = False
        self.done: asyncio.Future[float] | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done is not None and not self.done.done():
            if self.head is not None and self.length is None and not self.chunked:
                self.done.set_result(time.perf_counter())  # a body delimited by the connection's end
            else:
                self.done.set_exception(ConnectionError("connection closed by the server"))
        if not self.lost.done():
            self.lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self.buf += data
        if self.head is None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            self.head = bytes(self.buf[:end]).lower()
            self.body_start = end + 4
            for line in self.head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name == b"content-length":
                    self.length = int(value)
                elif name == b"transfer-encoding" and b"chunked" in value:
                    self.chunked = True
        if self.t_first_event is None and self.buf.find(b"data:", self.body_start) >= 0:
            self.t_first_event = now
        body_len = len(self.buf) - self.body_start
        complete = (self.length is not None and body_len >= self.length) or (
            self.chunked and self.buf.endswith(b"\r\n0\r\n\r\n")
        )
        if complete and self.done is not None and not self.done.done():
            self.done.set_result(now)

    async def request(self, raw: bytes, timeout: float) -> dict:
        assert self.transport is not None
        self.buf = bytearray()
        self.head, self.length, self.chunked, self.t_first_event = None, None, False, None
        self.done = asyncio.get_running_loop().create_future()
        t0 = time.perf_counter()
        self.transport.write(raw)
        t_end = await asyncio.wait_for(self.done, timeout)
        head = self.head or b""
        status = int(head.split(b" ", 2)[1]) if head.startswith(b"http/") else 0
        ctype = ""
        for line in head.split(b"\r\n")[1:]:
            if line.startswith(b"content-type:"):
                ctype = line.split(b":", 1)[1].strip().decode()
        body = bytes(self.buf[self.body_start :])
        if status != 200 or not ctype.startswith("text/event-stream"):
            return {
                "streaming": False,
                "status": status,
                "content_type": ctype,
                "body_head": body[:300].decode("utf-8", "replace"),
            }
        events = body.count(b"data:")
        done = body.count(b"data: [DONE]")
        return {
            "streaming": True,
            "ttfb": (self.t_first_event or t_end) - t0,
            "total": t_end - t0,
            "chunks": events - done,
            "done": bool(done),
        }


async def run(url: str, body: bytes, key: str, n: int, warmup: int, timeout: float) -> dict:
    u = urlsplit(url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    path = (u.path or "/") + (f"?{u.query}" if u.query else "")
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        "Accept: text/event-stream",
        f"Content-Length: {len(body)}",
        "Connection: keep-alive",
    ]
    if key:
        head.append(f"Authorization: Bearer {key}")
    raw = ("\r\n".join(head) + "\r\n\r\n").encode() + body
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(Exchange, host, port)
    try:
        probe = await proto.request(raw, timeout)
        if not probe["streaming"]:
            return probe
        for _ in range(warmup):
            await proto.request(raw, timeout)
        results = [await proto.request(raw, timeout) for _ in range(n)]
    finally:
        if proto.transport is not None:
            proto.transport.close()
    ok = [r for r in results if r.get("streaming")]
    ttfb = [r["ttfb"] * 1000 for r in ok]
    total_time = sum(r["total"] for r in ok)
    chunks = sum(r["chunks"] for r in ok)
    return {
        "streaming": True,
        "requests": n,
        "ok": len(ok),
        "incomplete": sum(1 for r in ok if not r["done"]),
        "chunks_per_stream": (chunks / len(ok)) if ok else 0,
        "ttfb_p50_ms": pct(ttfb, 50),
        "ttfb_p90_ms": pct(ttfb, 90),
        "ttfb_p99_ms": pct(ttfb, 99),
        "stream_p50_ms": pct([r["total"] * 1000 for r in ok], 50),
        "chunks_per_s": chunks / total_time if total_time else 0.0,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url")
    ap.add_argument("body_file")
    ap.add_argument("--key", default="")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    args = ap.parse_args()
    with open(args.body_file, "rb") as f:
        body = f.read()
    out = asyncio.run(run(args.url, body, args.key, args.requests, args.warmup, args.timeout))
    json.dump(out, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
